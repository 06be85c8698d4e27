"""SQLite keyword search: FTS5's bm25() against the in-memory BM25 index (Porter and Snowball
English stems), keyword and hybrid nDCG@10 over one ingest of a BEIR dataset, side by side.

The data dir is kept (`--work DIR`, default under the system temp dir), so a second run skips the
ingest. Other corpora: `bench/beir_from_shared.py` writes SQuAD and banking77 as BEIR folders.

    .venv/bin/python bench/keyword_index.py --dataset ../shared/data/beir-scifact
    .venv/bin/python bench/keyword_index.py --dataset /tmp/beir/banking77
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessera.core.db.session import create_engine, create_sessionmaker  # noqa: E402
from tessera.core.documents.runtime import PipelineContext  # noqa: E402
from tessera.core.retrieval import analysis, postings  # noqa: E402
from tessera.core.retrieval import evaluation as ev  # noqa: E402
from tessera.core.retrieval.runtime import get_embedder  # noqa: E402
from tessera.settings import Settings  # noqa: E402

VARIANTS: list[tuple[str, str, str]] = [  # label, retrieval.keyword_index, stemmer
    ("fts5", "fts5", "porter"),
    ("memory porter", "memory", "porter"),
    ("memory english", "memory", "english"),
]


def _use(settings: Settings, index: str, stemmer: str) -> None:
    settings.retrieval.keyword_index = index  # type: ignore[assignment]
    analysis.STEMMER = stemmer
    analysis._stems.clear()
    analysis._local.__dict__.clear()
    postings.forget_keyword_indexes()


async def run(dataset: Path, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    state = work / "library.pickle"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work / "data",
        database_url=f"sqlite+aiosqlite:///{work / 'tessera.db'}",
        log_level="WARNING",
        jobs={"enabled": False},
    )
    data = ev.load_beir(dataset, "test")
    PipelineContext.configure(settings, pooled=True)
    engine = create_engine(settings)
    results: dict[str, Any] = {"dataset": dataset.name}
    try:
        if not state.exists():
            from tessera.cli import run_migrations

            await asyncio.to_thread(run_migrations, settings)
            built = await ev._ingest(settings, create_sessionmaker(engine), data, None)
            state.write_bytes(pickle.dumps((built.principal, built.collection_id, built.names, built.chunks)))
        principal, collection_id, names, chunks = pickle.loads(state.read_bytes())
        library = ev._Library(create_sessionmaker(engine), principal, collection_id, names, 0, 0, chunks, 0.0)
        results["chunks"] = chunks
        embedder = get_embedder(settings.embeddings)
        for label, index, stemmer in VARIANTS:
            _use(settings, index, stemmer)
            for mode in ("keyword", "hybrid"):
                rankings, latencies = await ev._run_queries(
                    library, data, list(data.queries), mode=mode,  # type: ignore[arg-type]
                    embedder=None if mode == "keyword" else embedder, fusion="dbsf", semantic_weight=0.5,
                    progress=None,
                )  # fmt: skip
                scores = ev.score_rankings(rankings, data.qrels)
                results[f"{label} {mode}"] = {
                    "ndcg@10": round(scores["ndcg@10"], 4),
                    "recall@100": round(scores["recall@100"], 4),
                    "p50_ms": round(ev.percentile(latencies, 50), 1),
                }
                print(f"{label:16} {mode:8} {json.dumps(results[f'{label} {mode}'])}", file=sys.stderr, flush=True)
    finally:
        _use(settings, "memory", "porter")
        await PipelineContext.dispose_current_loop()
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=None, help="kept data dir (default: per dataset, in temp)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "tessera-bench-cache" / f"keyword-index-{args.dataset.name}"
    print(json.dumps(asyncio.run(run(args.dataset, work))))


if __name__ == "__main__":
    main()
