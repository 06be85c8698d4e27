"""privacy vault and policies: per-organization PII policy, and the encrypted pseudonym vault

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tessera.core.db.base

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pii_policy",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("allow", _json(), nullable=False),
        sa.Column("deny", _json(), nullable=False),
        sa.Column("operators", _json(), nullable=False),
        sa.Column("entities", _json(), nullable=True),
        sa.Column("score_threshold", sa.Double(), nullable=True),
        sa.Column("updated_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_pii_policy_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_pii_policy")),
    )
    op.create_table(
        "pii_vault_entry",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("surrogate", sa.String(length=100), nullable=False),
        sa.Column("original_hash", sa.String(length=64), nullable=False),
        sa.Column("encrypted_original", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_pii_vault_entry_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pii_vault_entry")),
        sa.UniqueConstraint(
            "org_id", "scope", "original_hash", name=op.f("uq_pii_vault_entry_org_id_scope_original_hash")
        ),
        sa.UniqueConstraint("org_id", "scope", "surrogate", name=op.f("uq_pii_vault_entry_org_id_scope_surrogate")),
    )


def downgrade() -> None:
    op.drop_table("pii_vault_entry")
    op.drop_table("pii_policy")
