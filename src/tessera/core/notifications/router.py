"""`/api/v1/webhooks`: an organization's outbound webhook endpoints, their delivery log, test pings
and redeliveries. Owners and admins only (`webhooks` is an admin resource).

The router's lifespan resumes deliveries left pending by a crash once the job system has started
(the app's own lifespan runs first: FastAPI nests an included router's lifespan inside it).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Response, status

from tessera.core.auth.dependencies import RequestMetaDep, SettingsDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput, PermissionDenied
from tessera.core.notifications import endpoints
from tessera.core.notifications.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    InvalidWebhookUrl,
    WebhookEndpointInactive,
    WebhookEndpointNotFound,
)
from tessera.core.notifications.jobs import resume_pending
from tessera.core.notifications.models import DeliveryStatus
from tessera.core.notifications.schemas import (
    DeliveryPage,
    DeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPage,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointUpdated,
)
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit


@asynccontextmanager
async def _resume_pending_deliveries(app: FastAPI) -> AsyncIterator[None]:
    jobs = getattr(app.state, "jobs", None)
    if jobs is not None:
        await resume_pending(app.state.sessionmaker, jobs)
    yield


router = APIRouter(
    prefix="/webhooks",
    tags=["notifications"],
    dependencies=[rate_limit("default")],
    lifespan=_resume_pending_deliveries,
)
Reader = Annotated[Principal, require("webhooks:read")]
Writer = Annotated[Principal, require("webhooks:write")]
Deleter = Annotated[Principal, require("webhooks:delete")]

_SIGNING = (
    "Every request is a POST of `{id, event, created_at, org_id, data}` with `X-Tessera-Event`, "
    '`X-Tessera-Delivery` and `X-Tessera-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">` '
    "(see docs/notifications.md)."
)


def _location(response: Response, delivery_id: uuid.UUID) -> None:
    response.headers["Location"] = f"/api/v1/webhooks/deliveries/{delivery_id}"


@router.post(
    "",
    response_model=WebhookEndpointCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Register a webhook endpoint",
    description="Events of the organization that match `events` are POSTed to `url`, signed with the "
    "endpoint's secret. The secret is in this response only: store it now (`rotate_secret` makes a new one). "
    + _SIGNING
    + " Needs `webhooks:write` (owners and admins).",
    responses={403: PermissionDenied.schema(), 422: InvalidWebhookUrl.schema()},
)
async def create_endpoint(
    body: WebhookEndpointCreate,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    meta: RequestMetaDep,
    response: Response,
) -> WebhookEndpointCreated:
    endpoint = await endpoints.create_endpoint(session, principal, body, settings, meta=meta)
    response.headers["Location"] = f"/api/v1/webhooks/{endpoint.id}"
    return WebhookEndpointCreated.model_validate(endpoint)


@router.get(
    "",
    response_model=WebhookEndpointPage,
    summary="List the organization's webhook endpoints",
    description="Newest first, without their secrets. Needs `webhooks:read` (owners and admins).",
)
async def list_endpoints(
    principal: Reader,
    session: DbSession,
    page: PageParamsDep,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive (false) endpoints.")] = None,
) -> WebhookEndpointPage:
    rows, cursor = await endpoints.list_endpoints(session, principal, params=page, active=active)
    return WebhookEndpointPage(items=[WebhookEndpointRead.model_validate(row) for row in rows], next_cursor=cursor)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryRead,
    summary="One webhook delivery",
    description="Its status, attempts, and the last attempt's status code and error.",
    responses={404: DeliveryNotFound.schema()},
)
async def get_delivery(delivery_id: uuid.UUID, principal: Reader, session: DbSession) -> DeliveryRead:
    return DeliveryRead.model_validate(await endpoints.get_delivery(session, principal, delivery_id))


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a delivery's event again",
    description="A new delivery (new id) of the same event and data to the same endpoint, with its URL and "
    "secret as they are now; the original stays in the log. Only for deliveries that succeeded or failed. "
    "Needs `webhooks:write`.",
    responses={
        403: PermissionDenied.schema(),
        404: DeliveryNotFound.schema(),
        409: DeliveryInProgress.schema(),
    },
)
async def redeliver(delivery_id: uuid.UUID, principal: Writer, session: DbSession, response: Response) -> DeliveryRead:
    delivery = await endpoints.redeliver(session, principal, delivery_id)
    _location(response, delivery.id)
    return DeliveryRead.model_validate(delivery)


@router.get(
    "/{endpoint_id}",
    response_model=WebhookEndpointRead,
    summary="A webhook endpoint",
    description="Its URL, events and state; the secret is never shown again after creation.",
    responses={404: WebhookEndpointNotFound.schema()},
)
async def get_endpoint(endpoint_id: uuid.UUID, principal: Reader, session: DbSession) -> WebhookEndpointRead:
    return WebhookEndpointRead.model_validate(await endpoints.get_endpoint(session, principal, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=WebhookEndpointUpdated,
    summary="Change a webhook endpoint, or rotate its secret",
    description="`url`, `events`, `description`, `active`; fields left out keep their value. "
    "`rotate_secret: true` replaces the secret at once (pending retries are signed with the new one) and "
    "returns it in `secret`, this once. Needs `webhooks:write`.",
    responses={403: PermissionDenied.schema(), 404: WebhookEndpointNotFound.schema(), 422: InvalidWebhookUrl.schema()},
)
async def update_endpoint(
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    meta: RequestMetaDep,
) -> WebhookEndpointUpdated:
    endpoint, secret = await endpoints.update_endpoint(session, principal, endpoint_id, body, settings, meta=meta)
    read = WebhookEndpointRead.model_validate(endpoint)
    return WebhookEndpointUpdated(**read.model_dump(), secret=secret)


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a webhook endpoint",
    description="With its delivery log; its pending deliveries are not attempted again. Needs `webhooks:delete`.",
    responses={404: WebhookEndpointNotFound.schema()},
)
async def delete_endpoint(
    endpoint_id: uuid.UUID, principal: Deleter, session: DbSession, meta: RequestMetaDep
) -> Response:
    await endpoints.delete_endpoint(session, principal, endpoint_id, meta=meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{endpoint_id}/test",
    response_model=DeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a test event",
    description="A `ping` event (`data`: a message and the endpoint's id) to this endpoint, whatever it "
    "subscribes to, delivered and retried like any other. Follow it in the delivery log (`Location`). "
    "Needs `webhooks:write`.",
    responses={
        403: PermissionDenied.schema(),
        404: WebhookEndpointNotFound.schema(),
        409: WebhookEndpointInactive.schema(),
    },
)
async def send_test(endpoint_id: uuid.UUID, principal: Writer, session: DbSession, response: Response) -> DeliveryRead:
    delivery = await endpoints.send_ping(session, principal, endpoint_id)
    _location(response, delivery.id)
    return DeliveryRead.model_validate(delivery)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=DeliveryPage,
    summary="An endpoint's delivery log",
    description="Every delivery to the endpoint, newest first, with its attempts, last status code and error; "
    "`status` narrows it (e.g. `failed`). Needs `webhooks:read`.",
    responses={404: WebhookEndpointNotFound.schema(), 422: InvalidInput.schema()},
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    principal: Reader,
    session: DbSession,
    page: PageParamsDep,
    status_filter: Annotated[
        DeliveryStatus | None, Query(alias="status", description="Only deliveries in this status.")
    ] = None,
) -> DeliveryPage:
    rows, cursor = await endpoints.list_deliveries(session, principal, endpoint_id, params=page, status=status_filter)
    return DeliveryPage(items=[DeliveryRead.model_validate(row) for row in rows], next_cursor=cursor)
