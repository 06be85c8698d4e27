"""Real local servers for what notifications talk to: an HTTP server that receives webhooks and an
SMTP server (aiosmtpd); and apps whose notification settings retry at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI

from tessera.core.db.session import unit_of_work
from tessera.core.notifications.models import DeliveryChannel, DeliveryStatus, NotificationDelivery
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn
from tests.processes import free_port
from tests.servers import serve_in_thread

# Retries at once and few of them: tests see every attempt without waiting.
FAST_RETRIES: dict[str, Any] = {"mailer": "fake", "backoff_base_seconds": 0, "max_attempts": 3}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """Records every request and answers with the next status of `statuses` (200 once none is left),
    with a `Retry-After` header when `retry_after` is set."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        received = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        self.requests.append(Received(scope["path"], received, body))
        status = self.statuses.pop(0) if self.statuses else 200
        headers = [(b"content-type", b"text/plain")]
        if self.retry_after is not None:
            headers.append((b"retry-after", self.retry_after.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": f"answer {status}".encode()})


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    app = WebhookReceiver()
    with serve_in_thread(app, "webhook receiver") as url:
        app.url = url
        yield app


class SmtpSink:
    """Accepts every message, except for recipients at `refused.example` (550) and `busy.example` (451)."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 No such user here"
        if address.endswith("@busy.example"):
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    sink: SmtpSink
    port: int

    @property
    def settings(self) -> dict[str, Any]:
        """The `notifications` settings that send through this server."""
        return {"mailer": "smtp", "smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_tls": "none"}


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(sink, port)
    finally:
        controller.stop()


def notification_settings(database_url: str, tmp_path: Path, **notifications: Any) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        notifications={**FAST_RETRIES, **notifications},
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return notification_settings(database_url, tmp_path)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def http_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def create_endpoint(
    client: httpx.AsyncClient, user: SignedIn, url: str, events: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks", json={"url": url, "events": events or ["*"], **extra}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def load_delivery(app: FastAPI, delivery_id: uuid.UUID | str) -> NotificationDelivery:
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        delivery = await session.get(NotificationDelivery, uuid.UUID(str(delivery_id)))
    assert delivery is not None
    return delivery


async def add_pending_delivery(app: FastAPI, org_id: str, endpoint_id: str, event: str = "test.event") -> uuid.UUID:
    """A pending webhook delivery written straight to the database, as a crash would leave it: no
    delivery starts after this commit."""
    async with unit_of_work(app.state.sessionmaker) as session:
        delivery = NotificationDelivery(
            org_id=uuid.UUID(org_id),
            channel=DeliveryChannel.webhook,
            endpoint_id=uuid.UUID(endpoint_id),
            event=event,
            payload={"n": 1},
            status=DeliveryStatus.pending,
        )
        session.add(delivery)
        await session.flush()
        return delivery.id
