"""Writes each message to the log and sends nothing: the default where no SMTP server is set."""

from __future__ import annotations

import structlog

from tessera.core.notifications.mailers.base import Email

logger = structlog.get_logger(__name__)


class LogMailer:
    name = "log"

    async def send(self, email: Email) -> None:
        logger.info(
            "e-mail written to the log, not sent (notifications.mailer=log)",
            sender=email.sender,
            recipients=list(email.recipients),
            subject=email.subject,
            text=email.text,
            has_html=email.html is not None,
            message_id=email.message_id,
        )
