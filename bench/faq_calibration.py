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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def run(dataset: Path, held_out: int, seed: int, target: float) -> dict[str, Any]:
    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.audit.service import NO_REQUEST
    from tessera.core.auth.models import Role
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.ingest_cli import _acting_principal
    from tessera.core.retrieval.evaluation import load_beir
    from tessera.core.retrieval.runtime import get_embedder
    from tessera.modules.support import calibration, faqs, search
    from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus
    from tessera.modules.support.schemas import FaqCreate, FaqFeedbackCreate, ThresholdCalibrationRequest
    from tessera.settings import Settings

    test, train = load_beir(dataset, "test"), load_beir(dataset, "train")
    intents = sorted(test.corpus)
    missing = set(random.Random(seed).sample(intents, held_out))
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
        support = settings.support
        embedder = get_embedder(settings.embeddings)
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with unit_of_work(sessionmaker) as session:
                principal = await _acting_principal(session, None, None)
            assert principal.org_id is not None
            faq_of: dict[str, uuid.UUID] = {}
            for intent in intents:
                if intent in missing:
                    continue
                title, text = test.corpus[intent]
                async with unit_of_work(sessionmaker) as session:
                    faq = await faqs.create_faq(
                        session, principal, FaqCreate(question=title, answer=text, status="published"), embedder
                    )
                    faq_of[intent] = faq.id
            votes = handoffs = 0
            for query_id, text in train.queries.items():
                (intent,) = train.qrels[query_id]
                async with unit_of_work(sessionmaker) as session:
                    if intent in faq_of:
                        await faqs.add_feedback(
                            session, principal, faq_of[intent], FaqFeedbackCreate(helpful=True, query=text[:500]),
                            embedder, support,
                        )  # fmt: skip
                        votes += 1
                    else:
                        session.add(
                            Handoff(
                                org_id=principal.org_id, question=text, reason=HandoffReason.no_answer,
                                status=HandoffStatus.resolved, resolved_at=utcnow(),
                            )
                        )  # fmt: skip
                        handoffs += 1
            async with unit_of_work(sessionmaker) as session:
                report = await calibration.calibrate(
                    session, sessionmaker, principal, ThresholdCalibrationRequest(target_precision=target),
                    embedder, support, NO_REQUEST,
                )  # fmt: skip
            best: list[tuple[str | None, float, str]] = []  # (matched intent, score, gold intent)
            intent_of = {faq_id: intent for intent, faq_id in faq_of.items()}
            async with unit_of_work(sessionmaker, write=False) as session:
                for query_id, text in test.queries.items():
                    (gold,) = test.qrels[query_id]
                    top = await search.rank(session, sessionmaker, principal.org_id, text, embedder, support, limit=1)
                    best.append((intent_of[top[0].entry.id], top[0].scores.score, gold) if top else (None, -1, gold))
        finally:
            await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)

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
        "votes": votes,
        "handoffs": handoffs,
        "calibration": report.model_dump(exclude={"curve"}),
        "default": at(support.match_threshold),
        "calibrated": at(report.suggested_threshold) if report.suggested_threshold is not None else None,
        "test_questions": len(best),
    }


async def timing(faq_count: int, vote_count: int) -> dict[str, Any]:
    import csv
    import time

    from bench.support_chat import BANKING, faq_rows
    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.audit.service import NO_REQUEST
    from tessera.core.auth.models import Role
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
    from tessera.core.documents.ingest_cli import _acting_principal
    from tessera.core.retrieval.runtime import get_embedder
    from tessera.modules.support import calibration, faqs, search
    from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus
    from tessera.modules.support.schemas import FaqCreate, FaqFeedbackCreate, ThresholdCalibrationRequest
    from tessera.settings import Settings

    with (BANKING / "train.csv").open(encoding="utf-8") as handle:
        texts = [" ".join(row["text"].split()) for row in csv.DictReader(handle)]
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
        embedder = get_embedder(settings.embeddings)
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with unit_of_work(sessionmaker) as session:
                principal = await _acting_principal(session, None, None)
                assert principal.org_id is not None
                rows = [
                    (FaqCreate(question=r["question"], answer=r["answer"], status="published"), None)
                    for r in faq_rows(faq_count)
                ]
                made = await faqs.create_faqs(session, principal, rows, embedder)
            for number, text in enumerate(texts[:vote_count]):
                async with unit_of_work(sessionmaker) as session:
                    await faqs.add_feedback(
                        session, principal, made[number % len(made)].id,
                        FaqFeedbackCreate(helpful=True, query=text[:500]), embedder, settings.support,
                    )  # fmt: skip
            async with unit_of_work(sessionmaker) as session:
                for text in texts[vote_count : vote_count + vote_count // 10]:
                    session.add(
                        Handoff(
                            org_id=principal.org_id, question=text, reason=HandoffReason.no_answer,
                            status=HandoffStatus.resolved, resolved_at=utcnow(),
                        )
                    )  # fmt: skip
            async with unit_of_work(sessionmaker, write=False) as session:
                await search.index_for(session, sessionmaker, principal.org_id, embedder)  # as a live server has
            runs = []
            for _ in range(3):
                async with unit_of_work(sessionmaker) as session:
                    began = time.perf_counter()
                    report = await calibration.calibrate(
                        session, sessionmaker, principal, ThresholdCalibrationRequest(), embedder, settings.support,
                        NO_REQUEST,
                    )  # fmt: skip
                    runs.append(round(time.perf_counter() - began, 2))
        finally:
            await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
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
