"""Attempting deliveries. One attempt reads the row (short transaction), sends with no transaction
open, then records the outcome on the row: attempts, last status code and error, and either the
final status or when the next attempt is due (exponential backoff up to `max_attempts`).

`deliver_pending` runs attempts to the end in this process (jobs off, tests); the DBOS workflow in
`jobs` runs one attempt per workflow and enqueues the next one with a delay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from email.utils import parseaddr

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.notifications.mailers.base import Email
from tessera.core.notifications.mailers.registry import create_mailer
from tessera.core.notifications.models import DeliveryChannel, DeliveryStatus, NotificationDelivery, WebhookEndpoint
from tessera.core.notifications.targets import private_targets_allowed
from tessera.core.notifications.webhooks import AttemptResult, envelope, post_webhook
from tessera.settings import NotificationSettings, Settings

CONCURRENCY = 8  # deliveries attempted at once by `deliver_pending`
MAX_ERROR_CHARS = 2_000
logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Outcome:
    delivery_id: uuid.UUID
    org_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    retry_in: float | None
    """Seconds until the next attempt is due; None once the delivery has succeeded or failed."""


@dataclass(frozen=True)
class _Target:
    """What an attempt needs, read before the send so that no transaction stays open during it."""

    delivery_id: uuid.UUID
    org_id: uuid.UUID
    channel: DeliveryChannel
    attempts: int
    event: str
    body: bytes = b""
    url: str = ""
    secret: str = ""
    email: Email | None = None
    refusal: str | None = None


def backoff_seconds(settings: NotificationSettings, attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base, … up to the cap."""
    return float(min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** (attempts - 1)))


def _outcome(delivery: NotificationDelivery) -> Outcome:
    retry_in = None
    if delivery.status == DeliveryStatus.pending:
        due = delivery.next_attempt_at
        retry_in = max(0.0, (due - utcnow()).total_seconds()) if due is not None else 0.0
    return Outcome(delivery.id, delivery.org_id, delivery.status, delivery.attempts, retry_in)


def _message_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "tessera"


async def _target(session: AsyncSession, delivery: NotificationDelivery, settings: Settings) -> _Target:
    base = _Target(delivery.id, delivery.org_id, delivery.channel, delivery.attempts, delivery.event)
    if delivery.channel == DeliveryChannel.email:
        sender = settings.notifications.from_address
        email = Email(
            sender=sender,
            recipients=tuple(delivery.recipients),
            subject=str(delivery.payload.get("subject", "")),
            text=str(delivery.payload.get("text", "")),
            html=delivery.payload.get("html"),
            message_id=f"<{delivery.id}@{_message_domain(sender)}>",
        )
        return replace(base, email=email)
    endpoint = await session.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
    if endpoint is None or not endpoint.active:
        return replace(base, refusal="the endpoint is deactivated")
    body = envelope(
        delivery_id=delivery.id,
        org_id=delivery.org_id,
        event=delivery.event,
        created_at=delivery.created_at,
        data=delivery.payload,
    )
    # The endpoint's URL and secret as they are now: a fix or a rotation applies to retries too.
    return replace(base, body=body, url=endpoint.url, secret=endpoint.secret)


async def _send(target: _Target, settings: Settings) -> AttemptResult:
    if target.refusal is not None:
        return AttemptResult("failed", error=target.refusal)
    if target.email is not None:
        try:
            await create_mailer(settings.notifications).send(target.email)
        except ProviderUnavailable as error:
            return AttemptResult("retry", _smtp_code(error.details), error.message)
        except ProviderRejected as error:
            return AttemptResult("failed", _smtp_code(error.details), error.message)
        return AttemptResult("succeeded")
    return await post_webhook(
        url=target.url,
        secret=target.secret,
        event=target.event,
        delivery_id=target.delivery_id,
        body=target.body,
        timeout_seconds=settings.notifications.webhook_timeout_seconds,
        allow_private=private_targets_allowed(settings),
    )


def _smtp_code(details: object) -> int | None:
    code = details.get("smtp_code") if isinstance(details, dict) else None
    return code if isinstance(code, int) else None


def _record(delivery: NotificationDelivery, result: AttemptResult, settings: NotificationSettings) -> None:
    now = utcnow()
    delivery.attempts += 1
    delivery.last_status_code = result.status_code
    delivery.last_error = result.error[:MAX_ERROR_CHARS] if result.error else None
    delivery.next_attempt_at = None
    if result.verdict == "succeeded":
        delivery.status = DeliveryStatus.succeeded
        delivery.delivered_at = now
    elif result.verdict == "failed" or delivery.attempts >= settings.max_attempts:
        delivery.status = DeliveryStatus.failed
    else:
        wait = backoff_seconds(settings, delivery.attempts)
        if result.retry_after is not None:
            wait = min(max(wait, result.retry_after), settings.backoff_max_seconds)
        delivery.next_attempt_at = now + timedelta(seconds=wait)


async def attempt_delivery(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    delivery_id: uuid.UUID,
    *,
    attempt: int | None = None,
) -> Outcome | None:
    """Make one attempt of a pending delivery and record it; None when the row is gone.

    `attempt` (the workflow's) is the attempt's number: when the row already counts that many, the
    attempt was made (a step run again after a crash) and is not repeated. Without it, a delivery
    whose next attempt is not due yet is left alone. Either way a finished delivery is not sent again.
    """
    async with unit_of_work(sessionmaker, write=False) as session:
        delivery = await session.get(NotificationDelivery, delivery_id)
        if delivery is None:
            return None
        done = attempt is not None and delivery.attempts >= attempt
        not_due = attempt is None and delivery.next_attempt_at is not None and delivery.next_attempt_at > utcnow()
        if delivery.status != DeliveryStatus.pending or done or not_due:
            return _outcome(delivery)
        target = await _target(session, delivery, settings)

    result = await _send(target, settings)

    async with unit_of_work(sessionmaker) as session:
        delivery = await session.get(NotificationDelivery, delivery_id, with_for_update=True)
        if delivery is None:
            return None
        if delivery.status == DeliveryStatus.pending and delivery.attempts == target.attempts:
            _record(delivery, result, settings.notifications)
        # else: another process recorded this attempt first; its record stands.
        outcome = _outcome(delivery)
    log = logger.info if result.verdict == "succeeded" else logger.warning
    log(
        "notification attempt",
        delivery_id=str(delivery_id),
        channel=target.channel.value,
        notification_event=target.event,
        verdict=result.verdict,
        status_code=result.status_code,
        error=result.error,
        attempts=outcome.attempts,
        status=outcome.status.value,
    )
    return outcome


async def deliver_pending(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    ids: Sequence[uuid.UUID] | None = None,
    *,
    max_wait_seconds: float | None = None,
) -> list[Outcome]:
    """Deliver the pending deliveries `ids` (None: every pending one) in this process, retrying each
    with backoff until it succeeds or fails; returns their final outcomes. What runs after commit
    when jobs are off; the job system runs the same attempts through its workflow instead.

    `max_wait_seconds`: a delivery whose next attempt is due later than that is left pending (its
    `next_attempt_at` set) instead of waited for; a worker resumes it when the job system starts."""
    if ids is None:
        async with unit_of_work(sessionmaker, write=False) as session:
            query = sa.select(NotificationDelivery.id).where(NotificationDelivery.status == DeliveryStatus.pending)
            ids = list((await session.execute(query.order_by(NotificationDelivery.id))).scalars())
    limit = asyncio.Semaphore(CONCURRENCY)

    async def deliver(delivery_id: uuid.UUID) -> Outcome | None:
        while True:
            async with limit:  # not held while waiting for the next attempt
                outcome = await attempt_delivery(sessionmaker, settings, delivery_id)
            if outcome is None or outcome.retry_in is None:
                return outcome
            if max_wait_seconds is not None and outcome.retry_in > max_wait_seconds:
                return outcome
            await asyncio.sleep(outcome.retry_in)

    outcomes = await asyncio.gather(*(deliver(delivery_id) for delivery_id in ids))
    return [outcome for outcome in outcomes if outcome is not None]
