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
* Above `retrieval.hnsw_threshold` rows, SQLite also keeps an HNSW index (usearch) keyed by
  rowid, built in a background thread and saved under `<data_dir>/vector-index` so a restart
  only adds the rows written since. Until it is ready, and whenever it cannot answer, searches
  stay exact. Its candidates are rescored from the matrix and masked like the exact search, and
  it is checked row by row against the matrix before it serves, so it can lag the database
  (rows it lacks are scored exactly) but never contradict it.

A chunk longer than the embedder's window also keeps its windows' vectors (`windows`, float16, on
both backends; NULL for a chunk of one window). The index finds candidates by the averaged vector;
then each candidate's score becomes `(1 - window_weight) x` that cosine `+ window_weight x` its
best window's cosine (`_rescore_windows`), so a question about one paragraph of a long chunk is not
diluted by the others (a max-passage score, as in Dai & Callan's MaxP). Measured in
docs/BENCHMARKS.md, "Long chunks".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import UserDefinedType
from usearch.index import Index

from tessera.core.db.session import is_sqlite
from tessera.core.documents.indexing import IndexTarget, register_indexer
from tessera.core.embeddings.base import Embedder, PassageWindows, Vectors, embed_passages
from tessera.core.observability.logging import get_logger
from tessera.core.retrieval.background import wait_for_jobs
from tessera.core.retrieval.runtime import get_embedder, retrieval_settings
from tessera.core.retrieval.scope import Scope, scope_mask, sqlite_scope
from tessera.settings import EmbeddingSettings, Settings

logger = get_logger("tessera.retrieval.vectors")


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
    sa.Column("windows", sa.LargeBinary()),
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


# Window vectors are stored in half precision: half the bytes, and a cosine off by under 1e-3.
WINDOW_DTYPE = "<f2"
# How many candidates (by the averaged vector) a search rescores with their windows, at least.
WINDOW_CANDIDATES = 100


def encode_windows(windows: Vectors | None) -> bytes | None:
    return None if windows is None or windows.shape[0] < 2 else np.asarray(windows, WINDOW_DTYPE).tobytes()


def decode_windows(data: bytes, dimension: int) -> Vectors:
    return np.frombuffer(data, WINDOW_DTYPE).reshape(-1, dimension).astype(np.float32)


@dataclass(frozen=True)
class PreparedVectors:
    """What `VectorIndexer.prepare` gives `index_document`: one vector per chunk, and the windows
    of the chunks longer than one window."""

    model: str
    vectors: Vectors
    windows: PassageWindows

    def part(self, start: int, stop: int) -> PreparedVectors:
        return PreparedVectors(self.model, self.vectors[start:stop], self.windows[start:stop])


# ---------------------------------------------------------------------------------------------
# the in-process matrix (SQLite)


@dataclass
class _Matrix:
    """The vectors of one organization and model, in `chunk_vector` rowid order.

    Its arrays are replaced, never changed in place, so a background thread may keep reading a
    snapshot of them. `generation` changes on every full reload (after a delete).
    """

    vectors: Vectors
    ann: _Ann
    rowids: np.ndarray[Any, np.dtype[np.int64]] = field(default_factory=lambda: np.zeros(0, np.int64))
    chunk_ids: list[str] = field(default_factory=list)
    doc_codes: np.ndarray[Any, np.dtype[np.int32]] = field(default_factory=lambda: np.zeros(0, np.int32))
    doc_index: dict[str, int] = field(default_factory=dict)
    doc_names: list[str] = field(default_factory=list)
    collection_codes: np.ndarray[Any, np.dtype[np.int32]] = field(default_factory=lambda: np.zeros(0, np.int32))
    collection_index: dict[str, int] = field(default_factory=dict)
    max_rowid: int = 0
    deletes: int = -1
    generation: int = 0


class _MatrixCache:
    def __init__(self) -> None:
        self._matrices: dict[tuple[str, str, str], _Matrix] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str], dimension: int) -> _Matrix:
        with self._lock:
            matrix = self._matrices.get(key)
            if matrix is None or matrix.vectors.shape[1] != dimension:
                _, org, model = key
                matrix = _Matrix(vectors=np.zeros((0, dimension), np.float32), ann=_Ann(org, model, dimension))
                self._matrices[key] = matrix
            return matrix

    def find(self, key: tuple[str, str, str]) -> _Matrix | None:
        with self._lock:
            return self._matrices.get(key)

    def clear(self) -> None:
        """Forget every matrix and index of this process (what a restart does)."""
        with self._lock:
            self._matrices.clear()


_matrices = _MatrixCache()


async def _refresh(session: AsyncSession, org_id: uuid.UUID, model: str, dimension: int) -> _Matrix:
    database = _database_key(session)
    matrix = _matrices.get((database, org_id.hex, model), dimension)
    deletes = await session.scalar(
        sa.text("SELECT deletes FROM chunk_vector_epoch WHERE org_id = :org AND model = :model"),
        {"org": org_id.hex, "model": model},
    )
    deletes = int(deletes or 0)
    reload = deletes != matrix.deletes
    generation = matrix.generation
    rows = (
        await session.execute(
            sa.text(
                "SELECT v.rowid, v.chunk_id, v.document_id, v.vector, d.collection_id FROM chunk_vector v "
                "JOIN document d ON d.id = v.document_id "
                "WHERE v.org_id = :org AND v.model = :model AND v.rowid > :after ORDER BY v.rowid"
            ),
            {"org": org_id.hex, "model": model, "after": 0 if reload else matrix.max_rowid},
        )
    ).all()
    if matrix.generation != generation:
        return matrix  # another search reloaded it meanwhile, from a read at least as recent
    # No await from here on: searches see the old rows or the new ones, never a half-built matrix.
    if reload:
        base = _Matrix(vectors=np.zeros((0, dimension), np.float32), ann=matrix.ann, deletes=deletes)
    else:
        base = matrix
        rows = [row for row in rows if row[0] > matrix.max_rowid]  # appended meanwhile by another search
    if not rows and not reload:
        return matrix
    doc_index, doc_names, collection_index = base.doc_index, base.doc_names, base.collection_index
    codes, collection_codes = [], []
    for row in rows:
        code = doc_index.get(row[2])
        if code is None:
            code = len(doc_names)
            doc_index[row[2]] = code
            doc_names.append(row[2])
        codes.append(code)
        collection_codes.append(collection_index.setdefault(row[4], len(collection_index)))
    if rows:
        block = np.frombuffer(b"".join(row[3] for row in rows), dtype="<f4").reshape(len(rows), dimension)
        matrix.vectors = np.vstack([base.vectors, block.astype(np.float32)])
        matrix.rowids = np.concatenate([base.rowids, np.fromiter((row[0] for row in rows), np.int64, len(rows))])
        base.chunk_ids.extend(row[1] for row in rows)
        matrix.chunk_ids = base.chunk_ids
        matrix.doc_codes = np.concatenate([base.doc_codes, np.asarray(codes, np.int32)])
        matrix.collection_codes = np.concatenate([base.collection_codes, np.asarray(collection_codes, np.int32)])
        matrix.max_rowid = int(rows[-1][0])
    else:
        matrix.vectors, matrix.rowids, matrix.chunk_ids = base.vectors, base.rowids, base.chunk_ids
        matrix.doc_codes, matrix.collection_codes, matrix.max_rowid = base.doc_codes, base.collection_codes, 0
    matrix.doc_index, matrix.doc_names, matrix.collection_index = doc_index, doc_names, collection_index
    if reload:
        matrix.deletes = deletes
        matrix.generation += 1
    return matrix


Ranked = list[tuple[str, str, float]]
"""(chunk id, document id, score), best first."""


def _ranked(matrix: _Matrix, rows: np.ndarray[Any, Any], scores: np.ndarray[Any, Any], limit: int) -> Ranked:
    count = min(limit, scores.shape[0])
    if count <= 0:
        return []
    best = np.argpartition(-scores, count - 1)[:count]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [
        (matrix.chunk_ids[row], matrix.doc_names[matrix.doc_codes[row]], float(scores[i]))
        for i, row in ((i, int(rows[i])) for i in best)
        if np.isfinite(scores[i])
    ]


# Scores with numpy's own single-threaded loop, not BLAS: on a small, busy machine (the embedder
# uses every core) a threaded matrix-vector product waits for its second thread to be scheduled.
# Measured on 2 cores under load: p50 16 ms and p95 20 ms at 100k x 384 against 8.5 and 10 ms
# single-threaded, and at 10k to 20k rows a p95 of 8 ms against under 1 ms.


def _top_masked(matrix: _Matrix, query: Vectors, mask: np.ndarray[Any, np.dtype[np.bool_]], limit: int) -> Ranked:
    """The exact search: every row scored, the rows outside the scope masked out."""
    scores = np.where(mask, np.vecdot(matrix.vectors, query), -np.inf)
    return _ranked(matrix, np.arange(scores.shape[0]), scores, limit)


def _top_rows(matrix: _Matrix, query: Vectors, rows: np.ndarray[Any, np.dtype[np.intp]], limit: int) -> Ranked:
    """Exact scores of the given rows only (few: a narrow scope, or the candidates of the index)."""
    return _ranked(matrix, rows, np.vecdot(matrix.vectors[rows], query), limit)


def _search_matrix(matrix: _Matrix, query: Vectors, scope: Scope, limit: int, options: _IndexOptions) -> Ranked:
    total = matrix.vectors.shape[0]
    if total == 0:
        return []
    mask = scope_mask(matrix, scope)
    if mask is None:
        return []
    if total <= options.threshold:
        return _top_masked(matrix, query, mask, limit)
    ann = matrix.ann
    allowed = int(np.count_nonzero(mask))
    if allowed <= options.threshold:
        # A narrow scope: scoring its rows is cheaper than the index, and exact.
        ann.exact_searches += 1
        ranked = _top_rows(matrix, query, np.flatnonzero(mask), limit)
    else:
        candidates = ann.candidates(matrix, query, mask, allowed, limit)
        ranked = (
            _top_masked(matrix, query, mask, limit)
            if candidates is None
            else _top_rows(matrix, query, candidates, limit)
        )
    # After the search: the background work never delays the search that starts it.
    ann.schedule(matrix, options)
    return ranked


# ---------------------------------------------------------------------------------------------
# the HNSW index (SQLite, above `hnsw_threshold` rows)

INDEX_FORMAT = 1
INDEX_METRIC = "ip"  # vectors are unit length: the dot product is the cosine, as in the exact search
INDEX_DTYPE = "f16"  # half the memory of f32; candidates are rescored exactly from the matrix
INDEX_EXPANSION_ADD = 128  # `ef_construction`
# Rows appended since the index was last brought up to date are searched exactly until there are
# this many (or 2% of the index): a top-up then adds them.
TOPUP_ROWS = 2_048
# Keys whose rows were deleted or replaced stay in the graph (skipped at search) until they make
# up this share of it; then the index is built again.
REBUILD_DEAD_FRACTION = 0.2
MAX_OVERSAMPLE = 20
ADD_BATCH = 256
VERIFY_BATCH = 8_192
# A stored f16 component differs from the float32 one by at most ~5e-4 for unit vectors.
VERIFY_TOLERANCE = 2e-3
RETRY_SECONDS = 60.0

_jobs: set[threading.Thread] = set()
_jobs_lock = threading.Lock()


@dataclass(frozen=True)
class _IndexOptions:
    threshold: int
    connectivity: int
    ef_search: int
    directory: Path | None  # where the index is saved; None keeps it in memory only


@dataclass(frozen=True)
class _Snapshot:
    vectors: Vectors
    rowids: np.ndarray[Any, np.dtype[np.int64]]
    generation: int
    deletes: int

    @property
    def rows(self) -> int:
        return int(self.rowids.shape[0])


@dataclass(frozen=True)
class VectorIndexStatus:
    """What this process holds for one organization and model (SQLite)."""

    rows: int
    """Vectors in the in-memory matrix."""
    indexed_rows: int
    """Rows of the matrix the HNSW index holds; searches score later rows exactly."""
    ready: bool
    """Whether searches may use the index now (built, and in step with the matrix)."""
    building: bool
    builds: int
    """Full builds in this process (the first one, and rebuilds)."""
    source: str
    """`none`, `built` or `loaded` (from the saved file, then topped up)."""
    approximate_searches: int
    exact_searches: int
    """Searches above the threshold answered without the index (not ready, busy, or a narrow scope)."""


class _Ann:
    """An HNSW index (usearch) over the rows of one matrix, keyed by `chunk_vector` rowid.

    A background thread builds it, loads it, brings it up to date and saves it; queries read it.
    Every use of `index` holds `lock`, and a query that finds the lock taken searches exactly
    instead: a query never waits for index work. The database stays the source of truth: the
    index serves a matrix generation only once every row of it has been checked to be in the
    index with the same vector, and a hit whose rowid is not a live row of that generation is
    dropped.
    """

    def __init__(self, org: str, model: str, dimension: int) -> None:
        self.name = f"{org}-{hashlib.sha1(model.encode()).hexdigest()[:12]}"
        self.model = model
        self.dimension = dimension
        self.lock = threading.Lock()
        self.index: Index | None = None
        self.generation = -1  # the matrix generation whose first `rows` rows the index holds
        self.rows = 0
        self.removed = 0  # keys removed (replaced) since the last full build
        self.job: threading.Thread | None = None
        self.tried_disk = False
        self.retry_at = 0.0
        self.builds = 0
        self.source = "none"
        self.approximate_searches = 0
        self.exact_searches = 0

    # -- the query side (event loop) ------------------------------------------------------------

    def ready_for(self, matrix: _Matrix) -> bool:
        return self.index is not None and self.generation == matrix.generation

    def schedule(self, matrix: _Matrix, options: _IndexOptions) -> None:
        """Start background work when the index is missing, behind the matrix, or far behind."""
        if self.ready_for(matrix) and matrix.rowids.shape[0] - self.rows < max(TOPUP_ROWS, self.rows // 50):
            return
        with _jobs_lock:
            if self.job is not None or time.monotonic() < self.retry_at:
                return
            snapshot = _Snapshot(matrix.vectors, matrix.rowids, matrix.generation, matrix.deletes)
            self.job = threading.Thread(
                target=self._run, args=(snapshot, options), name=f"tessera-vector-index-{self.name}", daemon=True
            )
            _jobs.add(self.job)
            self.job.start()

    def candidates(
        self,
        matrix: _Matrix,
        query: Vectors,
        mask: np.ndarray[Any, np.dtype[np.bool_]],
        allowed: int,
        limit: int,
    ) -> np.ndarray[Any, np.dtype[np.intp]] | None:
        """Rows worth scoring exactly: the index's nearest allowed rows plus the rows appended
        since it was brought up to date. None when the index cannot answer (the caller scans)."""
        if not self.ready_for(matrix) or not self.lock.acquire(blocking=False):
            self.exact_searches += 1
            return None
        try:
            index, synced = self.index, self.rows
            if index is None or self.generation != matrix.generation:
                self.exact_searches += 1
                return None
            total = matrix.rowids.shape[0]
            # Deep enough that about twice `limit` of the hits fall inside the scope.
            oversample = min(MAX_OVERSAMPLE, math.ceil(2 * total / allowed))
            found = index.search(query, min(len(index), limit * oversample))
            keys = np.asarray(found.keys, dtype=np.int64)
        finally:
            self.lock.release()
        live = matrix.rowids[:synced]
        positions = np.minimum(np.searchsorted(live, keys), max(synced - 1, 0))
        rows = positions[live[positions] == keys] if synced else np.zeros(0, np.intp)
        rows = rows[mask[rows]]
        if rows.shape[0] < min(limit, int(np.count_nonzero(mask[:synced]))):
            # The scope kept too few of the index's hits: scan exactly after all.
            self.exact_searches += 1
            return None
        self.approximate_searches += 1
        tail = synced + np.flatnonzero(mask[synced:])
        return np.concatenate([rows, tail]) if tail.shape[0] else rows

    def status(self, matrix: _Matrix) -> VectorIndexStatus:
        return VectorIndexStatus(
            rows=int(matrix.rowids.shape[0]),
            indexed_rows=self.rows if self.ready_for(matrix) else 0,
            ready=self.ready_for(matrix),
            building=self.job is not None,
            builds=self.builds,
            source=self.source,
            approximate_searches=self.approximate_searches,
            exact_searches=self.exact_searches,
        )

    # -- the background side -------------------------------------------------------------------

    def _run(self, snapshot: _Snapshot, options: _IndexOptions) -> None:
        try:
            self._update(snapshot, options)
        except Exception:
            logger.exception("vector index update failed", index=self.name)
            self.retry_at = time.monotonic() + RETRY_SECONDS
        finally:
            with _jobs_lock:
                _jobs.discard(threading.current_thread())
                self.job = None

    def _update(self, snapshot: _Snapshot, options: _IndexOptions) -> None:
        started = time.perf_counter()
        index = self.index
        if index is None and not self.tried_disk and options.directory is not None:
            self.tried_disk = True
            index = self._load(options.directory, options)
            if index is not None:
                self.source = "loaded"
        if index is None:
            self._build(snapshot, options, started, reason="new")
            return
        published = index is self.index
        if published and self.generation == snapshot.generation:
            # Same rows as before, more of them: only the tail is new.
            missing = np.arange(self.rows, snapshot.rows)
        else:
            missing = np.flatnonzero(~self._verify(index, snapshot, published))
        with self.lock if published else contextlib.nullcontext():
            size = len(index)
        stale = size - (snapshot.rows - missing.shape[0])  # keys that are not a live row's vector
        if stale + self.removed > REBUILD_DEAD_FRACTION * max(size + self.removed, 1):
            self._build(snapshot, options, started, reason=f"{stale + self.removed} of {size} keys dead")
            return
        self._add(index, snapshot, missing, published)
        self._publish(index, snapshot)
        if missing.shape[0]:  # otherwise the saved copy already holds every row
            self._save(index, snapshot, options)
        logger.info(
            "vector index ready", index=self.name, rows=snapshot.rows, added=int(missing.shape[0]), dead=stale,
            source=self.source, seconds=round(time.perf_counter() - started, 2),
        )  # fmt: skip

    def _build(self, snapshot: _Snapshot, options: _IndexOptions, started: float, *, reason: str) -> None:
        index = Index(
            ndim=self.dimension,
            metric=INDEX_METRIC,
            dtype=INDEX_DTYPE,
            connectivity=options.connectivity,
            expansion_add=INDEX_EXPANSION_ADD,
            expansion_search=options.ef_search,
        )
        self._add(index, snapshot, np.arange(snapshot.rows), published=False)
        self.builds += 1
        self.removed = 0
        self.source = "built"
        self._publish(index, snapshot)
        self._save(index, snapshot, options)
        logger.info(
            "vector index ready", index=self.name, rows=snapshot.rows, built=reason, source=self.source,
            seconds=round(time.perf_counter() - started, 2),
        )  # fmt: skip

    def _add(
        self, index: Index, snapshot: _Snapshot, rows: np.ndarray[Any, np.dtype[np.intp]], published: bool
    ) -> None:
        if not rows.shape[0]:
            return
        keys = snapshot.rowids[rows].astype(np.uint64)
        guard = self.lock if published else contextlib.nullcontext()
        with guard:
            # A key may be back with another vector: a rowid reused after a delete, or a stale file.
            present = np.asarray(index.contains(keys), dtype=bool)
            if present.any():
                index.remove(keys[present])
                self.removed += int(present.sum())
        # One core for the index, the other for searches (they scan exactly meanwhile).
        threads = max(1, (os.cpu_count() or 2) // 2)
        for start in range(0, keys.shape[0], ADD_BATCH):
            part = rows[start : start + ADD_BATCH]
            with self.lock if published else contextlib.nullcontext():
                index.add(keys[start : start + ADD_BATCH], snapshot.vectors[part], threads=threads)

    def _verify(self, index: Index, snapshot: _Snapshot, published: bool) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Per row of the snapshot: whether the index holds it under its rowid with the same vector."""
        keys = snapshot.rowids.astype(np.uint64)
        with self.lock if published else contextlib.nullcontext():
            covered = np.asarray(index.contains(keys), dtype=bool)
        rows = np.flatnonzero(covered)
        for start in range(0, rows.shape[0], VERIFY_BATCH):
            part = rows[start : start + VERIFY_BATCH]
            with self.lock if published else contextlib.nullcontext():
                stored = np.stack(cast(tuple[Vectors, ...], index.get(keys[part], dtype="f32")))
            covered[part] = np.all(np.abs(stored - snapshot.vectors[part]) <= VERIFY_TOLERANCE, axis=1)
        return covered

    def _publish(self, index: Index, snapshot: _Snapshot) -> None:
        with self.lock:
            self.index = index
            self.generation = snapshot.generation
            self.rows = snapshot.rows

    # -- the saved copy ------------------------------------------------------------------------

    def _paths(self, directory: Path) -> tuple[Path, Path]:
        return directory / f"{self.name}.usearch", directory / f"{self.name}.json"

    def _identity(self, options: _IndexOptions) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT,
            "model": self.model,
            "dimension": self.dimension,
            "metric": INDEX_METRIC,
            "dtype": INDEX_DTYPE,
            "connectivity": options.connectivity,
        }

    def _save(self, index: Index, snapshot: _Snapshot, options: _IndexOptions) -> None:
        """Write the index, then its sidecar, each replaced whole (a crash leaves the old pair or a
        mismatched one, which the next start rebuilds or verifies)."""
        if options.directory is None:
            return
        directory = options.directory
        directory.mkdir(parents=True, exist_ok=True)
        path, sidecar = self._paths(directory)
        with self.lock:
            data = index.save() or b""
            count = len(index)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        meta = {
            **self._identity(options),
            "count": count,
            "sha256": hashlib.sha256(data).hexdigest(),
            "max_rowid": int(snapshot.rowids[-1]) if snapshot.rows else 0,
            "deletes": snapshot.deletes,
            "saved_at": datetime.now(UTC).isoformat(),
        }
        temporary = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(meta, indent=1))
        os.replace(temporary, sidecar)

    def _load(self, directory: Path, options: _IndexOptions) -> Index | None:
        """The saved index, when its sidecar describes it and this index's settings; its rows are
        verified against the database by the caller."""
        path, sidecar = self._paths(directory)
        if not path.exists() and not sidecar.exists():
            return None
        try:
            meta = json.loads(sidecar.read_text())
            data = path.read_bytes()
        except (OSError, ValueError) as error:
            logger.warning("saved vector index unreadable: rebuilding", index=self.name, error=str(error))
            return None
        expected = {**self._identity(options), "sha256": hashlib.sha256(data).hexdigest()}
        different = sorted(k for k, v in expected.items() if not isinstance(meta, dict) or meta.get(k) != v)
        if different:
            logger.warning("saved vector index does not match: rebuilding", index=self.name, fields=different)
            return None
        try:
            index = Index.restore(data, expansion_search=options.ef_search)
        except (RuntimeError, ValueError) as error:
            logger.warning("saved vector index unreadable: rebuilding", index=self.name, error=str(error))
            return None
        if index is None or len(index) != meta.get("count") or index.ndim != self.dimension:
            logger.warning("saved vector index does not match its sidecar: rebuilding", index=self.name)
            return None
        return index


def wait_for_vector_indexes(timeout: float | None = None) -> bool:
    """Wait until this process's background index work is done (tests, benchmarks); False on timeout."""
    return wait_for_jobs(_jobs, _jobs_lock, timeout)


def vector_index_status(session: AsyncSession, org_id: uuid.UUID, model: str) -> VectorIndexStatus | None:
    """The in-process state of one organization's vectors of `model` (SQLite); None before any search."""
    matrix = _matrices.find((_database_key(session), org_id.hex, model))
    return None if matrix is None else matrix.ann.status(matrix)


_options_cache: dict[tuple[int, str], tuple[Settings, _IndexOptions]] = {}


def _index_options(session: AsyncSession) -> _IndexOptions:
    """From the process's settings. A SQLite index is saved in the data dir only when the session
    is on the configured database (its file names do not say which database they belong to)."""
    from tessera.core.documents.runtime import PipelineContext

    settings = PipelineContext.settings()
    database = _database_key(session)
    cached = _options_cache.get((id(settings), database))
    if cached is not None and cached[0] is settings:
        return cached[1]
    retrieval = settings.retrieval
    configured = make_url(settings.resolved_database_url).database
    current = make_url(database).database if database else None
    same = bool(database.startswith("sqlite") and current and configured and current != ":memory:")
    same = same and Path(str(current)).resolve() == Path(str(configured)).resolve()
    options = _IndexOptions(
        threshold=retrieval.hnsw_threshold,
        connectivity=retrieval.hnsw_connectivity,
        ef_search=retrieval.hnsw_ef_search,
        directory=settings.data_dir / "vector-index" if same else None,
    )
    if len(_options_cache) > 64:
        _options_cache.clear()
    _options_cache[(id(settings), database)] = (settings, options)
    return options


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
    window_weight: float | None = None,
    rescore: int | None = None,
) -> list[VectorHit]:
    """Nearest chunks by cosine among the allowed documents (`query` is one unit vector).

    `collections`, when given, says that `allowed_documents` is exactly the ready documents of
    those collections (no metadata filter), which lets SQLite mask by collection.
    `window_weight` (default: the setting `retrieval.window_weight`) mixes in each long chunk's
    best window; 0 ranks by the averaged vectors alone. `rescore` (default: all, and at least
    100) is how many of the nearest by averaged vector get their windows' say: hybrid search reads
    300 deep but takes only its best 100 as candidates, and the rest keep their averaged scores
    (rescoring all 300 measured the same nDCG@10 on SciFact within 0.0004, at three times the reads).
    """
    weight = retrieval_settings().window_weight if window_weight is None else window_weight
    depth = max(limit, WINDOW_CANDIDATES) if weight > 0 else limit
    hits = await _nearest(session, org_id, model, query, allowed_documents, depth, collections)
    if weight > 0 and hits:
        top = max(rescore if rescore is not None else depth, WINDOW_CANDIDATES)
        rescored = await _rescore_windows(session, org_id, model, query, hits[:top], weight)
        hits = sorted(rescored + hits[top:], key=lambda hit: (-hit.score, hit.chunk_id))
    return hits[:limit]


async def _rescore_windows(
    session: AsyncSession, org_id: uuid.UUID, model: str, query: Vectors, hits: list[VectorHit], weight: float
) -> list[VectorHit]:
    """Hits with windows scored `(1 - weight) x` their cosine `+ weight x` their best window's, in order."""
    if not hits:
        return hits
    # By primary key, with the ids as one parameter (300 bound ids cost more to compile than to
    # look up). On SQLite the unary `+` keeps the planner off the (org_id, model) index, which it
    # otherwise picks, reading every row of the organization: 228 ms at 100k chunks against 3.4.
    if is_sqlite(session):
        statement = (
            "SELECT chunk_id, windows FROM chunk_vector WHERE chunk_id IN (SELECT value FROM json_each(:ids)) "
            "AND windows IS NOT NULL AND +org_id = :org AND +model = :model"
        )
        ids: Any = json.dumps([hit.chunk_id.hex for hit in hits])
        org: Any = org_id.hex
    else:
        statement = (
            "SELECT chunk_id, windows FROM chunk_vector WHERE chunk_id = ANY(:ids) "
            "AND windows IS NOT NULL AND org_id = :org AND model = :model"
        )
        ids, org = [hit.chunk_id for hit in hits], org_id
    rows = (await session.execute(sa.text(statement), {"ids": ids, "org": org, "model": model})).all()
    if not rows:
        return hits
    # One product for every window of every row, then the best window of each row.
    query = np.asarray(query, np.float32)
    blobs = [bytes(row[1]) for row in rows]
    windows = np.frombuffer(b"".join(blobs), WINDOW_DTYPE).reshape(-1, query.shape[0])
    counts = np.fromiter((len(blob) for blob in blobs), np.int64, len(blobs)) // (2 * query.shape[0])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    best_scores = np.maximum.reduceat(windows.astype(np.float32) @ query, starts)
    best = {
        (row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(row[0])): float(score)
        for row, score in zip(rows, best_scores, strict=True)
    }
    return [
        hit if hit.chunk_id not in best else VectorHit(
            hit.chunk_id, hit.document_id, (1 - weight) * hit.score + weight * best[hit.chunk_id]
        )
        for hit in hits
    ]  # fmt: skip


async def _nearest(
    session: AsyncSession,
    org_id: uuid.UUID,
    model: str,
    query: Vectors,
    allowed_documents: sa.Select[Any],
    limit: int,
    collections: Sequence[uuid.UUID] | None,
) -> list[VectorHit]:
    """The `limit` chunks whose averaged vectors are nearest: exact or HNSW on SQLite, pgvector HNSW."""
    dimension = int(query.shape[0])
    if is_sqlite(session):
        matrix = await _refresh(session, org_id, model, dimension)
        scope = await sqlite_scope(session, org_id, allowed_documents, collections)
        ranked = _search_matrix(matrix, query.astype(np.float32), scope, limit, _index_options(session))
        return [VectorHit(uuid.UUID(chunk), uuid.UUID(document), score) for chunk, document, score in ranked]
    await ensure_hnsw(session, model, dimension)
    # Filtered HNSW scans keep going until `limit` rows pass the filter (pgvector 0.8). pgvector's
    # default ef_search of 40 found 0.935 of the exact top 10 at 100k chunks (bench/search_scale.py).
    ef_search = min(1_000, max(_index_options(session).ef_search, limit * 2))
    await session.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    await session.execute(sa.text(f"SET LOCAL hnsw.ef_search = {ef_search}"))
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

    async def prepare(self, target: IndexTarget, chunks: Sequence[Any]) -> PreparedVectors | None:
        if not chunks:
            return None
        embedder = self.embedder()
        vectors, windows = await embed_passages(
            embedder, [c.text for c in chunks], contexts=[passage_context(c.heading_path) for c in chunks]
        )
        return PreparedVectors(embedder.name, vectors, windows)

    async def index_document(
        self, session: AsyncSession, target: IndexTarget, chunks: Sequence[Any], prepared: Any
    ) -> None:
        await self.remove_documents(session, [target.document_id])
        if prepared is None:
            return
        assert isinstance(prepared, PreparedVectors)
        dimension = int(prepared.vectors.shape[1])
        sqlite = is_sqlite(session)
        rows = [
            {
                "chunk": chunk.id.hex if sqlite else chunk.id,
                "document": target.document_id.hex if sqlite else target.document_id,
                "org": target.org_id.hex if sqlite else target.org_id,
                "model": prepared.model,
                "dim": dimension,
                "vector": np.asarray(vector, dtype="<f4").tobytes() if sqlite else vector_literal(vector),
                "windows": encode_windows(windows),
            }
            for chunk, vector, windows in zip(chunks, prepared.vectors, prepared.windows, strict=True)
        ]
        if not sqlite:
            await ensure_hnsw(session, prepared.model, dimension)
        value = ":vector" if sqlite else "CAST(CAST(:vector AS text) AS vector)"
        await session.execute(
            sa.text(
                "INSERT INTO chunk_vector (chunk_id, document_id, org_id, model, dim, vector, windows) "
                f"VALUES (:chunk, :document, :org, :model, :dim, {value}, :windows)"
            ),
            rows,
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


def passage_context(heading_path: Sequence[str]) -> str:
    """What is embedded with a chunk: its headings give the text its topic (a chapter, a section)."""
    return " / ".join(heading_path)


def passage_text(heading_path: Sequence[str], text: str) -> str:
    """A chunk as the embedder sees it (headings, newline, text): what a reranker is given too."""
    heading = passage_context(heading_path)
    return f"{heading}\n{text}" if heading else text


register_indexer(VectorIndexer())
