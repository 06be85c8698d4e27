"""Long chunks scored by their best window as well as their averaged vector (`retrieval.window_weight`):
one ingest of a BEIR dataset, each query's semantic list dumped 300 deep at several window weights
(0 is the averaged vector alone), the keyword list once, then semantic and hybrid nDCG@10 replayed
per split with the product's fusion (dbsf 0.5, pool 100 of 300). docs/BENCHMARKS.md, "Long chunks".

    .venv/bin/python bench/window_scores.py --dataset ../shared/data/beir-scifact --splits train,test
    .venv/bin/python bench/window_scores.py --dataset /tmp/beir/squad-v2     # bench/beir_from_shared.py
    .venv/bin/python bench/window_scores.py --lists /tmp/window-scores-beir-scifact.json   # replay a dump
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_depth import dump, replay  # noqa: E402

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)
DEFAULT = {"pool": 100, "depth": 300, "scaled_by": 100}
# Semantic alone: every candidate of the semantic list, keyword weight 0.
SEMANTIC_ONLY = {"pool": 300, "depth": 300, "scaled_by": 300, "weight": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--splits", default="test")
    parser.add_argument("--lists", type=Path, help="a dump to replay (written to the temp dir otherwise)")
    args = parser.parse_args()
    if args.lists is not None and args.lists.exists():
        lists = json.loads(args.lists.read_text())
    else:
        if args.dataset is None:
            parser.error("--dataset or an existing --lists is required")
        lists = asyncio.run(dump(args.dataset, args.splits.split(","), WEIGHTS))
        out = args.lists or Path(tempfile.gettempdir()) / f"window-scores-{args.dataset.name}.json"
        out.write_text(json.dumps(lists))
        print(f"lists saved to {out}")
    splits = list(lists["qrels"])
    print("| window weight | " + " | ".join(f"semantic {s} | hybrid {s}" for s in splits) + " |")
    print("|---|" + "---:|---:|" * len(splits))
    for weight in WEIGHTS:
        key = f"semantic@{weight}"
        cells = []
        for split in splits:
            cells.append(f"{replay(lists, split, semantic_list=key, **SEMANTIC_ONLY):.4f}")  # type: ignore[arg-type]
            cells.append(f"{replay(lists, split, semantic_list=key, **DEFAULT):.4f}")
        print(f"| {weight} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
