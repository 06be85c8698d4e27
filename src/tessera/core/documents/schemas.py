from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from tessera.core.auth.models import Role
from tessera.core.documents.models import DocumentStatus, Visibility
from tessera.core.pagination import Page

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime", "string_list"]
FIELD_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]{0,63}$"


class MetadataField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: FieldType = Field(description="Type of the value; `date` is `YYYY-MM-DD`, `datetime` ISO 8601.")
    required: bool = Field(False, description="Documents must carry this field.")
    description: str = Field("", max_length=500)


class ChunkingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chunk_size: int | None = Field(None, ge=16, le=8_192, description="Tokens per chunk.")
    chunk_overlap: int | None = Field(None, ge=0, le=4_096, description="Tokens shared by consecutive chunks.")
    min_chunk_tokens: int | None = Field(
        None, ge=1, le=4_096, description="Sections smaller than this merge with what follows."
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingConfig:
        if self.chunk_size is not None and self.chunk_overlap is not None and self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        return self


class CollectionBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field("", max_length=10_000)
    metadata_schema: dict[str, MetadataField] = Field(
        default_factory=dict,
        description="Typed metadata fields documents of this collection may (or must) carry.",
        examples=[{"year": {"type": "integer", "required": True}, "tags": {"type": "string_list"}}],
    )
    visibility: Visibility = Field(
        Visibility.org,
        description="`org`: every member; `private`: the owner; `shared`: the owner, `shared_user_ids` and "
        "members with one of `shared_roles`. Organization admins see every collection.",
    )
    shared_user_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1_000)
    shared_roles: list[Role] = Field(default_factory=list)
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)

    @field_validator("metadata_schema")
    @classmethod
    def _field_names(cls, value: dict[str, MetadataField]) -> dict[str, MetadataField]:
        import re

        bad = [name for name in value if not re.fullmatch(FIELD_NAME, name)]
        if bad:
            raise ValueError(f"metadata field names must match {FIELD_NAME}: {', '.join(bad[:5])}")
        if len(value) > 100:
            raise ValueError("at most 100 metadata fields")
        return value


class CollectionCreate(CollectionBase):
    name: str = Field(min_length=1, max_length=200, examples=["Support articles"])

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        return value


class CollectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    metadata_schema: dict[str, MetadataField] | None = None
    visibility: Visibility | None = None
    shared_user_ids: list[uuid.UUID] | None = Field(None, max_length=1_000)
    shared_roles: list[Role] | None = None
    chunking: ChunkingConfig | None = Field(
        None, description="Applies to documents processed from now on; reprocess older ones to re-chunk them."
    )
    owner_id: uuid.UUID | None = Field(None, description="Hand the collection to another member.")


class CollectionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    metadata_schema: dict[str, Any]
    visibility: Visibility
    owner_id: uuid.UUID | None
    shared_user_ids: list[str]
    shared_roles: list[str]
    chunking: dict[str, Any] = Field(description="Effective chunking parameters (collection values over defaults).")
    document_count: int = 0
    created_at: datetime
    updated_at: datetime


CollectionPage = Page[CollectionRead]


class DocumentError(BaseModel):
    stage: str = Field(description="Stage that failed: `parsing`, `chunking` or `indexing`.")
    code: str = Field(examples=["encrypted_document"])
    message: str


class DocumentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    collection_id: uuid.UUID
    parent_id: uuid.UUID | None = Field(description="The document this one was attached to (e-mail attachments).")
    filename: str
    source_url: str | None
    doc_type: str = Field(description="Type detected from the content: pdf, docx, epub, html, text…")
    media_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    progress: float = Field(ge=0, le=1)
    error: DocumentError | None
    stage_timings: dict[str, float] = Field(description="Seconds spent in each stage of the last run.")
    metadata: dict[str, Any] = Field(validation_alias="user_metadata")
    properties: dict[str, Any] = Field(description="What ingestion learnt: summary, author, warnings, OCR pages…")
    title: str | None
    language: str | None
    page_count: int | None
    chunk_count: int
    text_chars: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    status_url: str = ""


class UploadedDocument(DocumentRead):
    duplicate: bool = Field(
        False, description="The same content was already in this organization: this is the existing document."
    )


class UploadResponse(BaseModel):
    documents: list[UploadedDocument]


class FromUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(examples=["https://www.gutenberg.org/cache/epub/11/pg11.txt"])
    collection_id: uuid.UUID
    metadata: dict[str, Any] = Field(default_factory=dict)
    filename: str | None = Field(None, max_length=255, description="Name to give the document; default from the URL.")


class DocumentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] = Field(
        description="Merged into the document's metadata; a key set to null is removed.",
        examples=[{"year": 2024, "draft": None}],
    )


DocumentPage = Page[DocumentRead]


class ChunkRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ordinal: int
    text: str
    start_offset: int = Field(description="Character offset of `text` in the document's extracted text.")
    end_offset: int
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    token_count: int


class ChunkPage(BaseModel):
    items: list[ChunkRead]
    next_cursor: str | None


class CollectionDeleted(BaseModel):
    documents_deleted: int
