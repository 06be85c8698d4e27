"""What other areas call to notify: `emit` (webhooks), `queue_email`, and `deliver_pending`.

`emit` and `queue_email` only write pending delivery rows in the caller's transaction; delivery
starts once it commits (`jobs.deliver_after_commit`), so a rolled-back request notifies nobody.
`deliver_pending` is the delivery itself, run in process (re-exported here as part of the API).
Managing endpoints and the delivery log is in `endpoints`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.base import new_id, utcnow
from tessera.core.notifications.delivery import deliver_pending as deliver_pending
from tessera.core.notifications.errors import InvalidEmail
from tessera.core.notifications.jobs import deliver_after_commit
from tessera.core.notifications.models import DeliveryChannel, DeliveryStatus, NotificationDelivery, WebhookEndpoint
from tessera.core.notifications.schemas import EVENT_NAME_PATTERN

EMAIL_EVENT = "email"
MAX_RECIPIENTS = 50
MAX_SUBJECT_CHARS = 998  # RFC 5322's line limit
_EVENT_NAME = re.compile(EVENT_NAME_PATTERN)


def subscribed(patterns: Sequence[str], event: str) -> bool:
    """Whether an endpoint listening to `patterns` (names, `prefix.*`, `*`) receives `event`."""
    return any(
        pattern in ("*", event) or (pattern.endswith(".*") and event.startswith(pattern[:-1])) for pattern in patterns
    )


def new_delivery(
    org_id: uuid.UUID, channel: DeliveryChannel, event: str, payload: dict[str, Any], **extra: Any
) -> NotificationDelivery:
    """A pending delivery, not yet added to a session."""
    return NotificationDelivery(
        id=new_id(),
        org_id=org_id,
        channel=channel,
        event=event,
        payload=payload,
        status=DeliveryStatus.pending,
        attempts=0,
        created_at=utcnow(),
        **extra,
    )


async def emit(
    session: AsyncSession, *, org_id: uuid.UUID, event: str, payload: dict[str, Any]
) -> list[NotificationDelivery]:
    """Notify `event` with `payload` (JSON-serialisable) to every active webhook endpoint of the
    organization subscribed to it: one pending delivery each, delivered after the commit.

    Raises:
        ValueError: `event` is not a dotted lower-case name (`support.handoff`).
    """
    if not _EVENT_NAME.fullmatch(event) or len(event) > 100:
        raise ValueError(f"invalid event name {event!r}: use dotted lower-case names such as 'support.handoff'")
    endpoints = (
        await session.execute(
            sa.select(WebhookEndpoint)
            .where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.active.is_(True))
            .order_by(WebhookEndpoint.id)
        )
    ).scalars()
    deliveries = [
        new_delivery(org_id, DeliveryChannel.webhook, event, payload, endpoint_id=endpoint.id)
        for endpoint in endpoints
        if subscribed(endpoint.events, event)
    ]
    session.add_all(deliveries)
    await session.flush()
    deliver_after_commit(session, deliveries)
    return deliveries


def _address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidEmail(f"{value!r} is not a valid e-mail address: {error}", details={"address": value}) from error


async def queue_email(
    session: AsyncSession,
    *,
    org_id: uuid.UUID,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
) -> NotificationDelivery:
    """One e-mail to `to`, sent by the configured mailer after the commit.

    Raises:
        InvalidEmail: no recipient or more than 50, an invalid address, or a subject that is empty,
            too long or spans lines.
    """
    if not 1 <= len(to) <= MAX_RECIPIENTS:
        raise InvalidEmail(f"An e-mail needs between 1 and {MAX_RECIPIENTS} recipients")
    recipients = list(dict.fromkeys(_address(address) for address in to))
    if not subject.strip() or len(subject) > MAX_SUBJECT_CHARS or any(char in subject for char in "\r\n\x00"):
        raise InvalidEmail("The subject must be one non-empty line of at most 998 characters")
    if "\x00" in text or (html is not None and "\x00" in html):
        raise InvalidEmail("The body must not contain NUL characters")
    delivery = new_delivery(
        org_id,
        DeliveryChannel.email,
        EMAIL_EVENT,
        {"subject": subject, "text": text, "html": html},
        recipients=recipients,
    )
    session.add(delivery)
    await session.flush()
    deliver_after_commit(session, [delivery])
    return delivery
