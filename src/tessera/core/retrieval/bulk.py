"""Process many documents in this process, with the embedder fed large batches.

The pipeline's own steps do the parsing and chunking of each document (attachments included, as
in `pipeline.process_inline`). Indexing is where one-at-a-time hurts: a short document gives the
embedder a batch of one or two chunks. Here the chunks of many documents are gathered up to
`batch_chunks`, prepared together (one embedding call), split back per document and written in
one transaction per group, which marks each document ready exactly as `_index_step` does. The
generation check stays: a document deleted or reprocessed meanwhile is left alone ("stopped").

For `tessera ingest` in local mode and the retrieval evaluation; the job system keeps using the
per-document workflow.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.session import unit_of_work
from tessera.core.documents import pipeline
from tessera.core.documents.indexing import Indexer, IndexTarget, indexers
from tessera.core.documents.models import Chunk, Document
from tessera.core.documents.runtime import PipelineContext
from tessera.core.retrieval.vectors import PreparedVectors

Progress = Callable[[int], None]
"""Called with how many more documents reached their outcome (ready, failed, needs_ocr, stopped)."""


def _split_nothing(prepared: Any, counts: Sequence[int]) -> list[Any]:
    return [None] * len(counts)


def _split_vectors(prepared: Any, counts: Sequence[int]) -> list[Any]:
    """`PreparedVectors` of the concatenated chunks → one per document (None for a document
    without chunks, as `VectorIndexer.prepare` gives it)."""
    if prepared is None:
        return [None] * len(counts)
    assert isinstance(prepared, PreparedVectors)
    parts: list[Any] = []
    start = 0
    for count in counts:
        parts.append(prepared.part(start, start + count) if count else None)
        start += count
    return parts


# Indexers whose `prepare` may run once over the chunks of many documents (it must not depend on
# the target), with how to split its result per document. Others are prepared document by document.
BATCH_SPLITTERS: dict[str, Callable[[Any, Sequence[int]], list[Any]]] = {
    "full_text": _split_nothing,
    "vectors": _split_vectors,
}


@dataclass
class _Pending:
    document_id: uuid.UUID
    generation: int
    chunk_count: int


async def _parse_and_chunk(document_id: uuid.UUID, generation: int) -> tuple[str, list[uuid.UUID]]:
    """The outcome so far ("continue" when the document waits for indexing) and its attachments."""
    parsed = await pipeline._parse_step(str(document_id), generation)
    children = [uuid.UUID(child) for child in parsed["children"]]
    outcome = str(parsed["outcome"])
    if outcome == "continue":
        outcome = await pipeline._chunk_step(str(document_id), generation)
    return outcome, children


async def process_many(
    document_ids: list[tuple[uuid.UUID, int]],
    *,
    batch_chunks: int = 512,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> dict[uuid.UUID, str]:
    """Take each `(document_id, generation)` (and the attachments it yields) to its outcome.

    `concurrency` documents are parsed and chunked at once; by default 1 on SQLite (its single
    writer makes concurrent steps wait on each other's locks, measured slower) and 4 on PostgreSQL.

    Returns the outcome by document, attachments included: `ready`, `failed`, `needs_ocr`, or
    `stopped` (deleted or reprocessed meanwhile). Errors other than the document's own (a parse
    error fails the document) propagate, as in `process_inline`.
    """
    outcomes: dict[uuid.UUID, str] = {}
    queue = deque(document_ids)
    waiting: list[_Pending] = []
    if concurrency is None:
        concurrency = 1 if PipelineContext.settings().is_sqlite else 4
    window = max(32, concurrency * 8)
    limit = asyncio.Semaphore(max(1, concurrency))

    async def prepare_one(document_id: uuid.UUID, generation: int) -> tuple[str, list[uuid.UUID]]:
        async with limit:
            return await _parse_and_chunk(document_id, generation)

    def finished(count: int) -> None:
        if progress is not None and count:
            progress(count)

    while queue:
        batch = [queue.popleft() for _ in range(min(window, len(queue)))]
        results = await asyncio.gather(*(prepare_one(d, g) for d, g in batch))
        continuing: list[tuple[uuid.UUID, int]] = []
        for (document_id, generation), (outcome, children) in zip(batch, results, strict=True):
            queue.extend((child, 1) for child in children)
            if outcome == "continue":
                continuing.append((document_id, generation))
            else:
                outcomes[document_id] = outcome
        finished(len(batch) - len(continuing))
        waiting.extend(await _chunk_counts(continuing))
        while sum(p.chunk_count for p in waiting) >= batch_chunks:
            group = _take_group(waiting, batch_chunks)
            outcomes.update(await _index_group(group))
            finished(len(group))
    while waiting:
        group = _take_group(waiting, batch_chunks)
        outcomes.update(await _index_group(group))
        finished(len(group))
    return outcomes


def _take_group(waiting: list[_Pending], batch_chunks: int) -> list[_Pending]:
    """Documents from the front up to `batch_chunks` chunks (at least one, however large)."""
    total = 0
    size = 0
    for pending in waiting:
        if size and total + pending.chunk_count > batch_chunks:
            break
        total += pending.chunk_count
        size += 1
    group = waiting[:size]
    del waiting[:size]
    return group


async def _chunk_counts(documents: Sequence[tuple[uuid.UUID, int]]) -> list[_Pending]:
    if not documents:
        return []
    async with unit_of_work(PipelineContext.sessionmaker(), write=False) as session:
        rows = await session.execute(
            select(Document.id, Document.chunk_count).where(Document.id.in_([d for d, _ in documents]))
        )
        counts = {document_id: count for document_id, count in rows}
    # A document gone since its chunk step still gets its turn: the index step reports it stopped.
    return [_Pending(d, g, counts.get(d, 0)) for d, g in documents]


async def _index_group(group: Sequence[_Pending]) -> dict[uuid.UUID, str]:
    outcomes: dict[uuid.UUID, str] = {}
    async with unit_of_work(PipelineContext.sessionmaker(), write=False) as session:
        current = {
            document.id: document
            for document in (
                await session.execute(select(Document).where(Document.id.in_([p.document_id for p in group])))
            ).scalars()
        }
        live: list[_Pending] = []
        for pending in group:
            document = current.get(pending.document_id)
            if document is None or document.generation != pending.generation:
                outcomes[pending.document_id] = "stopped"
            else:
                live.append(pending)
        targets = [IndexTarget(p.document_id, current[p.document_id].org_id) for p in live]
        chunks = await chunks_of(session, [p.document_id for p in live])
    if not live:
        return outcomes

    started = time.perf_counter()
    # Embedding happens outside any transaction: on SQLite a write transaction holds the only lock.
    prepared = [await prepare_indexes(indexer, targets, chunks) for indexer in indexers()]
    embedding = time.perf_counter() - started
    total_chunks = sum(len(c) for c in chunks)

    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        # One read fills the identity map, so the per-document generation check costs no query.
        await session.execute(select(Document).where(Document.id.in_([t.document_id for t in targets])))
        for position, (target, document_chunks) in enumerate(zip(targets, chunks, strict=True)):
            document = await pipeline._load(session, str(target.document_id), live[position].generation)
            if document is None:
                outcomes[target.document_id] = "stopped"
                continue
            share = len(document_chunks) / total_chunks if total_chunks else 1 / len(targets)
            await pipeline.write_indexes(
                session,
                document,
                target,
                document_chunks,
                [work[position] for work in prepared],
                embedding_seconds=embedding * share,
            )
            outcomes[target.document_id] = "ready"
    return outcomes


async def chunks_of(session: AsyncSession, document_ids: Sequence[uuid.UUID]) -> list[list[Any]]:
    """Each document's chunks (id, text, heading path), in chunk order: what the indexers read."""
    if not document_ids:
        return []
    rows = await session.execute(
        select(Chunk.document_id, Chunk.id, Chunk.text, Chunk.heading_path)
        .where(Chunk.document_id.in_(document_ids))
        .order_by(Chunk.document_id, Chunk.ordinal)
    )
    by_document: dict[uuid.UUID, list[Any]] = {document_id: [] for document_id in document_ids}
    for row in rows:
        by_document[row.document_id].append(row)
    return [by_document[document_id] for document_id in document_ids]


async def prepare_indexes(
    indexer: Indexer, targets: Sequence[IndexTarget], chunks: Sequence[Sequence[Any]]
) -> list[Any]:
    """One prepared result per document."""
    split = BATCH_SPLITTERS.get(indexer.name)
    if split is None:
        return [await indexer.prepare(target, part) for target, part in zip(targets, chunks, strict=True)]
    everything = [chunk for part in chunks for chunk in part]
    return split(await indexer.prepare(targets[0], everything), [len(part) for part in chunks])
