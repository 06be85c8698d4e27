"""Intent sets of an organization, their intents (a name and example phrases), and the immutable
versions that training makes: everything a process needs to classify, stored in the database."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin, utcnow


class IntentSet(IdMixin, TimestampMixin, Base):
    __tablename__ = "intent_set"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    description: Mapped[str] = mapped_column(Text, default="")
    classifier: Mapped[str] = mapped_column(String(16))  # logistic | centroid, for the next training
    # None: the active version's calibrated threshold, else the server's default.
    out_of_scope_threshold: Mapped[float | None] = mapped_column(default=None)
    # Texts the set must reject: a class of their own (logistic) and calibration data.
    out_of_scope_examples: Mapped[list[str]] = mapped_column(default=list)
    # None: the latest version is active; else the version pinned (a rollback).
    pinned_version: Mapped[int | None] = mapped_column(default=None)
    latest_version: Mapped[int | None] = mapped_column(default=None)
    # Kept with every change, so lists need not load the examples.
    intent_count: Mapped[int] = mapped_column(default=0)
    example_count: Mapped[int] = mapped_column(default=0)
    # sha256 of the definition (classifier, intents, examples): compared with the active version's.
    definition_digest: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )


class Intent(IdMixin, TimestampMixin, Base):
    __tablename__ = "intent"
    __table_args__ = (UniqueConstraint("set_id", "name"),)

    # Indexed by the unique constraint, whose first column it is.
    set_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intent_set.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    examples: Mapped[list[str]] = mapped_column(default=list)


class IntentSetVersion(IdMixin, Base):
    """A trained classifier: never changed once written. `parameters` is `IntentModel.to_bytes()`."""

    __tablename__ = "intent_set_version"
    __table_args__ = (UniqueConstraint("set_id", "version"),)

    # Indexed by the unique constraint, whose first column it is.
    set_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("intent_set.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column()
    classifier: Mapped[str] = mapped_column(String(16))
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[int] = mapped_column()
    labels: Mapped[list[str]] = mapped_column()
    intent_count: Mapped[int] = mapped_column()
    example_count: Mapped[int] = mapped_column()
    out_of_scope_example_count: Mapped[int] = mapped_column(default=0)
    training_accuracy: Mapped[float] = mapped_column()
    # Out-of-sample accuracy (holdout or cross-validation); None when too little data.
    validation_accuracy: Mapped[float | None] = mapped_column(default=None)
    calibrated_threshold: Mapped[float | None] = mapped_column(default=None)
    calibration: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # sha256 of the definition trained on (classifier, intents, examples), to tell when the set changed since.
    definition_digest: Mapped[str] = mapped_column(String(64))
    # Loaded only when a process first classifies with the version (then kept in memory).
    parameters: Mapped[bytes] = mapped_column(LargeBinary, deferred=True, deferred_raiseload=True)
    training_seconds: Mapped[float] = mapped_column()
    trained_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    trained_at: Mapped[datetime] = mapped_column(default=utcnow)
