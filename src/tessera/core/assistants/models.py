"""Assistants: named answer configurations of an organization (what to search, which chat model,
which instructions). A name is also the model name of the OpenAI-compatible API (`/v1`)."""

from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin


class Assistant(IdMixin, TimestampMixin, Base):
    __tablename__ = "assistant"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # The collections it answers from (None: every collection the asking user can see).
    collections: Mapped[list[str] | None] = mapped_column(default=None)
    # None: the server's chat model; `extractive`, or a name from `generation.profiles`.
    provider: Mapped[str | None] = mapped_column(String(40), default=None)
    instructions: Mapped[str] = mapped_column(Text, default="")
    style: Mapped[str] = mapped_column(String(16), default="concise")
    mode: Mapped[str] = mapped_column(String(16), default="hybrid")
    # None: the server's `generation` settings.
    sources: Mapped[int | None] = mapped_column(default=None)
    temperature: Mapped[float | None] = mapped_column(default=None)
    max_answer_tokens: Mapped[int | None] = mapped_column(default=None)
    prompt_version: Mapped[str | None] = mapped_column(String(16), default=None)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
