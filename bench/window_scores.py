"""Long chunks scored by their best window as well as their averaged vector (`retrieval.window_weight`):
one ingest of a BEIR dataset, each query's semantic list dumped 300 deep at several window weights
(0 is the averaged vector alone), the keyword list once, then semantic and hybrid nDCG@10 replayed
per split with the product's fusion (dbsf 0.5, pool 100 of 300). docs/BENCHMARKS.md, "Long chunks".

    .venv/bin/python bench/window_scores.py --dataset ../shared/data/beir-scifact --splits train,test
    .venv/bin/python bench/window_scores.py --dataset /tmp/beir/squad-v2     # bench/beir_from_shared.py
    .venv/bin/python bench/window_scores.py --lists /tmp/window-scores-beir-scifact.json   # replay a dump
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fusion_depth import lists_from_arguments, replay

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)
DEFAULT = {"pool": 100, "depth": 300, "scaled_by": 100}
# Semantic alone: every candidate of the semantic list, keyword weight 0.
SEMANTIC_ONLY = {"pool": 300, "depth": 300, "scaled_by": 300, "weight": 1.0}


def main() -> None:
    lists = lists_from_arguments(__doc__ or "", "window-scores", WEIGHTS)
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
