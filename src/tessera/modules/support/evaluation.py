"""`tessera eval faq`: FAQ matching quality on a BEIR-format folder whose corpus entries are FAQs
(`title` = question, `text` = answer) and whose queries are users' paraphrases.

The corpus is loaded as published FAQs into a throwaway Tessera (SQLite) through the same
service code as `POST /faqs`, and each query runs the same ranking as `GET /faqs/search`.
With `feedback_split` (e.g. `train`), that split's queries are first given as helpful feedback
on their FAQ, as users of a deployed bot would: what learning from feedback adds."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tessera.core.auth.models import Role
from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
from tessera.core.retrieval.evaluation import load_beir, percentile, score_rankings
from tessera.core.retrieval.runtime import get_embedder
from tessera.modules.support import faqs, search
from tessera.modules.support.schemas import FaqCreate, FaqFeedbackCreate
from tessera.modules.support.settings import SupportModuleSettings
from tessera.settings import Settings

Progress = Callable[[str, int, int], None]
SUMMARY_KEYS = ("top1", "mrr@10", "ndcg@10", "match_rate", "match_precision", "no_match_precision")
TABLE_KEYS = (*SUMMARY_KEYS, "latency_p50_ms", "latency_p95_ms")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text[:limit] if len(text) > limit else text


async def evaluate_faq(
    dataset: Path,
    *,
    split: str = "test",
    feedback_split: str | None = None,
    settings_overrides: Mapping[str, Any] | None = None,
    limit_queries: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy, MRR@10, nDCG@10 and the quality of the `match` flag on `dataset`."""
    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.documents.ingest_cli import _acting_principal

    data = load_beir(dataset, split)
    feedback = load_beir(dataset, feedback_split) if feedback_split else None
    root = Path(tempfile.mkdtemp(prefix="tessera-eval-faq-"))
    report = progress or (lambda stage, done, total: None)
    try:
        values: dict[str, Any] = {
            "data_dir": root / "data",
            "database_url": f"sqlite+aiosqlite:///{root / 'tessera.db'}",
            "log_level": "WARNING",
            "jobs": {"enabled": False},
        }
        values.update(settings_overrides or {})
        settings = Settings(**values)
        support: SupportModuleSettings = settings.support
        await asyncio.to_thread(run_migrations, settings)
        await create_user_with_org(
            settings, email="eval@example.com", password=secrets.token_urlsafe(24), name="Evaluation",
            org="Evaluation", role=Role.owner,
        )  # fmt: skip
        embedder = get_embedder(settings.embeddings)
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        try:
            async with unit_of_work(sessionmaker) as session:
                principal = await _acting_principal(session, None, None)
            started = time.perf_counter()
            ids: dict[str, str] = {}  # FAQ id -> corpus id
            items = list(data.corpus.items())
            for done, (corpus_id, (title, text)) in enumerate(items, start=1):
                async with unit_of_work(sessionmaker) as session:
                    body = FaqCreate(
                        question=_clip(title or text, 1_000), answer=_clip(text or title, 20_000), status="published"
                    )
                    faq = await faqs.create_faq(session, principal, body, embedder)
                    ids[str(faq.id)] = corpus_id
                report("faqs", done, len(items))
            by_corpus = {corpus_id: faq_id for faq_id, corpus_id in ids.items()}
            learned = 0
            if feedback is not None:
                pairs = [
                    (text, by_corpus[doc])
                    for query_id, text in feedback.queries.items()
                    for doc, grade in feedback.qrels.get(query_id, {}).items()
                    if grade > 0 and doc in by_corpus and text.strip()
                ]
                for done, (text, faq_id) in enumerate(pairs, start=1):
                    async with unit_of_work(sessionmaker) as session:
                        result = await faqs.add_feedback(
                            session, principal, uuid.UUID(faq_id),
                            FaqFeedbackCreate(helpful=True, query=_clip(text, 500)), embedder, support,
                        )  # fmt: skip
                        learned += result.learned
                    report("feedback", done, len(pairs))
            load_seconds = time.perf_counter() - started
            query_ids = list(data.queries)[:limit_queries] if limit_queries else list(data.queries)
            rankings: dict[str, list[str]] = {}
            matched: dict[str, bool] = {}
            latencies: list[float] = []
            assert principal.org_id is not None
            async with unit_of_work(sessionmaker, write=False) as session:
                threshold = await search.threshold_of(session, principal.org_id, support)
                for done, query_id in enumerate(query_ids, start=1):
                    began = time.perf_counter()
                    candidates = await search.rank(
                        session, sessionmaker, principal.org_id, data.queries[query_id], embedder, support, limit=10
                    )
                    latencies.append((time.perf_counter() - began) * 1000)
                    rankings[query_id] = [ids[str(c.entry.id)] for c in candidates]
                    matched[query_id] = bool(candidates) and candidates[0].scores.score >= threshold
                    report("queries", done, len(query_ids))
        finally:
            await engine.dispose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        **_figures(rankings, matched, data.qrels),
        "threshold": threshold,
        "queries": len(rankings),
        "faqs": len(data.corpus),
        "learned_phrasings": learned,
        "feedback_split": feedback_split,
        "load_seconds": round(load_seconds, 2),
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p95_ms": round(percentile(latencies, 95), 2),
        "embedding_model": embedder.name,
        "dataset": data.name,
        "split": split,
    }


def _figures(
    rankings: Mapping[str, list[str]], matched: Mapping[str, bool], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    scores = score_rankings(rankings, qrels)
    correct = {q: bool(r) and qrels.get(q, {}).get(r[0], 0) > 0 for q, r in rankings.items()}
    hits = [q for q in rankings if matched[q]]
    misses = [q for q in rankings if not matched[q]]
    return {
        "top1": round(sum(correct.values()) / max(len(rankings), 1), 5),
        "mrr@10": round(scores["mrr@10"], 5),
        "ndcg@10": round(scores["ndcg@10"], 5),
        "match_rate": round(len(hits) / max(len(rankings), 1), 5),
        # Of the queries flagged a match, how many got the right FAQ first.
        "match_precision": round(sum(correct[q] for q in hits) / len(hits), 5) if hits else 0.0,
        # Of the queries flagged no match, how many would indeed have got a wrong FAQ.
        "no_match_precision": round(sum(not correct[q] for q in misses) / len(misses), 5) if misses else 0.0,
    }


def run_cli(
    settings: Settings,
    *,
    dataset: Path,
    split: str,
    feedback_split: str | None,
    limit_queries: int | None,
    json_output: bool,
) -> int:
    """`tessera eval faq`: progress on stderr, the table on stdout (stderr with --json), then with
    --json one JSON object on the last line of stdout. Returns the exit code."""
    import json

    import typer
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from tessera.core.errors import AppError
    from tessera.core.retrieval.evaluation import NotBeirDataset

    errors = Console(stderr=True)
    bars = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=errors
    )
    labels = {"faqs": "Loading FAQs", "feedback": "Replaying feedback", "queries": "Matching queries"}
    tasks: dict[str, TaskID] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(labels.get(stage, stage), total=total)
        bars.update(tasks[stage], completed=done, total=total)

    overrides = {
        "embeddings": settings.embeddings.model_dump(),
        "support": settings.support.model_dump(),
        "privacy": settings.privacy.model_dump(),
    }
    try:
        with bars:
            result = asyncio.run(
                evaluate_faq(
                    dataset, split=split, feedback_split=feedback_split, settings_overrides=overrides,
                    limit_queries=limit_queries, progress=report,
                )
            )  # fmt: skip
    except NotBeirDataset as error:
        errors.print(f"[red]Error:[/red] {escape(error.message)}", highlight=False)
        return 2
    except AppError as error:
        errors.print(f"[red]Error:[/red] {escape(error.message)}", highlight=False)
        return 1
    table = Table(title=f"FAQ matching on {result['dataset']} ({split}, {result['queries']} queries)")
    for key in TABLE_KEYS:
        table.add_column(key, justify="right")
    table.add_row(*(f"{result[k]:.4f}" if k in SUMMARY_KEYS else f"{result[k]:.1f}" for k in TABLE_KEYS))
    (errors if json_output else Console()).print(table)
    if json_output:
        typer.echo(json.dumps(result))
    return 0
