from __future__ import annotations

from tessera.core.errors import Conflict, InvalidInput, NotFound


class WebhookEndpointNotFound(NotFound):
    """The webhook endpoint does not exist or belongs to another organization."""

    code = "webhook_endpoint_not_found"


class DeliveryNotFound(NotFound):
    """The delivery does not exist, is not a webhook delivery, or belongs to another organization."""

    code = "delivery_not_found"


class InvalidWebhookUrl(InvalidInput):
    """The URL is not an http(s) URL this server may call (see `notifications.allow_private_targets`)."""

    code = "invalid_webhook_url"


class InvalidEmail(InvalidInput):
    """The e-mail cannot be sent as given: a recipient address or the subject is not valid."""

    code = "invalid_email"


class WebhookEndpointInactive(Conflict):
    """The endpoint is deactivated: it receives nothing until `active` is true again."""

    code = "webhook_endpoint_inactive"


class DeliveryInProgress(Conflict):
    """The delivery is still pending: redeliver it once it has succeeded or failed."""

    code = "delivery_in_progress"
