"""How deep hybrid search reads each list: one ingest of a BEIR dataset, each query's keyword and
semantic lists dumped 300 deep (chunk, document, score), then fusion variants replayed offline over
the same lists, split by split (docs/BENCHMARKS.md, "Deeper lists").

    .venv/bin/python bench/fusion_depth.py --dataset ../shared/data/beir-scifact --splits train,test
    .venv/bin/python bench/fusion_depth.py --lists /tmp/lists.json     # replay a saved dump

Variants (dbsf, semantic weight 0.5 unless named): `lists 100`, the fusion of two 100-deep lists
(the product before); `pool 100 of 300`, the candidates the best 100 of each list, scaled by those,
a candidate's other score read from the 300-deep list (the product now); `scaled by 300`, the same
but scaled by all 300.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEPTH = 300
Hit = list[Any]  # [chunk id, document id, score]


async def dump(dataset: Path, splits: list[str], window_weights: tuple[float, ...] = ()) -> dict[str, Any]:
    """One ingest, each query's lists; `window_weights` adds a semantic list per weight
    (`semantic@0.5`: long chunks scored with their best window at that weight)."""
    from tessera.cli import run_migrations
    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.runtime import PipelineContext
    from tessera.core.retrieval import evaluation as ev
    from tessera.core.retrieval.filters import allowed_documents
    from tessera.core.retrieval.keyword import search_keyword
    from tessera.core.retrieval.postings import wait_for_keyword_indexes
    from tessera.core.retrieval.runtime import get_embedder
    from tessera.core.retrieval.vectors import search_vectors
    from tessera.settings import Settings

    loaded = {split: ev.load_beir(dataset, split) for split in splits}
    data = loaded[splits[0]]
    queries: dict[str, str] = {}
    for split in splits:
        queries.update({q: loaded[split].queries[q] for q in loaded[split].qrels if q in loaded[split].queries})
    root = Path(tempfile.mkdtemp(prefix="tessera-fusion-depth-"))
    try:
        async with ev._database("sqlite", root) as url:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=root / "data", database_url=url, log_level="WARNING", jobs={"enabled": False},
            )  # fmt: skip
            await asyncio.to_thread(run_migrations, settings)
            PipelineContext.configure(settings, pooled=True)
            engine = create_engine(settings)
            try:
                started = time.perf_counter()
                library = await ev._ingest(settings, create_sessionmaker(engine), data, None)
                print(f"ingested {library.chunks} chunks in {time.perf_counter() - started:.0f} s", flush=True)
                embedder = get_embedder(settings.embeddings)
                org = library.principal.org_id
                assert org is not None
                allowed = allowed_documents(org, [library.collection_id], None)
                scope = [library.collection_id]
                lists: dict[str, Any] = {
                    "names": {str(k): v for k, v in library.names.items()},
                    "qrels": {split: loaded[split].qrels for split in splits},
                    "keyword": {},
                    "semantic": {},
                }
                async with unit_of_work(library.sessionmaker, write=False) as session:
                    await search_keyword(
                        session, "warm up", org_id=org, allowed_documents=allowed, limit=1, collections=scope
                    )
                await asyncio.to_thread(wait_for_keyword_indexes, 600)
                async with unit_of_work(library.sessionmaker, write=False) as session:
                    for number, (query_id, text) in enumerate(queries.items(), start=1):
                        text = text.strip()[:2_000]
                        keyword = await search_keyword(
                            session, text, org_id=org, allowed_documents=allowed, limit=DEPTH, collections=scope
                        )
                        vector = (await embedder.embed([text], kind="query"))[0]
                        semantic = await search_vectors(
                            session, org_id=org, model=embedder.name, query=vector, allowed_documents=allowed,
                            limit=DEPTH, collections=scope,
                        )  # fmt: skip
                        lists["keyword"][query_id] = [[str(h.chunk_id), str(h.document_id), h.score] for h in keyword]
                        lists["semantic"][query_id] = [[str(h.chunk_id), str(h.document_id), h.score] for h in semantic]
                        for weight in window_weights:
                            weighted = await search_vectors(
                                session, org_id=org, model=embedder.name, query=vector, allowed_documents=allowed,
                                limit=DEPTH, collections=scope, window_weight=weight,
                            )  # fmt: skip
                            lists.setdefault(f"semantic@{weight}", {})[query_id] = [
                                [str(h.chunk_id), str(h.document_id), h.score] for h in weighted
                            ]
                        if number % 200 == 0:
                            print(f"queries {number}/{len(queries)}", flush=True)
                return lists
            finally:
                await PipelineContext.dispose_current_loop()
                await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ndcg_at_10(ranking: list[str], relevance: dict[str, int]) -> float:
    gain = sum(relevance.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranking[:10]))
    ideal = sum(g / math.log2(rank + 2) for rank, g in enumerate(sorted(relevance.values(), reverse=True)[:10]))
    return gain / ideal if ideal else 0.0


def replay(
    lists: dict[str, Any],
    split: str,
    *,
    pool: int,
    depth: int,
    scaled_by: int,
    weight: float = 0.5,
    semantic_list: str = "semantic",
) -> float:
    """nDCG@10 of dbsf fusion: candidates the best `pool` of each list, each list scaled by the
    mean ± 3 sd of its best `scaled_by`, other-list scores read down to `depth`."""
    names, scores_by_query = lists["names"], []
    for query_id, relevance in lists["qrels"][split].items():
        if query_id not in lists["keyword"]:
            continue
        keyword: list[Hit] = lists["keyword"][query_id][:depth]
        semantic: list[Hit] = lists[semantic_list][query_id][:depth]
        document = {hit[0]: hit[1] for hit in keyword + semantic}

        def scaled(hits: list[Hit]) -> dict[str, float]:
            if not hits:
                return {}
            values = [hit[2] for hit in hits[:scaled_by]]
            mean = sum(values) / len(values)
            spread = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5 or 1.0
            return {hit[0]: max((hit[2] - mean + 3 * spread) / (6 * spread), 0.0) for hit in hits}

        keyword_scaled, semantic_scaled = scaled(keyword), scaled(semantic)
        candidates = {hit[0] for hit in keyword[:pool]} | {hit[0] for hit in semantic[:pool]}
        fused = {
            c: weight * semantic_scaled.get(c, 0.0) + (1 - weight) * keyword_scaled.get(c, 0.0) for c in candidates
        }
        ranking: list[str] = []
        seen: set[str] = set()
        for chunk in sorted(fused, key=lambda c: -fused[c]):
            if document[chunk] not in seen:
                seen.add(document[chunk])
                ranking += [name for name in names.get(document[chunk], [document[chunk]]) if name != query_id]
        scores_by_query.append(ndcg_at_10(ranking, relevance))
    return sum(scores_by_query) / max(len(scores_by_query), 1)


VARIANTS = {
    "lists 100": {"pool": 100, "depth": 100, "scaled_by": 100},
    "lists 200": {"pool": 200, "depth": 200, "scaled_by": 200},
    "lists 300": {"pool": 300, "depth": 300, "scaled_by": 300},
    "pool 100 of 200": {"pool": 100, "depth": 200, "scaled_by": 100},
    "pool 100 of 300 (default)": {"pool": 100, "depth": 300, "scaled_by": 100},
    "pool 100 of 300, scaled by 300": {"pool": 100, "depth": 300, "scaled_by": 300},
}


def lists_from_arguments(description: str, name: str, window_weights: tuple[float, ...] = ()) -> dict[str, Any]:
    """`--dataset DIR [--splits a,b]` dumps (and saves to the temp dir as `<name>-<dataset>.json`);
    `--lists FILE` replays a saved dump."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--splits", default="test")
    parser.add_argument("--lists", type=Path, help="a dump to replay (written to the temp dir otherwise)")
    args = parser.parse_args()
    if args.lists is not None and args.lists.exists():
        loaded: dict[str, Any] = json.loads(args.lists.read_text())
        return loaded
    if args.dataset is None:
        parser.error("--dataset or an existing --lists is required")
    lists = asyncio.run(dump(args.dataset, args.splits.split(","), window_weights))
    out = args.lists or Path(tempfile.gettempdir()) / f"{name}-{args.dataset.name}.json"
    out.write_text(json.dumps(lists))
    print(f"lists saved to {out}")
    return lists


def main() -> None:
    lists = lists_from_arguments(__doc__ or "", "fusion-depth")
    splits = list(lists["qrels"])
    print("| variant | " + " | ".join(splits) + " |")
    print("|---|" + "---:|" * len(splits))
    for label, options in VARIANTS.items():
        cells = [f"{replay(lists, split, **options):.4f}" for split in splits]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
