"""Delivery on the job system: one DBOS workflow per attempt, on the `notifications` queue.

A workflow makes its attempt in one step; when the delivery must be retried it enqueues the next
attempt's workflow with the backoff as its delay, and ends. Waiting deliveries thus hold no queue
slot (a workflow asleep in `DBOS.sleep` would), and a dead endpoint cannot starve the others.
Workflow ids name the delivery and the attempt, so enqueueing an attempt twice (a resume after a
crash) runs it once. A step is at least once: receivers deduplicate on `X-Tessera-Delivery`.

Delivery starts after the commit of the transaction that wrote the pending rows (`deliver_after_commit`,
on `run_after_commit`): enqueued when this process has a job runtime, else delivered here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from dbos import DBOS, EnqueueOptions
from dbos._error import DBOSMaxStepRetriesExceeded
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.db.base import utcnow
from tessera.core.db.session import run_after_commit, unit_of_work
from tessera.core.documents.runtime import PipelineContext
from tessera.core.jobs.runtime import QUEUES, JobRuntime, QueueSpec
from tessera.core.notifications.delivery import attempt_delivery, deliver_pending
from tessera.core.notifications.models import DeliveryStatus, NotificationDelivery

DELIVER_WORKFLOW = "notifications.deliver"
INLINE_MAX_WAIT_SECONDS = 2.0
NOTIFICATIONS_QUEUE = "notifications"
logger = structlog.get_logger(__name__)

# Attempts are short (one HTTP request or SMTP conversation within its timeout): many per worker,
# and a few per organization at once, so one tenant's burst cannot take every slot.
QUEUES[NOTIFICATIONS_QUEUE] = QueueSpec(
    NOTIFICATIONS_QUEUE, worker_concurrency=16, partition_concurrency=4, polling_seconds=0.5
)


def deliver_workflow_id(delivery_id: uuid.UUID | str, attempt: int) -> str:
    return f"{DELIVER_WORKFLOW}:{delivery_id}:{attempt}"


def _enqueue_options(delivery_id: str, attempt: int, org_id: str, delay_seconds: float) -> EnqueueOptions:
    options: EnqueueOptions = {
        "workflow_name": DELIVER_WORKFLOW,
        "queue_name": NOTIFICATIONS_QUEUE,
        "workflow_id": deliver_workflow_id(delivery_id, attempt),
        "queue_partition_key": org_id,
    }
    if delay_seconds > 0:
        options["delay_seconds"] = delay_seconds
    return options


async def _attempt_step(delivery_id: str, attempt: int) -> dict[str, Any] | None:
    outcome = await attempt_delivery(
        PipelineContext.sessionmaker(), PipelineContext.settings(), uuid.UUID(delivery_id), attempt=attempt
    )
    if outcome is None:
        return None
    return {
        "org_id": str(outcome.org_id),
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "retry_in": outcome.retry_in,
    }


async def _fail(delivery_id: str, message: str) -> None:
    async with unit_of_work(PipelineContext.sessionmaker()) as session:
        delivery = await session.get(NotificationDelivery, uuid.UUID(delivery_id))
        if delivery is not None and delivery.status == DeliveryStatus.pending:
            delivery.status = DeliveryStatus.failed
            delivery.last_error = message[:2_000]
            delivery.next_attempt_at = None


@DBOS.workflow(name=DELIVER_WORKFLOW)
async def deliver(delivery_id: str, attempt: int) -> str:
    """Make attempt number `attempt` of a delivery; enqueue the next one when it must be retried."""
    step: Any = {
        "name": "notifications.deliver.attempt",
        # Retries of the step itself cover a database that did not answer, not the receiver's answers.
        "retries_allowed": True,
        "max_attempts": 3,
        "interval_seconds": 1.0,
        "backoff_rate": 2.0,
    }
    try:
        result = await DBOS.run_step_async(step, _attempt_step, delivery_id, attempt)
    except DBOSMaxStepRetriesExceeded as error:
        last = error.errors[-1] if error.errors else error
        await _fail(delivery_id, f"internal error: {type(last).__name__}: {last}")
        return "failed"
    if result is None:
        return "gone"
    if result["retry_in"] is not None:
        following = result["attempts"] + 1
        options = _enqueue_options(delivery_id, following, result["org_id"], result["retry_in"])
        # Recorded as a child of this workflow: a recovered run does not enqueue it twice.
        await DBOS.enqueue_workflow_with_options_async(options, delivery_id, following)
    return str(result["status"])


async def enqueue_delivery(
    jobs: JobRuntime, delivery_id: uuid.UUID, org_id: uuid.UUID, *, attempt: int = 1, delay_seconds: float = 0
) -> None:
    await jobs.enqueue(
        DELIVER_WORKFLOW,
        str(delivery_id),
        attempt,
        queue=NOTIFICATIONS_QUEUE,
        workflow_id=deliver_workflow_id(delivery_id, attempt),
        partition_key=str(org_id),
        delay_seconds=delay_seconds if delay_seconds > 0 else None,
    )


def deliver_after_commit(session: AsyncSession, deliveries: Sequence[NotificationDelivery]) -> None:
    """Start delivering `deliveries` (flushed, pending) once `session` commits; nothing if it rolls back."""
    targets = [(delivery.id, delivery.org_id) for delivery in deliveries]
    if not targets:
        return

    async def start() -> None:
        jobs = JobRuntime.current()
        if jobs is not None:
            for delivery_id, org_id in targets:
                await enqueue_delivery(jobs, delivery_id, org_id)
        else:
            # Without a job system the request that notified waits for the delivery: short backoffs
            # are waited out, a longer one leaves the delivery pending for a worker to resume.
            await deliver_pending(
                PipelineContext.sessionmaker(),
                PipelineContext.settings(),
                [delivery_id for delivery_id, _ in targets],
                max_wait_seconds=INLINE_MAX_WAIT_SECONDS,
            )

    run_after_commit(session, start)


async def resume_pending(sessionmaker: async_sessionmaker[AsyncSession], jobs: JobRuntime) -> int:
    """Enqueue the next attempt of every pending delivery, at its due time: those left by a process
    that died between its commit and its enqueue (an attempt already enqueued is not enqueued again)."""
    async with unit_of_work(sessionmaker, write=False) as session:
        rows = (
            await session.execute(
                select(
                    NotificationDelivery.id,
                    NotificationDelivery.org_id,
                    NotificationDelivery.attempts,
                    NotificationDelivery.next_attempt_at,
                ).where(NotificationDelivery.status == DeliveryStatus.pending)
            )
        ).all()
    now = utcnow()
    for delivery_id, org_id, attempts, due in rows:
        delay = max(0.0, (due - now).total_seconds()) if due is not None else 0.0
        await enqueue_delivery(jobs, delivery_id, org_id, attempt=attempts + 1, delay_seconds=delay)
    if rows:
        logger.info("pending notification deliveries resumed", count=len(rows))
    return len(rows)
