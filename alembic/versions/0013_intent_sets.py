"""intent sets: per-organization intents with example phrases, and their trained versions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tessera.core.db.base

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name,
        tessera.core.db.base.UTCDateTime(timezone=True),
        server_default=sa.text("(CURRENT_TIMESTAMP)"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "intent_set",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("classifier", sa.String(length=16), nullable=False),
        sa.Column("out_of_scope_threshold", sa.Double(), nullable=True),
        sa.Column("out_of_scope_examples", _json(), nullable=False),
        sa.Column("pinned_version", sa.Integer(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=True),
        sa.Column("intent_count", sa.Integer(), nullable=False),
        sa.Column("example_count", sa.Integer(), nullable=False),
        sa.Column("definition_digest", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["created_by"], ["user_account.id"], name=op.f("fk_intent_set_created_by_user_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_intent_set_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intent_set")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_intent_set_org_id_name")),
    )
    with op.batch_alter_table("intent_set", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intent_set_org_id"), ["org_id"], unique=False)

    op.create_table(
        "intent",
        sa.Column("set_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("examples", _json(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["set_id"], ["intent_set.id"], name=op.f("fk_intent_set_id_intent_set"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intent")),
        sa.UniqueConstraint("set_id", "name", name=op.f("uq_intent_set_id_name")),
    )

    op.create_table(
        "intent_set_version",
        sa.Column("set_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("classifier", sa.String(length=16), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("intent_count", sa.Integer(), nullable=False),
        sa.Column("example_count", sa.Integer(), nullable=False),
        sa.Column("out_of_scope_example_count", sa.Integer(), nullable=False),
        sa.Column("training_accuracy", sa.Double(), nullable=False),
        sa.Column("validation_accuracy", sa.Double(), nullable=True),
        sa.Column("calibrated_threshold", sa.Double(), nullable=True),
        sa.Column("calibration", _json(), nullable=False),
        sa.Column("definition_digest", sa.String(length=64), nullable=False),
        sa.Column("parameters", sa.LargeBinary(), nullable=False),
        sa.Column("training_seconds", sa.Double(), nullable=False),
        sa.Column("trained_by", sa.Uuid(), nullable=True),
        sa.Column("trained_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["set_id"], ["intent_set.id"], name=op.f("fk_intent_set_version_set_id_intent_set"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trained_by"],
            ["user_account.id"],
            name=op.f("fk_intent_set_version_trained_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intent_set_version")),
        sa.UniqueConstraint("set_id", "version", name=op.f("uq_intent_set_version_set_id_version")),
    )


def downgrade() -> None:
    op.drop_table("intent_set_version")
    op.drop_table("intent")
    with op.batch_alter_table("intent_set", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intent_set_org_id"))
    op.drop_table("intent_set")
