"""Running an evaluation: a DBOS workflow on the `evaluations` queue, or inline when jobs are off.

Steps: start (status `running`, the collection's size and the embedding model noted), one step
per search mode (every query searched as the evaluation's creator may search now, then that
mode's per-query results and mean metrics written in one transaction), finish (`completed`).
A step that runs twice overwrites its own output. A deleted evaluation stops the run at its next
step. Expected failures (the creator left, the collection is gone) fail the evaluation at once;
anything else is retried, and fails it when the attempts run out.

Ranking and metrics are those of `tessera eval retrieval` (`evaluation.run_queries`,
`score_query`, `score_rankings`, `percentile`), so figures from both are comparable.
"""

from __future__ import annotations

import uuid
from typing import Any, cast

import structlog
from dbos import DBOS
from dbos._error import DBOSMaxStepRetriesExceeded
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.auth.models import Membership, User
from tessera.core.auth.principal import Principal, user_snapshot
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.documents.runtime import PipelineContext
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import AppError
from tessera.core.jobs.runtime import QUEUES, JobRuntime, QueueSpec
from tessera.core.retrieval.errors import EvaluationCreatorGone
from tessera.core.retrieval.evaluation import collection_counts, percentile, run_queries, score_query, score_rankings
from tessera.core.retrieval.fusion import Fusion
from tessera.core.retrieval.models import FINISHED_STATUSES, EvaluationStatus, JudgedQuery, RetrievalEvaluation
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import Mode

EVALUATE_WORKFLOW = "retrieval.evaluate"
EVALUATIONS_QUEUE = "evaluations"
TOP_SHOWN = 10
STEP_ATTEMPTS = 3
logger = structlog.get_logger(__name__)

# Evaluations are CPU work (a query embedding and searches per query and mode): a few at a time per
# worker, and one at a time per organization so one tenant's runs cannot hold every slot.
QUEUES[EVALUATIONS_QUEUE] = QueueSpec(EVALUATIONS_QUEUE, worker_concurrency=2, partition_concurrency=1)


def evaluate_workflow_id(evaluation_id: uuid.UUID | str) -> str:
    """Deterministic, so enqueueing the same evaluation twice (a resume after a crash) is one run."""
    return f"{EVALUATE_WORKFLOW}:{evaluation_id}"


def metric_name(name: str) -> str:
    """`ndcg@10` (the CLI's name) → `ndcg_at_10` (the API's)."""
    return name.replace("@", "_at_")


def _embedder_for(mode: str) -> Embedder | None:
    return None if mode == "keyword" else get_embedder(PipelineContext.settings().embeddings)


async def _acting_principal(session: AsyncSession, evaluation: RetrievalEvaluation) -> Principal:
    """The creator as they are now: searches see what they may see at run time, not at request time."""
    row = (
        await session.execute(
            select(User, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(User.id == evaluation.created_by, Membership.org_id == evaluation.org_id)
        )
    ).first()
    if row is None or not row[0].is_active:
        raise EvaluationCreatorGone("The member who started this evaluation is no longer in the organization")
    return Principal(user=user_snapshot(row[0]), org_id=evaluation.org_id, role=row[1], method="jwt")


async def _fail(evaluation_id: str, code: str, message: str) -> None:
    logger.warning("evaluation failed", evaluation_id=evaluation_id, code=code, reason=message)
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        evaluation = await session.get(RetrievalEvaluation, uuid.UUID(evaluation_id))
        if evaluation is None:
            return
        evaluation.status = EvaluationStatus.failed
        evaluation.error = {"code": code, "message": message[:2_000]}
        evaluation.completed_at = utcnow()


async def _start_step(evaluation_id: str) -> list[str] | None:
    """Mark the run started; returns the modes to run, or None when there is nothing to do."""
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        evaluation = await session.get(RetrievalEvaluation, uuid.UUID(evaluation_id))
        if evaluation is None or evaluation.status in FINISHED_STATUSES:
            return None
        evaluation.status = EvaluationStatus.running
        evaluation.started_at = utcnow()
        evaluation.error = None
        evaluation.document_count, evaluation.chunk_count = await collection_counts(session, evaluation.collection_id)
        semantic = any(mode != "keyword" for mode in evaluation.modes)
        evaluation.embedding_model = get_embedder(PipelineContext.settings().embeddings).name if semantic else None
        return list(evaluation.modes)


def _query_result(ranking: list[str], relevant: dict[str, int], latency: float | None) -> dict[str, Any]:
    positions = {document_id: rank for rank, document_id in enumerate(ranking, start=1)}
    return {
        **{metric_name(name): round(value, 5) for name, value in score_query(ranking, relevant).items()},
        "latency_ms": round(latency, 2) if latency is not None else None,
        "relevant": [
            {"document_id": document_id, "grade": grade, "rank": positions.get(document_id)}
            for document_id, grade in sorted(relevant.items(), key=lambda item: -item[1])
        ],
        "top": ranking[:TOP_SHOWN],
    }


async def _mode_step(evaluation_id: str, mode: str) -> str:
    """Search every query in `mode` and store the results; returns `continue`, `stopped` or `failed`."""
    sessionmaker = PipelineContext.sessionmaker()
    try:
        async with unit_of_work(sessionmaker, write=False) as session:
            evaluation = await session.get(RetrievalEvaluation, uuid.UUID(evaluation_id))
            if evaluation is None:
                return "stopped"
            principal = await _acting_principal(session, evaluation)
            collection_id, fusion, weight = evaluation.collection_id, evaluation.fusion, evaluation.semantic_weight
            queries = (
                await session.execute(
                    select(JudgedQuery.id, JudgedQuery.text, JudgedQuery.relevant)
                    .where(JudgedQuery.evaluation_id == evaluation.id)
                    .order_by(JudgedQuery.ordinal)
                )
            ).all()
        rankings, latencies = await run_queries(
            sessionmaker, principal, collection_id, [(str(q.id), q.text) for q in queries],
            mode=cast(Mode, mode), embedder=_embedder_for(mode), fusion=cast(Fusion, fusion), semantic_weight=weight,
        )  # fmt: skip
    except AppError as error:  # the creator left, the collection went: retrying cannot help
        await _fail(evaluation_id, error.code, error.message)
        return "failed"
    qrels = {str(q.id): dict(q.relevant) for q in queries}
    results = {
        key: _query_result(rankings.get(key, []), relevant, latencies.get(key)) for key, relevant in qrels.items()
    }
    means = score_rankings(rankings, qrels, ignore_identical_ids=False)
    timings = list(latencies.values())
    summary = {
        **{metric_name(name): round(value, 5) for name, value in means.items()},
        "latency_p50_ms": round(percentile(timings, 50), 2),
        "latency_p95_ms": round(percentile(timings, 95), 2),
        "queries": len(qrels),
    }
    async with unit_of_work(sessionmaker) as session:
        # Locked, so a delete waits for these results instead of racing them (PostgreSQL).
        evaluation = await session.get(RetrievalEvaluation, uuid.UUID(evaluation_id), with_for_update=True)
        if evaluation is None:
            return "stopped"
        stored = (
            await session.execute(
                select(JudgedQuery.id, JudgedQuery.results).where(JudgedQuery.evaluation_id == evaluation.id)
            )
        ).all()
        if stored:
            await session.execute(
                update(JudgedQuery),
                [{"id": row.id, "results": {**row.results, mode: results[str(row.id)]}} for row in stored],
            )
        evaluation.metrics = {**evaluation.metrics, mode: summary}
    return "continue"


async def _finish_step(evaluation_id: str) -> str:
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        evaluation = await session.get(RetrievalEvaluation, uuid.UUID(evaluation_id))
        if evaluation is None:
            return "stopped"
        evaluation.status = EvaluationStatus.completed
        evaluation.completed_at = utcnow()
    return "completed"


def _step_options(name: str) -> Any:
    return {
        "name": name,
        "retries_allowed": True,
        "max_attempts": STEP_ATTEMPTS,
        "interval_seconds": 1.0,
        "backoff_rate": 2.0,
    }


@DBOS.workflow(name=EVALUATE_WORKFLOW)
async def evaluate(evaluation_id: str) -> str:
    """Run one evaluation from `queued` to `completed` (or `failed`); returns the outcome."""
    try:
        modes = await DBOS.run_step_async(_step_options("retrieval.evaluate.start"), _start_step, evaluation_id)
        if modes is None:
            return "stopped"
        for mode in modes:
            outcome = await DBOS.run_step_async(
                _step_options(f"retrieval.evaluate.{mode}"), _mode_step, evaluation_id, mode
            )
            if outcome != "continue":
                return str(outcome)
        return str(await DBOS.run_step_async(_step_options("retrieval.evaluate.finish"), _finish_step, evaluation_id))
    except DBOSMaxStepRetriesExceeded as error:
        last = error.errors[-1] if error.errors else error
        await _fail(evaluation_id, "transient_error_persisted", f"{type(last).__name__}: {last}")
        return "failed"


async def run_inline(evaluation_id: uuid.UUID) -> str:
    """The workflow's steps in this process, without the job system (jobs disabled). Never raises:
    an unexpected error fails the evaluation with its message."""
    key = str(evaluation_id)
    try:
        modes = await _start_step(key)
        if modes is None:
            return "stopped"
        for mode in modes:
            outcome = await _mode_step(key, mode)
            if outcome != "continue":
                return outcome
        return await _finish_step(key)
    except Exception as error:
        logger.exception("evaluation crashed", evaluation_id=key)
        await _fail(key, "evaluation_crashed", f"{type(error).__name__}: {error}")
        return "failed"


async def enqueue_evaluation(jobs: JobRuntime, evaluation_id: uuid.UUID, org_id: uuid.UUID) -> None:
    await jobs.enqueue(
        EVALUATE_WORKFLOW,
        str(evaluation_id),
        queue=EVALUATIONS_QUEUE,
        workflow_id=evaluate_workflow_id(evaluation_id),
        partition_key=str(org_id),
    )


async def resume_queued(sessionmaker: async_sessionmaker[AsyncSession], jobs: JobRuntime) -> int:
    """Enqueue evaluations left `queued` by a process that died between its commit and its enqueue
    (enqueueing one already queued is a no-op)."""
    async with unit_of_work(sessionmaker, write=False) as session:
        rows = (
            await session.execute(
                select(RetrievalEvaluation.id, RetrievalEvaluation.org_id).where(
                    RetrievalEvaluation.status == EvaluationStatus.queued
                )
            )
        ).all()
    for evaluation_id, org_id in rows:
        await enqueue_evaluation(jobs, evaluation_id, org_id)
    return len(rows)
