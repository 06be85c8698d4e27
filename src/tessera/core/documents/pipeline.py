"""The ingestion pipeline, a DBOS workflow: parse → chunk (+ enrich) → index.

Every step reads what it needs from the database and writes its result in one transaction, so a
step that runs twice (DBOS steps are at-least-once; a killed worker re-runs the step it was in)
replaces its own earlier output instead of adding to it: chunks are deleted and re-inserted by
document, the text row is replaced, index entries are replaced. Each run carries the document's
`generation`; a reprocess bumps it, and a step of an older run finds the mismatch and stops.

Errors: a `ParseError` (corrupt, encrypted, unsafe file) or any crash inside a parser fails the
document at once — retrying cannot fix the file. Anything else (database, blob store) is
transient: DBOS retries the step with backoff, and when the attempts run out the document ends
`failed` with the stage and the last error.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

import structlog
from dbos import DBOS, EnqueueOptions
from dbos._error import DBOSMaxStepRetriesExceeded
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.db.base import new_id, utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.documents.chunking import ChunkingParams, chunk_document
from tessera.core.documents.indexing import IndexTarget, indexers
from tessera.core.documents.models import Chunk, Collection, Document, DocumentStatus, DocumentText
from tessera.core.documents.parsing import registry
from tessera.core.documents.parsing.base import Block, ParsedDocument, ParseError
from tessera.core.documents.parsing.detect import detect_type
from tessera.core.documents.runtime import DOCUMENTS_QUEUE, PipelineContext, parse_limits
from tessera.core.jobs.runtime import JobRuntime
from tessera.settings import Settings

INGEST_WORKFLOW = "documents.ingest"
STAGES = ("parsing", "chunking", "indexing")
logger = structlog.get_logger(__name__)


def ingest_workflow_id(document_id: uuid.UUID | str, generation: int) -> str:
    """Deterministic, so enqueueing the same run twice (a retried request, a sweep) is a no-op."""
    return f"{INGEST_WORKFLOW}:{document_id}:{generation}"


def chunking_params(settings: Settings, collection: Collection) -> ChunkingParams:
    configured = collection.chunking or {}
    size = int(configured.get("chunk_size", settings.documents.chunk_size))
    overlap = int(configured.get("chunk_overlap", min(settings.documents.chunk_overlap, size // 4)))
    minimum = int(configured.get("min_chunk_tokens", min(32, max(1, size // 8))))
    return ChunkingParams(chunk_size=size, chunk_overlap=overlap, min_chunk_tokens=minimum)


async def _load(session: AsyncSession, document_id: str, generation: int) -> Document | None:
    """The document if this run is still the current one (not deleted, not reprocessed since)."""
    document = await session.get(Document, uuid.UUID(document_id), with_for_update=False)
    if document is None or document.generation != generation:
        return None
    return document


def _record_timing(document: Document, stage: str, seconds: float) -> None:
    document.stage_timings = {**document.stage_timings, stage: round(seconds, 4)}


async def _mark(document_id: str, generation: int, **changes: Any) -> bool:
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return False
        for name, value in changes.items():
            setattr(document, name, value)
        return True


async def _fail(document_id: str, generation: int, stage: str, code: str, message: str) -> None:
    logger.warning("document failed", document_id=document_id, stage=stage, code=code, reason=message)
    await _mark(
        document_id,
        generation,
        status=DocumentStatus.failed,
        error={"stage": stage, "code": code, "message": message[:2000]},
        processed_at=utcnow(),
    )


# ---------------------------------------------------------------------------------------------
# parse


async def _parse_step(document_id: str, generation: int) -> dict[str, Any]:
    settings = PipelineContext.settings()
    store = PipelineContext.store()
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return {"outcome": "stopped", "children": []}
        document.status = DocumentStatus.parsing
        document.progress = 0.05
        document.error = None
        doc_type, blob_key = document.doc_type, document.blob_key
        org_id, collection_id = document.org_id, document.collection_id

    data = await store.get_bytes(blob_key)
    started = time.perf_counter()
    try:
        parsed = await asyncio.to_thread(registry.parse, doc_type, data, parse_limits(settings))
    except ParseError as error:
        await _fail(document_id, generation, "parsing", error.code, error.reason)
        return {"outcome": "failed", "children": []}
    except Exception as error:  # a parser crash on this file: retrying the same bytes cannot help
        logger.exception("parser crashed", document_id=document_id, doc_type=doc_type)
        await _fail(document_id, generation, "parsing", "parser_crashed", f"{type(error).__name__}: {error}")
        return {"outcome": "failed", "children": []}
    elapsed = time.perf_counter() - started
    del data

    children: list[str] = []
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return {"outcome": "stopped", "children": []}
        _record_timing(document, "parsing", elapsed)
        document.page_count = parsed.page_count
        document.title = (parsed.title or PurePosixPath(document.filename).stem)[:500] or None
        document.properties = {
            **document.properties,
            **{k: v for k, v in parsed.metadata.items() if _json_safe(v)},
            "ocr_pages": parsed.ocr_pages,
            "needs_ocr_pages": parsed.needs_ocr_pages,
            "warnings": parsed.warnings[:50],
        }
        for attachment in parsed.attachments:
            child = await _add_child(session, document, attachment.filename, attachment.data, org_id, collection_id)
            if child is not None:
                children.append(str(child))
        if not parsed.text.strip():
            document.processed_at = utcnow()
            if parsed.needs_ocr_pages:
                document.status = DocumentStatus.needs_ocr
                document.error = {
                    "stage": "parsing",
                    "code": "needs_ocr",
                    "message": "The file has no text layer and OCR is not available here: install Tesseract "
                    "(Debian package `tesseract-ocr`) and reprocess the document.",
                }
            else:
                document.status = DocumentStatus.failed
                document.error = {"stage": "parsing", "code": "no_text", "message": "No text could be extracted."}
            return {"outcome": document.status.value, "children": children, "org_id": str(org_id)}
        await session.execute(delete(DocumentText).where(DocumentText.document_id == document.id))
        session.add(
            DocumentText(
                document_id=document.id,
                org_id=org_id,
                text=parsed.text,
                structure=[[b.kind, b.level, b.page, b.start, b.end] for b in parsed.blocks],
                generation=generation,
            )
        )
        document.text_chars = len(parsed.text)
        document.status = DocumentStatus.chunking
        document.progress = 0.4
    return {"outcome": "continue", "children": children, "org_id": str(org_id)}


def _json_safe(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | list | dict) or value is None


async def _add_child(
    session: AsyncSession,
    parent: Document,
    filename: str,
    data: bytes,
    org_id: uuid.UUID,
    collection_id: uuid.UUID,
) -> uuid.UUID | None:
    """An e-mail attachment becomes a document of its own (deduplicated like any upload)."""
    if not data:
        return None
    doc_type = detect_type(data, filename)
    if doc_type is None:
        parent.properties = {
            **parent.properties,
            "skipped_attachments": [*parent.properties.get("skipped_attachments", []), filename],
        }
        return None
    digest = hashlib.sha256(data).hexdigest()
    existing = await session.scalar(select(Document.id).where(Document.org_id == org_id, Document.sha256 == digest))
    if existing is not None:
        return None
    key = blob_key(org_id, digest)
    store = PipelineContext.store()
    if not await store.exists(key):
        await store.put_bytes(key, data)
    child = Document(
        id=new_id(),
        org_id=org_id,
        collection_id=collection_id,
        parent_id=parent.id,
        created_by=parent.created_by,
        filename=filename,
        doc_type=doc_type,
        media_type=registry.DOCUMENT_TYPES[doc_type].media_type,
        size_bytes=len(data),
        sha256=digest,
        blob_key=key,
        user_metadata=dict(parent.user_metadata),
    )
    session.add(child)
    await session.flush()
    return child.id


def blob_key(org_id: uuid.UUID, sha256: str) -> str:
    """Content-addressed within the organization: the same bytes are stored once per org."""
    return f"{org_id.hex}/{sha256[:2]}/{sha256}"


# ---------------------------------------------------------------------------------------------
# chunk and enrich


def rebuild(text: str, structure: list[list[Any]]) -> ParsedDocument:
    blocks = [
        Block(kind=kind, text=text[start:end], level=level, page=page, start=start, end=end)
        for kind, level, page, start, end in structure
    ]
    return ParsedDocument(blocks=blocks, text=text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def summarize(parsed: ParsedDocument, limit: int = 300) -> str:
    """The opening of the first real paragraph: a cheap, faithful summary until a model is wired in."""
    for block in parsed.blocks:
        if block.kind != "paragraph" or len(block.text) < 80:
            continue
        summary = ""
        for sentence in _SENTENCE_END.split(" ".join(block.text.split())):
            if summary and len(summary) + len(sentence) + 1 > limit:
                break
            summary = f"{summary} {sentence}".strip()
        return summary[:limit]
    return ""


def detect_language(text: str) -> str | None:
    import py3langid  # type: ignore[import-untyped]

    sample = text[:20_000]
    if len(sample.strip()) < 20:
        return None
    language, _score = py3langid.classify(sample)
    return str(language)


async def _chunk_step(document_id: str, generation: int) -> str:
    settings = PipelineContext.settings()
    async with unit_of_work(PipelineContext.sessionmaker(), write=False) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return "stopped"
        collection = await session.get(Collection, document.collection_id)
        stored = await session.get(DocumentText, document.id)
        if collection is None or stored is None:
            return "stopped"
        params = chunking_params(settings, collection)
        text, structure = stored.text, stored.structure
        org_id, collection_id = document.org_id, document.collection_id

    started = time.perf_counter()
    parsed = rebuild(text, structure)
    drafts = await asyncio.to_thread(chunk_document, parsed, params)
    chunked = time.perf_counter()
    language = await asyncio.to_thread(detect_language, text)
    summary = summarize(parsed)
    enriched = time.perf_counter()

    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return "stopped"
        # Index entries of the old chunks go first, through the indexers, so statistics they keep
        # (BM25 counts, in-memory vector copies) follow; a cascade would bypass them.
        for indexer in indexers():
            await indexer.remove_documents(session, [document.id])
        await session.execute(delete(Chunk).where(Chunk.document_id == document.id))
        if drafts:
            await session.execute(
                insert(Chunk),
                [
                    {
                        "id": new_id(),
                        "org_id": org_id,
                        "collection_id": collection_id,
                        "document_id": document.id,
                        "ordinal": draft.ordinal,
                        "text": draft.text,
                        "start_offset": draft.start,
                        "end_offset": draft.end,
                        "page_start": draft.page_start,
                        "page_end": draft.page_end,
                        "heading_path": draft.heading_path,
                        "token_count": draft.token_count,
                    }
                    for draft in drafts
                ],
            )
        _record_timing(document, "chunking", chunked - started)
        _record_timing(document, "enriching", enriched - chunked)
        document.chunk_count = len(drafts)
        document.language = language
        document.properties = {**document.properties, "summary": summary, "chunking": params.__dict__}
        document.status = DocumentStatus.indexing
        document.progress = 0.75
    return "continue"


# ---------------------------------------------------------------------------------------------
# index


async def _index_step(document_id: str, generation: int) -> str:
    async with unit_of_work(PipelineContext.sessionmaker(), write=False) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return "stopped"
        target = IndexTarget(document.id, document.org_id)
        chunks = (
            await session.execute(
                select(Chunk.id, Chunk.text, Chunk.heading_path)
                .where(Chunk.document_id == document.id)
                .order_by(Chunk.ordinal)
            )
        ).all()
    started = time.perf_counter()
    # Embedding and the like happen outside the transaction: on SQLite a write transaction holds
    # the database's only write lock.
    prepared = [await indexer.prepare(target, chunks) for indexer in indexers()]
    embedded = time.perf_counter()
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        document = await _load(session, document_id, generation)
        if document is None:
            return "stopped"
        await write_indexes(session, document, target, chunks, prepared, embedding_seconds=embedded - started)
    return "ready"


async def write_indexes(
    session: AsyncSession,
    document: Document,
    target: IndexTarget,
    chunks: Sequence[Any],
    prepared: Sequence[Any],
    *,
    embedding_seconds: float,
) -> None:
    """Hand the prepared chunks to every indexer and mark the document ready, in the caller's
    transaction (the index step here, and bulk indexing of many documents)."""
    started = time.perf_counter()
    for indexer, work in zip(indexers(), prepared, strict=True):
        await indexer.index_document(session, target, chunks, work)
    _record_timing(document, "embedding", embedding_seconds)
    _record_timing(document, "indexing", time.perf_counter() - started)
    document.status = DocumentStatus.ready
    document.progress = 1.0
    document.processed_at = utcnow()


# ---------------------------------------------------------------------------------------------
# the workflow


def _step_options(name: str) -> Any:
    retries = PipelineContext.settings().documents.step_retries
    return {
        "name": name,
        "retries_allowed": retries > 0,
        "max_attempts": retries + 1,
        "interval_seconds": 1.0,
        "backoff_rate": 2.0,
    }


@DBOS.workflow(name=INGEST_WORKFLOW)
async def ingest(document_id: str, generation: int) -> str:
    """Take one document from `queued` to `ready` (or `failed` / `needs_ocr`); returns the outcome."""
    stage = "parsing"
    try:
        parsed = await DBOS.run_step_async(_step_options("documents.parse"), _parse_step, document_id, generation)
        for child_id in parsed["children"]:
            options: EnqueueOptions = {
                "workflow_name": INGEST_WORKFLOW,
                "queue_name": DOCUMENTS_QUEUE,
                "workflow_id": ingest_workflow_id(child_id, 1),
                "queue_partition_key": parsed["org_id"],
            }
            await DBOS.enqueue_workflow_with_options_async(options, child_id, 1)
        if parsed["outcome"] != "continue":
            return str(parsed["outcome"])
        stage = "chunking"
        chunked = await DBOS.run_step_async(_step_options("documents.chunk"), _chunk_step, document_id, generation)
        if chunked != "continue":
            return "stopped"
        stage = "indexing"
        return str(await DBOS.run_step_async(_step_options("documents.index"), _index_step, document_id, generation))
    except DBOSMaxStepRetriesExceeded as error:
        last = error.errors[-1] if error.errors else error
        await _fail(document_id, generation, stage, "transient_error_persisted", f"{type(last).__name__}: {last}")
        return "failed"


async def enqueue_ingest(jobs: JobRuntime, document_id: uuid.UUID, org_id: uuid.UUID, generation: int) -> None:
    """Queue one pipeline run, in its organization's partition; the same run twice is one workflow."""
    await jobs.enqueue(
        INGEST_WORKFLOW,
        str(document_id),
        generation,
        queue=DOCUMENTS_QUEUE,
        workflow_id=ingest_workflow_id(document_id, generation),
        partition_key=str(org_id),
    )


async def resume_queued(sessionmaker: async_sessionmaker[AsyncSession], jobs: JobRuntime) -> int:
    """Enqueue documents left `queued`: normally already enqueued (enqueueing the same run again is
    a no-op), but a process that died between its commit and its enqueue leaves some behind."""
    async with unit_of_work(sessionmaker, write=False) as session:
        rows = (
            await session.execute(
                select(Document.id, Document.org_id, Document.generation).where(
                    Document.status == DocumentStatus.queued
                )
            )
        ).all()
    for document_id, org_id, generation in rows:
        await enqueue_ingest(jobs, document_id, org_id, generation)
    if rows:
        logger.info("queued documents handed to the job system", documents=len(rows))
    return len(rows)


async def process_inline(document_id: uuid.UUID, generation: int) -> str:
    """Run the workflow's steps in this process, without the job system, attachments included
    (the CLI's local mode). Returns the outcome for `document_id`."""
    outcome = "stopped"
    pending = [(document_id, generation)]
    while pending:
        current_id, current_generation = pending.pop(0)
        parsed = await _parse_step(str(current_id), current_generation)
        pending.extend((uuid.UUID(child), 1) for child in parsed["children"])
        result = str(parsed["outcome"])
        if result == "continue":
            result = await _chunk_step(str(current_id), current_generation)
            if result == "continue":
                result = await _index_step(str(current_id), current_generation)
        if current_id == document_id:
            outcome = result
    return outcome
