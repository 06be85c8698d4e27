"""Collections and documents: visibility, uploads with deduplication, control of processing, deletion.

Visibility: organization admins and owners see every collection; other members see `org`
collections, their own, and `shared` ones that name them or their role. A document is visible
when its collection is; everything else is a 404, exactly like another organization's rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.models import Membership, Role
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id, utcnow
from tessera.core.db.session import run_after_commit, run_after_transaction
from tessera.core.documents.errors import (
    CollectionNameTaken,
    CollectionNotEmpty,
    CollectionNotFound,
    DocumentNotFound,
    EmptyFile,
    FileTooLarge,
    IdempotencyKeyReused,
    InvalidFilename,
    InvalidMetadata,
    NotCollectionManager,
    UnsupportedDocumentType,
)
from tessera.core.documents.indexing import indexers
from tessera.core.documents.models import (
    Chunk,
    Collection,
    Document,
    DocumentStatus,
    DocumentText,
    IdempotentRequest,
    Visibility,
)
from tessera.core.documents.parsing.detect import describe_accepted, detect_type
from tessera.core.documents.parsing.registry import DOCUMENT_TYPES, accepted_media_types
from tessera.core.documents.pipeline import blob_key, chunking_params, enqueue_ingest
from tessera.core.documents.schemas import CollectionCreate, CollectionUpdate
from tessera.core.documents.storage.base import BlobStore
from tessera.core.errors import InvalidInput
from tessera.core.jobs.runtime import JobRuntime
from tessera.core.pagination import PageParams, encode_cursor
from tessera.settings import Settings

logger = structlog.get_logger(__name__)
ADMIN_ROLES = frozenset({Role.owner, Role.admin})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
READ_CHUNK = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# visibility


def is_admin(principal: Principal) -> bool:
    return principal.role in ADMIN_ROLES


def can_see(principal: Principal, collection: Collection) -> bool:
    if collection.org_id != principal.org_id:
        return False
    if is_admin(principal) or collection.visibility == Visibility.org:
        return True
    if collection.owner_id == principal.user_id:
        return True
    if collection.visibility == Visibility.shared:
        return str(principal.user_id) in collection.shared_user_ids or (
            principal.role is not None and principal.role.value in collection.shared_roles
        )
    return False


def can_manage(principal: Principal, collection: Collection) -> bool:
    return is_admin(principal) or collection.owner_id == principal.user_id


def _org(principal: Principal) -> uuid.UUID:
    assert principal.org_id is not None, "routes require an active organization"
    return principal.org_id


async def visible_collections(session: AsyncSession, principal: Principal) -> list[Collection]:
    rows = (
        (await session.execute(select(Collection).where(Collection.org_id == _org(principal)).order_by(Collection.id)))
        .scalars()
        .all()
    )
    return [row for row in rows if can_see(principal, row)]


# ---------------------------------------------------------------------------------------------
# collections


async def _check_share_targets(session: AsyncSession, org_id: uuid.UUID, user_ids: Sequence[uuid.UUID]) -> None:
    if not user_ids:
        return
    found = set(
        (
            await session.execute(
                select(Membership.user_id).where(Membership.org_id == org_id, Membership.user_id.in_(list(user_ids)))
            )
        )
        .scalars()
        .all()
    )
    missing = [str(u) for u in user_ids if u not in found]
    if missing:
        raise InvalidInput("shared_user_ids must be members of the organization", details={"not_members": missing})


async def create_collection(
    session: AsyncSession, principal: Principal, body: CollectionCreate, *, meta: RequestMeta
) -> Collection:
    org_id = _org(principal)
    await _check_share_targets(session, org_id, body.shared_user_ids)
    if await session.scalar(select(Collection.id).where(Collection.org_id == org_id, Collection.name == body.name)):
        raise CollectionNameTaken(f"A collection named {body.name!r} already exists")
    collection = Collection(
        id=new_id(),
        org_id=org_id,
        name=body.name,
        description=body.description,
        metadata_schema={name: spec.model_dump() for name, spec in body.metadata_schema.items()},
        visibility=body.visibility,
        owner_id=principal.user_id,
        shared_user_ids=[str(u) for u in body.shared_user_ids],
        shared_roles=[r.value for r in body.shared_roles],
        chunking=body.chunking.model_dump(exclude_none=True),
    )
    session.add(collection)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as error:
        raise CollectionNameTaken(f"A collection named {body.name!r} already exists") from error
    await record_event(
        session, action="collection.created", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="collection", target_id=collection.id,
        details={"name": collection.name, "visibility": collection.visibility.value},
    )  # fmt: skip
    return collection


async def document_counts(session: AsyncSession, collection_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not collection_ids:
        return {}
    rows = await session.execute(
        select(Document.collection_id, func.count())
        .where(Document.collection_id.in_(list(collection_ids)))
        .group_by(Document.collection_id)
    )
    return {row[0]: int(row[1]) for row in rows}


async def list_collections(
    session: AsyncSession, principal: Principal, *, params: PageParams, name: str | None = None
) -> tuple[list[Collection], str | None]:
    """Newest first, only the visible ones. Collections per organization are few, so visibility
    is checked in Python over the organization's list rather than in SQL on each backend."""
    rows = sorted(await visible_collections(session, principal), key=lambda c: c.id, reverse=True)
    if name:
        needle = name.casefold()
        rows = [row for row in rows if needle in row.name.casefold()]
    if params.after is not None:
        rows = [row for row in rows if row.id < params.after]
    page = rows[: params.limit]
    return page, encode_cursor(page[-1].id) if len(rows) > params.limit else None


async def get_collection(session: AsyncSession, principal: Principal, collection_id: uuid.UUID) -> Collection:
    collection = await session.get(Collection, collection_id)
    if collection is None or not can_see(principal, collection):
        raise CollectionNotFound("Collection not found")
    return collection


async def update_collection(
    session: AsyncSession, principal: Principal, collection_id: uuid.UUID, body: CollectionUpdate, *, meta: RequestMeta
) -> Collection:
    collection = await get_collection(session, principal, collection_id)
    if not can_manage(principal, collection):
        raise NotCollectionManager("Only the collection's owner or an organization admin may change it")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is not None:
        name = changes["name"].strip()
        if not name:
            raise InvalidInput("name must not be blank")
        taken = await session.scalar(
            select(Collection.id).where(
                Collection.org_id == collection.org_id, Collection.name == name, Collection.id != collection.id
            )
        )
        if taken:
            raise CollectionNameTaken(f"A collection named {name!r} already exists")
        collection.name = name
    if body.description is not None:
        collection.description = body.description
    if body.metadata_schema is not None:
        collection.metadata_schema = {name: spec.model_dump() for name, spec in body.metadata_schema.items()}
    if body.visibility is not None:
        collection.visibility = body.visibility
    if body.shared_user_ids is not None:
        await _check_share_targets(session, collection.org_id, body.shared_user_ids)
        collection.shared_user_ids = [str(u) for u in body.shared_user_ids]
    if body.shared_roles is not None:
        collection.shared_roles = [r.value for r in body.shared_roles]
    if body.chunking is not None:
        collection.chunking = body.chunking.model_dump(exclude_none=True)
    if body.owner_id is not None:
        await _check_share_targets(session, collection.org_id, [body.owner_id])
        collection.owner_id = body.owner_id
    collection.updated_at = utcnow()
    await session.flush()
    await record_event(
        session, action="collection.updated", org_id=collection.org_id, actor=principal.actor, meta=meta,
        target_type="collection", target_id=collection.id, details={"changed": sorted(changes)},
    )  # fmt: skip
    return collection


async def delete_collection(
    session: AsyncSession,
    principal: Principal,
    collection_id: uuid.UUID,
    *,
    force: bool,
    store: BlobStore,
    meta: RequestMeta,
) -> int:
    collection = await get_collection(session, principal, collection_id)
    if not can_manage(principal, collection):
        raise NotCollectionManager("Only the collection's owner or an organization admin may delete it")
    ids = list((await session.execute(select(Document.id).where(Document.collection_id == collection.id))).scalars())
    if ids and not force:
        raise CollectionNotEmpty(
            f"The collection holds {len(ids)} documents; delete them first or pass force=true",
            details={"documents": len(ids)},
        )
    await _delete_documents(session, ids, store)
    await session.delete(collection)
    await record_event(
        session, action="collection.deleted", org_id=collection.org_id, actor=principal.actor, meta=meta,
        target_type="collection", target_id=collection.id, details={"name": collection.name, "documents": len(ids)},
    )  # fmt: skip
    return len(ids)


def effective_chunking(settings: Settings, collection: Collection) -> dict[str, Any]:
    return dict(chunking_params(settings, collection).__dict__)


# ---------------------------------------------------------------------------------------------
# metadata


def _check_value(name: str, kind: str, value: Any) -> Any:
    def fail() -> InvalidMetadata:
        return InvalidMetadata(f"metadata field {name!r} must be a {kind}", details={"field": name, "type": kind})

    if kind == "string":
        if not isinstance(value, str):
            raise fail()
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail()
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise fail()
    elif kind == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            raise fail() from None
    elif kind == "datetime":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise fail() from None
    elif kind == "string_list" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise fail()
    return value


def validate_metadata(collection: Collection, metadata: dict[str, Any]) -> dict[str, Any]:
    """Check `metadata` against the collection's schema; fields outside the schema are kept as given."""
    if len(json.dumps(metadata, default=str)) > 32_768:
        raise InvalidMetadata("metadata is larger than 32 KB")
    schema = collection.metadata_schema or {}
    for name, spec in schema.items():
        if name not in metadata or metadata[name] is None:
            if spec.get("required"):
                raise InvalidMetadata(f"metadata field {name!r} is required", details={"field": name})
            continue
        _check_value(name, spec["type"], metadata[name])
    return metadata


def parse_metadata_form(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidMetadata(f"metadata is not valid JSON: {error.msg}") from error
    if not isinstance(value, dict):
        raise InvalidMetadata("metadata must be a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# staging an upload


@dataclass
class StagedFile:
    path: Path
    filename: str
    size: int
    sha256: str
    doc_type: str
    source_url: str | None = None


def clean_filename(raw: str | None, *, fallback: str = "document") -> str:
    """Names are shown and offered for download, never used as paths; still refuse the dangerous ones."""
    name = unicodedata.normalize("NFC", raw or "").strip()
    if not name:
        return fallback
    if _CONTROL.search(name):
        raise InvalidFilename("The file name holds control characters", details={"filename": repr(name)[:300]})
    if "/" in name or "\\" in name:
        raise InvalidFilename("The file name holds a path separator; send the bare name", details={"filename": name})
    if name in (".", "..") or len(name.encode()) > 255:
        raise InvalidFilename("The file name is not usable (., .., or longer than 255 bytes)")
    return name


async def stage_stream(
    chunks: Callable[[], Awaitable[bytes]],
    *,
    filename: str,
    staging_dir: Path,
    max_bytes: int,
    source_url: str | None = None,
) -> StagedFile:
    """Copy a stream to a temporary file while hashing it; stop as soon as it passes `max_bytes`."""
    staging_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    head = b""
    fd, temporary = tempfile.mkstemp(dir=staging_dir, prefix="upload-")
    path = Path(temporary)
    try:
        with os.fdopen(fd, "wb") as handle:
            while True:
                block = await chunks()
                if not block:
                    break
                size += len(block)
                if size > max_bytes:
                    raise FileTooLarge(
                        f"{filename!r} is larger than the limit of {max_bytes} bytes",
                        details={"filename": filename, "max_bytes": max_bytes},
                    )
                if len(head) < 65_536:
                    head += block[: 65_536 - len(head)]
                digest.update(block)
                handle.write(block)
        if size == 0:
            raise EmptyFile(f"{filename!r} is empty", details={"filename": filename})
        doc_type = detect_type(head if not head.startswith(b"PK") else path.read_bytes(), filename)
        if doc_type is None:
            raise UnsupportedDocumentType(
                f"{filename!r} is not a supported type. Accepted: {describe_accepted()}",
                details={"filename": filename, "accepted": accepted_media_types()},
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedFile(path, filename, size, digest.hexdigest(), doc_type, source_url)


def discard(staged: Sequence[StagedFile]) -> None:
    for item in staged:
        item.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# documents


@dataclass
class AddedDocument:
    document: Document
    duplicate: bool


async def add_documents(
    session: AsyncSession,
    principal: Principal,
    *,
    collection_id: uuid.UUID,
    staged: Sequence[StagedFile],
    metadata: dict[str, Any],
    store: BlobStore,
    jobs: JobRuntime | None,
    meta: RequestMeta,
) -> list[AddedDocument]:
    """Store each staged file once per organization and queue it; a file already present (same
    SHA-256) gives back the existing document, marked as a duplicate."""
    collection = await get_collection(session, principal, collection_id)
    metadata = validate_metadata(collection, metadata)
    org_id = _org(principal)
    results: list[AddedDocument] = []
    fresh: list[Document] = []
    seen: dict[str, Document] = {}
    written: list[str] = []
    for item in staged:
        existing = seen.get(item.sha256) or await session.scalar(
            select(Document).where(Document.org_id == org_id, Document.sha256 == item.sha256)
        )
        if existing is not None:
            if existing.collection_id != collection.id and not await _visible_document(session, principal, existing):
                # The content exists in a collection this caller cannot see: say it is a duplicate
                # without revealing the other document.
                raise InvalidInput(
                    f"{item.filename!r} is already stored in this organization, in a collection you cannot see",
                    details={"filename": item.filename, "code": "duplicate_elsewhere"},
                )
            results.append(AddedDocument(existing, duplicate=True))
            continue
        key = blob_key(org_id, item.sha256)
        if not await store.exists(key):
            await store.put_file(key, item.path)
            written.append(key)
        document = Document(
            id=new_id(),
            org_id=org_id,
            collection_id=collection.id,
            created_by=principal.user_id,
            filename=item.filename,
            source_url=item.source_url,
            doc_type=item.doc_type,
            media_type=DOCUMENT_TYPES[item.doc_type].media_type,
            size_bytes=item.size,
            sha256=item.sha256,
            blob_key=key,
            user_metadata=metadata,
        )
        session.add(document)
        seen[item.sha256] = document
        fresh.append(document)
        results.append(AddedDocument(document, duplicate=False))
    if written:
        _drop_files_if_rolled_back(session, store, org_id, written)
    await session.flush()
    for document in fresh:
        await record_event(
            session, action="document.uploaded", org_id=org_id, actor=principal.actor, meta=meta,
            target_type="document", target_id=document.id,
            details={"filename": document.filename, "sha256": document.sha256, "size": document.size_bytes,
                     "collection_id": str(collection.id)},
        )  # fmt: skip
    if jobs is not None and fresh:
        schedule_ingest(session, jobs, [(d.id, d.org_id, d.generation) for d in fresh])
    return results


def _drop_files_if_rolled_back(session: AsyncSession, store: BlobStore, org_id: uuid.UUID, keys: list[str]) -> None:
    """Files are stored before the rows that point at them commit; if the transaction rolls back
    instead, remove the files no document refers to, so a failed upload leaves nothing behind."""

    async def check(side: AsyncSession) -> None:
        for key in keys:
            digest = key.rsplit("/", 1)[-1]
            if await side.scalar(select(Document.id).where(Document.org_id == org_id, Document.sha256 == digest)):
                continue
            await store.delete(key)

    run_after_transaction(session, check)


def schedule_ingest(session: AsyncSession, jobs: JobRuntime, runs: Sequence[tuple[uuid.UUID, uuid.UUID, int]]) -> None:
    """Enqueue the pipeline for each document once this transaction has committed."""

    async def enqueue() -> None:
        for document_id, org_id, generation in runs:
            await enqueue_ingest(jobs, document_id, org_id, generation)

    run_after_commit(session, enqueue)


async def _visible_document(session: AsyncSession, principal: Principal, document: Document) -> bool:
    collection = await session.get(Collection, document.collection_id)
    return collection is not None and can_see(principal, collection)


async def get_document(session: AsyncSession, principal: Principal, document_id: uuid.UUID) -> Document:
    document = await session.get(Document, document_id)
    if (
        document is None
        or document.org_id != principal.org_id
        or not await _visible_document(session, principal, document)
    ):
        raise DocumentNotFound("Document not found")
    return document


@dataclass
class DocumentFilters:
    collection_id: uuid.UUID | None = None
    status: list[DocumentStatus] | None = None
    doc_type: list[str] | None = None
    metadata: dict[str, Any] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    parent_id: uuid.UUID | None = None
    q: str | None = None


async def list_documents(
    session: AsyncSession, principal: Principal, *, filters: DocumentFilters, params: PageParams
) -> tuple[list[Document], str | None]:
    collections = {c.id: c for c in await visible_collections(session, principal)}
    if filters.collection_id is not None:
        if filters.collection_id not in collections:
            raise CollectionNotFound("Collection not found")
        allowed = [filters.collection_id]
    else:
        allowed = list(collections)
    if not allowed:
        return [], None
    query: Select[Any] = select(Document).where(Document.org_id == _org(principal), Document.collection_id.in_(allowed))
    if filters.status:
        query = query.where(Document.status.in_(filters.status))
    if filters.doc_type:
        query = query.where(Document.doc_type.in_(filters.doc_type))
    if filters.created_after is not None:
        query = query.where(Document.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(Document.created_at < filters.created_before)
    if filters.parent_id is not None:
        query = query.where(Document.parent_id == filters.parent_id)
    if filters.q:
        pattern = "%" + filters.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            func.lower(Document.filename).like(pattern.lower(), escape="\\")
            | func.lower(func.coalesce(Document.title, "")).like(pattern.lower(), escape="\\")
        )
    if filters.metadata:
        # Equality on top-level metadata keys; the JSON path syntax differs by backend, so it is
        # expressed through SQLAlchemy's JSON index operators, which render for both.
        for name, value in filters.metadata.items():
            element = Document.user_metadata[name]
            if isinstance(value, bool):
                query = query.where(element.as_boolean() == value)
            elif isinstance(value, int | float):
                query = query.where(element.as_float() == float(value))
            elif isinstance(value, str):
                query = query.where(element.as_string() == value)
            else:
                raise InvalidInput("metadata filters compare top-level keys with strings, numbers or booleans")
    if params.after is not None:
        query = query.where(Document.id < params.after)
    rows = list((await session.execute(query.order_by(Document.id.desc()).limit(params.limit + 1))).scalars())
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, encode_cursor(rows[-1].id)
    return rows, None


async def document_text(session: AsyncSession, principal: Principal, document_id: uuid.UUID) -> str | None:
    document = await get_document(session, principal, document_id)
    stored = await session.get(DocumentText, document.id)
    return stored.text if stored is not None else None


async def list_chunks(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, *, limit: int, after: int | None
) -> tuple[list[Chunk], str | None]:
    document = await get_document(session, principal, document_id)
    query = select(Chunk).where(Chunk.document_id == document.id)
    if after is not None:
        query = query.where(Chunk.ordinal > after)
    rows = list((await session.execute(query.order_by(Chunk.ordinal).limit(limit + 1))).scalars())
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, str(rows[-1].ordinal)
    return rows, None


async def patch_metadata(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, changes: dict[str, Any], *, meta: RequestMeta
) -> Document:
    document = await get_document(session, principal, document_id)
    collection = await session.get(Collection, document.collection_id)
    assert collection is not None
    merged = {**document.user_metadata}
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    document.user_metadata = validate_metadata(collection, merged)
    document.updated_at = utcnow()
    for indexer in indexers():
        await indexer.update_metadata(session, document.id, document.user_metadata)
    await record_event(
        session, action="document.metadata_changed", org_id=document.org_id, actor=principal.actor, meta=meta,
        target_type="document", target_id=document.id, details={"keys": sorted(changes)},
    )  # fmt: skip
    return document


async def reprocess(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, *, jobs: JobRuntime | None, meta: RequestMeta
) -> Document:
    """Run the pipeline again from the stored original; a run in progress is superseded."""
    document = await get_document(session, principal, document_id)
    document.generation += 1
    document.status = DocumentStatus.queued
    document.progress = 0.0
    document.error = None
    document.stage_timings = {}
    document.updated_at = utcnow()
    await session.flush()
    await record_event(
        session, action="document.reprocessed", org_id=document.org_id, actor=principal.actor, meta=meta,
        target_type="document", target_id=document.id, details={"generation": document.generation},
    )  # fmt: skip
    if jobs is not None:
        schedule_ingest(session, jobs, [(document.id, document.org_id, document.generation)])
    return document


async def delete_document(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, *, store: BlobStore, meta: RequestMeta
) -> None:
    document = await get_document(session, principal, document_id)
    removed = await _delete_documents(session, [document.id], store)
    await record_event(
        session, action="document.deleted", org_id=document.org_id, actor=principal.actor, meta=meta,
        target_type="document", target_id=document.id,
        details={"filename": document.filename, "sha256": document.sha256, "with_attachments": removed - 1},
    )  # fmt: skip


async def delete_org_documents(session: AsyncSession, org_id: uuid.UUID, store: BlobStore) -> int:
    """Every document of an organization, removed as `delete_document` removes one (index entries,
    chunks, text, rows; the files once committed): for deleting the organization itself."""
    ids = await session.execute(select(Document.id).where(Document.org_id == org_id, Document.parent_id.is_(None)))
    return await _delete_documents(session, list(ids.scalars()), store)


async def _delete_documents(session: AsyncSession, document_ids: Sequence[uuid.UUID], store: BlobStore) -> int:
    """Index entries, chunks, text and rows in this transaction (a handful of set-based statements,
    whatever the size); the stored files once it has committed. Attachments go with their parent."""
    if not document_ids:
        return 0
    ids = list(document_ids)
    frontier = ids
    while frontier:
        children = list((await session.execute(select(Document.id).where(Document.parent_id.in_(frontier)))).scalars())
        ids.extend(children)
        frontier = children
    keys = list((await session.execute(select(Document.blob_key).where(Document.id.in_(ids)))).scalars())
    for indexer in indexers():
        await indexer.remove_documents(session, ids)
    for batch in _batches(ids, 500):
        await session.execute(delete(Chunk).where(Chunk.document_id.in_(batch)))
        await session.execute(delete(DocumentText).where(DocumentText.document_id.in_(batch)))
        await session.execute(update(Document).where(Document.id.in_(batch)).values(parent_id=None))
        await session.execute(delete(Document).where(Document.id.in_(batch)))

    async def remove_files() -> None:
        await store.delete_many(keys)

    run_after_commit(session, remove_files)
    return len(ids)


def _batches(items: list[uuid.UUID], size: int) -> list[list[uuid.UUID]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------------------------------
# idempotency


def fingerprint(collection_id: uuid.UUID, metadata: dict[str, Any], staged: Sequence[StagedFile]) -> str:
    body = json.dumps(
        {
            "collection_id": str(collection_id),
            "metadata": metadata,
            "files": [[s.filename, s.sha256] for s in staged],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def replay(
    session: AsyncSession, principal: Principal, key: str, print_: str
) -> tuple[int, dict[str, Any]] | None:
    stored = await session.scalar(
        select(IdempotentRequest).where(
            IdempotentRequest.org_id == _org(principal),
            IdempotentRequest.user_id == principal.user_id,
            IdempotentRequest.key == key,
        )
    )
    if stored is None:
        return None
    if stored.fingerprint != print_:
        raise IdempotencyKeyReused("This Idempotency-Key was used for a different request")
    return stored.status_code, stored.response


def remember(
    session: AsyncSession, principal: Principal, key: str, print_: str, status_code: int, response: dict[str, Any]
) -> None:
    session.add(
        IdempotentRequest(
            org_id=_org(principal),
            user_id=principal.user_id,
            key=key,
            fingerprint=print_,
            status_code=status_code,
            response=response,
        )
    )
