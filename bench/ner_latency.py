"""Entity extraction latency in process: p50/p95 of `extract` and `clinical_context` on a 300-word
hearing-care visit note, with the `spacy` extractor (bundled English model + clinical rules), and
the parts apart (clinical rules alone, spaCy NER alone). Also through the in-process AI client (the
path the `/ai/ner/*` routes take: a worker thread of its pool), one call at a time and two at once.

    .venv/bin/python bench/ner_latency.py [--runs 200]

Prints a table, then one JSON object last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.auth_me import machine  # noqa: E402
from tessera.core.ai.client import InProcessAIClient  # noqa: E402
from tessera.core.entities.clinical import ClinicalRules  # noqa: E402
from tessera.core.entities.registry import load_entity_extractor  # noqa: E402
from tessera.core.entities.spacy_extractor import SpacyEntityExtractor  # noqa: E402
from tessera.settings import EntitySettings, Settings  # noqa: E402

NOTE = (
    "Patient is a 72-year-old retired machinist seen today by Dr. Maria Lopez at Riverside Hearing Center for a "
    "hearing aid evaluation. He reports gradual decline in hearing over five years, worse in the right ear, with "
    "difficulty understanding speech in restaurants and on the telephone. He complains of constant high-pitched "
    "ringing in both ears, worse at night. Denies vertigo, otalgia, otorrhea or aural fullness. History of noise "
    "exposure in the military and at work without hearing protection. Past medical history significant for "
    "hypertension, type 2 diabetes and hyperlipidemia. Medications: lisinopril 20 mg daily, metformin 500 mg twice "
    "daily, atorvastatin 40 mg at bedtime, and aspirin 81 mg daily. Allergic to penicillin. Family history: father "
    "and brother had hearing loss; mother had Meniere's disease. Otoscopy: ear canals clear bilaterally, tympanic "
    "membranes intact. Tympanometry: Type A bilaterally with compliance 0.6 ml right and 0.5 ml left. Audiogram: "
    "right ear thresholds of 25, 35, 50, 65 and 70 dB HL at 500, 1000, 2000, 4000 and 8000 Hz; left ear 20, 30, 45, "
    "60 and 65 dB HL at the same frequencies. Word recognition 76% right and 84% left at 75 dB HL. SRT 35 dB right, "
    "30 dB left. Impression: bilateral mild sloping to severe sensorineural hearing loss, slightly asymmetric, "
    "consistent with noise-induced and age-related hearing loss. Plan: recommend bilateral receiver-in-canal hearing "
    "aids with a tinnitus program; earmold impressions taken today. Counseled on communication strategies and "
    "realistic expectations. Return if sudden hearing loss, ear pain or dizziness develops. Discussed tinnitus "
    "management, sound therapy and hearing protection. Follow up in two weeks for the fitting with real ear "
    "measurements, then in six weeks for fine tuning. His wife will attend the fitting appointment with him next "
    "month at the Riverside office."
)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def time_sync(function: Callable[[], object], runs: int) -> dict[str, float]:
    for _ in range(5):
        function()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


async def time_async(call: Callable[[], Awaitable[object]], runs: int, concurrency: int) -> dict[str, float]:
    for _ in range(5):
        await call()
    samples: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)

    for _ in range(runs // concurrency):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return percentiles(samples)


async def through_client(runs: int) -> dict[str, Any]:
    client = InProcessAIClient(Settings(_env_file=None, entities={"extractor": "spacy"}))  # type: ignore[call-arg]
    try:
        return {
            "client_extract_1_at_a_time": await time_async(lambda: client.extract_entities(NOTE), runs, 1),
            "client_extract_2_at_once": await time_async(lambda: client.extract_entities(NOTE), runs, 2),
            "client_context_1_at_a_time": await time_async(lambda: client.clinical_context(NOTE), runs, 1),
        }
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()

    started = time.perf_counter()
    extractor = load_entity_extractor(EntitySettings(extractor="spacy"))
    load_seconds = time.perf_counter() - started
    assert isinstance(extractor, SpacyEntityExtractor)
    rules = ClinicalRules()
    extraction = extractor.extract(NOTE)
    results: dict[str, Any] = {
        "clinical_rules_only": time_sync(lambda: rules.analyze(NOTE), args.runs),
        "spacy_ner_only": time_sync(lambda: extractor._general(NOTE), args.runs),
        "extract": time_sync(lambda: extractor.extract(NOTE), args.runs),
        "context": time_sync(lambda: extractor.clinical_context(NOTE), args.runs),
    }
    results.update(asyncio.run(through_client(args.runs)))

    print(f"machine: {machine()}")
    print(f"note: {len(NOTE.split())} words, {len(NOTE)} characters; {len(extraction.entities)} entities")
    print(f"model: {extractor.model}; load {load_seconds:.2f} s")
    print(f"{'what':32} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for name, figures in results.items():
        print(f"{name:32} {figures['p50_ms']:8.2f} {figures['p95_ms']:8.2f} {figures['mean_ms']:8.2f}")
    print(
        json.dumps(
            {
                "words": len(NOTE.split()),
                "entities": len(extraction.entities),
                "model": extractor.model,
                "load_seconds": round(load_seconds, 2),
                "runs": args.runs,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
