"""Retrieval evaluations of a collection on the user's own judged queries, kept to compare over time."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin


class EvaluationStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"


FINISHED_STATUSES = frozenset({EvaluationStatus.completed, EvaluationStatus.failed})

EvaluationStatusColumn = Enum(
    EvaluationStatus, name="evaluation_status", native_enum=False, length=16, validate_strings=True
)


class RetrievalEvaluation(IdMixin, TimestampMixin, Base):
    """One run: the settings it ran with, the collection's size then, and the mean metrics per mode."""

    __tablename__ = "retrieval_evaluation"
    __table_args__ = (Index("ix_retrieval_evaluation_collection_created", "collection_id", "id"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    status: Mapped[EvaluationStatus] = mapped_column(EvaluationStatusColumn, default=EvaluationStatus.queued)
    modes: Mapped[list[str]] = mapped_column(default=list)
    fusion: Mapped[str] = mapped_column(String(16))
    semantic_weight: Mapped[float] = mapped_column()
    # The model semantic and hybrid modes searched with; None when only keyword search ran.
    embedding_model: Mapped[str | None] = mapped_column(String(200), default=None)
    # Ready documents of the collection and their chunks when the run started.
    document_count: Mapped[int] = mapped_column(default=0)
    chunk_count: Mapped[int] = mapped_column(default=0)
    query_count: Mapped[int] = mapped_column()
    # {"hybrid": {"ndcg_at_10": 0.81, …, "latency_p95_ms": 12.3, "queries": 40}}, one entry per finished mode.
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {"code": "…", "message": "…"} when failed.
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class JudgedQuery(IdMixin, Base):
    """One query of an evaluation with the documents judged relevant, and how each mode ranked them.
    Kept apart from the evaluation so listing evaluations stays light."""

    __tablename__ = "retrieval_judged_query"
    __table_args__ = (UniqueConstraint("evaluation_id", "ordinal"),)

    evaluation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("retrieval_evaluation.id", ondelete="CASCADE"))
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column()
    # The client's id for the query (its position, from 1, when it gave none).
    query_key: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    # document id → graded relevance (≥ 1)
    relevant: Mapped[dict[str, Any]] = mapped_column()
    # mode → {"ndcg_at_10": …, "latency_ms": …, "relevant": [{document_id, grade, rank}], "top": [ids]}
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
