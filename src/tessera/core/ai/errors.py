"""Errors of the AI client: the AI service cannot be reached or refused our credentials."""

from __future__ import annotations

from tessera.core.errors import ProviderUnavailable


class AIServiceUnavailable(ProviderUnavailable):
    """The AI service (PII, entities, embeddings) is unavailable: the request that needs it fails
    rather than going on without it (nothing unmasked is stored or sent on). Retry later."""

    code = "ai_unavailable"


class AIServiceMisconfigured(ProviderUnavailable):
    """The AI service refused this API's service token: `ai.service_token` (or `secret_key`)
    differs between the two processes."""

    code = "ai_misconfigured"
