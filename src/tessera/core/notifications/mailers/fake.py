"""Keeps messages in memory: tests select it with `notifications.mailer=fake` and read `outbox`."""

from __future__ import annotations

from typing import ClassVar

from tessera.core.notifications.mailers.base import Email


class FakeMailer:
    name = "fake"
    # One outbox per process, whichever instance sent: the app builds its mailer itself, and tests
    # read what it sent here (clear it first).
    outbox: ClassVar[list[Email]] = []

    async def send(self, email: Email) -> None:
        FakeMailer.outbox.append(email)
