"""Chunk vectors: written by the pipeline's index step, searched by semantic and hybrid search.

The table `chunk_vector` is the source of truth on both backends, written in the transaction
that marks a document ready, so the vectors always agree with the chunks after any crash.

* PostgreSQL: a `vector` column; search is `ORDER BY vector <=> query` over a partial HNSW
  expression index per model and dimension (`vector::vector(384)`), with pgvector's iterative
  scan so filters do not starve the result.
* SQLite (no extensions in this Python): float32 blobs, searched in process. Each process keeps
  one matrix per (database, organization, model), appends rows written since it last looked
  (by rowid) and reloads when a delete happened (a per-model counter), then does an exact
  dot-product search masked to the documents the caller may see. Without metadata filters the
  mask is built from collections (each row knows its document's collection) less the few
  documents of those collections that are not ready, so a query never lists every allowed
  document.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import UserDefinedType

from tessera.core.db.session import is_sqlite
from tessera.core.documents.indexing import IndexTarget, register_indexer
from tessera.core.documents.models import Document, DocumentStatus
from tessera.core.embeddings.base import Embedder, Vectors
from tessera.core.retrieval.runtime import get_embedder
from tessera.settings import EmbeddingSettings


class Vector(UserDefinedType[Any]):
    """pgvector's type, with or without a dimension (enough for casts; values travel as text)."""

    cache_ok = True

    def __init__(self, dimension: int | None = None) -> None:
        self.dimension = dimension

    def get_col_spec(self, **_kw: Any) -> str:
        return f"vector({self.dimension})" if self.dimension else "vector"


_metadata = sa.MetaData()
chunk_vector = sa.Table(
    "chunk_vector",
    _metadata,
    sa.Column("chunk_id", sa.Uuid()),
    sa.Column("document_id", sa.Uuid()),
    sa.Column("org_id", sa.Uuid()),
    sa.Column("model", sa.String(200)),
    sa.Column("dim", sa.Integer()),
    sa.Column("vector", Vector()),
)


def _database_key(session: AsyncSession) -> str:
    bind = session.bind
    return str(bind.engine.url if isinstance(bind, AsyncConnection) else bind.url) if bind is not None else ""


def vector_literal(vector: Any) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


def hnsw_index_name(model: str, dimension: int) -> str:
    return f"ix_chunk_vector_hnsw_{hashlib.sha1(model.encode()).hexdigest()[:12]}_{dimension}"


@dataclass(frozen=True)
class VectorHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    score: float


# ---------------------------------------------------------------------------------------------
# the in-process matrix (SQLite)


@dataclass
class _Matrix:
    vectors: Vectors
    chunk_ids: list[str] = field(default_factory=list)
    doc_codes: np.ndarray[Any, np.dtype[np.int32]] = field(default_factory=lambda: np.zeros(0, np.int32))
    doc_index: dict[str, int] = field(default_factory=dict)
    doc_names: list[str] = field(default_factory=list)
    collection_codes: np.ndarray[Any, np.dtype[np.int32]] = field(default_factory=lambda: np.zeros(0, np.int32))
    collection_index: dict[str, int] = field(default_factory=dict)
    max_rowid: int = 0
    deletes: int = -1
    lock: asyncio.Lock | None = None


class _MatrixCache:
    def __init__(self) -> None:
        self._matrices: dict[tuple[str, str, str], _Matrix] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str], dimension: int) -> _Matrix:
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is None or matrix.vectors.shape[1] != dimension:
                matrix = _Matrix(vectors=np.zeros((0, dimension), np.float32))
                self._matrices[key] = matrix
            return matrix


_matrices = _MatrixCache()


async def _refresh(session: AsyncSession, org_id: uuid.UUID, model: str, dimension: int) -> _Matrix:
    database = _database_key(session)
    matrix = _matrices.get((database, org_id.hex, model), dimension)
    deletes = await session.scalar(
        sa.text("SELECT deletes FROM chunk_vector_epoch WHERE org_id = :org AND model = :model"),
        {"org": org_id.hex, "model": model},
    )
    deletes = int(deletes or 0)
    if deletes != matrix.deletes:
        matrix.vectors = np.zeros((0, dimension), np.float32)
        matrix.chunk_ids, matrix.doc_codes, matrix.doc_index, matrix.doc_names = [], np.zeros(0, np.int32), {}, []
        matrix.collection_codes, matrix.collection_index = np.zeros(0, np.int32), {}
        matrix.max_rowid, matrix.deletes = 0, deletes
    rows = (
        await session.execute(
            sa.text(
                "SELECT v.rowid, v.chunk_id, v.document_id, v.vector, d.collection_id FROM chunk_vector v "
                "JOIN document d ON d.id = v.document_id "
                "WHERE v.org_id = :org AND v.model = :model AND v.rowid > :after ORDER BY v.rowid"
            ),
            {"org": org_id.hex, "model": model, "after": matrix.max_rowid},
        )
    ).all()
    if rows:
        block = np.frombuffer(b"".join(row[3] for row in rows), dtype="<f4").reshape(len(rows), dimension)
        codes, collection_codes = [], []
        for row in rows:
            code = matrix.doc_index.get(row[2])
            if code is None:
                code = len(matrix.doc_names)
                matrix.doc_index[row[2]] = code
                matrix.doc_names.append(row[2])
            codes.append(code)
            collection_codes.append(matrix.collection_index.setdefault(row[4], len(matrix.collection_index)))
        matrix.vectors = np.vstack([matrix.vectors, block.astype(np.float32)])
        matrix.chunk_ids.extend(row[1] for row in rows)
        matrix.doc_codes = np.concatenate([matrix.doc_codes, np.asarray(codes, np.int32)])
        matrix.collection_codes = np.concatenate([matrix.collection_codes, np.asarray(collection_codes, np.int32)])
        matrix.max_rowid = int(rows[-1][0])
    return matrix


@dataclass(frozen=True)
class _Scope:
    """Which rows a search may return: a set of documents, or collections less some documents."""

    documents: set[str] | None = None
    collections: Sequence[str] = ()
    excluded: set[str] = field(default_factory=set)


def _mask(matrix: _Matrix, scope: _Scope) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    if scope.documents is not None:
        codes = [matrix.doc_index[d] for d in scope.documents if d in matrix.doc_index]
        return np.isin(matrix.doc_codes, np.asarray(codes, np.int32)) if codes else None
    collections = [matrix.collection_index[c] for c in scope.collections if c in matrix.collection_index]
    if not collections:
        return None
    mask = np.isin(matrix.collection_codes, np.asarray(collections, np.int32))
    excluded = [matrix.doc_index[d] for d in scope.excluded if d in matrix.doc_index]
    if excluded:
        mask &= ~np.isin(matrix.doc_codes, np.asarray(excluded, np.int32))
    return mask


def _top(matrix: _Matrix, query: Vectors, scope: _Scope, limit: int) -> list[tuple[str, str, float]]:
    if matrix.vectors.shape[0] == 0:
        return []
    mask = _mask(matrix, scope)
    if mask is None:
        return []
    scores = np.where(mask, matrix.vectors @ query, -np.inf)
    count = min(limit, scores.shape[0])
    best = np.argpartition(-scores, count - 1)[:count]
    best = best[np.argsort(-scores[best])]
    return [
        (matrix.chunk_ids[i], matrix.doc_names[matrix.doc_codes[i]], float(scores[i]))
        for i in best
        if np.isfinite(scores[i])
    ]


# ---------------------------------------------------------------------------------------------
# search


async def search_vectors(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    model: str,
    query: Vectors,
    allowed_documents: sa.Select[Any],
    limit: int,
    collections: Sequence[uuid.UUID] | None = None,
) -> list[VectorHit]:
    """Nearest chunks by cosine among the allowed documents (`query` is one unit vector).

    `collections`, when given, says that `allowed_documents` is exactly the ready documents of
    those collections (no metadata filter), which lets SQLite mask by collection.
    """
    dimension = int(query.shape[0])
    if is_sqlite(session):
        matrix = await _refresh(session, org_id, model, dimension)
        scope = await _sqlite_scope(session, org_id, allowed_documents, collections)
        return [
            VectorHit(uuid.UUID(chunk), uuid.UUID(document), score)
            for chunk, document, score in _top(matrix, query.astype(np.float32), scope, limit)
        ]
    await ensure_hnsw(session, model, dimension)
    # Filtered HNSW scans keep going until `limit` rows pass the filter (pgvector 0.8).
    await session.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    await session.execute(sa.text(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, limit * 2))}"))
    typed = Vector(dimension)
    target = sa.cast(sa.cast(sa.bindparam("query", vector_literal(query)), sa.Text), typed)
    distance = sa.cast(chunk_vector.c.vector, typed).op("<=>")(target)
    statement = (
        sa.select(chunk_vector.c.chunk_id, chunk_vector.c.document_id, (1 - distance).label("score"))
        .where(
            chunk_vector.c.model == model,
            chunk_vector.c.org_id == org_id,
            chunk_vector.c.document_id.in_(allowed_documents.scalar_subquery()),
        )
        .order_by(distance)
        .limit(limit)
    )
    rows = (await session.execute(statement)).all()
    return [VectorHit(row[0], row[1], float(row[2])) for row in rows]


async def _sqlite_scope(
    session: AsyncSession, org_id: uuid.UUID, allowed_documents: sa.Select[Any], collections: Sequence[uuid.UUID] | None
) -> _Scope:
    if collections is None:
        return _Scope(documents={row[0].hex for row in await session.execute(allowed_documents)})
    if not collections:
        return _Scope(collections=())
    names = [c.hex for c in collections]
    # Not-ready documents are few (being processed, failed): list those rather than the ready ones.
    not_ready = await session.execute(
        sa.select(Document.id).where(
            Document.org_id == org_id, Document.status != DocumentStatus.ready, Document.collection_id.in_(collections)
        )
    )
    return _Scope(collections=names, excluded={row[0].hex for row in not_ready})


_hnsw_ready: set[tuple[str, str, int]] = set()


async def ensure_hnsw(session: AsyncSession, model: str, dimension: int) -> None:
    """The partial HNSW index of one model, created once (concurrent creators are harmless)."""
    database = _database_key(session)
    key = (database, model, dimension)
    if key in _hnsw_ready:
        return
    name = hnsw_index_name(model, dimension)
    exists = await session.scalar(sa.text("SELECT 1 FROM pg_indexes WHERE indexname = :name"), {"name": name})
    if not exists:
        quoted = model.replace("'", "''")
        async with session.begin_nested():
            await session.execute(
                sa.text(
                    f"CREATE INDEX IF NOT EXISTS {name} ON chunk_vector USING hnsw "
                    f"((vector::vector({dimension})) vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
                    f"WHERE model = '{quoted}'"
                )
            )
    _hnsw_ready.add(key)


# ---------------------------------------------------------------------------------------------
# the indexer


class VectorIndexer:
    """Embeds chunks (heading path + text) with the configured embedder and stores the vectors."""

    name = "vectors"

    def __init__(self) -> None:
        self._settings: EmbeddingSettings | None = None

    def embedder(self) -> Embedder:
        from tessera.core.documents.runtime import PipelineContext

        return get_embedder(PipelineContext.settings().embeddings)

    async def prepare(self, target: IndexTarget, chunks: Sequence[Any]) -> tuple[str, Vectors] | None:
        if not chunks:
            return None
        embedder = self.embedder()
        vectors = await embedder.embed([passage_text(c.heading_path, c.text) for c in chunks], kind="passage")
        return embedder.name, vectors

    async def index_document(
        self, session: AsyncSession, target: IndexTarget, chunks: Sequence[Any], prepared: Any
    ) -> None:
        await self.remove_documents(session, [target.document_id])
        if prepared is None:
            return
        model, vectors = prepared
        dimension = int(vectors.shape[1])
        if is_sqlite(session):
            await session.execute(
                sa.text(
                    "INSERT INTO chunk_vector (chunk_id, document_id, org_id, model, dim, vector) "
                    "VALUES (:chunk, :document, :org, :model, :dim, :vector)"
                ),
                [
                    {
                        "chunk": chunk.id.hex,
                        "document": target.document_id.hex,
                        "org": target.org_id.hex,
                        "model": model,
                        "dim": dimension,
                        "vector": np.asarray(vector, dtype="<f4").tobytes(),
                    }
                    for chunk, vector in zip(chunks, vectors, strict=True)
                ],
            )
            return
        await ensure_hnsw(session, model, dimension)
        await session.execute(
            sa.text(
                "INSERT INTO chunk_vector (chunk_id, document_id, org_id, model, dim, vector) "
                "VALUES (:chunk, :document, :org, :model, :dim, CAST(CAST(:vector AS text) AS vector))"
            ),
            [
                {
                    "chunk": chunk.id,
                    "document": target.document_id,
                    "org": target.org_id,
                    "model": model,
                    "dim": dimension,
                    "vector": vector_literal(vector),
                }
                for chunk, vector in zip(chunks, vectors, strict=True)
            ],
        )

    async def update_metadata(self, session: AsyncSession, document_id: uuid.UUID, metadata: dict[str, Any]) -> None:
        # Filters join the document row, so vectors hold no metadata to refresh.
        return None

    async def remove_documents(self, session: AsyncSession, document_ids: Sequence[uuid.UUID]) -> None:
        if not document_ids:
            return
        if is_sqlite(session):
            for document_id in document_ids:
                removed = await session.execute(
                    sa.text("DELETE FROM chunk_vector WHERE document_id = :document RETURNING org_id, model"),
                    {"document": document_id.hex},
                )
                for org, model in {(row[0], row[1]) for row in removed}:
                    await session.execute(
                        sa.text(
                            "INSERT INTO chunk_vector_epoch (org_id, model, deletes) VALUES (:org, :model, 1) "
                            "ON CONFLICT (org_id, model) DO UPDATE SET deletes = deletes + 1"
                        ),
                        {"org": org, "model": model},
                    )
            return
        await session.execute(
            sa.text("DELETE FROM chunk_vector WHERE document_id = ANY(:ids)"), {"ids": list(document_ids)}
        )


def passage_text(heading_path: Sequence[str], text: str) -> str:
    """What is embedded for a chunk: its headings give the text its topic (a chapter, a section)."""
    heading = " / ".join(heading_path)
    return f"{heading}\n{text}" if heading else text


register_indexer(VectorIndexer())
