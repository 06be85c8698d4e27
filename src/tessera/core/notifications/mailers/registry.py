"""Mailers by provider name, built from the `notifications` settings section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tessera.core.notifications.mailers.base import Mailer
from tessera.settings import NotificationSettings

MailerProviderName = Literal["smtp", "log", "fake"]


def _smtp(settings: NotificationSettings) -> Mailer:
    from tessera.core.notifications.mailers.smtp import SmtpMailer  # aiosmtplib loads only when chosen

    if not settings.smtp_host:
        raise ValueError("the smtp mailer needs notifications.smtp_host")
    return SmtpMailer(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        tls=settings.smtp_tls,
        timeout_seconds=settings.smtp_timeout_seconds,
    )


def _log(settings: NotificationSettings) -> Mailer:
    from tessera.core.notifications.mailers.log import LogMailer

    return LogMailer()


def _fake(settings: NotificationSettings) -> Mailer:
    from tessera.core.notifications.mailers.fake import FakeMailer

    return FakeMailer()


MAILER_PROVIDERS: dict[MailerProviderName, Callable[[NotificationSettings], Mailer]] = {
    "smtp": _smtp,
    "log": _log,
    "fake": _fake,
}


def mailer_name(settings: NotificationSettings) -> MailerProviderName:
    """The configured provider: `mailer`, else `smtp` when an SMTP host is set, else `log`."""
    if settings.mailer is not None:
        return settings.mailer
    return "smtp" if settings.smtp_host else "log"


def create_mailer(settings: NotificationSettings) -> Mailer:
    """Cheap: mailers hold no connection (the SMTP one connects for each message)."""
    return MAILER_PROVIDERS[mailer_name(settings)](settings)
