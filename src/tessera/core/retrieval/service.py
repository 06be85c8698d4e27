"""Search: keyword, semantic or hybrid, inside the caller's visible collections and filters.

Permissions and filters are part of every query (a subquery of allowed documents), never applied
to results afterwards, so a hit from a collection the caller cannot see is impossible in any
mode and pages are never short because of filtering.
"""

from __future__ import annotations

import asyncio
import base64
import html
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.documents import service as documents
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.documents.models import Chunk, Document
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import InvalidInput
from tessera.core.pagination import InvalidCursor
from tessera.core.retrieval.analysis import query_terms
from tessera.core.retrieval.filters import allowed_documents
from tessera.core.retrieval.fusion import Fused, fuse
from tessera.core.retrieval.keyword import search_keyword
from tessera.core.retrieval.rerank import Reranker, rerank_hits
from tessera.core.retrieval.runtime import retrieval_settings
from tessera.core.retrieval.schemas import ScoreComponent, SearchHit, SearchRequest, SearchResponse
from tessera.core.retrieval.vectors import passage_context, search_vectors

MAX_RESULTS = 1_000
# Each list of a hybrid search brings at least this many candidates to the fusion, and is read
# `retrieval.hybrid_depth` deep for the other list's candidates (fusion.py; BENCHMARKS "Deeper lists").
HYBRID_POOL = 100


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidCursor("The cursor is not valid; start again without it") from error
    if not 0 <= offset < MAX_RESULTS:
        raise InvalidCursor("The cursor is out of range")
    return offset


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


async def _collections(
    session: AsyncSession, principal: Principal, requested: Sequence[uuid.UUID] | None
) -> list[uuid.UUID]:
    visible = {c.id for c in await documents.visible_collections(session, principal)}
    if requested is None:
        return list(visible)
    missing = [str(c) for c in requested if c not in visible]
    if missing:
        raise CollectionNotFound("Collection not found", details={"collections": missing})
    return list(dict.fromkeys(requested))


async def search(
    session: AsyncSession,
    principal: Principal,
    request: SearchRequest,
    *,
    embedder: Embedder | None,
    reranker: Reranker | None = None,
    rerank_candidates: int = 50,
) -> SearchResponse:
    """`reranker` (the one `request.rerank` asks for, see `rerank.select_reranker`) reorders the top
    `rerank_candidates` hits."""
    started = time.perf_counter()
    assert principal.org_id is not None
    offset = _decode_cursor(request.cursor)
    wanted = offset + request.limit
    if wanted > MAX_RESULTS:
        raise InvalidCursor(f"Search pages end at {MAX_RESULTS} results")
    collection_ids = await _collections(session, principal, request.collections)
    allowed = allowed_documents(principal.org_id, collection_ids, request.filters)
    pool = max(wanted, HYBRID_POOL) if request.mode == "hybrid" else wanted + 1
    if reranker is not None:  # every page reranks the same candidates
        pool = max(pool, rerank_candidates + 1)
    depth = max(pool, retrieval_settings().hybrid_depth) if request.mode == "hybrid" else pool
    keyword: Sequence[Any] = []
    semantic: Sequence[Any] = []
    model = None
    embedding: asyncio.Task[Any] | None = None
    if collection_ids and request.mode in ("semantic", "hybrid"):
        if embedder is None:
            raise InvalidInput("Semantic search is not available: no embedder is configured")
        # The query is embedded in the embedder's threads while keyword search runs here.
        embedding = asyncio.ensure_future(embedder.embed([request.query], kind="query"))
    try:
        if collection_ids and request.mode in ("keyword", "hybrid"):
            keyword = await search_keyword(
                session,
                request.query,
                org_id=principal.org_id,
                allowed_documents=allowed,
                limit=depth,
                collections=None if request.filters else collection_ids,
            )
        if embedding is not None:
            assert embedder is not None
            query_vector = (await embedding)[0]
            model = embedder.name
            semantic = await search_vectors(
                session,
                org_id=principal.org_id,
                model=model,
                query=query_vector,
                allowed_documents=allowed,
                limit=depth,
                collections=None if request.filters else collection_ids,
                rescore=pool,
            )
    finally:
        # Keyword search failed: nobody will read the vector (nor its error).
        if embedding is not None and not embedding.done():
            embedding.cancel()
        elif embedding is not None and not embedding.cancelled():
            embedding.exception()
    if request.mode == "hybrid":
        ranked = fuse(keyword, semantic, method=request.fusion, semantic_weight=request.semantic_weight, pool=pool)
    else:
        name = request.mode
        ranked = [
            Fused(hit.chunk_id, hit.document_id, hit.score, {name: {"score": round(hit.score, 6), "rank": rank}})
            for rank, hit in enumerate(keyword if name == "keyword" else semantic, start=1)
        ]
    if reranker is not None:
        ranked = await rerank_hits(session, ranked, request.query, reranker, candidates=rerank_candidates)
    page = ranked[offset:wanted]
    hits = await _hydrate(session, page, request.query)
    more = len(ranked) > wanted
    return SearchResponse(
        query=request.query,
        mode=request.mode,
        hits=hits,
        next_cursor=_encode_cursor(wanted) if more and wanted < MAX_RESULTS else None,
        embedding_model=model,
        reranker=reranker.name if reranker is not None else None,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


async def _hydrate(session: AsyncSession, ranked: Sequence[Fused], query: str) -> list[SearchHit]:
    if not ranked:
        return []
    rows = await session.execute(
        sa.select(Chunk, Document.title, Document.filename)
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.id.in_([r.chunk_id for r in ranked]))
    )
    found = {row[0].id: row for row in rows}
    terms = query_terms(query)
    hits = []
    for entry in ranked:
        row = found.get(entry.chunk_id)
        if row is None:  # deleted between ranking and reading
            continue
        chunk, title, filename = row
        hits.append(
            SearchHit(
                chunk_id=chunk.id,
                document_id=chunk.document_id,
                collection_id=chunk.collection_id,
                document_title=title,
                filename=filename,
                ordinal=chunk.ordinal,
                text=chunk.text,
                snippet=snippet(chunk.text, terms),
                page_start=chunk.page_start,
                page_end=chunk.page_end,
                heading_path=chunk.heading_path,
                start_offset=chunk.start_offset,
                end_offset=chunk.end_offset,
                score=round(entry.score, 6),
                components={
                    k: ScoreComponent(score=v["score"], rank=int(v["rank"])) for k, v in entry.components.items()
                },
            )
        )
    return hits


def snippet(text: str, terms: Sequence[str], width: int = 240) -> str:
    """The window of `text` with the most query words, HTML-escaped, words in <mark>."""
    if not terms:
        return html.escape(text[:width])
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in terms) + r")\w*", re.IGNORECASE)
    positions = [m.start() for m in pattern.finditer(text)]
    start = 0
    if positions:
        best = max(positions, key=lambda p: sum(1 for q in positions if p <= q < p + width))
        start = max(0, best - width // 4)
    window = text[start : start + width]
    escaped = html.escape(window)
    marked = pattern.sub(lambda m: f"<mark>{m.group(0)}</mark>", escaped)
    return ("…" if start > 0 else "") + marked + ("…" if start + width < len(text) else "")


async def similar_documents_query(
    session: AsyncSession, principal: Principal, document_id: uuid.UUID, *, embedder: Embedder, limit: int
) -> list[tuple[Document, float]]:
    """Documents nearest to one document (mean of its chunk vectors), in the caller's collections."""
    document = await documents.get_document(session, principal, document_id)
    assert principal.org_id is not None
    chunks = (
        await session.execute(
            sa.select(Chunk.text, Chunk.heading_path)
            .where(Chunk.document_id == document.id)
            .order_by(Chunk.ordinal)
            .limit(32)
        )
    ).all()
    if not chunks:
        return []
    vectors = await embedder.embed(
        [c.text for c in chunks], kind="passage", contexts=[passage_context(c.heading_path) for c in chunks]
    )
    centroid = vectors.mean(axis=0)
    centroid = (centroid / (np.linalg.norm(centroid) or 1.0)).astype(np.float32)
    collection_ids = await _collections(session, principal, None)
    allowed = allowed_documents(principal.org_id, collection_ids, None).where(Document.id != document.id)
    hits = await search_vectors(
        session,
        org_id=principal.org_id,
        model=embedder.name,
        query=centroid,
        allowed_documents=allowed,
        limit=limit * 8,
    )
    best: dict[uuid.UUID, float] = {}
    for hit in hits:
        best[hit.document_id] = max(best.get(hit.document_id, -1.0), hit.score)
    ordered = sorted(best.items(), key=lambda kv: -kv[1])[:limit]
    rows = {
        d.id: d
        for d in (await session.execute(sa.select(Document).where(Document.id.in_([k for k, _ in ordered])))).scalars()
    }
    return [(rows[k], score) for k, score in ordered if k in rows]
