"""Search at 100,000 chunks: the retrieval issue's latency and recall targets.

Targets: `POST /api/v1/search` hybrid over HTTP at 100k chunks in embedded mode (SQLite), p95 ≤ 50 ms
including the query embedding; pgvector HNSW recall@10 ≥ 0.95 against exact search.

Running 100k texts through the model would take about 25 minutes, so the chunks are synthesised:
the SciFact passages are embedded once with the real local embedder, then each chunk combines two
of them (half the text of each; the normalised sum of their vectors plus a little noise, and the
two passages' vectors as its two windows, so every search rescores windows), spread
over 10,000 documents in three collections. Rows are written with the product's own code (ORM rows,
then `pipeline.write_indexes`, which calls the full-text and vector indexers). The data dir is
cached (`--cache-dir`, `--rebuild` to start over; about 6 minutes to build), with its saved HNSW
index. Skipped, with a message, when the SciFact corpus is absent.

Then a real server (uvicorn, one worker, embedded job worker) on that data dir answers distinct
SciFact queries one after another over HTTP, in every mode (and semantic in one collection of
three), once with exact vector search and once with HNSW (the threshold set above or below the
chunk count), side by side; the HNSW run's semantic hits are scored against the exact run's.

`--postgres` writes the same chunks into a bundled PostgreSQL with pgvector (about 11 minutes),
compares the product's `search_vectors` at several `hnsw.ef_search` values with exact top-10 from
numpy, and times a sample of hybrid searches over HTTP (keyword search takes seconds a query there).
`--tune` compares the exact scan and the HNSW index in process at 10k, 20k, 50k and 100k rows.

    .venv/bin/python bench/search_scale.py                      # SQLite: exact vs HNSW over HTTP
    .venv/bin/python bench/search_scale.py --postgres --no-sqlite
    .venv/bin/python bench/search_scale.py --tune               # exact vs HNSW in process, by size

Output: tables on stderr, bench/results/search-scale-<timestamp>.json, and one JSON object on the
last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessera.core.embeddings.base import Vectors  # noqa: E402
from tessera.core.retrieval.runtime import get_embedder  # noqa: E402
from tessera.settings import Settings  # noqa: E402

DATASET = ROOT.parent / "shared" / "data" / "beir-scifact"
CACHE_DIR = Path(tempfile.gettempdir()) / "tessera-bench-cache" / "search-scale"


@dataclass
class Corpus:
    titles: list[str]
    texts: list[str]
    vectors: Vectors  # one per passage, as the product embeds a chunk (heading path, then text)
    queries: list[str]  # distinct query texts, in file order
    model: str


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_corpus(dataset: Path, cache: Path, settings: Settings) -> Corpus:
    """The SciFact passages and queries, the passages embedded once (cached by model)."""
    from tessera.core.retrieval.vectors import passage_text

    documents = [r for r in _read_jsonl(dataset / "corpus.jsonl") if str(r.get("text") or "").strip()]
    titles = [str(r.get("title") or "") for r in documents]
    texts = [str(r["text"]) for r in documents]
    queries = list(dict.fromkeys(str(r.get("text") or "").strip() for r in _read_jsonl(dataset / "queries.jsonl")))
    queries = [q for q in queries if q]
    embedder = get_embedder(settings.embeddings)
    digest = hashlib.sha1(f"{embedder.name}|{len(texts)}".encode()).hexdigest()[:12]
    path = cache / f"base-vectors-{digest}.npy"
    if path.exists():
        vectors = np.load(path)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        passages = [passage_text([title] if title else [], text) for title, text in zip(titles, texts, strict=True)]
        started = time.perf_counter()
        print(f"… embedding {len(passages):,} SciFact passages with {embedder.name} (once)", file=sys.stderr)
        vectors = asyncio.run(embedder.embed(passages, kind="passage"))
        print(f"  {len(passages) / (time.perf_counter() - started):.0f} passages/s", file=sys.stderr)
        np.save(path, vectors)
    return Corpus(titles, texts, vectors.astype(np.float32), queries, embedder.name)


# ---------------------------------------------------------------------------------------------
# synthetic chunks

NOISE = 0.01  # per component, before normalising: a chunk is near, not on, the mean of its two passages
CHUNKS_PER_DOCUMENT = 10
COLLECTIONS = 3


@dataclass
class Synthetic:
    headings: list[list[str]]
    texts: list[str]
    vectors: Vectors
    windows: Vectors  # (chunks, 2, dimension): the two passages' vectors
    per_document: int


def synthesize(corpus: Corpus, chunks: int, per_document: int, seed: int = 2026) -> Synthetic:
    """Each chunk: the first half of one passage and the second half of another, under the first
    one's title; its vector the normalised sum of theirs plus noise."""
    rng = np.random.default_rng(seed)
    count = len(corpus.texts)
    first = rng.integers(count, size=chunks)
    second = (first + rng.integers(1, count, size=chunks)) % count
    vectors = corpus.vectors[first] + corpus.vectors[second]
    vectors += rng.standard_normal(vectors.shape, dtype=np.float32) * NOISE
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = [text.split() for text in corpus.texts]
    texts = [
        " ".join(words[a][: len(words[a]) // 2] + words[b][len(words[b]) // 2 :])
        for a, b in zip(first.tolist(), second.tolist(), strict=True)
    ]
    headings = [[corpus.titles[a]] if corpus.titles[a] else [] for a in first.tolist()]
    windows = np.stack([corpus.vectors[first], corpus.vectors[second]], axis=1).astype(np.float32)
    return Synthetic(headings, texts, vectors.astype(np.float32), windows, per_document)


# ---------------------------------------------------------------------------------------------
# a library written with the product's code

BENCH_EMAIL = "scale@example.com"


@dataclass
class Library:
    org_id: str
    collection_ids: list[str]
    chunk_ids: list[str]  # aligned with the synthetic rows
    email: str
    password: str
    write_seconds: float


async def write_library(settings: Settings, synthetic: Synthetic, model: str) -> Library:
    """A user owning an organization with three collections, and the synthetic chunks as ready
    documents: ORM rows, then `pipeline.write_indexes` (the full-text and vector indexers)."""
    import uuid

    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.audit.service import RequestMeta
    from tessera.core.auth.models import Role
    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents import pipeline
    from tessera.core.documents import service as documents
    from tessera.core.documents.indexing import IndexTarget, indexers
    from tessera.core.documents.ingest_cli import _acting_principal
    from tessera.core.documents.models import Chunk, Document, DocumentStatus, DocumentText
    from tessera.core.documents.runtime import PipelineContext
    from tessera.core.documents.schemas import CollectionCreate
    from tessera.core.retrieval.vectors import PreparedVectors

    await asyncio.to_thread(run_migrations, settings)
    PipelineContext.configure(settings, pooled=True)
    password = "Heron-Marsh-Quiet-2026"
    user_id, org_id, _ = await create_user_with_org(
        settings, email=BENCH_EMAIL, password=password, name="Scale", org="Scale", role=Role.owner
    )
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    meta = RequestMeta(user_agent="bench/search_scale.py")
    started = time.perf_counter()
    try:
        async with unit_of_work(sessionmaker) as session:
            principal = await _acting_principal(session, str(org_id), None)
            collections = []
            for number in range(COLLECTIONS):
                body = CollectionCreate(name=f"Papers {number + 1}")
                collections.append((await documents.create_collection(session, principal, body, meta=meta)).id)
        chunk_ids: list[str] = []
        per = synthetic.per_document
        total = len(synthetic.texts)
        documents_count = (total + per - 1) // per
        batch = 200
        for first_document in range(0, documents_count, batch):
            async with unit_of_work(sessionmaker) as session:
                written: list[tuple[Document, list[Chunk], slice]] = []
                for number in range(first_document, min(first_document + batch, documents_count)):
                    rows = slice(number * per, min((number + 1) * per, total))
                    parts = synthetic.texts[rows]
                    body = "\n\n".join(parts)
                    title = (synthetic.headings[rows.start] or [f"Paper {number}"])[0][:500]
                    document = Document(
                        id=uuid.uuid4(), org_id=org_id, collection_id=collections[number % COLLECTIONS],
                        created_by=user_id, filename=f"paper-{number:06}.md", doc_type="markdown",
                        media_type="text/markdown", size_bytes=len(body.encode()),
                        sha256=hashlib.sha256(f"{number}:{body}".encode()).hexdigest(), blob_key=f"bench/{number}",
                        status=DocumentStatus.indexing, user_metadata={"year": 2000 + number % 25}, title=title,
                        language="en", chunk_count=len(parts), text_chars=len(body),
                    )  # fmt: skip
                    session.add(document)
                    chunks, offset = [], 0
                    for ordinal, text in enumerate(parts):
                        chunks.append(
                            Chunk(
                                id=uuid.uuid4(), org_id=org_id, collection_id=document.collection_id,
                                document_id=document.id, ordinal=ordinal, text=text, start_offset=offset,
                                end_offset=offset + len(text), heading_path=synthetic.headings[rows.start + ordinal],
                                token_count=len(text.split()),
                            )
                        )  # fmt: skip
                        offset += len(text) + 2
                    written.append((document, chunks, rows))
                await session.flush()  # the documents first: chunks and texts refer to them
                for document, chunks, _ in written:
                    session.add(
                        DocumentText(document_id=document.id, org_id=org_id, text="\n\n".join(c.text for c in chunks))
                    )
                    session.add_all(chunks)
                await session.flush()
                for document, chunks, rows in written:
                    prepared = {
                        "full_text": None,
                        "vectors": PreparedVectors(model, synthetic.vectors[rows], list(synthetic.windows[rows])),
                    }
                    await pipeline.write_indexes(
                        session, document, IndexTarget(document.id, org_id), chunks,
                        [prepared[indexer.name] for indexer in indexers()], embedding_seconds=0.0,
                    )  # fmt: skip
                    chunk_ids.extend(str(chunk.id) for chunk in chunks)
            done = min(first_document + batch, documents_count)
            print(f"\r… {done * per:,} / {total:,} chunks written", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        return Library(
            str(org_id), [str(c) for c in collections], chunk_ids, BENCH_EMAIL, password,
            round(time.perf_counter() - started, 1),
        )  # fmt: skip
    finally:
        await PipelineContext.dispose_current_loop()
        await engine.dispose()


async def prebuild_index(settings: Settings, library: Library, query: Vectors, model: str) -> float:
    """Build and save the SQLite HNSW index of the library through a search, as the server would."""
    import uuid

    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.runtime import PipelineContext
    from tessera.core.retrieval.filters import allowed_documents
    from tessera.core.retrieval.vectors import search_vectors, wait_for_vector_indexes

    PipelineContext.configure(settings)
    engine = create_engine(settings)
    started = time.perf_counter()
    try:
        org_id = uuid.UUID(library.org_id)
        collections = [uuid.UUID(c) for c in library.collection_ids]
        async with unit_of_work(create_sessionmaker(engine), write=False) as session:
            await search_vectors(
                session, org_id=org_id, model=model, query=query, limit=10, collections=collections,
                allowed_documents=allowed_documents(org_id, collections, None),
            )  # fmt: skip
        await asyncio.to_thread(wait_for_vector_indexes)
    finally:
        await PipelineContext.dispose_current_loop()
        await engine.dispose()
    return round(time.perf_counter() - started, 1)


# ---------------------------------------------------------------------------------------------
# the data dir (cached)


def sqlite_data_dir(args: argparse.Namespace, corpus: Corpus) -> tuple[Path, Library, dict[str, Any]]:
    """The cached SQLite data dir with the synthetic library and its saved HNSW index."""
    import shutil

    digest = hashlib.sha1(f"{corpus.model}|{args.chunks}|{args.per_document}|{NOISE}".encode()).hexdigest()[:10]
    root = args.cache_dir / f"sqlite-{args.chunks}-{digest}"
    meta_path = root / "library.json"
    if args.rebuild and root.exists():
        shutil.rmtree(root)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        from tessera.cli import run_migrations

        # A data dir cached by an older checkout: bring its schema up to date, as `tessera serve` does.
        run_migrations(bench_settings(root / "data", None, threshold=args.threshold))
        return root / "data", Library(**meta["library"]), meta
    if root.exists():
        shutil.rmtree(root)  # an interrupted build
    root.mkdir(parents=True)
    synthetic = synthesize(corpus, args.chunks, args.per_document)
    settings = bench_settings(root / "data", None, threshold=args.threshold)
    print(f"… writing {args.chunks:,} chunks into {root / 'data'}", file=sys.stderr)
    library = asyncio.run(write_library(settings, synthetic, corpus.model))
    print(f"  {library.write_seconds} s; building the HNSW index …", file=sys.stderr)
    build = asyncio.run(prebuild_index(settings, library, corpus.vectors[0], corpus.model))
    print(f"  HNSW index built and saved in {build} s", file=sys.stderr)
    meta = {"library": library.__dict__, "hnsw_build_seconds": build, "threshold_at_build": args.threshold}
    meta_path.write_text(json.dumps(meta))
    return root / "data", library, meta


def bench_settings(data_dir: Path, database_url: str | None, *, threshold: int) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "log_level": "WARNING",
        "jobs": {"enabled": False},
        "retrieval": {"hnsw_threshold": threshold},
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------------
# over HTTP


@dataclass
class Run:
    latencies_ms: list[float]
    server_ms: list[float]
    hits: list[list[str]]  # chunk ids, per query


def summary(values: list[float]) -> dict[str, float]:
    ordered = np.asarray(values, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(ordered, 50)), 2),
        "p95_ms": round(float(np.percentile(ordered, 95)), 2),
        "p99_ms": round(float(np.percentile(ordered, 99)), 2),
        "mean_ms": round(float(ordered.mean()), 2),
        "n": len(values),
    }


def wait_for_log(log: Path, event: str, timeout: float) -> dict[str, Any]:
    """The first JSON log line of `event` (the server logs JSON to the file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if event in line:
                try:
                    record: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == event:
                    return record
        time.sleep(0.5)
    raise RuntimeError(f"no {event!r} in {log} after {timeout:.0f} s")


def serve_and_search(
    label: str,
    env: dict[str, str],
    library: Library,
    plan: dict[str, list[str]],
    *,
    warmup: list[str],
    wait_index: bool,
    logs: Path,
) -> dict[str, Run | Any]:
    """Start one uvicorn worker, sign in, warm up, then each mode's queries one after another."""
    import httpx

    from bench.auth_me import free_port, post_json, rss_mib, start_server, stop, wait_until_up

    port = free_port()
    log = logs / f"{label}.log"
    server = start_server("tessera.main:create_app", port, env, factory=True, log=log)
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Run | Any] = {}
    try:
        wait_until_up(f"{base}/health", timeout=120)
        token = post_json(f"{base}/api/v1/auth/login", {"email": library.email, "password": library.password})
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:

            def search(query: str, mode: str, collections: list[str] | None = None) -> tuple[float, dict[str, Any]]:
                body: dict[str, Any] = {"query": query, "mode": mode, "limit": 10}
                if collections:
                    body["collections"] = collections
                started = time.perf_counter()
                response = client.post("/api/v1/search", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                return elapsed, response.json()

            search("warm up", "semantic")  # loads the matrix (and starts loading the index)
            if label.startswith("sqlite"):
                # The in-memory keyword index of a large organization loads in the background
                # (FTS5 answers meanwhile): measure the index every later search uses.
                started = time.monotonic()
                search("warm up", "keyword")
                record = wait_for_log(log, "keyword index loaded", timeout=600)
                results["keyword_index_ready"] = {**record, "waited_seconds": round(time.monotonic() - started, 1)}
            if wait_index:
                started = time.monotonic()
                record = wait_for_log(log, "vector index ready", timeout=1_800)
                results["index_ready"] = {**record, "waited_seconds": round(time.monotonic() - started, 1)}
                # A long wait can outlast the access token.
                token = post_json(f"{base}/api/v1/auth/login", {"email": library.email, "password": library.password})
                client.headers["Authorization"] = f"Bearer {token['access_token']}"
            for query in warmup:
                for mode in ("keyword", "semantic", "hybrid"):
                    search(query, mode)
            for name, queries in plan.items():
                mode, _, scope = name.partition(":")
                collections = library.collection_ids[:1] if scope else None
                run = Run([], [], [])
                for query in queries:
                    elapsed, body = search(query, mode, collections)
                    run.latencies_ms.append(elapsed)
                    run.server_ms.append(float(body["took_ms"]))
                    run.hits.append([hit["chunk_id"] for hit in body["hits"]])
                results[name] = run
        results["rss_mib"] = round(rss_mib(server.pid), 1)
    finally:
        stop(server)
    return results


def overlap_at_10(found: list[list[str]], exact: list[list[str]]) -> dict[str, float]:
    """recall@10 of `found` against `exact` (the share of the exact top 10 found), mean and min."""
    recalls = [len(set(f[:10]) & set(e[:10])) / len(e[:10]) for f, e in zip(found, exact, strict=True) if e]
    return {"mean": round(float(np.mean(recalls)), 4), "min": round(float(np.min(recalls)), 4), "n": len(recalls)}


# ---------------------------------------------------------------------------------------------
# PostgreSQL with pgvector


def exact_top(vectors: Vectors, queries: Vectors, k: int) -> np.ndarray[Any, Any]:
    scores = queries @ vectors.T
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1)
    return np.take_along_axis(best, order, axis=1)


async def pgvector_recall(
    settings: Settings, library: Library, synthetic: Synthetic, queries: Vectors, model: str, ef_values: list[int]
) -> dict[str, Any]:
    """The product's `search_vectors` (pgvector HNSW with iterative scan) against exact top-10 from
    numpy, with the configured ef_search and the others asked for."""
    import uuid

    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.runtime import PipelineContext
    from tessera.core.retrieval.filters import allowed_documents
    from tessera.core.retrieval.vectors import search_vectors

    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    org_id = uuid.UUID(library.org_id)
    collections = [uuid.UUID(c) for c in library.collection_ids]
    exact = exact_top(synthetic.vectors, queries, 10)
    results: dict[str, Any] = {}
    try:
        for ef in ef_values:
            retrieval = settings.retrieval.model_copy(update={"hnsw_ef_search": ef})
            PipelineContext.configure(settings.model_copy(update={"retrieval": retrieval}))
            recalls, latencies = [], []
            for number, query in enumerate(queries):
                async with unit_of_work(sessionmaker, write=False) as session:
                    started = time.perf_counter()
                    # The index's recall: the averaged vectors alone, as the exact top-10 is computed.
                    hits = await search_vectors(
                        session, org_id=org_id, model=model, query=query, limit=10, collections=collections,
                        allowed_documents=allowed_documents(org_id, collections, None), window_weight=0,
                    )  # fmt: skip
                    latencies.append((time.perf_counter() - started) * 1000)
                expected = {library.chunk_ids[i] for i in exact[number]}
                recalls.append(len(expected & {str(hit.chunk_id) for hit in hits}) / 10)
            results[f"ef_search {ef}"] = {
                "recall_at_10": {
                    "mean": round(float(np.mean(recalls)), 4),
                    "min": round(float(np.min(recalls)), 4),
                    "below_0.8": int(sum(r < 0.8 for r in recalls)),
                },
                "search_vectors": summary(latencies[5:]),
                "queries": len(recalls),
            }
            print(f"  pgvector ef_search {ef}: {json.dumps(results[f'ef_search {ef}'])}", file=sys.stderr, flush=True)
    finally:
        PipelineContext.configure(settings)
        await engine.dispose()
    return results


def run_postgres(
    args: argparse.Namespace,
    corpus: Corpus,
    synthetic: Synthetic,
    query_vectors: Vectors,
    plan: dict[str, list[str]],
    warmup: list[str],
    logs: Path,
) -> dict[str, Any]:
    import shutil

    from bench.auth_me import tessera_env
    from tessera.core.retrieval.evaluation import _start_bundled_postgres

    work = Path(tempfile.mkdtemp(prefix="tessera-scale-pg-"))
    server = _start_bundled_postgres(work / "pgdata")
    try:
        server.psql("CREATE DATABASE scale;")
        server.psql("\\c scale\nCREATE EXTENSION IF NOT EXISTS vector;")
        url = str(server.get_uri(database="scale", driver="asyncpg"))
        settings = bench_settings(work / "data", url, threshold=args.threshold)
        print(f"… writing {args.chunks:,} chunks into PostgreSQL", file=sys.stderr)
        library = asyncio.run(write_library(settings, synthetic, corpus.model))
        print(f"  {library.write_seconds} s", file=sys.stderr)
        result: dict[str, Any] = {"write_seconds": library.write_seconds}
        ef_values = sorted({40, settings.retrieval.hnsw_ef_search, *args.postgres_ef})
        recall = asyncio.run(pgvector_recall(settings, library, synthetic, query_vectors, corpus.model, ef_values))
        result["pgvector"] = recall
        result["configured_ef_search"] = settings.retrieval.hnsw_ef_search
        env = tessera_env(work / "data", url, TESSERA_JOBS__ENABLED="false", TESSERA_EMBEDDINGS__PROVIDER="local")
        # Keyword search on PostgreSQL takes seconds a query at this scale: a sample is enough.
        sample = {"hybrid": plan["hybrid"][: args.postgres_http_queries]}
        http = serve_and_search("postgresql", env, library, sample, warmup=warmup[:3], wait_index=False, logs=logs)
        result["hybrid"] = summary(http["hybrid"].latencies_ms)
        result["hybrid_server_took"] = summary(http["hybrid"].server_ms)
        result["rss_mib"] = http["rss_mib"]
        return result
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# --tune: exact vs HNSW in process, by size (the product's own search path, without HTTP)


def tune(synthetic: Synthetic, queries: Vectors, sizes: list[int], efs: list[int], connectivity: int) -> dict[str, Any]:
    from tessera.core.retrieval import vectors as v
    from tessera.core.retrieval.scope import Scope

    results: dict[str, Any] = {}
    for size in sizes:
        rows = np.arange(size)
        documents = rows // synthetic.per_document
        names = [f"{d:032x}" for d in range(int(documents[-1]) + 1)]
        matrix = v._Matrix(
            vectors=np.ascontiguousarray(synthetic.vectors[:size]), ann=v._Ann(f"tune{size}", "tune", queries.shape[1]),
            rowids=rows + 1, chunk_ids=[f"{i:032x}" for i in rows], doc_codes=documents.astype(np.int32),
            doc_index={name: i for i, name in enumerate(names)}, doc_names=names,
            collection_codes=(documents % COLLECTIONS).astype(np.int32),
            collection_index={f"c{i}": i for i in range(COLLECTIONS)}, deletes=0, generation=1,
        )  # fmt: skip
        every = Scope(collections=[f"c{i}" for i in range(COLLECTIONS)])
        one = Scope(collections=["c0"])
        exact_options = v._IndexOptions(threshold=10**9, connectivity=connectivity, ef_search=64, directory=None)
        entry: dict[str, Any] = {}

        def timed(
            options: v._IndexOptions, scope: Scope, limit: int, matrix: v._Matrix = matrix
        ) -> tuple[list[list[str]], dict[str, float]]:
            found, times = [], []
            for query in queries:
                started = time.perf_counter()
                ranked = v._search_matrix(matrix, query, scope, limit, options)
                times.append((time.perf_counter() - started) * 1000)
                found.append([chunk for chunk, _, _ in ranked])
            return found, summary(times)

        exact = {}
        for label, scope in (("all", every), ("one", one)):
            for limit in (10, 100):
                exact[(label, limit)], entry[f"exact {label} k{limit}"] = timed(exact_options, scope, limit)
        hnsw_options = v._IndexOptions(threshold=0, connectivity=connectivity, ef_search=efs[0], directory=None)
        started = time.perf_counter()
        matrix.ann.schedule(matrix, hnsw_options)
        v.wait_for_vector_indexes()
        entry["build_seconds"] = round(time.perf_counter() - started, 1)
        assert matrix.ann.index is not None
        for ef in efs:
            matrix.ann.index.expansion_search = ef
            for label, scope in (("all", every), ("one", one)):
                for limit in (10, 100):
                    found, entry[f"hnsw ef{ef} {label} k{limit}"] = timed(hnsw_options, scope, limit)
                    entry[f"hnsw ef{ef} {label} k{limit}"]["recall"] = overlap_at_k(found, exact[(label, limit)])
        results[str(size)] = entry
        print(f"… tuned {size:,}: {json.dumps(entry)}", file=sys.stderr, flush=True)
    return results


def overlap_at_k(found: list[list[str]], exact: list[list[str]]) -> float:
    return round(float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True) if e])), 4)


def query_vectors(corpus: Corpus, texts: list[str], cache: Path, settings: Settings) -> Vectors:
    embedder = get_embedder(settings.embeddings)
    digest = hashlib.sha1(("\n".join(texts) + embedder.name).encode()).hexdigest()[:12]
    path = cache / f"query-vectors-{digest}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float32)
    vectors = asyncio.run(embedder.embed(texts, kind="query"))
    np.save(path, vectors)
    return vectors


# ---------------------------------------------------------------------------------------------
# main


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def print_table(title: str, rows: list[tuple[str, dict[str, Any]]], extra: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("run", "p50 ms", "p95 ms", "p99 ms", "mean ms", "n", extra or ""):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, values in rows:
        table.add_row(
            name, *(f"{values[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms")), str(values["n"]),
            str(values.get("extra", "")),
        )  # fmt: skip
    Console(stderr=True).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--per-document", type=int, default=CHUNKS_PER_DOCUMENT)
    parser.add_argument("--queries", type=int, default=300, help="distinct queries per mode")
    parser.add_argument("--warmup", type=int, default=20, help="queries per mode before measuring")
    parser.add_argument(
        "--threshold", type=int, default=None, help="HNSW threshold of the HNSW run (default: the setting's default)"
    )
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached data dir")
    parser.add_argument("--prepare-only", action="store_true", help="build the cached data dir, measure nothing")
    parser.add_argument("--postgres", action="store_true", help="also PostgreSQL + pgvector")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite servers")
    parser.add_argument("--postgres-http-queries", type=int, default=60, help="hybrid queries over HTTP on PostgreSQL")
    parser.add_argument(
        "--postgres-ef", type=lambda v: [int(x) for x in v.split(",")], default=[64, 256], help="more ef_search to try"
    )
    parser.add_argument("--tune", action="store_true", help="exact vs HNSW in process, by size; no server")
    parser.add_argument("--tune-sizes", default="10000,20000,50000,100000")
    parser.add_argument("--tune-ef", default="32,64,128")
    parser.add_argument("--tune-connectivity", type=int, default=None)
    args = parser.parse_args()
    defaults = Settings(_env_file=None).retrieval  # type: ignore[call-arg]
    args.threshold = defaults.hnsw_threshold if args.threshold is None else args.threshold
    if not (args.dataset / "corpus.jsonl").is_file():
        print(f"skipped: no SciFact corpus at {args.dataset} (BEIR layout: corpus.jsonl, queries.jsonl)")
        print(json.dumps({"skipped": f"no dataset at {args.dataset}"}))
        return
    from bench.auth_me import machine, tessera_env

    settings = Settings(_env_file=None, log_level="WARNING")  # type: ignore[call-arg]
    corpus = load_corpus(args.dataset, args.cache_dir, settings)
    texts = corpus.queries
    needed = args.warmup + 3 * args.queries + 50
    if len(texts) < needed:
        sys.exit(f"{len(texts)} distinct queries; --queries {args.queries} and --warmup {args.warmup} need {needed}")
    # Distinct texts per mode: the embedding cache never answers a measured query.
    warmup, rest = texts[: args.warmup], texts[args.warmup :]
    plan = {
        "hybrid": rest[: args.queries],
        "semantic": rest[args.queries : 2 * args.queries],
        "keyword": rest[2 * args.queries : 3 * args.queries],
        "semantic:one-collection": rest[3 * args.queries : 4 * args.queries],
    }
    report: dict[str, Any] = {
        "machine": machine(),
        "load_average_start": load_average(),
        "chunks": args.chunks,
        "documents": (args.chunks + args.per_document - 1) // args.per_document,
        "collections": COLLECTIONS,
        "model": corpus.model,
        "base_passages": len(corpus.texts),
        "queries_per_mode": args.queries,
    }
    if args.tune:
        synthetic = synthesize(corpus, max(int(s) for s in args.tune_sizes.split(",")), args.per_document)
        vectors = query_vectors(corpus, plan["semantic"], args.cache_dir, settings)
        report["tune"] = tune(
            synthetic, vectors, [int(s) for s in args.tune_sizes.split(",")], [int(e) for e in args.tune_ef.split(",")],
            args.tune_connectivity or defaults.hnsw_connectivity,
        )  # fmt: skip
        rows = []
        for size, entry in report["tune"].items():
            for name, values in entry.items():
                if isinstance(values, dict):
                    rows.append((f"{int(size):>7,} {name}", {**values, "extra": values.get("recall", "")}))
        print_table("Vector search in process: exact vs HNSW", rows, extra="recall vs exact")
    logs = Path(tempfile.mkdtemp(prefix="tessera-scale-logs-")) if args.postgres or not args.tune else None
    if logs is not None and not args.tune and not args.no_sqlite:
        if args.threshold >= args.chunks:
            sys.exit(f"--threshold {args.threshold} must be below --chunks {args.chunks} for the HNSW run")
        data_dir, library, meta = sqlite_data_dir(args, corpus)
        report["sqlite_build"] = {k: v for k, v in meta.items() if k != "library"}
        if args.prepare_only:
            print(json.dumps(report))
            return
        runs: dict[str, dict[str, Any]] = {}
        for label, threshold in (("exact", 10 * args.chunks), ("hnsw", args.threshold)):
            env = tessera_env(
                data_dir, None, TESSERA_EMBEDDINGS__PROVIDER="local", TESSERA_RETRIEVAL__HNSW_THRESHOLD=str(threshold)
            )
            print(f"… {label}: serving {data_dir} (load {load_average()})", file=sys.stderr, flush=True)
            runs[label] = serve_and_search(
                f"sqlite-{label}", env, library, plan, warmup=warmup, wait_index=label == "hnsw", logs=logs
            )
        sqlite: dict[str, Any] = {}
        table = []
        for label, results in runs.items():
            sqlite[label] = {"rss_mib": results["rss_mib"]}
            for ready in ("index_ready", "keyword_index_ready"):
                if ready in results:
                    sqlite[label][ready] = results[ready]
            for name in plan:
                run = results[name]
                sqlite[label][name] = {**summary(run.latencies_ms), "server_took": summary(run.server_ms)}
                recall = ""
                if label == "hnsw" and name.startswith("semantic"):
                    sqlite[label][name]["recall_at_10_vs_exact"] = overlap_at_10(run.hits, runs["exact"][name].hits)
                    recall = str(sqlite[label][name]["recall_at_10_vs_exact"]["mean"])
                table.append((f"{label} {name}", {**sqlite[label][name], "extra": recall}))
        report["sqlite"] = sqlite
        report["target_hybrid_p95_ms"] = 50
        report["load_average_after_sqlite"] = load_average()
        print_table(f"SQLite, {args.chunks:,} chunks, POST /api/v1/search over HTTP", table, extra="recall@10")
    if logs is not None and args.postgres:
        synthetic = synthesize(corpus, args.chunks, args.per_document)
        vectors = query_vectors(corpus, plan["semantic"], args.cache_dir, settings)
        report["postgresql"] = run_postgres(args, corpus, synthetic, vectors, plan, warmup, logs)
        report["load_average_after_postgresql"] = load_average()
        pg = report["postgresql"]
        rows = [
            (
                f"search_vectors, {name} (in process)",
                {**entry["search_vectors"], "extra": entry["recall_at_10"]["mean"]},
            )
            for name, entry in pg["pgvector"].items()
        ]
        rows.append(("hybrid over HTTP", pg["hybrid"]))
        print_table(f"PostgreSQL + pgvector, {args.chunks:,} chunks", rows, extra="recall@10")
    out = ROOT / "bench" / "results" / f"search-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out}" + (f"; server logs: {logs}" if logs else ""), file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
