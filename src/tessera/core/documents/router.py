from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile, status
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from tessera.core.auth.dependencies import RequestMetaDep, SettingsDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession, unit_of_work
from tessera.core.documents import service
from tessera.core.documents.errors import (
    CollectionNameTaken,
    CollectionNotEmpty,
    CollectionNotFound,
    DocumentNotFound,
    EmptyFile,
    FileTooLarge,
    IdempotencyKeyReused,
    InvalidMetadata,
    NotCollectionManager,
    UnsupportedDocumentType,
)
from tessera.core.documents.fetch import fetch_to_staging
from tessera.core.documents.models import TERMINAL_STATUSES, Document, DocumentStatus
from tessera.core.documents.schemas import (
    ChunkPage,
    ChunkRead,
    CollectionCreate,
    CollectionPage,
    CollectionRead,
    CollectionUpdate,
    DocumentPage,
    DocumentPatch,
    DocumentRead,
    FromUrlRequest,
    UploadedDocument,
    UploadResponse,
)
from tessera.core.documents.storage.base import BlobStore
from tessera.core.errors import InvalidInput
from tessera.core.pagination import MAX_LIMIT, PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.settings import Settings

API_PREFIX = "/api/v1"
collections_router = APIRouter(prefix="/collections", tags=["collections"], dependencies=[rate_limit("default")])
documents_router = APIRouter(prefix="/documents", tags=["documents"], dependencies=[rate_limit("default")])

CollectionReader = Annotated[Principal, require("collections:read")]
CollectionWriter = Annotated[Principal, require("collections:write")]
CollectionDeleter = Annotated[Principal, require("collections:delete")]
DocumentReader = Annotated[Principal, require("documents:read")]
DocumentWriter = Annotated[Principal, require("documents:write")]
DocumentDeleter = Annotated[Principal, require("documents:delete")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Send the same key again (same files, same fields) to get the first answer back "
        "instead of a second upload; a different request under a used key is a 409.",
    ),
]
SSE_POLL_SECONDS = 0.5
SSE_HEARTBEAT_SECONDS = 15.0


def _store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blob_store
    return store


def _collection_read(settings: Settings, collection: Any, count: int) -> CollectionRead:
    return CollectionRead.model_validate(
        {
            **{k: getattr(collection, k) for k in CollectionRead.model_fields if hasattr(collection, k)},
            "chunking": service.effective_chunking(settings, collection),
            "document_count": count,
        }
    )


def _document_read(document: Document, model: type[DocumentRead] = DocumentRead, **extra: Any) -> Any:
    read = model.model_validate(document, from_attributes=True)
    read.status_url = f"{API_PREFIX}/documents/{document.id}"
    for name, value in extra.items():
        setattr(read, name, value)
    return read


# ---------------------------------------------------------------------------------------------
# collections


@collections_router.post(
    "",
    response_model=CollectionRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create a collection",
    description="A knowledge base of the active organization. You become its owner.",
    responses={409: CollectionNameTaken.schema()},
)
async def create_collection(
    body: CollectionCreate, principal: CollectionWriter, session: DbSession, settings: SettingsDep, meta: RequestMetaDep
) -> CollectionRead:
    collection = await service.create_collection(session, principal, body, meta=meta)
    return _collection_read(settings, collection, 0)


@collections_router.get(
    "",
    response_model=CollectionPage,
    summary="List collections",
    description="The collections you can see, newest first.",
)
async def list_collections(
    principal: CollectionReader,
    session: DbSession,
    settings: SettingsDep,
    page: PageParamsDep,
    name: Annotated[str | None, Query(max_length=200, description="Only names containing this.")] = None,
) -> CollectionPage:
    rows, cursor = await service.list_collections(session, principal, params=page, name=name)
    counts = await service.document_counts(session, [row.id for row in rows])
    return CollectionPage(items=[_collection_read(settings, r, counts.get(r.id, 0)) for r in rows], next_cursor=cursor)


@collections_router.get(
    "/{collection_id}",
    response_model=CollectionRead,
    summary="One collection",
    responses={404: CollectionNotFound.schema()},
)
async def get_collection(
    collection_id: uuid.UUID, principal: CollectionReader, session: DbSession, settings: SettingsDep
) -> CollectionRead:
    collection = await service.get_collection(session, principal, collection_id)
    counts = await service.document_counts(session, [collection.id])
    return _collection_read(settings, collection, counts.get(collection.id, 0))


@collections_router.patch(
    "/{collection_id}",
    response_model=CollectionRead,
    summary="Change a collection",
    description="Only the owner or an organization admin. New chunking parameters apply to documents "
    "processed from now on.",
    responses={404: CollectionNotFound.schema(), 403: NotCollectionManager.schema(), 409: CollectionNameTaken.schema()},
)
async def update_collection(
    collection_id: uuid.UUID,
    body: CollectionUpdate,
    principal: CollectionWriter,
    session: DbSession,
    settings: SettingsDep,
    meta: RequestMetaDep,
) -> CollectionRead:
    collection = await service.update_collection(session, principal, collection_id, body, meta=meta)
    counts = await service.document_counts(session, [collection.id])
    return _collection_read(settings, collection, counts.get(collection.id, 0))


@collections_router.delete(
    "/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a collection",
    description="Refused (409) while it holds documents, unless `force=true`, which deletes them too.",
    responses={404: CollectionNotFound.schema(), 403: NotCollectionManager.schema(), 409: CollectionNotEmpty.schema()},
)
async def delete_collection(
    collection_id: uuid.UUID,
    request: Request,
    principal: CollectionDeleter,
    session: DbSession,
    meta: RequestMetaDep,
    force: Annotated[bool, Query(description="Also delete every document of the collection.")] = False,
) -> None:
    await service.delete_collection(session, principal, collection_id, force=force, store=_store(request), meta=meta)


# ---------------------------------------------------------------------------------------------
# upload


async def _respond_upload(
    request: Request,
    session: DbSession,
    principal: Principal,
    *,
    collection_id: uuid.UUID,
    metadata: dict[str, Any],
    staged: list[service.StagedFile],
    idempotency_key: str | None,
    meta: Any,
) -> JSONResponse:
    fingerprint = service.fingerprint(collection_id, metadata, staged)
    if idempotency_key:
        replayed = await service.replay(session, principal, idempotency_key, fingerprint)
        if replayed is not None:
            return JSONResponse(replayed[1], status_code=replayed[0], headers={"Idempotent-Replayed": "true"})
    added = await service.add_documents(
        session, principal, collection_id=collection_id, staged=staged, metadata=metadata,
        store=_store(request), jobs=request.app.state.jobs, meta=meta,
    )  # fmt: skip
    await session.flush()
    body = UploadResponse(
        documents=[_document_read(a.document, UploadedDocument, duplicate=a.duplicate) for a in added]
    ).model_dump(mode="json")
    if idempotency_key:
        service.remember(session, principal, idempotency_key, fingerprint, 202, body)
    location = body["documents"][0]["status_url"] if len(added) == 1 else None
    return JSONResponse(body, status_code=202, headers={"Location": location} if location else None)


_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: FileTooLarge.schema(),
    415: UnsupportedDocumentType.schema(),
    422: EmptyFile.schema(),
    404: CollectionNotFound.schema(),
    409: IdempotencyKeyReused.schema(),
}


@documents_router.post(
    "",
    response_model=UploadResponse,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Upload documents",
    description="Multipart form: one or more `files`, the `collection_id`, optional JSON `metadata` applied "
    "to each. Types are detected from the content (PDF, DOCX, PPTX, XLSX, CSV, EPUB, HTML, Markdown, "
    "text, PNG/JPEG/TIFF, e-mail). Answers 202 at once; follow each document's `status_url` or its "
    "`/events` stream. The same content already in the organization is not stored twice: that item "
    "is the existing document with `duplicate: true`. One bad file refuses the whole request "
    "(nothing is stored), with the file named in the error.",
    responses={
        **_UPLOAD_ERRORS,
        422: {
            "description": "Empty file, bad metadata or file name (`empty_file`, `invalid_metadata`, "
            "`invalid_filename`)."
        },
    },
)
async def upload_documents(
    request: Request,
    principal: DocumentWriter,
    session: DbSession,
    settings: SettingsDep,
    meta: RequestMetaDep,
    files: Annotated[list[UploadFile], File(description="The files; repeat the field for several.")],
    collection_id: Annotated[uuid.UUID, Form(description="Collection that receives the documents.")],
    metadata: Annotated[str | None, Form(max_length=32_768, description='JSON object, e.g. `{"year": 2024}`.')] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    limits = settings.documents
    if len(files) > limits.max_files_per_upload:
        raise InvalidInput(f"At most {limits.max_files_per_upload} files per upload")
    parsed_metadata = service.parse_metadata_form(metadata)
    staged: list[service.StagedFile] = []
    try:
        for upload in files:
            name = service.clean_filename(upload.filename)

            async def read(upload: UploadFile = upload) -> bytes:
                return await upload.read(service.READ_CHUNK)

            staged.append(
                await service.stage_stream(
                    read, filename=name, staging_dir=settings.data_dir / "tmp", max_bytes=limits.max_file_bytes
                )
            )
        return await _respond_upload(
            request, session, principal, collection_id=collection_id, metadata=parsed_metadata, staged=staged,
            idempotency_key=idempotency_key, meta=meta,
        )  # fmt: skip
    finally:
        service.discard(staged)


@documents_router.post(
    "/from-url",
    response_model=UploadResponse,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ingest a document from a URL",
    description="http and https only. Private, loopback and link-local addresses are refused (also after "
    "redirects) unless `documents.allow_private_urls` is set. The size limit of uploads applies and the "
    "fetch must finish within `documents.url_timeout_seconds`.",
    responses={
        **_UPLOAD_ERRORS,
        422: {
            "description": "`url_not_allowed`, `url_fetch_failed`, `empty_file`, `invalid_metadata`, or "
            "`validation_error` for a URL that is not http(s)."
        },
    },
)
async def ingest_from_url(
    body: FromUrlRequest,
    request: Request,
    principal: DocumentWriter,
    session: DbSession,
    settings: SettingsDep,
    meta: RequestMetaDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # Visible collection and valid metadata before any network work.
    collection = await service.get_collection(session, principal, body.collection_id)
    service.validate_metadata(collection, body.metadata)
    limits = settings.documents
    staged = await fetch_to_staging(
        str(body.url),
        staging_dir=settings.data_dir / "tmp",
        max_bytes=limits.max_file_bytes,
        timeout=limits.url_timeout_seconds,
        allow_private=limits.allow_private_urls,
        filename=service.clean_filename(body.filename) if body.filename else None,
    )
    try:
        return await _respond_upload(
            request, session, principal, collection_id=body.collection_id, metadata=body.metadata, staged=[staged],
            idempotency_key=idempotency_key, meta=meta,
        )  # fmt: skip
    finally:
        service.discard([staged])


# ---------------------------------------------------------------------------------------------
# reading


@documents_router.get(
    "",
    response_model=DocumentPage,
    summary="List documents",
    description="Newest first, in the collections you can see. `metadata` is a JSON object of top-level "
    'keys and the values they must equal, e.g. `{"year": 2024}`.',
)
async def list_documents(
    principal: DocumentReader,
    session: DbSession,
    page: PageParamsDep,
    collection_id: Annotated[uuid.UUID | None, Query(description="Only this collection.")] = None,
    status_: Annotated[list[DocumentStatus] | None, Query(alias="status", description="Any of these.")] = None,
    doc_type: Annotated[
        list[str] | None, Query(alias="type", max_length=20, description="Detected types, e.g. `pdf`.")
    ] = None,
    metadata: Annotated[str | None, Query(max_length=4_096, description="JSON object of equality filters.")] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    parent_id: Annotated[uuid.UUID | None, Query(description="Attachments of this document.")] = None,
    q: Annotated[str | None, Query(max_length=200, description="File name or title contains this.")] = None,
) -> DocumentPage:
    filters = service.DocumentFilters(
        collection_id=collection_id,
        status=status_,
        doc_type=doc_type,
        metadata=service.parse_metadata_form(metadata) if metadata else None,
        created_after=created_after,
        created_before=created_before,
        parent_id=parent_id,
        q=q,
    )
    rows, cursor = await service.list_documents(session, principal, filters=filters, params=page)
    return DocumentPage(items=[_document_read(row) for row in rows], next_cursor=cursor)


@documents_router.get(
    "/{document_id}",
    response_model=DocumentRead,
    summary="One document and its processing status",
    description="`status` is one of queued, parsing, chunking, indexing, ready, failed, needs_ocr; "
    "`progress` runs from 0 to 1; `stage_timings` gives seconds per stage; `error` names the stage "
    "and the reason of a failure.",
    responses={404: DocumentNotFound.schema()},
)
async def get_document(document_id: uuid.UUID, principal: DocumentReader, session: DbSession) -> DocumentRead:
    result: DocumentRead = _document_read(await service.get_document(session, principal, document_id))
    return result


def _snapshot(document: Document) -> dict[str, Any]:
    return {
        "id": str(document.id),
        "status": document.status.value,
        "progress": document.progress,
        "stage_timings": document.stage_timings,
        "error": document.error,
        "chunk_count": document.chunk_count,
    }


@documents_router.get(
    "/{document_id}/events",
    summary="Follow processing (Server-Sent Events)",
    description="`event: progress` with the status, progress and timings each time they change, then "
    "`event: done` at a final status (ready, failed, needs_ocr) or `event: deleted`. Comments keep the "
    "connection alive every 15 s.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 404: DocumentNotFound.schema()},
)
async def document_events(
    document_id: uuid.UUID, request: Request, principal: DocumentReader, session: DbSession
) -> StreamingResponse:
    await service.get_document(session, principal, document_id)
    sessionmaker = request.app.state.sessionmaker

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        quiet = 0.0
        while True:
            async with unit_of_work(sessionmaker, write=False) as reader:
                document = await reader.get(Document, document_id)
                snapshot = _snapshot(document) if document is not None else None
            if snapshot is None:
                yield f"event: deleted\ndata: {json.dumps({'id': str(document_id)})}\n\n"
                return
            if snapshot != last:
                yield f"event: progress\ndata: {json.dumps(snapshot)}\n\n"
                last, quiet = snapshot, 0.0
            if DocumentStatus(snapshot["status"]) in TERMINAL_STATUSES:
                yield f"event: done\ndata: {json.dumps(snapshot)}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(SSE_POLL_SECONDS)
            quiet += SSE_POLL_SECONDS
            if quiet >= SSE_HEARTBEAT_SECONDS:
                yield ": keep-alive\n\n"
                quiet = 0.0

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@documents_router.get(
    "/{document_id}/text",
    response_class=PlainTextResponse,
    summary="The extracted text",
    description="Plain UTF-8. Chunk offsets (`start_offset`, `end_offset`) index into this text; `start` and "
    "`end` return a slice. 409 while the document has not been parsed yet.",
    responses={200: {"content": {"text/plain": {}}}, 404: DocumentNotFound.schema()},
)
async def document_text(
    document_id: uuid.UUID,
    principal: DocumentReader,
    session: DbSession,
    start: Annotated[int | None, Query(ge=0)] = None,
    end: Annotated[int | None, Query(ge=0)] = None,
) -> PlainTextResponse:
    text = await service.document_text(session, principal, document_id)
    if text is None:
        from tessera.core.documents.errors import DocumentBusy

        raise DocumentBusy("The document has no extracted text yet (or its parsing failed)")
    if start is not None or end is not None:
        text = text[start or 0 : end]
    return PlainTextResponse(text, headers={"Cache-Control": "private, no-cache"})


@documents_router.get(
    "/{document_id}/chunks",
    response_model=ChunkPage,
    summary="The document's chunks",
    description="In document order, with pages, heading path and character offsets into `/text`.",
    responses={404: DocumentNotFound.schema()},
)
async def document_chunks(
    document_id: uuid.UUID,
    principal: DocumentReader,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=12, pattern=r"^\d+$", description="`next_cursor`.")] = None,
) -> ChunkPage:
    rows, next_cursor = await service.list_chunks(
        session, principal, document_id, limit=limit, after=int(cursor) if cursor else None
    )
    return ChunkPage(items=[ChunkRead.model_validate(row) for row in rows], next_cursor=next_cursor)


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name; quotes and controls cannot break out."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in filename) or "document"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@documents_router.get(
    "/{document_id}/file",
    summary="Download the original file",
    description="The bytes as uploaded, with the detected content type, as an attachment.",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 404: DocumentNotFound.schema()},
)
async def document_file(
    document_id: uuid.UUID, request: Request, principal: DocumentReader, session: DbSession
) -> StreamingResponse:
    document = await service.get_document(session, principal, document_id)
    store = _store(request)
    return StreamingResponse(
        store.open_stream(document.blob_key),
        media_type=document.media_type,
        headers={
            "Content-Disposition": content_disposition(document.filename),
            "Content-Length": str(document.size_bytes),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-cache",
        },
    )


# ---------------------------------------------------------------------------------------------
# changing


@documents_router.patch(
    "/{document_id}",
    response_model=DocumentRead,
    summary="Change a document's metadata",
    description="Merges the keys given (null removes one), checks the collection's schema and refreshes "
    "the metadata held by the indexes; the text is not processed again.",
    responses={404: DocumentNotFound.schema(), 422: InvalidMetadata.schema()},
)
async def patch_document(
    document_id: uuid.UUID, body: DocumentPatch, principal: DocumentWriter, session: DbSession, meta: RequestMetaDep
) -> DocumentRead:
    result: DocumentRead = _document_read(
        await service.patch_metadata(session, principal, document_id, body.metadata, meta=meta)
    )
    return result


@documents_router.post(
    "/{document_id}/reprocess",
    response_model=DocumentRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Process a document again",
    description="From the stored original, with the collection's current chunking; a run in progress is "
    "superseded. Use it after installing Tesseract for `needs_ocr` documents.",
    responses={404: DocumentNotFound.schema()},
)
async def reprocess_document(
    document_id: uuid.UUID, request: Request, principal: DocumentWriter, session: DbSession, meta: RequestMetaDep
) -> DocumentRead:
    document = await service.reprocess(session, principal, document_id, jobs=request.app.state.jobs, meta=meta)
    result: DocumentRead = _document_read(document)
    return result


@documents_router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a document",
    description="Removes the document, its attachments, text, chunks and index entries in one transaction, "
    "and the stored file right after.",
    responses={404: DocumentNotFound.schema()},
)
async def delete_document(
    document_id: uuid.UUID, request: Request, principal: DocumentDeleter, session: DbSession, meta: RequestMetaDep
) -> None:
    await service.delete_document(session, principal, document_id, store=_store(request), meta=meta)
