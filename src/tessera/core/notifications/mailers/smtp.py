"""Sends through an SMTP server with aiosmtplib: STARTTLS, implicit TLS or plain, optional AUTH."""

from __future__ import annotations

from typing import Literal

import aiosmtplib

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.notifications.mailers.base import Email

SmtpTls = Literal["starttls", "tls", "none"]
DEFAULT_PORTS: dict[SmtpTls, int] = {"starttls": 587, "tls": 465, "none": 25}


def _response_error(code: int, message: str) -> ProviderRejected | ProviderUnavailable:
    # RFC 5321 4.2.1: 4yz replies are transient (try again), 5yz permanent.
    text = f"SMTP server answered {code}: {message}"
    if code >= 500:
        return ProviderRejected(text, details={"smtp_code": code})
    return ProviderUnavailable(text, details={"smtp_code": code})


class SmtpMailer:
    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: SmtpTls = "starttls",
        timeout_seconds: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port or DEFAULT_PORTS[tls]
        self.username = username
        self.password = password
        self.tls = tls
        self.timeout_seconds = timeout_seconds

    async def send(self, email: Email) -> None:
        try:
            await aiosmtplib.send(
                email.to_mime(),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls == "tls",
                start_tls=self.tls == "starttls",
                timeout=self.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            refused = ", ".join(f"{item.recipient} ({item.code})" for item in error.recipients)
            raised = _response_error(min(codes, default=550), f"recipients refused: {refused}")
            raise raised from error
        except aiosmtplib.SMTPResponseException as error:
            raise _response_error(error.code, error.message) from error
        except aiosmtplib.SMTPNotSupported as error:  # e.g. no STARTTLS offered: a setting to fix
            raise ProviderRejected(f"SMTP server: {error}") from error
        except (aiosmtplib.SMTPException, OSError) as error:  # refused, disconnected, timed out
            raise ProviderUnavailable(f"SMTP server {self.host}:{self.port} unavailable: {error}") from error
