"""Choose hybrid search's default by measurement: one ingest of a BEIR dataset, then keyword,
semantic and hybrid with several fusion settings, side by side.

    .venv/bin/python bench/fusion.py --dataset ../shared/data/beir-scifact [--backend sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessera.core.db.session import create_engine, create_sessionmaker  # noqa: E402
from tessera.core.documents.runtime import PipelineContext  # noqa: E402
from tessera.core.retrieval import evaluation as ev  # noqa: E402
from tessera.core.retrieval.runtime import get_embedder  # noqa: E402
from tessera.settings import Settings  # noqa: E402

CONFIGS: list[tuple[str, float]] = [
    ("weighted", 0.3),
    ("weighted", 0.4),
    ("weighted", 0.5),
    ("weighted", 0.6),
    ("weighted", 0.7),
    ("dbsf", 0.4),
    ("dbsf", 0.5),
    ("dbsf", 0.6),
    ("rrf", 0.5),
]


async def run(dataset: Path, backend: str, split: str) -> dict[str, Any]:
    data = ev.load_beir(dataset, split)
    queries = list(data.queries)
    root = Path(tempfile.mkdtemp(prefix="tessera-fusion-"))
    results: dict[str, Any] = {}
    try:
        async with ev._database(backend, root) as url:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=root / "data",
                database_url=url,
                log_level="WARNING",
                jobs={"enabled": False},
            )
            from tessera.cli import run_migrations

            await asyncio.to_thread(run_migrations, settings)
            PipelineContext.configure(settings, pooled=True)
            engine = create_engine(settings)
            try:
                started = time.perf_counter()
                library = await ev._ingest(settings, create_sessionmaker(engine), data, None)
                results["ingest_seconds"] = round(time.perf_counter() - started, 1)
                results["chunks"] = library.chunks
                embedder = get_embedder(settings.embeddings)
                runs: list[tuple[str, str, float]] = [("keyword", "weighted", 0.5), ("semantic", "weighted", 0.5)]
                runs += [("hybrid", fusion, weight) for fusion, weight in CONFIGS]
                for mode, fusion, weight in runs:
                    rankings, latencies = await ev._run_queries(
                        library, data, queries, mode=mode,  # type: ignore[arg-type]
                        embedder=None if mode == "keyword" else embedder,
                        fusion=fusion, semantic_weight=weight, progress=None,  # type: ignore[arg-type]
                    )  # fmt: skip
                    scores = ev.score_rankings(rankings, data.qrels)
                    label = mode if mode != "hybrid" else f"hybrid {fusion} {weight}"
                    results[label] = {
                        **{k: round(v, 4) for k, v in scores.items()},
                        "p50_ms": round(ev.percentile(latencies, 50), 1),
                        "p95_ms": round(ev.percentile(latencies, 95), 1),
                    }
                    print(label, json.dumps(results[label]), flush=True)
            finally:
                await PipelineContext.dispose_current_loop()
                await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    results = asyncio.run(run(args.dataset, args.backend, args.split))
    out = ROOT / "bench" / "results" / f"fusion-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
