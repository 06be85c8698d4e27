"""The mailer protocol and the message it sends."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol


@dataclass(frozen=True)
class Email:
    sender: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    # Stable across attempts (the delivery's id), so a receiving system can drop a duplicate.
    message_id: str | None = None

    def to_mime(self) -> EmailMessage:
        """A MIME message: plain text, plus an HTML alternative when there is one."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = self.subject
        message["Date"] = formatdate(usegmt=True)
        if self.message_id:
            message["Message-ID"] = self.message_id
        message.set_content(self.text)
        if self.html is not None:
            message.add_alternative(self.html, subtype="html")
        return message


class Mailer(Protocol):
    name: str

    async def send(self, email: Email) -> None:
        """Hand `email` over for delivery; returns once the mail system has accepted it.

        Raises:
            ProviderUnavailable: the mail system could not be reached or refused for now (connection
                error, timeout, SMTP 4xx): the same message may succeed later.
            ProviderRejected: the mail system refused the message for good (SMTP 5xx: an unknown
                recipient, failed authentication): sending it again will not help. `details` holds
                `smtp_code` when the server answered with one.
        """
        ...
