"""An organization's PII policy, and the pseudonym vault."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, utcnow


class PiiPolicy(Base):
    __tablename__ = "pii_policy"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), primary_key=True)
    allow: Mapped[list[str]] = mapped_column(default=list)
    deny: Mapped[list[str]] = mapped_column(default=list)
    # entity type (or DEFAULT) → operator, as the API takes it
    operators: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # None: every type the detector knows
    entities: Mapped[list[str] | None] = mapped_column(default=None)
    score_threshold: Mapped[float | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PiiVaultEntry(IdMixin, Base):
    """One pseudonymised value of a scope: its surrogate, the original encrypted (AES-GCM with a key of
    the organization), and a keyed hash of it to find the surrogate again without the plaintext."""

    __tablename__ = "pii_vault_entry"
    __table_args__ = (
        UniqueConstraint("org_id", "scope", "original_hash"),
        UniqueConstraint("org_id", "scope", "surrogate"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    surrogate: Mapped[str] = mapped_column(String(100))
    # HMAC-SHA256 (hex) of scope, type and normalised value, keyed per organization
    original_hash: Mapped[str] = mapped_column(String(64))
    # version byte, 12-byte nonce, AES-GCM ciphertext and tag
    encrypted_original: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
