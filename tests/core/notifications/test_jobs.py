"""Delivery on the job system (DBOS, with the embedded worker): one workflow per attempt, retries
enqueued with their backoff as a delay, and pending deliveries resumed when the server starts."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from tessera.core.notifications.jobs import DELIVER_WORKFLOW
from tessera.core.notifications.models import DeliveryStatus, NotificationDelivery
from tessera.settings import Settings
from tests.core.notifications.conftest import (
    WebhookReceiver,
    add_pending_delivery,
    create_endpoint,
    http_client,
    load_delivery,
    notification_settings,
    running_app,
)
from tests.factories import register

WAIT_SECONDS = 90.0


def with_jobs(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"jobs": settings.jobs.model_copy(update={"enabled": True, "embedded_worker": True})}
    )


async def finished(app: FastAPI, delivery_id: uuid.UUID | str) -> NotificationDelivery:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        delivery = await load_delivery(app, delivery_id)
        if delivery.status != DeliveryStatus.pending:
            return delivery
        await asyncio.sleep(0.1)
    raise AssertionError(f"delivery {delivery_id} still pending after {WAIT_SECONDS} s")


async def test_the_worker_delivers_and_retries_after_a_delay(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    settings = with_jobs(notification_settings(database_url, tmp_path, backoff_base_seconds=0.2))
    receiver.statuses = [503]
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        endpoint = await create_endpoint(client, owner, receiver.url)

        sent = await client.post(f"/api/v1/webhooks/{endpoint['id']}/test", headers=owner.headers)
        assert sent.status_code == 202, sent.text
        delivery = await finished(app, sent.json()["id"])
        runs: list[tuple[str, Any]] = await app.state.jobs.find_workflows(prefix=f"{DELIVER_WORKFLOW}:{delivery.id}:")

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.succeeded, 2, 200)
    assert [request.headers["x-tessera-delivery"] for request in receiver.requests] == [str(delivery.id)] * 2
    # One workflow per attempt.
    assert sorted(workflow_id for workflow_id, _ in runs) == [
        f"{DELIVER_WORKFLOW}:{delivery.id}:1",
        f"{DELIVER_WORKFLOW}:{delivery.id}:2",
    ]


async def test_pending_deliveries_are_resumed_when_the_server_starts(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    settings = notification_settings(database_url, tmp_path)
    # A server that committed deliveries and died before starting them.
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        endpoint = await create_endpoint(client, owner, receiver.url)
        left = [await add_pending_delivery(app, owner.org_id, endpoint["id"]) for _ in range(2)]
    assert receiver.requests == []

    async with running_app(with_jobs(settings)) as app:
        deliveries = [await finished(app, delivery_id) for delivery_id in left]

    assert {delivery.status for delivery in deliveries} == {DeliveryStatus.succeeded}
    assert sorted(request.headers["x-tessera-delivery"] for request in receiver.requests) == sorted(map(str, left))
