"""support: FAQ categories, FAQs with their vectors and phrasings, FAQ feedback, per-organization
support settings, end-user profiles and consents, hand-offs to agents, chatbot turns, and the route
of each chat answer (`chat_message.route`)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tessera.core.db.base

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "route", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
            )
        )
    op.create_table(
        "faq_category",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_faq_category_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq_category")),
        sa.UniqueConstraint("org_id", "slug", name=op.f("uq_faq_category_org_id_slug")),
    )
    op.create_table(
        "support_settings",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("chatbot_enabled", sa.Boolean(), nullable=False),
        sa.Column("match_threshold", sa.Double(), nullable=True),
        sa.Column(
            "collections", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column(
            "handoff_emails",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("default_language", sa.String(length=16), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("require_consent", sa.Boolean(), nullable=False),
        sa.Column("consent_version", sa.String(length=40), nullable=False),
        sa.Column("faq_url_template", sa.String(length=500), nullable=True),
        sa.Column("faq_revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_support_settings_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_support_settings")),
    )
    op.create_table(
        "faq",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("category_id", sa.Uuid(), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column(
            "keywords", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column(
            "status",
            sa.Enum("draft", "published", "archived", name="faq_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("slug", sa.String(length=120), nullable=False),
        sa.Column("seo_title", sa.String(length=200), nullable=True),
        sa.Column("seo_description", sa.String(length=400), nullable=True),
        sa.Column("published_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("view_count", sa.Integer(), nullable=False),
        sa.Column("helpful_count", sa.Integer(), nullable=False),
        sa.Column("not_helpful_count", sa.Integer(), nullable=False),
        sa.Column("question_vector", sa.LargeBinary(), nullable=True),
        sa.Column("answer_vector", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("updated_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["category_id"], ["faq_category.id"], name=op.f("fk_faq_category_id_faq_category"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["user_account.id"], name=op.f("fk_faq_created_by_user_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_faq_org_id_organization"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["user_account.id"], name=op.f("fk_faq_updated_by_user_account"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq")),
        sa.UniqueConstraint("org_id", "slug", name=op.f("uq_faq_org_id_slug")),
    )
    with op.batch_alter_table("faq", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faq_category_id"), ["category_id"], unique=False)
        batch_op.create_index("ix_faq_org_status", ["org_id", "status"], unique=False)
    op.create_table(
        "support_handoff",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column(
            "reason",
            sa.Enum(
                "no_answer", "requested", "out_of_scope", name="support_handoff_reason", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum("open", "resolved", name="support_handoff_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_support_handoff_org_id_organization"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by"],
            ["user_account.id"],
            name=op.f("fk_support_handoff_resolved_by_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_support_handoff_user_id_user_account"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_handoff")),
    )
    with op.batch_alter_table("support_handoff", schema=None) as batch_op:
        batch_op.create_index("ix_support_handoff_org_status", ["org_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_support_handoff_user_id"), ["user_id"], unique=False)
    op.create_table(
        "support_profile",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("gdpr_consent", sa.Boolean(), nullable=False),
        sa.Column("gdpr_consent_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("gdpr_consent_version", sa.String(length=40), nullable=True),
        sa.Column("data_processing_consent", sa.Boolean(), nullable=False),
        sa.Column("data_processing_consent_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("data_processing_consent_version", sa.String(length=40), nullable=True),
        sa.Column("marketing_consent", sa.Boolean(), nullable=False),
        sa.Column("marketing_consent_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("marketing_consent_version", sa.String(length=40), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            tessera.core.db.base.UTCDateTime(timezone=True),
            server_default=sa.text("(CURRENT_TIMESTAMP)"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_support_profile_org_id_organization"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_support_profile_user_id_user_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_profile")),
        sa.UniqueConstraint("org_id", "user_id", name=op.f("uq_support_profile_org_id_user_id")),
    )
    with op.batch_alter_table("support_profile", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_support_profile_user_id"), ["user_id"], unique=False)
    op.create_table(
        "faq_feedback",
        sa.Column("faq_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("helpful", sa.Boolean(), nullable=False),
        sa.Column("query", sa.String(length=500), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["faq_id"], ["faq.id"], name=op.f("fk_faq_feedback_faq_id_faq"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_faq_feedback_org_id_organization"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_faq_feedback_user_id_user_account"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq_feedback")),
    )
    with op.batch_alter_table("faq_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faq_feedback_faq_id"), ["faq_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_faq_feedback_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_faq_feedback_user_id"), ["user_id"], unique=False)
    op.create_table(
        "faq_phrasing",
        sa.Column("faq_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column(
            "source",
            sa.Enum("manual", "feedback", name="faq_phrasing_source", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("created_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["faq_id"], ["faq.id"], name=op.f("fk_faq_phrasing_faq_id_faq"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_faq_phrasing_org_id_organization"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_faq_phrasing")),
        sa.UniqueConstraint("faq_id", "text", name=op.f("uq_faq_phrasing_faq_id_text")),
    )
    with op.batch_alter_table("faq_phrasing", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_faq_phrasing_org_id"), ["org_id"], unique=False)
    op.create_table(
        "support_turn",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("conversation_id", sa.Uuid(), nullable=True),
        sa.Column(
            "route",
            sa.Enum("faq", "grounded", "handoff", "intent", name="support_turn_route", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("intent", sa.String(length=40), nullable=True),
        sa.Column("faq_id", sa.Uuid(), nullable=True),
        sa.Column("match_score", sa.Double(), nullable=True),
        sa.Column("handoff_id", sa.Uuid(), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("stored", sa.Boolean(), nullable=False),
        sa.Column("created_at", tessera.core.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["faq_id"], ["faq.id"], name=op.f("fk_support_turn_faq_id_faq"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["support_handoff.id"],
            name=op.f("fk_support_turn_handoff_id_support_handoff"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organization.id"], name=op.f("fk_support_turn_org_id_organization"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user_account.id"], name=op.f("fk_support_turn_user_id_user_account"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_turn")),
    )
    with op.batch_alter_table("support_turn", schema=None) as batch_op:
        batch_op.create_index("ix_support_turn_org_created", ["org_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_support_turn_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("support_turn", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_turn_user_id"))
    op.drop_table("support_turn")
    with op.batch_alter_table("faq_phrasing", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_faq_phrasing_org_id"))
    op.drop_table("faq_phrasing")
    with op.batch_alter_table("faq_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_faq_feedback_faq_id"))
        batch_op.drop_index(batch_op.f("ix_faq_feedback_org_id"))
        batch_op.drop_index(batch_op.f("ix_faq_feedback_user_id"))
    op.drop_table("faq_feedback")
    with op.batch_alter_table("support_profile", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_profile_user_id"))
    op.drop_table("support_profile")
    with op.batch_alter_table("support_handoff", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_handoff_user_id"))
    op.drop_table("support_handoff")
    with op.batch_alter_table("faq", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_faq_category_id"))
    op.drop_table("faq")
    op.drop_table("support_settings")
    op.drop_table("faq_category")
    with op.batch_alter_table("chat_message", schema=None) as batch_op:
        batch_op.drop_column("route")
