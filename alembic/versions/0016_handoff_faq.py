"""support: a hand-off can be resolved with the FAQ that answers it (`support_handoff.faq_id`), which
threshold calibration counts as a question that FAQ should have matched

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("support_handoff", schema=None) as batch_op:
        batch_op.add_column(sa.Column("faq_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_support_handoff_faq_id_faq"), "faq", ["faq_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("support_handoff", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_support_handoff_faq_id_faq"), type_="foreignkey")
        batch_op.drop_column("faq_id")
