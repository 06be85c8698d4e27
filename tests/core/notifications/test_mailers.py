from __future__ import annotations

import email
from email.message import Message
from typing import get_args

import pytest
from pydantic import ValidationError

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.notifications.mailers.base import Email
from tessera.core.notifications.mailers.fake import FakeMailer
from tessera.core.notifications.mailers.registry import MAILER_PROVIDERS, MailerProviderName, create_mailer
from tessera.core.notifications.mailers.smtp import SmtpMailer
from tessera.settings import NotificationSettings
from tests.core.notifications.conftest import SmtpServer
from tests.processes import free_port

MESSAGE = Email(
    sender="Tessera <bot@tessera.example>",
    recipients=("agent@example.org", "lead@example.org"),
    subject="A conversation needs you",
    text="Customer asked for a human.",
    html="<p>Customer asked for a <b>human</b>.</p>",
    message_id="<0190-abc@tessera.example>",
)


def parsed(data: bytes | str | None) -> Message:
    assert isinstance(data, bytes)
    return email.message_from_bytes(data)


def plain_mailer(server: SmtpServer) -> SmtpMailer:
    return SmtpMailer(host="127.0.0.1", port=server.port, tls="none", timeout_seconds=10)


async def test_smtp_mailer_delivers_through_a_real_server(smtp_server: SmtpServer) -> None:
    await plain_mailer(smtp_server).send(MESSAGE)

    [envelope] = smtp_server.sink.messages
    assert envelope.mail_from == "bot@tessera.example"
    assert envelope.rcpt_tos == ["agent@example.org", "lead@example.org"]
    message = parsed(envelope.content)
    assert message["From"] == "Tessera <bot@tessera.example>"
    assert message["Subject"] == "A conversation needs you"
    assert message["Message-ID"] == "<0190-abc@tessera.example>"
    parts = {
        part.get_content_type(): bytes(part.get_payload(decode=True))
        for part in message.walk()
        if not part.is_multipart()
    }
    assert b"Customer asked for a human." in parts["text/plain"]
    assert b"<b>human</b>" in parts["text/html"]


async def test_a_server_that_is_down_is_unavailable() -> None:
    mailer = SmtpMailer(host="127.0.0.1", port=free_port(), tls="none", timeout_seconds=5)

    with pytest.raises(ProviderUnavailable, match="unavailable"):
        await mailer.send(MESSAGE)


async def test_a_permanent_refusal_is_rejected_with_its_code(smtp_server: SmtpServer) -> None:
    refused = Email(sender=MESSAGE.sender, recipients=("nobody@refused.example",), subject="Hi", text="Hello")

    with pytest.raises(ProviderRejected) as raised:
        await plain_mailer(smtp_server).send(refused)

    assert raised.value.details == {"smtp_code": 550}
    assert smtp_server.sink.messages == []


async def test_a_temporary_refusal_is_unavailable(smtp_server: SmtpServer) -> None:
    busy = Email(sender=MESSAGE.sender, recipients=("someone@busy.example",), subject="Hi", text="Hello")

    with pytest.raises(ProviderUnavailable) as raised:
        await plain_mailer(smtp_server).send(busy)

    assert raised.value.details == {"smtp_code": 451}


async def test_starttls_is_required_and_never_skipped(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(host="127.0.0.1", port=smtp_server.port, tls="starttls", timeout_seconds=10)

    with pytest.raises(ProviderUnavailable, match="STARTTLS"):
        await mailer.send(MESSAGE)

    assert smtp_server.sink.messages == []  # not sent in plain text instead


async def test_the_fake_mailer_keeps_what_it_sends() -> None:
    FakeMailer.outbox.clear()

    await create_mailer(NotificationSettings(mailer="fake")).send(MESSAGE)

    assert FakeMailer.outbox == [MESSAGE]


def test_the_mailer_defaults_to_the_log_and_to_smtp_once_a_host_is_set() -> None:
    assert create_mailer(NotificationSettings()).name == "log"
    smtp = create_mailer(NotificationSettings(smtp_host="mail.example.com", smtp_tls="tls"))
    assert isinstance(smtp, SmtpMailer)
    assert smtp.port == 465
    assert create_mailer(NotificationSettings(smtp_host="mail.example.com", mailer="log")).name == "log"


def test_smtp_without_a_host_is_refused_at_start_up() -> None:
    with pytest.raises(ValidationError, match="SMTP_HOST"):
        NotificationSettings(mailer="smtp")


def test_the_settings_offer_exactly_the_registered_mailers() -> None:
    offered = get_args(NotificationSettings.model_fields["mailer"].annotation)[0]

    assert set(get_args(offered)) == set(get_args(MailerProviderName)) == set(MAILER_PROVIDERS)
