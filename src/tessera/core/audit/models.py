"""Append-only audit trail, hash-chained per organization."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, utcnow

# Events without an organization (a failed sign-in for an unknown e-mail) chain under this key.
SYSTEM_CHAIN = uuid.UUID(int=0)


class AuditEvent(IdMixin, Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        UniqueConstraint("chain_id", "seq"),
        Index("ix_audit_event_org_id_created_at", "org_id", "created_at"),
        Index("ix_audit_event_org_id_action", "org_id", "action"),
    )

    chain_id: Mapped[uuid.UUID] = mapped_column()  # org_id, or SYSTEM_CHAIN
    seq: Mapped[int] = mapped_column()
    org_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organization.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_type: Mapped[str] = mapped_column(String(16))  # user | api_key | system | anonymous
    actor_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    actor_label: Mapped[str | None] = mapped_column(String(320), default=None)
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(64), default=None)
    target_id: Mapped[str | None] = mapped_column(String(64), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(500), default=None)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The last link of each chain. Locked while appending, so links are written one at a time,
    and compared on verification, so deleting the newest events is detected too."""

    __tablename__ = "audit_chain_head"

    chain_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(default=0)
    hash: Mapped[str] = mapped_column(String(64))
