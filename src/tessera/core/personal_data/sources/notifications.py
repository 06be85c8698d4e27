"""The notification delivery log: e-mails sent to the user, and webhook payloads that name them.

An e-mail whose only recipient is the user is deleted; one sent to others too loses the user's
address. Webhook deliveries are the organization's log of what it sent its own systems: they
stay, with the user's id, e-mail and name scrubbed from their payloads.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.models import User
from tessera.core.notifications.models import DeliveryChannel, NotificationDelivery
from tessera.core.personal_data.sources.common import in_org, scrub


def _addressed_to(email: str) -> Any:
    return func.lower(cast(NotificationDelivery.recipients, Text)).contains(email, autoescape=True)


class NotificationsSource:
    name = "notifications"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        email = await session.scalar(select(User.email).where(User.id == user_id))
        if email is None:
            return []
        rows = await session.execute(
            select(NotificationDelivery)
            .where(NotificationDelivery.channel == DeliveryChannel.email, _addressed_to(email.lower()))
            .order_by(NotificationDelivery.created_at)
        )
        return [
            {
                "id": row.id,
                "org_id": row.org_id,
                "subject": row.payload.get("subject"),
                "text": row.payload.get("text"),
                "status": row.status,
                "created_at": row.created_at,
                "delivered_at": row.delivered_at,
            }
            for row in rows.scalars()
            if email.lower() in (address.lower() for address in row.recipients)
        ]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        account = (await session.execute(select(User.email, User.name).where(User.id == user_id))).one_or_none()
        email = account.email.lower() if account else None
        ids = [str(user_id), user_id.hex]
        payload = func.lower(cast(NotificationDelivery.payload, Text))
        mentions = [payload.contains(value, autoescape=True) for value in [*ids, *([email] if email else [])]]
        if email:
            mentions.append(_addressed_to(email))
        rows = await session.execute(
            in_org(select(NotificationDelivery).where(or_(*mentions)), NotificationDelivery.org_id, org_id)
        )
        count = 0
        for delivery in rows.scalars():
            recipients = [address for address in delivery.recipients if address.lower() != email]
            addressed = len(recipients) < len(delivery.recipients)
            if delivery.channel == DeliveryChannel.email and addressed and not recipients:
                await session.delete(delivery)
                count += 1
                continue
            needles = [*ids, *([email] if email else [])]
            if addressed and account and account.name.strip():
                needles.append(account.name.strip().lower())
            scrubbed = scrub(delivery.payload, needles)
            if addressed or scrubbed != delivery.payload:
                delivery.recipients = recipients
                delivery.payload = scrubbed
                count += 1
        await session.flush()
        return count
