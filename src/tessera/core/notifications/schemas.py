from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from tessera.core.notifications.models import DeliveryChannel, DeliveryStatus
from tessera.core.pagination import Page
from tessera.core.strings import Text

EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
# An event name, `<prefix>.*` (every event under the prefix), or `*` (every event).
EVENT_PATTERN = r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$"
MAX_URL_CHARS = 2_048
MAX_EVENTS = 50

_EXAMPLE_URL = "https://hooks.example.com/tessera"
_EXAMPLE_SECRET = "whsec_8Q2f5ZcT1yXq0m4nW7pK9rVb3sLd6hJe2aUo1iGt5Ck"


def _one_star(events: list[str]) -> list[str]:
    unique = list(dict.fromkeys(events))
    if "*" in unique and len(unique) > 1:
        raise ValueError('"*" already subscribes to every event: list it alone')
    return unique


EventPattern = Annotated[str, StringConstraints(pattern=EVENT_PATTERN, max_length=100)]
EventList = Annotated[list[EventPattern], Field(min_length=1, max_length=MAX_EVENTS), AfterValidator(_one_star)]
Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_URL_CHARS)]

_URL_DESCRIPTION = (
    "Where events are POSTed: an http(s) URL. Servers in production refuse private, loopback and reserved "
    "addresses (`notifications.allow_private_targets`)."
)
_EVENTS_DESCRIPTION = (
    "Events to receive: names (`support.handoff`), prefixes (`support.*`), or `*` alone for every event. "
    "`ping` (the test event) is always sent."
)


class WebhookEndpointCreate(BaseModel):
    url: Url = Field(description=_URL_DESCRIPTION)
    events: EventList = Field(description=_EVENTS_DESCRIPTION)
    description: Text = Field("", max_length=500)
    active: bool = Field(True, description="Inactive endpoints receive nothing.")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": _EXAMPLE_URL, "events": ["support.handoff"], "description": "Agents' helpdesk", "active": True}
            ]
        },
    )


class WebhookEndpointUpdate(BaseModel):
    """Fields left out keep their value."""

    url: Url | None = Field(None, description=_URL_DESCRIPTION)
    events: EventList | None = Field(None, description=_EVENTS_DESCRIPTION)
    description: Text | None = Field(None, max_length=500)
    active: bool | None = None
    rotate_secret: bool = Field(
        False, description="Replace the signing secret; the response shows the new one, this once."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": ["support.*"], "active": True}, {"rotate_secret": True}]},
    )


class WebhookEndpointRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str
    events: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointRead):
    secret: str = Field(
        description="Signs every request (`X-Tessera-Signature`). Shown only in this response: store it now.",
        examples=[_EXAMPLE_SECRET],
    )


class WebhookEndpointUpdated(WebhookEndpointRead):
    secret: str | None = Field(
        None, description="The new secret when `rotate_secret` was true (shown only this once); else null."
    )


class WebhookEndpointPage(Page[WebhookEndpointRead]):
    pass


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Sent as `X-Tessera-Delivery` and as the body's `id`.")
    channel: DeliveryChannel
    endpoint_id: uuid.UUID | None
    event: str
    payload: dict[str, Any] = Field(description="The event's data: the body's `data`.")
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = Field(description="The last attempt's HTTP status; null when none came back.")
    last_error: str | None = Field(description="Why the last attempt failed (status and start of the answer).")
    next_attempt_at: datetime | None = Field(description="Pending: when the next attempt is due.")
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(Page[DeliveryRead]):
    pass
