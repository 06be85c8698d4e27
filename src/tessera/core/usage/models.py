"""Model usage per answer, and each organization's monthly budgets."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, utcnow


class UsageRecord(IdMixin, Base):
    """One answer's tokens (and cost, where the model is priced), with who asked and through what."""

    __tablename__ = "usage_record"
    __table_args__ = (Index("ix_usage_record_org_created", "org_id", "created_at"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"), default=None)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    model: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(40))  # ask, chat, chat_ws, openai
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    cost: Mapped[float | None] = mapped_column(default=None)  # in `generation.currency`, when priced
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UsageBudget(Base):
    """Monthly limits of an organization (None: no limit). Tokens are input plus output."""

    __tablename__ = "usage_budget"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True)
    org_monthly_tokens: Mapped[int | None] = mapped_column(default=None)
    user_monthly_tokens: Mapped[int | None] = mapped_column(default=None)
    user_monthly_requests: Mapped[int | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
