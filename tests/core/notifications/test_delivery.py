"""Delivering and retrying, through the service API other areas call (`emit`, `queue_email`,
`deliver_pending`), with jobs off: delivery runs in process once the unit of work commits."""

from __future__ import annotations

import email
import json
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tessera.core.db.session import unit_of_work
from tessera.core.notifications import service as notifications
from tessera.core.notifications.delivery import attempt_delivery, backoff_seconds
from tessera.core.notifications.errors import InvalidEmail
from tessera.core.notifications.mailers.fake import FakeMailer
from tessera.core.notifications.models import DeliveryStatus
from tessera.core.notifications.signing import verify_signature
from tessera.settings import NotificationSettings
from tests.core.notifications.conftest import (
    SmtpServer,
    WebhookReceiver,
    add_pending_delivery,
    create_endpoint,
    http_client,
    load_delivery,
    notification_settings,
    running_app,
)
from tests.factories import register
from tests.processes import free_port

HANDOFF = {"conversation_id": "c-42", "reason": "asked for a human"}


async def emit(app: FastAPI, org_id: str, event: str = "support.handoff") -> list[uuid.UUID]:
    """`emit` in a unit of work that commits; returns the deliveries' ids."""
    async with unit_of_work(app.state.sessionmaker) as session:
        deliveries = await notifications.emit(session, org_id=uuid.UUID(org_id), event=event, payload=HANDOFF)
        return [delivery.id for delivery in deliveries]


async def test_emit_reaches_every_active_endpoint_subscribed_to_the_event(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    other_org = await register(client)
    subscribed = {
        "exact": await create_endpoint(client, owner, f"{receiver.url}/exact", ["support.handoff"]),
        "prefix": await create_endpoint(client, owner, f"{receiver.url}/prefix", ["billing.paid", "support.*"]),
        "all": await create_endpoint(client, owner, f"{receiver.url}/all", ["*"]),
    }
    await create_endpoint(client, owner, f"{receiver.url}/other-event", ["support.feedback", "billing.*"])
    await create_endpoint(client, owner, f"{receiver.url}/inactive", ["*"], active=False)
    await create_endpoint(client, other_org, f"{receiver.url}/other-org", ["*"])

    ids = await emit(app, owner.org_id)

    assert len(ids) == 3
    assert sorted(request.path for request in receiver.requests) == ["/all", "/exact", "/prefix"]
    for request in receiver.requests:
        endpoint = subscribed[request.path.strip("/")]
        assert verify_signature(endpoint["secret"], request.headers["x-tessera-signature"], request.body)
        body = json.loads(request.body)
        assert (body["event"], body["data"], body["org_id"]) == ("support.handoff", HANDOFF, owner.org_id)
        assert uuid.UUID(request.headers["x-tessera-delivery"]) in ids
    for delivery_id in ids:
        assert (await load_delivery(app, delivery_id)).status == DeliveryStatus.succeeded


async def test_emit_without_subscribers_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url, ["billing.*"])

    assert await emit(app, owner.org_id, "support.handoff") == []
    assert receiver.requests == []


async def test_nothing_is_sent_when_the_transaction_rolls_back(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url)

    async def fail_after_emitting() -> None:
        async with unit_of_work(app.state.sessionmaker) as session:
            await notifications.emit(session, org_id=uuid.UUID(owner.org_id), event="support.handoff", payload={})
            raise RuntimeError("the request failed after emitting")

    with pytest.raises(RuntimeError):
        await fail_after_emitting()

    assert receiver.requests == []
    assert await notifications.deliver_pending(app.state.sessionmaker, app.state.settings) == []


async def test_event_names_are_checked(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await register(client)

    for event in ("", "Support.Handoff", "support handoff", "support.*", "*"):
        with pytest.raises(ValueError, match="invalid event name"):
            await emit(app, owner.org_id, event)


async def test_server_errors_are_retried_until_the_endpoint_answers(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [500, 503]

    [delivery_id] = await emit(app, owner.org_id)

    delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.succeeded, 3, 200)
    assert delivery.last_error is None
    assert len(receiver.requests) == 3
    # The same delivery every time: one id and one body, freshly signed.
    assert {request.headers["x-tessera-delivery"] for request in receiver.requests} == {str(delivery_id)}
    assert len({request.body for request in receiver.requests}) == 1


async def test_timeouts_and_rate_limits_are_retried(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [408, 429]

    [delivery_id] = await emit(app, owner.org_id)

    delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.succeeded, 3)


@pytest.mark.parametrize("status_code", [400, 401, 404, 410, 301])
async def test_client_errors_and_redirects_fail_without_retry(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver, status_code: int
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [status_code]

    [delivery_id] = await emit(app, owner.org_id)

    delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 1, status_code)
    assert delivery.last_error == f"HTTP {status_code}: answer {status_code}"
    assert delivery.delivered_at is None
    assert len(receiver.requests) == 1


async def test_a_delivery_fails_once_its_attempts_run_out(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, receiver.url)
    receiver.statuses = [500, 502, 503, 200]

    [delivery_id] = await emit(app, owner.org_id)

    delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 3, 503)
    assert delivery.last_error == "HTTP 503: answer 503"
    assert delivery.next_attempt_at is None
    assert len(receiver.requests) == 3


async def test_an_unreachable_endpoint_is_retried_then_failed(app: FastAPI, client: httpx.AsyncClient) -> None:
    owner = await register(client)
    await create_endpoint(client, owner, f"http://127.0.0.1:{free_port()}/hook")

    [delivery_id] = await emit(app, owner.org_id)

    delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 3, None)
    assert delivery.last_error is not None
    assert delivery.last_error.startswith("ConnectError")


async def test_each_attempt_is_recorded_and_the_next_one_waits_for_its_backoff(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    settings = notification_settings(database_url, tmp_path, backoff_base_seconds=60, max_attempts=5)
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        endpoint = await create_endpoint(client, owner, receiver.url)
        delivery_id = await add_pending_delivery(app, owner.org_id, endpoint["id"])
        receiver.statuses = [500]

        first = await attempt_delivery(app.state.sessionmaker, settings, delivery_id)
        early = await attempt_delivery(app.state.sessionmaker, settings, delivery_id)
        repeated = await attempt_delivery(app.state.sessionmaker, settings, delivery_id, attempt=1)
        delivery = await load_delivery(app, delivery_id)
        second = await attempt_delivery(app.state.sessionmaker, settings, delivery_id, attempt=2)

    assert first is not None
    assert first.retry_in is not None
    assert 50 < first.retry_in <= 60
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.pending, 1, 500)
    assert delivery.last_error == "HTTP 500: answer 500"
    assert delivery.next_attempt_at is not None
    assert delivery.next_attempt_at >= delivery.created_at + timedelta(seconds=60)
    # Not due yet (in process), and attempt 1 already made (a workflow step run again): no request.
    assert early is not None
    assert repeated is not None
    assert (early.attempts, repeated.attempts) == (1, 1)
    # The workflow's attempt 2 runs when its queue delay is over, whatever the clock says.
    assert second is not None
    assert (second.status, second.attempts, second.retry_in) == (DeliveryStatus.succeeded, 2, None)
    assert len(receiver.requests) == 2


def test_backoff_doubles_up_to_its_cap() -> None:
    settings = NotificationSettings(backoff_base_seconds=30, backoff_max_seconds=100)

    assert [backoff_seconds(settings, attempts) for attempts in (1, 2, 3, 4)] == [30, 60, 100, 100]


async def test_a_longer_retry_after_is_honoured(database_url: str, tmp_path: Path, receiver: WebhookReceiver) -> None:
    settings = notification_settings(database_url, tmp_path, backoff_base_seconds=1, backoff_max_seconds=600)

    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        endpoint = await create_endpoint(client, owner, receiver.url)
        delivery_id = await add_pending_delivery(app, owner.org_id, endpoint["id"])
        receiver.statuses = [429]
        receiver.retry_after = "120"

        outcome = await attempt_delivery(app.state.sessionmaker, settings, delivery_id)

    assert outcome is not None
    assert outcome.retry_in is not None
    assert 110 < outcome.retry_in <= 120


async def test_deliver_pending_delivers_every_pending_delivery(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    ids = [await add_pending_delivery(app, owner.org_id, endpoint["id"], f"test.event_{n}") for n in range(3)]

    outcomes = await notifications.deliver_pending(app.state.sessionmaker, app.state.settings)

    assert sorted(outcome.delivery_id for outcome in outcomes) == sorted(ids)
    assert {outcome.status for outcome in outcomes} == {DeliveryStatus.succeeded}
    assert sorted(request.headers["x-tessera-event"] for request in receiver.requests) == [
        "test.event_0",
        "test.event_1",
        "test.event_2",
    ]
    assert await notifications.deliver_pending(app.state.sessionmaker, app.state.settings) == []


async def test_a_deactivated_endpoint_gets_no_pending_delivery(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    owner = await register(client)
    endpoint = await create_endpoint(client, owner, receiver.url)
    delivery_id = await add_pending_delivery(app, owner.org_id, endpoint["id"])
    await client.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"active": False}, headers=owner.headers)

    [outcome] = await notifications.deliver_pending(app.state.sessionmaker, app.state.settings, [delivery_id])

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.failed, 1)
    assert (await load_delivery(app, delivery_id)).last_error == "the endpoint is deactivated"
    assert receiver.requests == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_private_target_is_refused_when_connecting(
    app: FastAPI, client: httpx.AsyncClient, receiver: WebhookReceiver, host: str
) -> None:
    # Saved while private targets were allowed, sent once they are not: the check made at connection
    # time, on the addresses the host name resolves to, refuses it.
    owner = await register(client)
    port = receiver.url.rsplit(":", 1)[1]
    endpoint = await create_endpoint(client, owner, f"http://{host}:{port}/hook")
    delivery_id = await add_pending_delivery(app, owner.org_id, endpoint["id"])
    strict = app.state.settings.model_copy(
        update={"notifications": app.state.settings.notifications.model_copy(update={"allow_private_targets": False})}
    )

    [outcome] = await notifications.deliver_pending(app.state.sessionmaker, strict, [delivery_id])

    assert (outcome.status, outcome.attempts) == (DeliveryStatus.failed, 1)
    last_error = (await load_delivery(app, delivery_id)).last_error
    assert last_error is not None
    assert last_error == f"refused: {host} resolves to a private, loopback or reserved address"
    assert receiver.requests == []


# --- e-mail ----------------------------------------------------------------------------------


async def queue(app: FastAPI, org_id: str, to: list[str], **fields: str | None) -> uuid.UUID:
    async with unit_of_work(app.state.sessionmaker) as session:
        delivery = await notifications.queue_email(
            session,
            org_id=uuid.UUID(org_id),
            to=to,
            subject=fields.get("subject") or "Handoff: conversation c-42",
            text=fields.get("text") or "A customer asked for a human.",
            html=fields.get("html"),
        )
        return delivery.id


async def test_an_email_is_sent_through_the_smtp_server(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = notification_settings(
        database_url, tmp_path, **smtp_server.settings, from_address="Support <support@tessera.example>"
    )
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        delivery_id = await queue(
            app, owner.org_id, ["Agent@Example.org"], html="<p>A customer asked for a <b>human</b>.</p>"
        )
        delivery = await load_delivery(app, delivery_id)

    assert (delivery.channel, delivery.event, delivery.status, delivery.attempts) == (
        "email",
        "email",
        DeliveryStatus.succeeded,
        1,
    )
    assert delivery.recipients == ["Agent@example.org"]
    [envelope] = smtp_server.sink.messages
    assert envelope.mail_from == "support@tessera.example"
    assert envelope.rcpt_tos == ["Agent@example.org"]
    assert isinstance(envelope.content, bytes)
    message = email.message_from_bytes(envelope.content)
    assert message["From"] == "Support <support@tessera.example>"
    assert message["Subject"] == "Handoff: conversation c-42"
    assert message["Message-ID"] == f"<{delivery_id}@tessera.example>"
    bodies = {
        part.get_content_type(): bytes(part.get_payload(decode=True))
        for part in message.walk()
        if not part.is_multipart()
    }
    assert bodies["text/plain"].strip() == b"A customer asked for a human."
    assert b"<b>human</b>" in bodies["text/html"]


async def test_an_smtp_server_that_is_down_is_retried_then_failed(database_url: str, tmp_path: Path) -> None:
    down = {"mailer": "smtp", "smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_tls": "none"}
    settings = notification_settings(database_url, tmp_path, **down, max_attempts=2)
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        delivery_id = await queue(app, owner.org_id, ["agent@example.org"])
        delivery = await load_delivery(app, delivery_id)

    assert (delivery.status, delivery.attempts) == (DeliveryStatus.failed, 2)
    assert delivery.last_error is not None
    assert "unavailable" in delivery.last_error


async def test_a_refused_recipient_fails_the_email_at_once(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = notification_settings(database_url, tmp_path, **smtp_server.settings)
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        delivery_id = await queue(app, owner.org_id, ["nobody@refused.example"])
        delivery = await load_delivery(app, delivery_id)

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.failed, 1, 550)
    assert smtp_server.sink.messages == []


async def test_the_fake_mailer_keeps_the_email(app: FastAPI, client: httpx.AsyncClient) -> None:
    FakeMailer.outbox.clear()
    owner = await register(client)

    delivery_id = await queue(app, owner.org_id, ["agent@example.org", "agent@example.org", "lead@example.org"])

    [sent] = FakeMailer.outbox
    assert sent.recipients == ("agent@example.org", "lead@example.org")
    assert sent.subject == "Handoff: conversation c-42"
    assert sent.html is None
    assert (await load_delivery(app, delivery_id)).status == DeliveryStatus.succeeded


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ([], "Hello"),
        (["not-an-address"], "Hello"),
        (["a@example.org"] * 51, "Hello"),
        (["a@example.org"], "Two\nlines"),
        (["a@example.org"], "   "),
    ],
)
async def test_an_email_that_cannot_be_sent_is_refused(
    app: FastAPI, client: httpx.AsyncClient, to: list[str], subject: str
) -> None:
    owner = await register(client)

    with pytest.raises(InvalidEmail):
        await queue(app, owner.org_id, to, subject=subject)


async def test_without_jobs_a_long_backoff_is_left_to_a_worker(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """The request that notified is not held for minutes: the retry stays pending, due later."""
    settings = notification_settings(database_url, tmp_path, backoff_base_seconds=30, max_attempts=5)
    async with running_app(settings) as app, http_client(app) as client:
        owner = await register(client)
        await create_endpoint(client, owner, receiver.url)
        receiver.statuses = [503]

        [delivery_id] = await emit(app, owner.org_id)

        delivery = await load_delivery(app, delivery_id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.pending, 1)
    assert delivery.next_attempt_at is not None
    assert len(receiver.requests) == 1
