"""Tessera beside the retrieval stacks users would pick instead, in one run, on one BEIR dataset.

    .venv/bin/python bench/peers.py --dataset ../shared/data/beir-scifact
    .venv/bin/python bench/peers.py --dataset ../shared/data/beir-scifact --peers haystack,chroma \\
        --limit-docs 600 --limit-queries 50          # a quick check on a subset

1. Tessera: the product's own evaluation (`evaluate_retrieval`, SQLite, keyword / semantic /
   hybrid over one ingest, default settings). Its embedder's `embed` is wrapped in a timing proxy
   (from this script, no product code changed), which gives the ingestion figures: chunks/s and
   the share of the ingest wall time spent inside the embedder (passage embeddings).
2. The peers (Haystack, Chroma, LlamaIndex), in their own virtualenv `.bench-venv/peers`, created
   here with uv from bench/peers-requirements.txt, so the product's dependencies stay untouched.
   bench/peers_worker.py runs them there and returns rankings; see it for what each peer builds.

Same model for everyone: all-MiniLM-L6-v2 from the int8 ONNX file Tessera ships. Tessera runs it
through its own embedder (graph rewritten to int8 products, length-bucketed batches, one call per
core); the peers share one naive loop over the same file (default onnxruntime session, batches of
32 in input order), since their sentence-transformers integrations would download the weights.
Tessera indexes chunks (a document ranks at its best chunk), the peers one entry per document
(title + "\\n" + text, cut at 256 tokens by the model). Every ranking, Tessera's included, is
scored by `tessera.core.retrieval.evaluation.score_rankings`, so the metric code is identical.

`--limit-docs N` / `--limit-queries N` write a reduced BEIR folder to a temp dir (the first N
queries of the split; every document judged for them, then corpus documents in file order up to
N) and point Tessera and the peers at it. Results: a table on stdout, the JSON object on the last
line, and the same JSON in bench/results/peers-<timestamp>.json (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tessera.core.embeddings import registry  # noqa: E402
from tessera.core.embeddings.base import Embedder, TextKind, Vectors  # noqa: E402
from tessera.core.embeddings.local import MODEL_MAX_TOKENS, locate_model_files  # noqa: E402
from tessera.core.retrieval import evaluation as ev  # noqa: E402
from tessera.core.retrieval.schemas import Mode  # noqa: E402
from tessera.settings import EmbeddingSettings  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PEER_VENV = ROOT / ".bench-venv" / "peers"
REQUIREMENTS = ROOT / "bench" / "peers-requirements.txt"
WORKER = ROOT / "bench" / "peers_worker.py"
ALL_PEERS = ("haystack", "chroma", "llamaindex")
TESSERA_MODES: tuple[Mode, ...] = ("keyword", "semantic", "hybrid")
TOP_K = ev.RANK_DEPTH
PEER_BATCH = 32


def log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# a reduced dataset


def reduce_dataset(source: Path, split: str, dest: Path, limit_docs: int | None, limit_queries: int | None) -> Path:
    """A BEIR folder under `dest` with the first `limit_queries` queries of the split, every
    document judged for them, then corpus documents in file order up to `limit_docs`."""
    data = ev.load_beir(source, split)
    kept_queries = list(data.queries)[:limit_queries] if limit_queries is not None else list(data.queries)
    judged = {d for q in kept_queries for d in data.qrels.get(q, {}) if d in data.corpus}
    keep = set(judged)
    for document_id in data.corpus:
        if limit_docs is not None and len(keep) >= limit_docs:
            break
        keep.add(document_id)
    target = dest / source.resolve().name
    (target / "qrels").mkdir(parents=True)
    query_set = set(kept_queries)
    with (source / "corpus.jsonl").open(encoding="utf-8") as src, (target / "corpus.jsonl").open("w") as out:
        for line in src:
            if line.strip() and str(json.loads(line)["_id"]) in keep:
                out.write(line if line.endswith("\n") else line + "\n")
    with (source / "queries.jsonl").open(encoding="utf-8") as src, (target / "queries.jsonl").open("w") as out:
        for line in src:
            if line.strip() and str(json.loads(line)["_id"]) in query_set:
                out.write(line if line.endswith("\n") else line + "\n")
    with (target / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for query_id in kept_queries:
            for document_id, score in data.qrels[query_id].items():
                out.write(f"{query_id}\t{document_id}\t{score}\n")
    return target


# ---------------------------------------------------------------------------------------------
# Tessera, with its embedder timed


class EmbedClock:
    """Wall time with at least one `embed` call in flight, per text kind (overlapping calls count once)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"passage": 0.0, "query": 0.0}
        self.calls: dict[str, int] = {"passage": 0, "query": 0}
        self.texts: dict[str, int] = {"passage": 0, "query": 0}
        self._active: dict[str, int] = {"passage": 0, "query": 0}
        self._since: dict[str, float] = {"passage": 0.0, "query": 0.0}

    def start(self, kind: str, texts: int) -> None:
        if self._active[kind] == 0:
            self._since[kind] = time.perf_counter()
        self._active[kind] += 1
        self.calls[kind] += 1
        self.texts[kind] += texts

    def stop(self, kind: str) -> None:
        self._active[kind] -= 1
        if self._active[kind] == 0:
            self.seconds[kind] += time.perf_counter() - self._since[kind]

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {
            kind: {"seconds": round(self.seconds[kind], 3), "calls": self.calls[kind], "texts": self.texts[kind]}
            for kind in self.seconds
        }


class TimedEmbedder:
    """The configured embedder (its LRU cache included), with every `embed` call on the clock."""

    def __init__(self, inner: Embedder, clock: EmbedClock) -> None:
        self.inner = inner
        self.clock = clock
        self.name = inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @dimension.setter
    def dimension(self, value: int) -> None:
        self.inner.dimension = value

    def __getattr__(self, name: str) -> Any:  # ensure_ready, load, ... of the wrapped embedder
        return getattr(self.inner, name)

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        self.clock.start(kind, len(texts))
        try:
            return await self.inner.embed(texts, kind=kind, contexts=contexts)
        finally:
            self.clock.stop(kind)

    async def close(self) -> None:
        await self.inner.close()


def time_the_embedder(clock: EmbedClock) -> Callable[[], None]:
    """Wrap every embedder `runtime.get_embedder` builds from now on; returns the undo."""
    original = registry.create_embedder

    def create_embedder(settings: EmbeddingSettings) -> Embedder:
        return TimedEmbedder(original(settings), clock)

    registry.create_embedder = create_embedder

    def undo() -> None:
        registry.create_embedder = original

    return undo


def run_tessera(dataset: Path, split: str, backend: str) -> dict[str, Any]:
    clock = EmbedClock()
    undo = time_the_embedder(clock)
    last_stage = [""]

    def progress(stage: str, done: int, total: int) -> None:
        if stage != last_stage[0] or done == total or done % 1000 == 0:
            last_stage[0] = stage
            log(f"tessera {stage}: {done}/{total}")

    try:
        started = time.perf_counter()
        evaluation = ev.evaluate_retrieval(
            dataset, split=split, modes=TESSERA_MODES, backend=backend, progress=progress
        )
        result = asyncio.run(evaluation)
        wall = time.perf_counter() - started
    finally:
        undo()
    passage = clock.snapshot()["passage"]  # passages are embedded by the ingest only; queries are kind "query"
    ingest_seconds = float(result["ingest_seconds"])
    ingest = {
        "documents": result["documents"],
        "documents_not_ready": result["documents_not_ready"],
        "chunks": result["chunks"],
        "ingest_seconds": ingest_seconds,
        "documents_per_second": round(result["documents"] / ingest_seconds, 2) if ingest_seconds else None,
        "chunks_per_second": round(result["chunks"] / ingest_seconds, 2) if ingest_seconds else None,
        "embed_seconds": passage["seconds"],
        "embed_share": round(passage["seconds"] / ingest_seconds, 4) if ingest_seconds else None,
        "embed_calls": passage["calls"],
        "embed_texts": passage["texts"],
        "embed_texts_per_second": round(passage["texts"] / passage["seconds"], 2) if passage["seconds"] else None,
        "note": "ingest = staging and storing the files + parse, chunk, embed, index (evaluate_retrieval's "
        "ingest_seconds); embed = wall time inside the configured embedder's `embed` for passages (its "
        "cache included, model load on first call included)",
    }
    return {
        "evaluation": result,
        "ingest": ingest,
        "wall_seconds": round(wall, 1),
        "query_embeddings": clock.snapshot()["query"],
    }


# ---------------------------------------------------------------------------------------------
# the peers, in their own venv


def find_uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.is_file() else shutil.which("uv")
    if not found:
        raise SystemExit("uv is needed to build .bench-venv/peers: put it on PATH or at .tools/bin/uv")
    return found


def peer_python(rebuild: bool) -> Path:
    """The peers' venv interpreter, (re)built when bench/peers-requirements.txt changed."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if not rebuild and python.is_file() and stamp.is_file() and stamp.read_text().strip() == wanted:
        return python
    uv = find_uv()
    log(f"building {PEER_VENV.relative_to(ROOT)} from {REQUIREMENTS.relative_to(ROOT)}")
    subprocess.run([uv, "venv", "--clear", "--python", sys.executable, str(PEER_VENV)], check=True)
    subprocess.run([uv, "pip", "install", "--python", str(python), "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted + "\n")
    return python


def run_peers(dataset: Path, query_ids: list[str], peers: Sequence[str], work: Path, rebuild: bool) -> dict[str, Any]:
    try:
        python = peer_python(rebuild)
    except (subprocess.CalledProcessError, OSError) as error:
        reason = f"the peers' venv could not be built: {error}"
        log(reason)
        return {"peers": {name: {"skipped": reason} for name in peers}}
    model, tokenizer = locate_model_files()
    request = {
        "dataset": str(dataset),
        "query_ids": query_ids,
        "peers": list(peers),
        "model": str(model),
        "tokenizer": str(tokenizer),
        "max_tokens": MODEL_MAX_TOKENS,
        "batch_size": PEER_BATCH,
        "top_k": TOP_K,
    }
    request_path, result_path = work / "peers-request.json", work / "peers-result.json"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    # The worker must not find this repo's sources or the product's venv on its path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["ANONYMIZED_TELEMETRY"] = "False"  # Chroma
    started = time.perf_counter()
    completed = subprocess.run([str(python), str(WORKER), str(request_path), str(result_path)], env=env, cwd=work)
    if completed.returncode != 0 or not result_path.is_file():
        reason = f"bench/peers_worker.py exited with {completed.returncode}"
        return {"peers": {name: {"skipped": reason} for name in peers}}
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


# ---------------------------------------------------------------------------------------------
# scoring and the report


def scored(rankings: Mapping[str, Sequence[str]], latencies: Sequence[float], qrels: Any) -> dict[str, Any]:
    trimmed = {query_id: list(ranking)[:TOP_K] for query_id, ranking in rankings.items()}
    scores = ev.score_rankings(trimmed, qrels)
    return {
        **{name: round(value, 5) for name, value in scores.items()},
        "latency_p50_ms": round(ev.percentile(latencies, 50), 2),
        "latency_p95_ms": round(ev.percentile(latencies, 95), 2),
        "queries": sum(1 for q in rankings if qrels.get(q)),
    }


def build_rows(tessera: dict[str, Any] | None, peers: dict[str, Any], data: ev.BeirDataset) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if tessera is not None:
        ingest = tessera["ingest"]
        for mode, figures in tessera["evaluation"]["modes"].items():
            label = f"{mode} ({figures['fusion']} {figures['semantic_weight']})" if mode == "hybrid" else mode
            rows.append(
                {
                    "system": "tessera",
                    "mode": label,
                    **{k: figures[k] for k in (*ev.METRICS, "latency_p50_ms", "latency_p95_ms", "queries")},
                    "ingest_seconds": ingest["ingest_seconds"],
                    "embed_seconds": ingest["embed_seconds"],
                    "indexed": f"{ingest['chunks']} chunks",
                }
            )
    embedding = peers.get("embedding", {})
    for name, peer in peers.get("peers", {}).items():
        if "skipped" in peer:
            continue
        embed_seconds = float(embedding.get("embed_seconds", 0.0))
        peer["ingest_seconds"] = round(embed_seconds + peer["index_seconds"], 3)
        peer["embed_seconds"] = embed_seconds
        peer["embed_share"] = round(embed_seconds / peer["ingest_seconds"], 4) if peer["ingest_seconds"] else None
        peer["scores"] = {}
        for mode, run in peer.pop("modes").items():
            figures = scored(run["rankings"], run["latencies_ms"], data.qrels)
            peer["scores"][mode] = figures
            rows.append(
                {
                    "system": name,
                    "mode": mode,
                    **{k: figures[k] for k in (*ev.METRICS, "latency_p50_ms", "latency_p95_ms", "queries")},
                    "ingest_seconds": peer["ingest_seconds"],
                    "embed_seconds": embed_seconds,
                    "indexed": f"{peers.get('documents', '?')} documents",
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    console = Console(width=160)
    title = f"{summary['dataset']} ({summary['split']}): {summary['queries']} queries, {summary['documents']} documents"
    table = Table(title=title)
    for column, justify in [
        ("system", "left"), ("mode", "left"), ("nDCG@10", "right"), ("R@10", "right"), ("R@100", "right"),
        ("MRR@10", "right"), ("p50 ms", "right"), ("p95 ms", "right"), ("ingest s", "right"), ("embed s", "right"),
        ("indexed", "left"),
    ]:  # fmt: skip
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row["system"], row["mode"], f"{row['ndcg@10']:.4f}", f"{row['recall@10']:.4f}", f"{row['recall@100']:.4f}",
            f"{row['mrr@10']:.4f}", f"{row['latency_p50_ms']:.1f}", f"{row['latency_p95_ms']:.1f}",
            f"{row['ingest_seconds']:.1f}", f"{row['embed_seconds']:.1f}", row["indexed"],
        )  # fmt: skip
    console.print(table)
    ingest = summary.get("tessera_ingest")
    if ingest:
        console.print(
            f"Tessera ingest with embeddings: {ingest['documents']} documents -> {ingest['chunks']} chunks in "
            f"{ingest['ingest_seconds']:.1f} s = {ingest['chunks_per_second']:.1f} chunks/s "
            f"({ingest['documents_per_second']:.1f} documents/s); embedder {ingest['embed_seconds']:.1f} s = "
            f"{ingest['embed_share']:.0%} of the ingest ({ingest['embed_texts_per_second']} texts/s inside it)"
        )
    for name, text in summary["embedding"].items():
        console.print(f"embedding, {name}: {text}")
    for name, peer in summary["peers"].items():
        if "skipped" in peer:
            console.print(f"[bold]{name} skipped[/bold]: {peer['skipped']}")
        else:
            console.print(f"{name} {peer['versions']}: {peer['notes']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", type=Path, required=True, help="a BEIR folder (corpus.jsonl, queries.jsonl, qrels/)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--backend", default="sqlite", help="Tessera's database: sqlite or postgresql")
    parser.add_argument("--peers", default=",".join(ALL_PEERS), help=f"some of {','.join(ALL_PEERS)}; '' for none")
    parser.add_argument("--no-tessera", action="store_true", help="peers only (for working on the peers)")
    parser.add_argument("--limit-docs", type=int, help="documents: those judged for the kept queries, then file order")
    parser.add_argument("--limit-queries", type=int, help="the first N queries of the split")
    parser.add_argument("--rebuild-venv", action="store_true", help="rebuild .bench-venv/peers even if up to date")
    args = parser.parse_args()
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(ALL_PEERS))
    if unknown:
        parser.error(f"unknown peers {unknown}: choose from {', '.join(ALL_PEERS)}")

    load_before = os.getloadavg()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tessera-peers-"))
    try:
        dataset = args.dataset.resolve()  # the peer worker runs from another directory
        if args.limit_docs is not None or args.limit_queries is not None:
            dataset = reduce_dataset(args.dataset, args.split, work / "data", args.limit_docs, args.limit_queries)
        data = ev.load_beir(dataset, args.split)
        query_ids = list(data.queries)
        log(f"{data.name}: {len(data.corpus)} documents, {len(query_ids)} queries ({dataset})")

        tessera = None if args.no_tessera else run_tessera(dataset, args.split, args.backend)
        peer_result = run_peers(dataset, query_ids, peers, work, args.rebuild_venv) if peers else {"peers": {}}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = build_rows(tessera, peer_result, data)
    embedding: dict[str, str] = {}
    if tessera is not None:
        embedding["tessera"] = (
            f"{tessera['evaluation']['modes']['semantic']['embedding_model']}: Tessera's `local` embedder as "
            "configured by default (int8 graph rewrite where the CPU has VNNI, length-bucketed batches, one call "
            "per core, LRU cache)"
        )
    if "embedding" in peer_result:
        embedding["peers"] = peer_result["embedding"]["function"]
    summary: dict[str, Any] = {
        "dataset": data.name,
        "split": args.split,
        "documents": len(data.corpus),
        "queries": len(query_ids),
        "limit_docs": args.limit_docs,
        "limit_queries": args.limit_queries,
        "backend": args.backend,
        "rows": rows,
        "tessera_ingest": tessera["ingest"] if tessera else None,
        "tessera_query_embeddings": tessera["query_embeddings"] if tessera else None,
        "embedding": embedding,
        "peers": peer_result.get("peers", {}),
        "peer_embedding": peer_result.get("embedding"),
        "peer_versions": peer_result.get("versions"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": {
            "tessera": tessera["wall_seconds"] if tessera else None,
            "peers": peer_result.get("wall_seconds"),
            "total": round(time.perf_counter() - started, 1),
        },
        "notes": [
            "Every ranking is scored by tessera.core.retrieval.evaluation.score_rankings (identical metric code).",
            "Latency: one search call returning 100 documents (query embedding included), after one untimed warm-up.",
            "Tessera's embedder caches vectors: its hybrid run reuses the query vectors of its semantic run.",
            "Peers' ingest = the shared corpus embedding (measured once) + that peer's own index build.",
        ],
    }
    print_table(rows, summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"peers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary["result_file"] = str(out.relative_to(ROOT))
    out.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
