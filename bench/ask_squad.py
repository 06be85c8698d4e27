"""Grounded answers on SQuAD 2.0: citation precision, honest "not found" on unanswerable
questions, token F1 and latency of `POST /ask`'s pipeline (the product's `generation.service.ask`).

Every paragraph of `../shared/data/squad-v2-dev-sample` (or `--dataset FILE`, SQuAD 2.0 JSON) is
ingested as a document (SQLite, a throwaway data dir); then every question is asked with the
configured chat model (default: the offline `extractive` one) over all paragraphs.

* citation precision: of the answerable questions that got an answer, the share whose first
  citation's chunk contains a gold answer (target ≥ 0.9);
* answered: the share of answerable questions that got an answer at all;
* not-found rate: the share of unanswerable questions answered "the sources don't say";
* token F1 (SQuAD's normalisation) of the answer text, citations removed, against the best gold
  answer, over answerable questions (0 when not answered);
* latency p50/p95 of one answer, retrieval included.

    .venv/bin/python bench/ask_squad.py [--dataset FILE] [--limit N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import string
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work  # noqa: E402
from tessera.core.documents.runtime import PipelineContext  # noqa: E402
from tessera.core.generation import service as generation  # noqa: E402
from tessera.core.generation.runtime import get_chat_model  # noqa: E402
from tessera.core.generation.schemas import AskRequest  # noqa: E402
from tessera.core.generation.text import strip_citations  # noqa: E402
from tessera.core.retrieval import evaluation as ev  # noqa: E402
from tessera.core.retrieval.runtime import get_embedder  # noqa: E402
from tessera.settings import Settings  # noqa: E402

DATASET = ROOT.parent / "shared" / "data" / "squad-v2-dev-sample" / "dev-v2.0-sample.json"


def normalize(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(c for c in text.lower() if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return text.split()


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize(prediction), normalize(gold)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def load(path: Path) -> tuple[ev.BeirDataset, list[dict[str, Any]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    corpus: dict[str, tuple[str, str]] = {}
    questions: list[dict[str, Any]] = []
    for article in data["data"]:
        for number, paragraph in enumerate(article["paragraphs"]):
            paragraph_id = f"{article['title']}-{number}"
            corpus[paragraph_id] = (article["title"].replace("_", " "), paragraph["context"])
            for qa in paragraph["qas"]:
                questions.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "answers": [a["text"] for a in qa.get("answers") or []],
                        "impossible": bool(qa.get("is_impossible")),
                        "paragraph": paragraph_id,
                    }
                )
    return ev.BeirDataset(name=path.stem, corpus=corpus, queries={}, qrels={}), questions


def percentile(values: list[float], q: float) -> float:
    return round(ev.percentile(values, q), 1) if values else 0.0


async def run(path: Path, limit: int | None) -> dict[str, Any]:
    dataset, questions = load(path)
    questions = questions[:limit] if limit else questions
    root = Path(tempfile.mkdtemp(prefix="tessera-ask-squad-"))
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=root / "data",
            database_url=f"sqlite+aiosqlite:///{root / 'tessera.db'}",
            log_level="WARNING",
            jobs={"enabled": False},
        )
        from tessera.cli import run_migrations

        await asyncio.to_thread(run_migrations, settings)
        PipelineContext.configure(settings, pooled=True)
        engine = create_engine(settings)
        try:
            sessionmaker = create_sessionmaker(engine)
            library = await ev._ingest(settings, sessionmaker, dataset, None)
            embedder = get_embedder(settings.embeddings)
            chat = get_chat_model(settings)
            chunk_text: dict[str, str] = {}
            answered = correct = not_found = 0
            f1: list[float] = []
            latencies: list[float] = []
            misses: list[dict[str, Any]] = []
            for number, item in enumerate(questions, start=1):
                started = time.perf_counter()
                async with unit_of_work(sessionmaker, write=False) as session:
                    reply = await generation.ask(
                        session, library.principal, AskRequest(question=item["question"]),
                        settings=settings.generation, embedder=embedder, chat=chat,
                    )  # fmt: skip
                latencies.append((time.perf_counter() - started) * 1000)
                if item["impossible"]:
                    not_found += not reply.grounded
                    continue
                if not reply.grounded or not reply.citations:
                    f1.append(0.0)
                    continue
                answered += 1
                first = min(reply.citations, key=lambda c: min(c.sentences))
                chunk_text[str(first.chunk_id)] = first.quote
                async with unit_of_work(sessionmaker, write=False) as session:
                    from tessera.core.documents.models import Chunk

                    chunk = await session.get(Chunk, first.chunk_id)
                    text = chunk.text if chunk is not None else ""
                hit = any(answer in text for answer in item["answers"])
                correct += hit
                f1.append(max(token_f1(strip_citations(reply.answer), a) for a in item["answers"]))
                if not hit and len(misses) < 10:
                    misses.append({"question": item["question"], "gold": item["answers"][0], "answer": reply.answer})
                if number % 50 == 0:
                    print(f"… {number}/{len(questions)}", file=sys.stderr, flush=True)
            answerable = sum(1 for q in questions if not q["impossible"])
            impossible = len(questions) - answerable
            return {
                "dataset": path.name,
                "paragraphs": len(dataset.corpus),
                "chunks": library.chunks,
                "questions": len(questions),
                "answerable": answerable,
                "unanswerable": impossible,
                "model": chat.name,
                "citation_precision": round(correct / answered, 4) if answered else 0.0,
                "answered_rate": round(answered / answerable, 4) if answerable else 0.0,
                "not_found_rate_unanswerable": round(not_found / impossible, 4) if impossible else 0.0,
                "token_f1": round(sum(f1) / len(f1), 4) if f1 else 0.0,
                "latency_p50_ms": percentile(latencies, 50),
                "latency_p95_ms": percentile(latencies, 95),
                "misses": misses,
            }
        finally:
            await PipelineContext.dispose_current_loop()
            await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    args = parser.parse_args()
    if not args.dataset.exists():
        sys.exit(f"{args.dataset} not found")
    result = asyncio.run(run(args.dataset, args.limit))
    summary = {k: v for k, v in result.items() if k != "misses"}
    print(json.dumps(summary, indent=1), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
