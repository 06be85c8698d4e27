"""Threshold calibration from an organization's own evidence, judged on questions it never saw.

    .venv/bin/python bench/faq_banking77.py --out /tmp/faq-b77 --train-per-intent 5
    .venv/bin/python bench/faq_calibration.py --dataset /tmp/faq-b77 [--held-out 15] [--seeds 0,1,2]

A deployed bot's history, replayed from the dataset's `train` split: some FAQs are held out (the
knowledge base lacks them), so their intents' questions are ones no FAQ answers.
- the kept FAQs' train questions become helpful votes with their query (learned as phrasings, as
  `POST /faqs/{id}/feedback` does);
- the held-out intents' train questions become "no answer" hand-offs resolved without an FAQ.

`calibration.calibrate` (the code behind `POST /support/settings/calibrate`) then suggests a
threshold, and the `test` split is matched at the server's default threshold and at the suggested
one, side by side over the same FAQs and phrasings:
- match rate: test questions the bot would answer from an FAQ;
- precision: of those, answered with the right FAQ (a held-out intent's question matched is wrong);
- answered right: share of answerable test questions (kept intents) answered with the right FAQ;
- held-out matched: share of unanswerable test questions wrongly answered.

Everything runs through the product's services on a throwaway SQLite database with the bundled
embedder. One JSON object per seed on stdout, then a Markdown table.

`--timing FAQS,VOTES` instead times one calibration on a large organization: FAQS FAQs (the
banking FAQs and their generated variants, as `bench/support_chat.py` makes them), VOTES helpful
votes on banking77 texts (each learned as a phrasing) and VOTES / 10 resolved hand-offs.

    .venv/bin/python bench/faq_calibration.py --timing 1000,2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Bench:
    """A throwaway organization: its server settings, embedder, database and owner."""

    settings: Any
    embedder: Any
    sessionmaker: Any
    principal: Any


@asynccontextmanager
async def throwaway_organization() -> AsyncIterator[Bench]:
    """A migrated SQLite database in a temporary folder with one organization and its owner."""
    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.auth.models import Role
    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.ingest_cli import _acting_principal
    from tessera.core.retrieval.runtime import get_embedder
    from tessera.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="tessera-faq-calibration-"))
    try:
        settings = Settings(
            _env_file=None,
            data_dir=root / "data", database_url=f"sqlite+aiosqlite:///{root / 'tessera.db'}",
            log_level="WARNING", jobs={"enabled": False},
        )  # fmt: skip
        await asyncio.to_thread(run_migrations, settings)
        await create_user_with_org(
            settings, email="bench@example.com", password=secrets.token_urlsafe(24), name="Bench", org="Bench",
            role=Role.owner,
        )  # fmt: skip
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with unit_of_work(sessionmaker) as session:
                principal = await _acting_principal(session, None, None)
            assert principal.org_id is not None
            yield Bench(settings, get_embedder(settings.embeddings), sessionmaker, principal)
        finally:
            await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def resolved_handoffs(bench: Bench, questions: list[str]) -> None:
    """Questions handed off as unanswered and resolved by an agent without an FAQ."""
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import unit_of_work
    from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus

    async with unit_of_work(bench.sessionmaker) as session:
        for question in questions:
            session.add(
                Handoff(
                    org_id=bench.principal.org_id, question=question, reason=HandoffReason.no_answer,
                    status=HandoffStatus.resolved, resolved_at=utcnow(),
                )
            )  # fmt: skip


async def helpful_vote(bench: Bench, faq_id: uuid.UUID, query: str) -> None:
    from tessera.core.db.session import unit_of_work
    from tessera.modules.support import faqs
    from tessera.modules.support.schemas import FaqFeedbackCreate

    async with unit_of_work(bench.sessionmaker) as session:
        await faqs.add_feedback(
            session, bench.principal, faq_id, FaqFeedbackCreate(helpful=True, query=query[:500]), bench.embedder,
            bench.settings.support,
        )  # fmt: skip


async def calibrate(bench: Bench, target: float) -> Any:
    from tessera.core.audit.service import NO_REQUEST
    from tessera.core.db.session import unit_of_work
    from tessera.modules.support import calibration
    from tessera.modules.support.schemas import ThresholdCalibrationRequest

    async with unit_of_work(bench.sessionmaker) as session:
        return await calibration.calibrate(
            session, bench.sessionmaker, bench.principal, ThresholdCalibrationRequest(target_precision=target),
            bench.embedder, bench.settings.support, NO_REQUEST,
        )  # fmt: skip


async def run(dataset: Path, held_out: int, seed: int, target: float) -> dict[str, Any]:
    from tessera.core.db.session import unit_of_work
    from tessera.core.retrieval.evaluation import load_beir
    from tessera.modules.support import faqs, search
    from tessera.modules.support.schemas import FaqCreate

    test, train = load_beir(dataset, "test"), load_beir(dataset, "train")
    intents = sorted(test.corpus)
    missing = set(random.Random(seed).sample(intents, held_out))
    async with throwaway_organization() as bench:
        support = bench.settings.support
        faq_of: dict[str, uuid.UUID] = {}
        for intent in intents:
            if intent in missing:
                continue
            title, text = test.corpus[intent]
            async with unit_of_work(bench.sessionmaker) as session:
                body = FaqCreate(question=title, answer=text, status="published")
                faq_of[intent] = (await faqs.create_faq(session, bench.principal, body, bench.embedder)).id
        unanswerable: list[str] = []
        for query_id, text in train.queries.items():
            (intent,) = train.qrels[query_id]
            if intent in faq_of:
                await helpful_vote(bench, faq_of[intent], text)
            else:
                unanswerable.append(text)
        await resolved_handoffs(bench, unanswerable)
        report = await calibrate(bench, target)
        best: list[tuple[str | None, float, str]] = []  # (matched intent, score, gold intent)
        intent_of = {faq_id: intent for intent, faq_id in faq_of.items()}
        async with unit_of_work(bench.sessionmaker, write=False) as session:
            for query_id, text in test.queries.items():
                (gold,) = test.qrels[query_id]
                top = await search.rank(
                    session, bench.sessionmaker, bench.principal.org_id, text, bench.embedder, support, limit=1
                )
                best.append((intent_of[top[0].entry.id], top[0].scores.score, gold) if top else (None, -1, gold))

    def at(threshold: float) -> dict[str, float]:
        matched = [(found, gold) for found, score, gold in best if score >= threshold]
        right = sum(found == gold for found, gold in matched)
        answerable = sum(gold not in missing for _, _, gold in best)
        unanswerable = len(best) - answerable
        return {
            "threshold": threshold,
            "match_rate": round(len(matched) / len(best), 4),
            "precision": round(right / len(matched), 4) if matched else 0.0,
            "answered_right": round(right / answerable, 4),
            "held_out_matched": round(sum(gold in missing for _, gold in matched) / max(unanswerable, 1), 4),
        }

    return {
        "seed": seed,
        "held_out": sorted(missing),
        "votes": len(train.queries) - len(unanswerable),
        "handoffs": len(unanswerable),
        "calibration": report.model_dump(exclude={"curve"}),
        "default": at(support.match_threshold),
        "calibrated": at(report.suggested_threshold) if report.suggested_threshold is not None else None,
        "test_questions": len(best),
    }


async def timing(faq_count: int, vote_count: int) -> dict[str, Any]:
    import csv
    import time

    from bench.support_chat import BANKING, faq_rows
    from tessera.core.db.session import unit_of_work
    from tessera.modules.support import faqs, search
    from tessera.modules.support.schemas import FaqCreate

    with (BANKING / "train.csv").open(encoding="utf-8") as handle:
        texts = [" ".join(row["text"].split()) for row in csv.DictReader(handle)]
    async with throwaway_organization() as bench:
        async with unit_of_work(bench.sessionmaker) as session:
            rows = [
                (FaqCreate(question=r["question"], answer=r["answer"], status="published"), None)
                for r in faq_rows(faq_count)
            ]
            made = await faqs.create_faqs(session, bench.principal, rows, bench.embedder)
        for number, text in enumerate(texts[:vote_count]):
            await helpful_vote(bench, made[number % len(made)].id, text)
        await resolved_handoffs(bench, texts[vote_count : vote_count + vote_count // 10])
        async with unit_of_work(bench.sessionmaker, write=False) as session:  # built, as on a live server
            await search.index_for(session, bench.sessionmaker, bench.principal.org_id, bench.embedder)
        runs = []
        for _ in range(3):
            began = time.perf_counter()
            report = await calibrate(bench, 0.9)
            runs.append(round(time.perf_counter() - began, 2))
    return {"faqs": faq_count, "votes": vote_count, "examples": report.examples, "seconds": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--held-out", type=int, default=15, help="FAQs left out of the knowledge base")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--target-precision", type=float, default=0.9)
    parser.add_argument("--timing", help="FAQS,VOTES: time one calibration on a large organization instead")
    args = parser.parse_args()
    if args.timing:
        faq_count, vote_count = (int(part) for part in args.timing.split(","))
        print(json.dumps(asyncio.run(timing(faq_count, vote_count))))
        return
    if args.dataset is None:
        parser.error("--dataset is required (or --timing)")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        result = asyncio.run(run(args.dataset, args.held_out, seed, args.target_precision))
        print(json.dumps(result), flush=True)
        rows.append(result)
    print("\n| seed | threshold | match rate | precision | answered right | held-out matched |")
    print("|---:|---|---|---|---|---|")
    for result in rows:
        for label in ("default", "calibrated"):
            figures = result[label]
            if figures is None:
                print(f"| {result['seed']} | {label}: none ({result['calibration']['reason']}) | | | | |")
                continue
            print(
                f"| {result['seed']} | {label} {figures['threshold']:.2f} | {figures['match_rate']:.3f} | "
                f"{figures['precision']:.3f} | {figures['answered_right']:.3f} | {figures['held_out_matched']:.3f} |"
            )


if __name__ == "__main__":
    main()
