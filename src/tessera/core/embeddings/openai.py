"""Any OpenAI-compatible `POST {base_url}/embeddings` server: OpenAI, Hugging Face TEI, vLLM, Ollama.

Dimension: `settings.dimension` when set, and then also sent as `dimensions` (OpenAI's
text-embedding-3 models and some servers shorten their vectors to it). When unset it is learnt from
the server on first use: `ensure_ready()` embeds one short probe text, and `embed` calls it first, so
`dimension` is known before any vector is stored. Every later answer must have that dimension.

Failures: timeouts, connection errors, 429 and 5xx are retried (3 attempts in all, exponential
backoff, `Retry-After` honoured) and then raise `ProviderUnavailable`; any other 4xx, or an answer
that is not a list of vectors in order, raises `ProviderRejected` at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from tessera.core.embeddings.base import TextKind, Vectors, with_context
from tessera.core.errors import AppError, ProviderRejected, ProviderUnavailable
from tessera.core.observability.logging import get_logger
from tessera.settings import EmbeddingSettings

logger = get_logger(__name__)

ATTEMPTS = 3
BACKOFF_SECONDS = 0.5
MAX_RETRY_AFTER_SECONDS = 30.0
PROBE_TEXT = "dimension probe"


class OpenAIEmbedder:
    def __init__(self, settings: EmbeddingSettings, *, backoff_seconds: float = BACKOFF_SECONDS) -> None:
        if not settings.base_url or not settings.model:
            raise ValueError(
                "the openai embeddings provider needs TESSERA_EMBEDDINGS__BASE_URL and TESSERA_EMBEDDINGS__MODEL"
            )
        self.name = f"openai:{settings.model}"
        self.model = settings.model
        self.base_url = settings.base_url.rstrip("/")
        self.batch_size = settings.batch_size
        self.requested_dimension = settings.dimension
        self.timeout_seconds = settings.timeout_seconds
        self.backoff_seconds = backoff_seconds
        self._api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self._dimension = settings.dimension
        self._client: httpx.AsyncClient | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            raise RuntimeError(f"{self.name}: the dimension is learnt from the server; await ensure_ready() first")
        return self._dimension

    @dimension.setter
    def dimension(self, value: int) -> None:
        self._dimension = value

    async def ensure_ready(self) -> None:
        """Learn the dimension from the server unless the settings give it (one tiny request)."""
        if self._dimension is None:
            await self._request([PROBE_TEXT])

    async def embed(
        self, texts: Sequence[str], *, kind: TextKind = "passage", contexts: Sequence[str] | None = None
    ) -> Vectors:
        # Queries and passages are embedded alike: OpenAI-style servers take no instruction here.
        # Their windows are long (8k tokens for OpenAI's models); the server cuts what is longer.
        await self.ensure_ready()
        # OpenAI refuses empty strings; a space embeds as "nothing" just as well.
        items = [text or " " for text in with_context(texts, contexts)]
        parts = [await self._request(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dimension), dtype=np.float32)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_seconds)
            )
        return self._client

    async def _request(self, texts: list[str]) -> Vectors:
        body: dict[str, Any] = {"model": self.model, "input": texts}
        if self.requested_dimension:
            body["dimensions"] = self.requested_dimension
        failure: AppError = ProviderUnavailable(f"{self.name}: no attempt was made")
        for attempt in range(1, ATTEMPTS + 1):
            delay = self.backoff_seconds * 2 ** (attempt - 1) * random.uniform(1.0, 1.25)
            try:
                response = await self._http().post("/embeddings", json=body)
            except httpx.TimeoutException:
                failure = ProviderUnavailable(f"{self.name}: no answer within {self.timeout_seconds:g} s")
            except httpx.TransportError as exc:
                failure = ProviderUnavailable(f"{self.name}: cannot reach the server ({type(exc).__name__})")
            else:
                status = response.status_code
                if response.is_success:
                    return self._vectors(response, len(texts))
                if status != 429 and status < 500:
                    logger.warning("embeddings_rejected", model=self.name, status=status, body=response.text[:500])
                    raise ProviderRejected(f"{self.name}: the server refused the request (HTTP {status})")
                failure = ProviderUnavailable(
                    f"{self.name}: {'rate limited' if status == 429 else 'server error'} (HTTP {status})"
                )
                delay = _retry_after(response) if response.headers.get("retry-after") else delay
            if attempt < ATTEMPTS:
                logger.info("embeddings_retry", model=self.name, attempt=attempt, reason=failure.message, delay=delay)
                await asyncio.sleep(delay)
        raise failure

    def _vectors(self, response: httpx.Response, count: int) -> Vectors:
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: int(item["index"]))
            indices = [int(item["index"]) for item in rows]
            matrix = np.asarray([item["embedding"] for item in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderRejected(f"{self.name}: the server's answer is not a list of embeddings") from exc
        if indices != list(range(count)) or matrix.ndim != 2 or not np.isfinite(matrix).all():
            raise ProviderRejected(f"{self.name}: the server returned {len(indices)} embeddings for {count} texts")
        if self._dimension is None:
            self._dimension = int(matrix.shape[1])
        elif matrix.shape[1] != self._dimension:
            raise ProviderRejected(
                f"{self.name}: the server returned {matrix.shape[1]}-dimensional vectors, expected {self._dimension}"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        vectors: Vectors = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
        return vectors


def _retry_after(response: httpx.Response) -> float:
    """`Retry-After` in seconds (a number or an HTTP date), within [0, MAX_RETRY_AFTER_SECONDS]."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
