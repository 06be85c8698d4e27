"""Re-indexing a collection from its stored chunks: a DBOS workflow, or inline when jobs are off.

Nothing is parsed or chunked again. The workflow walks the collection's `ready` documents in id
order, one step per batch (up to `BATCH_DOCUMENTS` documents and about `BATCH_CHUNKS` chunks),
and each step hands the stored chunks to the indexers of the chosen scope (`vectors`, `text` or
both): embedding happens once per batch outside any transaction (as in bulk indexing), then one
transaction replaces each document's entries. `VectorIndexer.index_document` removes whatever
vectors the document had, of any model, in the transaction that writes the new ones, so search
keeps finding every document while a re-index runs and a document never holds two spaces.

Steps are at-least-once. A step checkpoints the last document id it covered, so a killed worker
resumes at the batch it was in, and running that batch again only rewrites the same entries
(without `force`, documents that already have vectors of the model are not even selected). Each
document is written only while its `generation` is the one read and it is still `ready`: a
reprocess or delete that happens meanwhile wins, and its own pipeline run indexes it.

Progress needs no table of its own: it is read from the data (how many ready documents have a
vector of the current model for every chunk) and from DBOS (whether a run is queued or running).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from dbos import DBOS
from sqlalchemy import ColumnElement, String, and_, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.models import Organization
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id
from tessera.core.db.session import run_after_commit, unit_of_work
from tessera.core.documents import pipeline
from tessera.core.documents import service as documents
from tessera.core.documents.errors import NotCollectionManager
from tessera.core.documents.indexing import Indexer, IndexTarget, indexers
from tessera.core.documents.models import Chunk, Collection, Document, DocumentStatus
from tessera.core.documents.runtime import PipelineContext
from tessera.core.jobs.runtime import QUEUES, JobRuntime, QueueSpec
from tessera.core.retrieval import bulk
from tessera.core.retrieval.errors import ReindexInProgress
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import ReindexRequest, ReindexState, ReindexStatus
from tessera.core.retrieval.vectors import chunk_vector
from tessera.settings import Settings

REINDEX_WORKFLOW = "retrieval.reindex"
REINDEX_QUEUE = "reindex"
BATCH_DOCUMENTS = 64
BATCH_CHUNKS = 512
ACTIVE_STATUSES = ["ENQUEUED", "PENDING", "DELAYED"]
FAILED_STATUSES = frozenset({"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})

# Which indexers each scope rewrites (None: every registered indexer).
SCOPE_INDEXERS: dict[str, frozenset[str] | None] = {
    "vectors": frozenset({"vectors"}),
    "text": frozenset({"full_text"}),
    "all": None,
}
logger = structlog.get_logger(__name__)

# A re-index is long and embedding-bound: one per worker at a time, two across all workers, on a
# queue of its own so uploads on the `documents` queue never wait behind it.
QUEUES[REINDEX_QUEUE] = QueueSpec(REINDEX_QUEUE, concurrency=2, worker_concurrency=1, polling_seconds=0.5)


def reindex_workflow_prefix(collection_id: uuid.UUID | str) -> str:
    return f"{REINDEX_WORKFLOW}:{collection_id}:"


def reindex_workflow_id(collection_id: uuid.UUID | str, model: str, run: str) -> str:
    return f"{reindex_workflow_prefix(collection_id)}{model}:{run}"


def lacks_vectors(model: str) -> ColumnElement[bool]:
    """True for a document with at least one chunk that has no vector of `model`."""
    vector = select(chunk_vector.c.chunk_id).where(chunk_vector.c.chunk_id == Chunk.id, chunk_vector.c.model == model)
    return exists(select(Chunk.id).where(Chunk.document_id == Document.id, ~exists(vector)))


async def progress_counts(session: AsyncSession, collection_id: uuid.UUID, model: str) -> tuple[int, int]:
    """(ready documents, ready documents whose every chunk has a vector of `model`)."""
    ready = and_(Document.collection_id == collection_id, Document.status == DocumentStatus.ready)
    total = int(await session.scalar(select(func.count()).select_from(Document).where(ready)) or 0)
    lacking = int(
        await session.scalar(select(func.count()).select_from(Document).where(ready, lacks_vectors(model))) or 0
    )
    return total, total - lacking


def _selected_indexers(scope: str) -> list[Indexer]:
    names = SCOPE_INDEXERS[scope]
    return [indexer for indexer in indexers() if names is None or indexer.name in names]


# ---------------------------------------------------------------------------------------------
# one batch


async def reindex_batch(collection_id: str, model: str, scope: str, force: bool, after: str | None) -> dict[str, Any]:
    """Re-index the next batch of ready documents after `after` (a document id, or None to start).

    Returns `outcome` (`continue`, `done`, or `model_changed` when the configured embedder is no
    longer `model`), `after` (the last document covered), `indexed` and `stopped` (deleted or
    reprocessed meanwhile).
    """
    settings = PipelineContext.settings()
    selected = _selected_indexers(scope)
    if scope != "text" and get_embedder(settings.embeddings).name != model:
        # The settings changed since the run was queued: the next start queues a run for the new model.
        return {"outcome": "model_changed", "after": after, "indexed": 0, "stopped": 0}
    sessionmaker = PipelineContext.sessionmaker()
    async with unit_of_work(sessionmaker, write=False) as session:
        query = select(Document.id, Document.org_id, Document.generation, Document.chunk_count).where(
            Document.collection_id == uuid.UUID(collection_id), Document.status == DocumentStatus.ready
        )
        if after is not None:
            query = query.where(Document.id > uuid.UUID(after))
        if not force and scope != "text":
            query = query.where(lacks_vectors(model))
        rows = (await session.execute(query.order_by(Document.id).limit(BATCH_DOCUMENTS))).all()
        batch: list[Any] = []
        chunk_total = 0
        for row in rows:
            if batch and chunk_total + row.chunk_count > BATCH_CHUNKS:
                break
            batch.append(row)
            chunk_total += row.chunk_count
        chunks = await bulk.chunks_of(session, [row.id for row in batch])
    if not batch:
        return {"outcome": "done", "after": after, "indexed": 0, "stopped": 0}
    targets = [IndexTarget(row.id, row.org_id) for row in batch]
    # Embedding outside any transaction, the whole batch in one call (see bulk.py).
    prepared = [await bulk.prepare_indexes(indexer, targets, chunks) for indexer in selected]

    indexed = stopped = 0
    async with unit_of_work(sessionmaker) as session:
        # One read fills the identity map, so the per-document generation check costs no query.
        await session.execute(select(Document).where(Document.id.in_([row.id for row in batch])))
        for position, row in enumerate(batch):
            document = await pipeline._load(session, str(row.id), row.generation)
            if document is None or document.status != DocumentStatus.ready:
                stopped += 1
                continue
            for indexer, work in zip(selected, prepared, strict=True):
                await indexer.index_document(session, targets[position], chunks[position], work[position])
            indexed += 1
    more = len(rows) == BATCH_DOCUMENTS or len(batch) < len(rows)
    return {
        "outcome": "continue" if more else "done",
        "after": str(batch[-1].id),
        "indexed": indexed,
        "stopped": stopped,
    }


async def _drive(
    step: Callable[[str, str, str, bool, str | None], Awaitable[dict[str, Any]]],
    collection_id: str,
    model: str,
    scope: str,
    force: bool,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    totals = {"indexed": 0, "stopped": 0, "outcome": "done"}
    after: str | None = None
    while True:
        result = await step(collection_id, model, scope, force, after)
        totals["indexed"] += result["indexed"]
        totals["stopped"] += result["stopped"]
        if progress is not None:
            progress(result["indexed"] + result["stopped"])
        if result["outcome"] != "continue":
            totals["outcome"] = result["outcome"]
            break
        after = result["after"]
    logger.info(
        "collection re-indexed",
        collection_id=collection_id,
        model=model,
        scope=scope,
        seconds=round(time.perf_counter() - started, 2),
        **totals,
    )
    return totals


# ---------------------------------------------------------------------------------------------
# the workflow


def _step_options() -> Any:
    retries = PipelineContext.settings().documents.step_retries
    return {
        "name": "retrieval.reindex.batch",
        "retries_allowed": retries > 0,
        "max_attempts": retries + 1,
        "interval_seconds": 1.0,
        "backoff_rate": 2.0,
    }


@DBOS.workflow(name=REINDEX_WORKFLOW)
async def reindex(collection_id: str, model: str, scope: str, force: bool) -> dict[str, Any]:
    """Re-index one collection batch by batch; returns `indexed`, `stopped` and the `outcome`."""

    async def step(*args: Any) -> dict[str, Any]:
        result: dict[str, Any] = await DBOS.run_step_async(_step_options(), reindex_batch, *args)
        return result

    return await _drive(step, collection_id, model, scope, force)


async def run_inline(
    collection_id: uuid.UUID, model: str, scope: str, force: bool, *, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The workflow's steps in this process, without the job system (jobs off, the CLI); `progress`
    is called with how many more documents each batch covered."""
    return await _drive(reindex_batch, str(collection_id), model, scope, force, progress)


async def enqueue_reindex(
    jobs: JobRuntime, collection_id: uuid.UUID, model: str, scope: str, force: bool, *, run: str
) -> str:
    """Queue one run; the same `run` for the same collection and model is one workflow."""
    return await jobs.enqueue(
        REINDEX_WORKFLOW,
        str(collection_id),
        model,
        scope,
        force,
        queue=REINDEX_QUEUE,
        workflow_id=reindex_workflow_id(collection_id, model, run),
    )


# ---------------------------------------------------------------------------------------------
# the API's use cases


async def _status(
    session: AsyncSession, collection_id: uuid.UUID, model: str, jobs: JobRuntime | None
) -> ReindexStatus:
    total, done = await progress_counts(session, collection_id, model)
    latest = await jobs.find_workflows(prefix=reindex_workflow_prefix(collection_id), limit=1) if jobs else []
    job_id, job_status = latest[0] if latest else (None, None)
    state: ReindexState
    if job_status in ("ENQUEUED", "DELAYED"):
        state = "queued"
    elif job_status == "PENDING":
        state = "running"
    elif done == total:
        state = "complete"
    elif job_status in FAILED_STATUSES:
        state = "failed"
    else:
        state = "incomplete"
    return ReindexStatus(
        job_id=job_id,
        status=state,
        collection_id=collection_id,
        model=model,
        documents_total=total,
        documents_done=done,
    )


async def reindex_status(
    session: AsyncSession, principal: Principal, collection_id: uuid.UUID, *, model: str, jobs: JobRuntime | None
) -> ReindexStatus:
    collection = await documents.get_collection(session, principal, collection_id)
    return await _status(session, collection.id, model, jobs)


async def start_reindex(
    session: AsyncSession,
    principal: Principal,
    collection_id: uuid.UUID,
    body: ReindexRequest,
    *,
    model: str,
    jobs: JobRuntime | None,
    meta: RequestMeta,
) -> ReindexStatus:
    """Queue a re-index of the collection (run after the commit when jobs are off).

    Raises `CollectionNotFound`, `NotCollectionManager`, `ReindexInProgress`.
    """
    collection = await documents.get_collection(session, principal, collection_id)
    if not documents.can_manage(principal, collection):
        raise NotCollectionManager("Only the collection's owner or an organization admin may re-index it")
    # Concurrent requests for one collection queue up here until this one commits, so the second
    # sees the first's run (SQLite: the request already holds the database's write lock).
    await session.execute(select(Collection.id).where(Collection.id == collection.id).with_for_update())
    job_id: str | None = None
    if jobs is None:

        async def run() -> None:
            await run_inline(collection.id, model, body.scope, body.force)

        run_after_commit(session, run)
    else:
        active = await jobs.find_workflows(
            prefix=reindex_workflow_prefix(collection.id), statuses=ACTIVE_STATUSES, limit=1
        )
        if active:
            raise ReindexInProgress(
                "A re-index of this collection is already queued or running; follow it with GET",
                details={"job_id": active[0][0]},
            )
        job_id = await enqueue_reindex(jobs, collection.id, model, body.scope, body.force, run=new_id().hex)
    await record_event(
        session, action="collection.reindex_started", org_id=collection.org_id, actor=principal.actor, meta=meta,
        target_type="collection", target_id=collection.id,
        details={"scope": body.scope, "force": body.force, "model": model, "job_id": job_id},
    )  # fmt: skip
    status = await _status(session, collection.id, model, None)
    status.job_id = job_id
    status.status = "queued"
    return status


# ---------------------------------------------------------------------------------------------
# a changed embedding model


async def _orgs_with_other_models(session: AsyncSession, model: str) -> list[uuid.UUID]:
    """Organizations holding vectors of a model other than `model`: two short range probes of the
    (org_id, model) index each, so a start-up with nothing to do stays cheap however many vectors."""
    found = []
    for org_id in (await session.execute(select(Organization.id))).scalars():
        for other in (chunk_vector.c.model < model, chunk_vector.c.model > model):
            if await session.scalar(select(exists().where(chunk_vector.c.org_id == org_id, other))):
                found.append(org_id)
                break
    return found


async def reembed_on_model_change(
    sessionmaker: async_sessionmaker[AsyncSession], jobs: JobRuntime, settings: Settings
) -> int:
    """Queue a `vectors` re-index of each collection whose ready documents lack vectors of the
    configured model (the model was changed); returns how many runs were queued.

    Safe at every start: a collection with a run already queued or running is left alone, and the
    workflow id is derived from the collection, the model and the work found, so processes starting
    together queue one run, and a restart that finds the same work finds the same run.
    """
    model = get_embedder(settings.embeddings).name
    async with unit_of_work(sessionmaker, write=False) as session:
        stale: list[Any] = []
        for org_id in await _orgs_with_other_models(session, model):
            stale.extend(
                (
                    await session.execute(
                        select(
                            Collection.id, Collection.name, func.count(Document.id), func.max(cast(Document.id, String))
                        )
                        .join(Document, Document.collection_id == Collection.id)
                        .where(
                            Collection.org_id == org_id,
                            Document.status == DocumentStatus.ready,
                            lacks_vectors(model),
                        )
                        .group_by(Collection.id, Collection.name)
                        .order_by(Collection.id)
                    )
                ).all()
            )
    queued = 0
    for collection_id, name, count, newest in stale:
        if await jobs.find_workflows(prefix=reindex_workflow_prefix(collection_id), statuses=ACTIVE_STATUSES, limit=1):
            continue
        run = "auto-" + hashlib.sha256(f"{count}:{newest}".encode()).hexdigest()[:16]
        await enqueue_reindex(jobs, collection_id, model, "vectors", False, run=run)
        logger.info(
            f"re-embedding {count} documents of collection {name} for model {model}", collection_id=str(collection_id)
        )
        queued += 1
    return queued
