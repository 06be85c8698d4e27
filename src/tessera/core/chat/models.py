"""Conversations and their messages: each belongs to one user of one organization."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin, utcnow


class MessageRole(enum.StrEnum):
    user = "user"
    assistant = "assistant"


class Feedback(enum.StrEnum):
    up = "up"
    down = "down"


class Conversation(IdMixin, TimestampMixin, Base):
    __tablename__ = "conversation"
    __table_args__ = (Index("ix_conversation_owner", "org_id", "user_id", "id"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    tags: Mapped[list[str]] = mapped_column(default=list)
    archived: Mapped[bool] = mapped_column(default=False)
    # The collections its questions search (None: every collection the user can see).
    collections: Mapped[list[str] | None] = mapped_column(default=None)
    # The assistant that answers it (None: the server's defaults).
    assistant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("assistant.id", ondelete="SET NULL"), default=None, index=True
    )
    message_count: Mapped[int] = mapped_column(default=0)
    # Turns too old for the history budget, summarised by a language model (through that message).
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    summary_through: Mapped[uuid.UUID | None] = mapped_column(default=None)
    last_message_at: Mapped[datetime | None] = mapped_column(default=None)


class ChatMessage(IdMixin, Base):
    __tablename__ = "chat_message"
    __table_args__ = (Index("ix_chat_message_conversation", "conversation_id", "id"),)

    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    role: Mapped[MessageRole] = mapped_column(
        Enum(MessageRole, name="message_role", native_enum=False, length=16, validate_strings=True)
    )
    content: Mapped[str] = mapped_column(Text)
    # Assistant messages: the verified citations and sentences of the answer (generation/schemas.py).
    citations: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    sentences: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    grounded: Mapped[bool | None] = mapped_column(default=None)
    # The standalone question the retrieval ran with, when a follow-up was rewritten.
    search_query: Mapped[str | None] = mapped_column(Text, default=None)
    model: Mapped[str | None] = mapped_column(String(200), default=None)
    prompt: Mapped[str | None] = mapped_column(String(64), default=None)
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    feedback: Mapped[Feedback | None] = mapped_column(
        Enum(Feedback, name="message_feedback", native_enum=False, length=8, validate_strings=True), default=None
    )
    feedback_comment: Mapped[str | None] = mapped_column(Text, default=None)
    # How a product module routed the answer (`ChatRoute`: an FAQ match, a hand-off…); None: the answer pipeline.
    route: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
