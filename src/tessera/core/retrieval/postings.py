"""In-memory BM25 for SQLite: the keyword index each process keeps per organization.

FTS5 computes `bm25()` for every row that matches any query word before it can sort, so a
question whose words are common touches tens of thousands of rows at 100k chunks (p95 138 ms).
This index keeps, per organization, the postings of every stem (row, term frequency) in numpy
arrays and scores a query with one vectorised pass over the postings of its stems: a few
milliseconds at that size.

* Ranking is Okapi BM25 exactly as PostgreSQL computes it here (`keyword.py`): k1 1.2, b 0.75,
  a heading occurrence counting half a body one, statistics per organization; words are Porter
  stems, as FTS5 makes them, stopwords dropped (`analysis.py`). FTS5 answers only while
  the index is loading or catching up in the background, and when it is switched off
  (`retrieval.keyword_index = "fts5"`).
* The database stays the source of truth. The full-text indexer appends one entry per document
  added or removed to `chunk_fts_log`, in the transaction that changes `chunk_fts`; the index
  remembers the last entry it applied and serves a search only when it has applied every entry
  the search's transaction can see. Catching up reads the changed documents' chunks, so a crash
  anywhere leaves nothing to repair: the next process loads what was committed.
* Rows are added as segments (a sorted CSR per batch, merged when there are many) and removed
  rows are masked out. As in Lucene, removed rows still count in the statistics until enough of
  them (a quarter) trigger a reload, which also happens in the background for large
  organizations.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tessera.core.observability.logging import get_logger
from tessera.core.retrieval.analysis import analyze
from tessera.core.retrieval.background import wait_for_jobs
from tessera.core.retrieval.scope import Scope, scope_mask

logger = get_logger("tessera.retrieval.postings")

# Okapi BM25 as FTS5 and the PostgreSQL query compute it.
K1 = 1.2
B = 0.75
HEADING_WEIGHT = 0.5
# Organizations up to this many chunks are loaded, and changes of up to this many documents
# applied, inside the search that finds them missing (tens of milliseconds); larger work runs in
# a background thread while FTS5 answers.
INLINE_CHUNKS = 5_000
INLINE_CHANGES = 64
MAX_SEGMENTS = 8
RELOAD_DEAD_FRACTION = 0.25
RETRY_SECONDS = 60.0
_READ_BATCH = 2_000

IntArray = np.ndarray[Any, np.dtype[np.int32]]
FloatArray = np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True)
class _Segment:
    """Postings of a batch of rows, grouped by term id (a CSR: `offsets[t]:offsets[t + 1]`)."""

    offsets: np.ndarray[Any, np.dtype[np.int64]]
    rows: IntArray
    tfs: FloatArray  # occurrences in the body, plus HEADING_WEIGHT per occurrence in the headings

    @property
    def size(self) -> int:
        return int(self.rows.shape[0])

    def postings(self, term: int) -> tuple[IntArray, FloatArray] | None:
        if term + 1 >= self.offsets.shape[0]:
            return None
        start, end = int(self.offsets[term]), int(self.offsets[term + 1])
        return (self.rows[start:end], self.tfs[start:end]) if end > start else None


def _segment(terms: IntArray, rows: IntArray, tfs: FloatArray, vocabulary: int) -> _Segment:
    order = np.argsort(terms, kind="stable")
    offsets = np.zeros(vocabulary + 1, np.int64)
    np.cumsum(np.bincount(terms, minlength=vocabulary), out=offsets[1:])
    return _Segment(offsets, rows[order], tfs[order])


def _merge(segments: Sequence[_Segment], vocabulary: int) -> _Segment:
    terms = np.concatenate(
        [np.repeat(np.arange(s.offsets.shape[0] - 1, dtype=np.int32), np.diff(s.offsets)) for s in segments]
    )
    return _segment(
        terms, np.concatenate([s.rows for s in segments]), np.concatenate([s.tfs for s in segments]), vocabulary
    )


@dataclass(frozen=True)
class _State:
    """One consistent view of the index; a change builds a new one (searches keep reading theirs)."""

    position: int  # the last `chunk_fts_log` entry applied
    chunk_ids: list[str]  # append-only: a state reads only its first `rows` entries
    doc_codes: IntArray
    doc_index: dict[str, int]
    doc_names: list[str]
    collection_codes: IntArray
    collection_index: dict[str, int]
    lengths: FloatArray  # words (stopwords aside) of the body and the headings
    live: np.ndarray[Any, np.dtype[np.bool_]]
    segments: tuple[_Segment, ...]
    df: IntArray  # per term id: rows holding it, removed rows included until a reload
    total_length: float
    dead: int = 0

    @property
    def rows(self) -> int:
        return int(self.lengths.shape[0])


def _empty(position: int) -> _State:
    return _State(
        position=position, chunk_ids=[], doc_codes=np.zeros(0, np.int32), doc_index={}, doc_names=[],
        collection_codes=np.zeros(0, np.int32), collection_index={}, lengths=np.zeros(0, np.float32),
        live=np.zeros(0, bool), segments=(), df=np.zeros(0, np.int32), total_length=0.0,
    )  # fmt: skip


@dataclass
class KeywordIndexStatus:
    rows: int
    live_rows: int
    terms: int
    segments: int
    position: int
    loads: int
    loading: bool
    last_load_seconds: float | None


Ranked = list[tuple[str, str, float]]
"""(chunk id, document id, score), best first."""


class KeywordIndex:
    """The in-memory keyword index of one organization in one SQLite database file."""

    def __init__(self, path: str, org: str) -> None:
        self.path = path
        self.org = org
        self.state: _State | None = None
        self.vocabulary: dict[str, int] = {}  # stem -> term id; grows only, under `lock`
        self.lock = threading.Lock()  # held by whoever changes the state (one writer at a time)
        self.job: threading.Thread | None = None
        self.retry_at = 0.0
        self.loads = 0
        self.last_load_seconds: float | None = None
        self._connection: sqlite3.Connection | None = None
        self._chunks: int | None = None
        self.compact = False  # enough rows removed that the statistics should be recomputed

    # -- the search side -------------------------------------------------------------------------

    def current(self, latest: int) -> _State | None:
        """A state that has applied every change up to `latest`, bringing it there inline when
        that is quick; None (and the work started in the background) otherwise."""
        state = self.state
        if state is not None and state.position >= latest:
            return state
        if self.job is not None or time.monotonic() < self.retry_at or not self.lock.acquire(blocking=False):
            return None
        try:
            if self._inline(state, latest):
                self._update(inline=True)
                state = self.state
                if self.compact:
                    self._start_job()
                return state if state is not None and state.position >= latest else None
        except Exception:
            logger.exception("keyword index update failed: FTS5 answers meanwhile", org=self.org)
            self.retry_at = time.monotonic() + RETRY_SECONDS
            return None
        finally:
            self.lock.release()
        self._start_job()
        return None

    def search(self, state: _State, stems: Sequence[str], scope: Scope, limit: int) -> Ranked:
        if state.rows == 0 or limit <= 0:
            return []
        terms = [
            t for t in (self.vocabulary.get(s) for s in dict.fromkeys(stems)) if t is not None and t < state.df.shape[0]
        ]
        if not terms:
            return []
        mask = scope_mask(state, scope)
        if mask is None:
            return []
        # Removed rows still count (as in Lucene) until a reload: statistics move only a little.
        rows_counted = state.rows
        average = max(state.total_length / max(rows_counted, 1), 1.0)
        norm = K1 * (1 - B + B * state.lengths / average)  # per row
        found_rows: list[IntArray] = []
        found_scores: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        for term in terms:
            df = float(state.df[term])
            if df <= 0:
                continue
            idf = math.log(1 + (rows_counted - df + 0.5) / (df + 0.5))
            for segment in state.segments:
                postings = segment.postings(term)
                if postings is None:
                    continue
                rows, tfs = postings
                found_rows.append(rows)
                found_scores.append(idf * tfs * (K1 + 1) / (tfs + norm[rows]))
        if not found_rows:
            return []
        scores = np.bincount(np.concatenate(found_rows), weights=np.concatenate(found_scores), minlength=state.rows)
        candidates = np.flatnonzero((scores > 0) & mask & state.live)
        if candidates.shape[0] == 0:
            return []
        count = min(limit, candidates.shape[0])
        best = candidates[np.argpartition(-scores[candidates], count - 1)[:count]]
        # Best first; equal scores in row order, so results do not depend on the partition.
        best = best[np.lexsort((best, -scores[best]))]
        return [(state.chunk_ids[row], state.doc_names[state.doc_codes[row]], float(scores[row])) for row in best]

    def status(self) -> KeywordIndexStatus:
        state = self.state
        return KeywordIndexStatus(
            rows=state.rows if state else 0,
            live_rows=state.rows - state.dead if state else 0,
            terms=len(self.vocabulary),
            segments=len(state.segments) if state else 0,
            position=state.position if state else 0,
            loads=self.loads,
            loading=self.job is not None,
            last_load_seconds=self.last_load_seconds,
        )

    # -- bringing the state up to date (holding `lock`) -------------------------------------------

    def _inline(self, state: _State | None, latest: int) -> bool:
        if state is None:
            if self._chunks is None:
                self._chunks = int(
                    self._db()
                    .execute("SELECT count(*) FROM document_chunk WHERE org_id = ?", (self.org,))
                    .fetchone()[0]
                )
            return self._chunks <= INLINE_CHUNKS
        return latest - state.position <= INLINE_CHANGES

    def _start_job(self) -> None:
        with _jobs_lock:
            if self.job is not None:
                return
            self.job = threading.Thread(target=self._run, name=f"tessera-keyword-index-{self.org[:8]}", daemon=True)
            _jobs.add(self.job)
            self.job.start()

    def _run(self) -> None:
        try:
            with self.lock:
                self._update(inline=False)
        except Exception:
            logger.exception("keyword index update failed: FTS5 answers meanwhile", org=self.org)
            self.retry_at = time.monotonic() + RETRY_SECONDS
        finally:
            with _jobs_lock:
                _jobs.discard(threading.current_thread())
                self.job = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            connection.execute("PRAGMA query_only = ON")
            self._connection = connection
        return self._connection

    def _update(self, *, inline: bool) -> None:
        db = self._db()
        state = self.state
        compact, self.compact = self.compact, False
        db.execute("BEGIN")  # one snapshot for the log and the chunks it points to
        try:
            oldest, latest = db.execute("SELECT min(seq), coalesce(max(seq), 0) FROM chunk_fts_log").fetchone()
            reload = (
                state is None
                or (oldest is not None and oldest > state.position + 1)  # pruned past our position
                or state.dead > RELOAD_DEAD_FRACTION * max(state.rows, 1)
                or compact
            )
            if reload:
                self._reload(db, int(latest))
            elif state is not None and latest > state.position:
                state = self._apply(db, state, int(latest))
                if state.dead > RELOAD_DEAD_FRACTION * max(state.rows, 1):
                    if inline and state.rows > INLINE_CHUNKS:
                        self.compact = True  # searches keep the current state; a thread reloads
                    else:
                        self._reload(db, int(latest))
        finally:
            db.execute("COMMIT")

    def _reload(self, db: sqlite3.Connection, position: int) -> None:
        started = time.perf_counter()
        cursor = db.execute(
            "SELECT c.id, c.document_id, c.collection_id, c.text, c.heading_path FROM document_chunk c "
            "JOIN document d ON d.id = c.document_id WHERE d.org_id = ? AND d.status = 'ready' "
            "ORDER BY c.document_id, c.ordinal",
            (self.org,),
        )
        state = _empty(position)
        while batch := cursor.fetchmany(_READ_BATCH):
            state = self._append(state, batch, merge=False)
        state = (
            replace(state, segments=(_merge(state.segments, len(self.vocabulary)),))
            if len(state.segments) > 1
            else state
        )
        self.state = state
        self._chunks = state.rows
        self.loads += 1
        self.last_load_seconds = round(time.perf_counter() - started, 3)
        logger.info(
            "keyword index loaded", org=self.org, rows=state.rows, terms=len(self.vocabulary),
            postings=sum(s.size for s in state.segments), seconds=self.last_load_seconds,
        )  # fmt: skip

    def _apply(self, db: sqlite3.Connection, state: _State, position: int) -> _State:
        """The changes after `state.position`: each changed document's rows are removed, then the
        documents whose last change is an addition are read again."""
        last: dict[str, str] = {}
        for document, op in db.execute(
            "SELECT document_id, op FROM chunk_fts_log WHERE seq > ? AND seq <= ? ORDER BY seq",
            (state.position, position),
        ):
            last[document] = op
        removed = [state.doc_index[d] for d in last if d in state.doc_index]
        if removed:
            gone = np.isin(state.doc_codes, np.asarray(removed, np.int32)) & state.live
            if gone.any():
                live = state.live & ~gone
                state = replace(state, live=live, dead=state.dead + int(np.count_nonzero(gone)))
        added = [d for d, op in last.items() if op == "add"]
        for start in range(0, len(added), 500):
            part = added[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = db.execute(
                "SELECT c.id, c.document_id, c.collection_id, c.text, c.heading_path FROM document_chunk c "
                f"JOIN document d ON d.id = c.document_id WHERE d.org_id = ? AND c.document_id IN ({marks}) "
                "ORDER BY c.document_id, c.ordinal",
                (self.org, *part),
            ).fetchall()
            if rows:
                state = self._append(state, rows, merge=True)
        self.state = state = replace(state, position=position)
        return state

    def _append(self, state: _State, rows: Sequence[Any], *, merge: bool) -> _State:
        vocabulary = self.vocabulary
        terms, row_numbers, tfs = array("i"), array("i"), array("f")
        lengths = np.zeros(len(rows), np.float32)
        doc_index, doc_names, collection_index = state.doc_index, state.doc_names, state.collection_index
        doc_codes, collection_codes = array("i"), array("i")
        first = state.rows
        for i, (chunk_id, document_id, collection_id, text, heading_path) in enumerate(rows):
            body = Counter(analyze(text))
            heading = Counter(analyze(" / ".join(_headings(heading_path))))
            lengths[i] = body.total() + heading.total()
            counts: dict[str, float] = dict(body)
            for stem, n in heading.items():
                counts[stem] = counts.get(stem, 0.0) + HEADING_WEIGHT * n
            for stem, tf in counts.items():
                term = vocabulary.get(stem)
                if term is None:
                    term = vocabulary[stem] = len(vocabulary)
                terms.append(term)
                tfs.append(tf)
            row_numbers.extend([first + i] * len(counts))
            code = doc_index.get(document_id)
            if code is None:
                code = doc_index[document_id] = len(doc_names)
                doc_names.append(document_id)
            doc_codes.append(code)
            collection_codes.append(collection_index.setdefault(collection_id, len(collection_index)))
            state.chunk_ids.append(chunk_id)
        size = len(vocabulary)
        term_array = np.frombuffer(terms, np.int32) if terms else np.zeros(0, np.int32)
        segment = _segment(
            term_array,
            np.frombuffer(row_numbers, np.int32) if row_numbers else np.zeros(0, np.int32),
            np.frombuffer(tfs, np.float32) if tfs else np.zeros(0, np.float32),
            size,
        )
        df = np.zeros(size, np.int32)
        df[: state.df.shape[0]] = state.df
        df += np.bincount(term_array, minlength=size).astype(np.int32)
        segments = (*state.segments, segment)
        if merge and len(segments) > MAX_SEGMENTS:
            # Merge the newer segments into one, leaving the first (largest) alone.
            segments = (segments[0], _merge(segments[1:], size))
        return replace(
            state,
            doc_codes=np.concatenate([state.doc_codes, np.frombuffer(doc_codes, np.int32)]),
            collection_codes=np.concatenate([state.collection_codes, np.frombuffer(collection_codes, np.int32)]),
            lengths=np.concatenate([state.lengths, lengths]),
            live=np.concatenate([state.live, np.ones(len(rows), bool)]),
            segments=segments,
            df=df,
            total_length=state.total_length + float(lengths.sum(dtype=np.float64)),
        )

    def close(self) -> None:
        with self.lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _headings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


_jobs: set[threading.Thread] = set()
_jobs_lock = threading.Lock()


@dataclass
class _Registry:
    indexes: dict[tuple[str, str], KeywordIndex] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_registry = _Registry()


def database_file(session: AsyncSession) -> str | None:
    """The SQLite file behind the session; None for PostgreSQL and in-memory databases."""
    bind = session.bind
    if bind is None:
        return None
    url = make_url(bind.engine.url if isinstance(bind, AsyncConnection) else bind.url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return str(Path(url.database).resolve())


def keyword_index(session: AsyncSession, org_id: uuid.UUID) -> KeywordIndex | None:
    path = database_file(session)
    if path is None:
        return None
    key = (path, org_id.hex)
    with _registry.lock:
        index = _registry.indexes.get(key)
        if index is None:
            index = _registry.indexes[key] = KeywordIndex(path, org_id.hex)
        return index


async def search_postings(
    session: AsyncSession,
    org_id: uuid.UUID,
    stems: Sequence[str],
    scope_for: Callable[[], Awaitable[Scope]],
    limit: int,
) -> Ranked | None:
    """The in-memory search, or None when the index cannot answer yet (the caller uses FTS5).

    `scope_for` reads the caller's scope, only when the index answers."""
    index = keyword_index(session, org_id)
    if index is None:
        return None
    latest = int(await session.scalar(sa.text("SELECT coalesce(max(seq), 0) FROM chunk_fts_log")) or 0)
    state = index.current(latest)
    if state is None:
        return None
    scope = await scope_for()
    return index.search(state, stems, scope, limit)


def keyword_index_status(session: AsyncSession, org_id: uuid.UUID) -> KeywordIndexStatus | None:
    path = database_file(session)
    with _registry.lock:
        index = _registry.indexes.get((path or "", org_id.hex))
    return None if index is None else index.status()


def forget_keyword_indexes() -> None:
    """Drop every in-memory keyword index of this process (what a restart does)."""
    with _registry.lock:
        indexes = list(_registry.indexes.values())
        _registry.indexes.clear()
    for index in indexes:
        index.close()


def wait_for_keyword_indexes(timeout: float | None = None) -> bool:
    """Wait until background loads are done (tests, benchmarks); False on timeout."""
    return wait_for_jobs(_jobs, _jobs_lock, timeout)
