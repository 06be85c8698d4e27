"""An organization's moderation policy, and the log of what moderation flagged."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, utcnow


class ModerationPolicy(Base):
    __tablename__ = "moderation_policy"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True)
    disabled: Mapped[list[str]] = mapped_column(default=list)
    # category → words or phrases that flag it in this organization
    blocked: Mapped[dict[str, Any]] = mapped_column(default=dict)
    allowed: Mapped[list[str]] = mapped_column(default=list)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ModerationFlag(IdMixin, Base):
    """A question refused or an answer withheld: which categories, where, and a short excerpt."""

    __tablename__ = "moderation_flag"
    __table_args__ = (Index("ix_moderation_flag_org", "org_id", "id"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"), default=None)
    direction: Mapped[str] = mapped_column(String(8))  # input | output
    source: Mapped[str] = mapped_column(String(40))  # ask, chat, chat_ws, openai
    categories: Mapped[dict[str, Any]] = mapped_column(default=dict)
    excerpt: Mapped[str] = mapped_column(Text)
    moderator: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
