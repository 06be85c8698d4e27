"""An organization's webhook endpoints and their delivery log: what `/api/v1/webhooks` does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import NO_REQUEST, RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id, utcnow
from tessera.core.notifications.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    WebhookEndpointInactive,
    WebhookEndpointNotFound,
)
from tessera.core.notifications.jobs import deliver_after_commit
from tessera.core.notifications.models import DeliveryChannel, DeliveryStatus, NotificationDelivery, WebhookEndpoint
from tessera.core.notifications.schemas import WebhookEndpointCreate, WebhookEndpointUpdate
from tessera.core.notifications.service import new_delivery
from tessera.core.notifications.signing import new_secret
from tessera.core.notifications.targets import check_url, private_targets_allowed
from tessera.core.pagination import PageParams, paginate
from tessera.settings import Settings

PING_EVENT = "ping"


async def get_endpoint(session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.org_id != principal.org_id:
        raise WebhookEndpointNotFound("Webhook endpoint not found")
    return endpoint


async def list_endpoints(
    session: AsyncSession, principal: Principal, *, params: PageParams, active: bool | None = None
) -> tuple[Sequence[WebhookEndpoint], str | None]:
    """Newest first."""
    query = sa.select(WebhookEndpoint).where(WebhookEndpoint.org_id == principal.org_id)
    if active is not None:
        query = query.where(WebhookEndpoint.active.is_(active))
    return await paginate(session, query, key=WebhookEndpoint.id, params=params)


def _audit_details(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {"url": endpoint.url, "events": list(endpoint.events), "active": endpoint.active}


async def create_endpoint(
    session: AsyncSession,
    principal: Principal,
    body: WebhookEndpointCreate,
    settings: Settings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> WebhookEndpoint:
    """The new endpoint carries its secret: show it in this response only."""
    assert principal.org_id is not None  # `require` lets no principal without an organization through
    endpoint = WebhookEndpoint(
        id=new_id(),
        org_id=principal.org_id,
        url=check_url(body.url, allow_private=private_targets_allowed(settings)),
        description=body.description,
        events=body.events,
        secret=new_secret(),
        active=body.active,
    )
    session.add(endpoint)
    await session.flush()
    await record_event(
        session, action="webhook.created", org_id=endpoint.org_id, actor=principal.actor, meta=meta,
        target_type="webhook_endpoint", target_id=endpoint.id, details=_audit_details(endpoint),
    )  # fmt: skip
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    principal: Principal,
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    settings: Settings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> tuple[WebhookEndpoint, str | None]:
    """Returns the endpoint and its new secret when `rotate_secret` asked for one."""
    endpoint = await get_endpoint(session, principal, endpoint_id)
    if body.url is not None:
        endpoint.url = check_url(body.url, allow_private=private_targets_allowed(settings))
    if body.events is not None:
        endpoint.events = body.events
    if body.description is not None:
        endpoint.description = body.description
    if body.active is not None:
        endpoint.active = body.active
    secret = new_secret() if body.rotate_secret else None
    if secret is not None:
        endpoint.secret = secret
    endpoint.updated_at = utcnow()
    await session.flush()
    await record_event(
        session, action="webhook.updated", org_id=endpoint.org_id, actor=principal.actor, meta=meta,
        target_type="webhook_endpoint", target_id=endpoint.id,
        details={**_audit_details(endpoint), "secret_rotated": secret is not None},
    )  # fmt: skip
    return endpoint, secret


async def delete_endpoint(
    session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID, *, meta: RequestMeta = NO_REQUEST
) -> None:
    """With its delivery log; pending deliveries to it stop."""
    endpoint = await get_endpoint(session, principal, endpoint_id)
    details = _audit_details(endpoint)
    await session.delete(endpoint)
    await session.flush()
    await record_event(
        session, action="webhook.deleted", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="webhook_endpoint", target_id=endpoint_id, details=details,
    )  # fmt: skip


def _require_active(endpoint: WebhookEndpoint) -> None:
    if not endpoint.active:
        raise WebhookEndpointInactive("The endpoint is deactivated: set `active` to true first")


async def send_ping(session: AsyncSession, principal: Principal, endpoint_id: uuid.UUID) -> NotificationDelivery:
    """A `ping` event to this endpoint alone, whatever it subscribes to."""
    endpoint = await get_endpoint(session, principal, endpoint_id)
    _require_active(endpoint)
    delivery = new_delivery(
        endpoint.org_id,
        DeliveryChannel.webhook,
        PING_EVENT,
        {"message": "Test event from Tessera", "endpoint_id": str(endpoint.id)},
        endpoint_id=endpoint.id,
    )
    session.add(delivery)
    await session.flush()
    deliver_after_commit(session, [delivery])
    return delivery


# --- the delivery log ------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    principal: Principal,
    endpoint_id: uuid.UUID,
    *,
    params: PageParams,
    status: DeliveryStatus | None = None,
) -> tuple[Sequence[NotificationDelivery], str | None]:
    """Newest first."""
    endpoint = await get_endpoint(session, principal, endpoint_id)
    query = sa.select(NotificationDelivery).where(NotificationDelivery.endpoint_id == endpoint.id)
    if status is not None:
        query = query.where(NotificationDelivery.status == status)
    return await paginate(session, query, key=NotificationDelivery.id, params=params)


async def get_delivery(session: AsyncSession, principal: Principal, delivery_id: uuid.UUID) -> NotificationDelivery:
    """A webhook delivery of the caller's organization (e-mail deliveries are not shown here)."""
    delivery = await session.get(NotificationDelivery, delivery_id)
    if delivery is None or delivery.org_id != principal.org_id or delivery.channel != DeliveryChannel.webhook:
        raise DeliveryNotFound("Delivery not found")
    return delivery


async def redeliver(session: AsyncSession, principal: Principal, delivery_id: uuid.UUID) -> NotificationDelivery:
    """Send a finished delivery's event again, as a new delivery (with its own id) to the same endpoint."""
    original = await get_delivery(session, principal, delivery_id)
    if original.status == DeliveryStatus.pending:
        raise DeliveryInProgress("The delivery is still pending")
    assert original.endpoint_id is not None  # webhook deliveries always have one
    _require_active(await get_endpoint(session, principal, original.endpoint_id))
    delivery = new_delivery(
        original.org_id,
        DeliveryChannel.webhook,
        original.event,
        dict(original.payload),
        endpoint_id=original.endpoint_id,
    )
    session.add(delivery)
    await session.flush()
    deliver_after_commit(session, [delivery])
    return delivery
