"""Any OpenAI-compatible `/v1/embeddings` server (OpenAI, TEI, vLLM, Ollama)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from tessera.core.embeddings.base import TextKind, Vectors
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.settings import EmbeddingSettings

ATTEMPTS = 3


class OpenAIEmbedder:
    def __init__(self, settings: EmbeddingSettings) -> None:
        if not settings.base_url or not settings.model:
            raise ValueError("the openai embedder needs a base URL and a model")
        self.settings = settings
        self.name = f"openai:{settings.model}"
        self.dimension = settings.dimension or 0
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {}
            if self.settings.api_key is not None:
                headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
            self._client = httpx.AsyncClient(
                base_url=str(self.settings.base_url).rstrip("/"), headers=headers, timeout=self.settings.timeout_seconds
            )
        return self._client

    async def _call(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.settings.model, "input": texts}
        if self.settings.dimension:
            body["dimensions"] = self.settings.dimension
        delay = 0.5
        for attempt in range(ATTEMPTS):
            try:
                response = await self._http().post("/embeddings", json=body)
            except httpx.HTTPError as error:
                if attempt == ATTEMPTS - 1:
                    raise ProviderUnavailable(
                        f"The embeddings server is unreachable: {type(error).__name__}"
                    ) from error
            else:
                if response.status_code == 200:
                    data = sorted(response.json()["data"], key=lambda item: item["index"])
                    return [item["embedding"] for item in data]
                retryable = response.status_code == 429 or response.status_code >= 500
                if not retryable:
                    raise ProviderRejected(
                        f"The embeddings server refused the request ({response.status_code})",
                        details={"status": response.status_code, "body": response.text[:500]},
                    )
                if attempt == ATTEMPTS - 1:
                    raise ProviderUnavailable(f"The embeddings server answered {response.status_code}")
                retry_after = response.headers.get("retry-after", "")
                if retry_after.replace(".", "", 1).isdigit():
                    delay = min(float(retry_after), 30.0)
            await asyncio.sleep(delay)
            delay *= 2
        raise ProviderUnavailable("The embeddings server did not answer")

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> Vectors:
        rows: list[list[float]] = []
        items = list(texts)
        for start in range(0, len(items), self.settings.batch_size):
            rows.extend(await self._call(items[start : start + self.settings.batch_size]))
        if not rows:
            return np.zeros((0, self.dimension), np.float32)
        vectors = np.asarray(rows, np.float32)
        self.dimension = int(vectors.shape[1])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out: Vectors = vectors / np.maximum(norms, 1e-12)
        return out

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
