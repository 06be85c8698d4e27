"""The support product's tables: FAQ categories and FAQs (with their vectors and learned phrasings),
feedback on FAQs, the organization's support settings, end users' profiles and consents, hand-offs
to human agents, and one row per chatbot turn for analytics."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin, utcnow


class FaqStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class PhrasingSource(enum.StrEnum):
    manual = "manual"  # an editor's alternative wording of the question
    feedback = "feedback"  # a user's query that the FAQ answered, marked helpful


class HandoffReason(enum.StrEnum):
    no_answer = "no_answer"  # neither an FAQ nor the knowledge base answered
    requested = "requested"  # the user asked for a human
    out_of_scope = "out_of_scope"


class HandoffStatus(enum.StrEnum):
    open = "open"
    resolved = "resolved"


class TurnRoute(enum.StrEnum):
    faq = "faq"
    grounded = "grounded"
    handoff = "handoff"
    intent = "intent"  # greetings, thanks: answered by the bot's own phrases


def _enum(kind: type[enum.StrEnum], name: str) -> Enum:
    return Enum(kind, name=name, native_enum=False, length=16, validate_strings=True)


class FaqCategory(IdMixin, TimestampMixin, Base):
    __tablename__ = "faq_category"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    # Indexed by the unique constraint, whose first column it is.
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    position: Mapped[int] = mapped_column(default=0)


class Faq(IdMixin, TimestampMixin, Base):
    __tablename__ = "faq"
    __table_args__ = (UniqueConstraint("org_id", "slug"), Index("ix_faq_org_status", "org_id", "status"))

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    category_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("faq_category.id", ondelete="SET NULL"), default=None, index=True
    )
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[FaqStatus] = mapped_column(_enum(FaqStatus, "faq_status"), default=FaqStatus.draft)
    priority: Mapped[int] = mapped_column(default=0)
    language: Mapped[str] = mapped_column(String(16), default="en")
    slug: Mapped[str] = mapped_column(String(120))
    seo_title: Mapped[str | None] = mapped_column(String(200), default=None)
    seo_description: Mapped[str | None] = mapped_column(String(400), default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    view_count: Mapped[int] = mapped_column(default=0)
    helpful_count: Mapped[int] = mapped_column(default=0)
    not_helpful_count: Mapped[int] = mapped_column(default=0)
    # The question and the answer embedded apart (float32 bytes), with the model that made them:
    # vectors of another model are never compared, they are remade (service.reembed_stale).
    question_vector: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    answer_vector: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200), default=None)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    updated_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )


class FaqPhrasing(IdMixin, Base):
    """Another way users ask an FAQ's question: written by an editor, or learned from a query the
    FAQ answered and the user found helpful. Matched like the question itself."""

    __tablename__ = "faq_phrasing"
    __table_args__ = (UniqueConstraint("faq_id", "text"),)

    faq_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("faq.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(String(500))
    source: Mapped[PhrasingSource] = mapped_column(_enum(PhrasingSource, "faq_phrasing_source"))
    vector: Mapped[bytes | None] = mapped_column(LargeBinary, default=None, deferred=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FaqFeedback(IdMixin, Base):
    __tablename__ = "faq_feedback"

    faq_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("faq.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None, index=True
    )
    helpful: Mapped[bool] = mapped_column()
    # What the user searched or asked when the FAQ answered them (learned as a phrasing when helpful).
    query: Mapped[str | None] = mapped_column(String(500), default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SupportSettings(TimestampMixin, Base):
    """One row per organization, made on first use with the server's defaults."""

    __tablename__ = "support_settings"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True)
    chatbot_enabled: Mapped[bool] = mapped_column(default=True)
    # None: the server's calibrated default (SupportModuleSettings.match_threshold).
    match_threshold: Mapped[float | None] = mapped_column(default=None)
    # Collections the bot answers from when no FAQ matches (None: every collection).
    collections: Mapped[list[str] | None] = mapped_column(default=None)
    handoff_emails: Mapped[list[str]] = mapped_column(default=list)
    default_language: Mapped[str] = mapped_column(String(16), default="en")
    # Chat messages older than this are purged by the retention workflow (None: kept).
    retention_days: Mapped[int | None] = mapped_column(default=None)
    # Conversations are stored only for users who gave data-processing consent.
    require_consent: Mapped[bool] = mapped_column(default=True)
    consent_version: Mapped[str] = mapped_column(String(40), default="1")
    # Where users read an FAQ, e.g. "https://help.example.com/faq/{slug}" (None: the API's path).
    faq_url_template: Mapped[str | None] = mapped_column(String(500), default=None)
    # Bumped by every FAQ write: processes rebuild their in-memory FAQ index when it moves.
    faq_revision: Mapped[int] = mapped_column(default=0)


class SupportProfile(IdMixin, TimestampMixin, Base):
    """An end user's language, time zone and consents in one organization."""

    __tablename__ = "support_profile"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    gdpr_consent: Mapped[bool] = mapped_column(default=False)
    gdpr_consent_at: Mapped[datetime | None] = mapped_column(default=None)
    gdpr_consent_version: Mapped[str | None] = mapped_column(String(40), default=None)
    data_processing_consent: Mapped[bool] = mapped_column(default=False)
    data_processing_consent_at: Mapped[datetime | None] = mapped_column(default=None)
    data_processing_consent_version: Mapped[str | None] = mapped_column(String(40), default=None)
    marketing_consent: Mapped[bool] = mapped_column(default=False)
    marketing_consent_at: Mapped[datetime | None] = mapped_column(default=None)
    marketing_consent_version: Mapped[str | None] = mapped_column(String(40), default=None)


class Handoff(IdMixin, TimestampMixin, Base):
    """A question the bot could not answer (or a request for a human), waiting for an agent."""

    __tablename__ = "support_handoff"
    __table_args__ = (Index("ix_support_handoff_org_status", "org_id", "status"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None, index=True
    )
    # Not foreign keys: a hand-off outlives a conversation its user did not consent to store.
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    question: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    reason: Mapped[HandoffReason] = mapped_column(_enum(HandoffReason, "support_handoff_reason"))
    status: Mapped[HandoffStatus] = mapped_column(
        _enum(HandoffStatus, "support_handoff_status"), default=HandoffStatus.open
    )
    note: Mapped[str | None] = mapped_column(Text, default=None)
    # The FAQ an agent resolved it with: the question is one that FAQ answers (threshold calibration).
    faq_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("faq.id", ondelete="SET NULL"), default=None)
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


class SupportTurn(IdMixin, Base):
    """How the bot answered one message: what analytics count. Holds no message text."""

    __tablename__ = "support_turn"
    __table_args__ = (Index("ix_support_turn_org_created", "org_id", "created_at"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None, index=True
    )
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    route: Mapped[TurnRoute] = mapped_column(_enum(TurnRoute, "support_turn_route"))
    intent: Mapped[str | None] = mapped_column(String(40), default=None)
    faq_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("faq.id", ondelete="SET NULL"), default=None)
    match_score: Mapped[float | None] = mapped_column(default=None)
    handoff_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("support_handoff.id", ondelete="SET NULL"), default=None
    )
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    stored: Mapped[bool] = mapped_column(default=True)  # False: the user had not consented to storage
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
