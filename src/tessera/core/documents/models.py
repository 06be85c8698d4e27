"""Collections (knowledge bases), documents, their extracted text and chunks."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, JsonType, TimestampMixin, utcnow


class Visibility(enum.StrEnum):
    org = "org"
    """Every member of the organization."""
    private = "private"
    """The collection's owner (and the organization's admins)."""
    shared = "shared"
    """The owner, the named users and members holding one of the named roles (and admins)."""


class DocumentStatus(enum.StrEnum):
    queued = "queued"
    parsing = "parsing"
    chunking = "chunking"
    indexing = "indexing"
    ready = "ready"
    failed = "failed"
    needs_ocr = "needs_ocr"


TERMINAL_STATUSES = frozenset({DocumentStatus.ready, DocumentStatus.failed, DocumentStatus.needs_ocr})

VisibilityColumn = Enum(Visibility, name="visibility", native_enum=False, length=16, validate_strings=True)
StatusColumn = Enum(DocumentStatus, name="document_status", native_enum=False, length=16, validate_strings=True)


class Collection(IdMixin, TimestampMixin, Base):
    __tablename__ = "collection"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # {"field": {"type": "string|integer|number|boolean|date", "required": bool, "description": str}}
    metadata_schema: Mapped[dict[str, Any]] = mapped_column(default=dict)
    visibility: Mapped[Visibility] = mapped_column(VisibilityColumn, default=Visibility.org)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None, index=True
    )
    shared_user_ids: Mapped[list[str]] = mapped_column(default=list)
    shared_roles: Mapped[list[str]] = mapped_column(default=list)
    # {"chunk_size": int, "chunk_overlap": int, "min_chunk_tokens": int}; missing keys use the settings.
    chunking: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Document(IdMixin, TimestampMixin, Base):
    __tablename__ = "document"
    __table_args__ = (
        # One document per content within an organization: the same bytes uploaded twice are one
        # document. Child documents (e-mail attachments) are deduplicated the same way.
        UniqueConstraint("org_id", "sha256"),
        Index("ix_document_collection_created", "collection_id", "id"),
        Index("ix_document_org_status", "org_id", "status"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    collection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("document.id", ondelete="CASCADE"), default=None, index=True
    )
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    filename: Mapped[str] = mapped_column(String(255))
    source_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    doc_type: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(127))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(512))
    status: Mapped[DocumentStatus] = mapped_column(StatusColumn, default=DocumentStatus.queued)
    progress: Mapped[float] = mapped_column(default=0.0)
    # {"stage": "parsing", "code": "encrypted_document", "message": "…"} when failed or needs_ocr.
    error: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # {"parsing": 0.12, "chunking": 0.01, …} seconds spent in each stage of the last run.
    stage_timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The user's metadata (validated against the collection's schema).
    user_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # What the pipeline learnt: title, language, summary, author, page_count…
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    title: Mapped[str | None] = mapped_column(String(500), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    page_count: Mapped[int | None] = mapped_column(default=None)
    chunk_count: Mapped[int] = mapped_column(default=0)
    text_chars: Mapped[int] = mapped_column(default=0)
    # Bumped by reprocess: the pipeline run of an older generation stops writing.
    generation: Mapped[int] = mapped_column(default=1)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)


class DocumentText(Base):
    """The extracted text and its structure, kept apart so listing documents stays light."""

    __tablename__ = "document_text"

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("document.id", ondelete="CASCADE"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    # Blocks as [kind, level, page, start, end] rows: enough to chunk again without parsing again.
    structure: Mapped[list[Any]] = mapped_column(JsonType, default=list)
    generation: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Chunk(IdMixin, Base):
    __tablename__ = "document_chunk"
    __table_args__ = (UniqueConstraint("document_id", "ordinal"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    collection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"), index=True)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("document.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column()
    text: Mapped[str] = mapped_column(Text)
    start_offset: Mapped[int] = mapped_column()
    end_offset: Mapped[int] = mapped_column()
    page_start: Mapped[int | None] = mapped_column(default=None)
    page_end: Mapped[int | None] = mapped_column(default=None)
    heading_path: Mapped[list[str]] = mapped_column(default=list)
    token_count: Mapped[int] = mapped_column()


class IdempotentRequest(IdMixin, Base):
    """The answer to a request sent with an `Idempotency-Key`, replayed when the key comes again."""

    __tablename__ = "idempotent_request"
    __table_args__ = (UniqueConstraint("org_id", "user_id", "key"),)

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column()
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
