"""`RemoteAIClient`: the AI client over HTTP to a `tessera serve --role ai` process.

Each call carries the service token, has a timeout, and is retried with exponential backoff and
jitter when the service is down, times out or answers 5xx. After `circuit_failures` failures in a
row the circuit opens: calls fail at once with `AIServiceUnavailable` (503, `Retry-After`) for
`circuit_cooldown_seconds`, then one trial call decides. Nothing degrades silently: a request
that needs PII masking fails rather than going on unmasked.
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
import numpy as np
from pydantic import BaseModel

from tessera.core.ai.client import AIHealth
from tessera.core.ai.errors import AIServiceMisconfigured, AIServiceUnavailable
from tessera.core.ai.status import ModelsStatus
from tessera.core.embeddings.base import TextKind, Vectors
from tessera.core.entities.schemas import ClinicalContext, EntityExtraction
from tessera.core.errors import AppError, InvalidInput, PayloadTooLarge
from tessera.core.generation.resilience import CircuitBreaker
from tessera.core.observability.logging import get_logger
from tessera.core.privacy.base import PiiEntity
from tessera.settings import Settings

logger = get_logger("tessera.ai")
M = TypeVar("M", bound=BaseModel)
INTERNAL_PREFIX = "/internal/ai"
BACKOFF_SECONDS = 0.2


def service_token(settings: Settings) -> str:
    """The shared secret between API and AI service: configured, or derived from the secret key
    (so two processes with the same `secret_key` agree without more configuration)."""
    if settings.ai.service_token is not None:
        return settings.ai.service_token.get_secret_value()
    import hashlib
    import hmac

    return hmac.new(settings.signing_key.encode(), b"tessera-ai-service-token", hashlib.sha256).hexdigest()


def encode_vectors(vectors: Vectors) -> str:
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode()


def decode_vectors(data: str, rows: int) -> Vectors:
    flat = np.frombuffer(base64.b64decode(data), dtype="<f4").astype(np.float32)
    return flat.reshape(rows, -1) if rows else flat.reshape(0, 0)


class RemoteAIClient:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.ai.url:
            raise ValueError("RemoteAIClient needs ai.url")
        self.settings = settings
        self.url = settings.ai.url.rstrip("/")
        self.circuit = CircuitBreaker(settings.ai.circuit_failures, settings.ai.circuit_cooldown_seconds)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=settings.ai.timeout_seconds,
            headers={"Authorization": f"Bearer {service_token(settings)}"},
            transport=transport,
        )

    async def _post(self, path: str, payload: dict[str, Any]) -> Any:
        return await self._call("POST", path, payload)

    async def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        if not self.circuit.allow():
            retry_after = self.circuit.retry_after()
            raise AIServiceUnavailable(
                f"The AI service at {self.url} is unavailable (circuit open); retry in {retry_after:.0f} s",
                details={"url": self.url, "circuit": "open"},
                headers={"Retry-After": str(max(1, round(retry_after)))},
            )
        attempts = self.settings.ai.retries + 1
        last: str = ""
        for attempt in range(attempts):
            try:
                response = await self._http.request(method, INTERNAL_PREFIX + path, json=payload)
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"[:300] or type(error).__name__
            else:
                if response.status_code < 500:
                    self.circuit.success()
                    return self._result(response)
                last = f"HTTP {response.status_code}"
            logger.warning("AI service call failed", path=path, attempt=attempt + 1, error=last)
            if attempt + 1 < attempts:
                await asyncio.sleep(BACKOFF_SECONDS * 2**attempt * (0.5 + random.random()))
        self.circuit.failure()
        raise AIServiceUnavailable(
            f"The AI service at {self.url} is unavailable: {last}",
            details={"url": self.url, "attempts": attempts, "circuit": self.circuit.state},
            headers={"Retry-After": str(max(1, round(self.circuit.retry_after() or 5)))},
        )

    def _result(self, response: httpx.Response) -> Any:
        if response.status_code < 400:
            return response.json()
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        message = str(error.get("message") or f"AI service answered {response.status_code}")
        if response.status_code in (401, 403):
            raise AIServiceMisconfigured(
                "The AI service refused this API's service token: set the same TESSERA_AI__SERVICE_TOKEN "
                "(or TESSERA_SECRET_KEY) on both",
                details={"url": self.url},
            )
        if response.status_code == 413:
            raise PayloadTooLarge(message, details=error.get("details"))
        if response.status_code in (400, 422):
            raise InvalidInput(message, details=error.get("details"))
        raise AppError(message, details=error.get("details"))

    async def analyze_pii(
        self,
        text: str,
        *,
        language: str = "en",
        entities: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> list[PiiEntity]:
        body = {
            "text": text,
            "language": language,
            "entities": list(entities) if entities is not None else None,
            "allow": list(allow),
            "deny": list(deny),
            "score_threshold": score_threshold,
        }
        data = await self._post("/pii/analyze", body)
        return [PiiEntity(**{**item, "flags": tuple(item.get("flags") or ())}) for item in data["entities"]]

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> tuple[str, Vectors]:
        data = await self._post("/embeddings", {"texts": list(texts), "kind": kind})
        return str(data["model"]), decode_vectors(data["vectors"], len(texts))

    async def _model(self, path: str, payload: dict[str, Any], schema: type[M]) -> M:
        return schema.model_validate(await self._post(path, payload))

    async def extract_entities(self, text: str, *, language: str = "en") -> EntityExtraction:
        return await self._model("/ner/extract", {"text": text, "language": language}, EntityExtraction)

    async def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        return await self._model("/ner/context", {"text": text, "language": language}, ClinicalContext)

    async def warm_up(self) -> None:
        return None  # the AI service warms its own models when it starts

    async def health(self) -> AIHealth:
        circuit = self.circuit.state
        if circuit == "open":
            return AIHealth(
                status="unavailable",
                mode="remote",
                url=self.url,
                circuit="open",
                retry_after_seconds=round(self.circuit.retry_after(), 1),
                detail="calls fail fast after repeated failures",
            )
        try:
            data = await self._call("GET", "/health")
        except AIServiceUnavailable as error:
            return AIHealth(
                status="unavailable", mode="remote", url=self.url, circuit=self.circuit.state, detail=error.message
            )
        remote = AIHealth.model_validate(data)
        return remote.model_copy(update={"mode": "remote", "url": self.url, "circuit": self.circuit.state})

    async def models_status(self) -> ModelsStatus:
        data = await self._call("GET", "/models/status")
        status = ModelsStatus.model_validate(data)
        return status.model_copy(update={"mode": "remote", "url": self.url})

    async def close(self) -> None:
        await self._http.aclose()
