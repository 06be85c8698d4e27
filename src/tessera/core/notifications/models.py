"""An organization's webhook endpoints, and the log of every notification delivery (e-mail or webhook):
a delivery row is written pending in the transaction that produces it, then attempted after commit."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin, utcnow


class DeliveryChannel(enum.StrEnum):
    email = "email"
    webhook = "webhook"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhook_endpoint"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(Text, default="")
    # Event names, `<prefix>.*` patterns, or ["*"] for every event.
    events: Mapped[list[str]] = mapped_column()
    # The HMAC key of `X-Tessera-Signature`: kept readable, as signing needs it (as Stripe does).
    secret: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(default=True)


class NotificationDelivery(IdMixin, Base):
    __tablename__ = "notification_delivery"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"), index=True)
    channel: Mapped[DeliveryChannel] = mapped_column(
        Enum(DeliveryChannel, name="delivery_channel", native_enum=False, length=16, validate_strings=True)
    )
    # Webhooks only; a deleted endpoint takes its delivery log with it.
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True, default=None
    )
    event: Mapped[str] = mapped_column(String(100))
    # Webhooks: the event's data. E-mail: {"subject", "text", "html"}.
    payload: Mapped[dict[str, Any]] = mapped_column()
    recipients: Mapped[list[str]] = mapped_column(default=list)  # e-mail only
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="delivery_status", native_enum=False, length=16, validate_strings=True),
        default=DeliveryStatus.pending,
        index=True,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    # The last attempt's HTTP status (webhooks) or SMTP reply code (e-mail), when there was one.
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Pending only: when the next attempt is due (None: at once).
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
