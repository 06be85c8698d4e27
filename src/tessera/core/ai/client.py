"""`AIClient`: how the API asks for AI work (PII, entities, embeddings).

In process by default; over HTTP to a `tessera serve --role ai` when `ai.url` is set
(`tessera.core.ai.remote`). Both speak the same methods, so routes and services never know
where the models run. The AI side is stateless compute: organization policies (allow and deny
lists, the pseudonym vault, intent sets) stay with the API and travel as arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from tessera.core.embeddings.base import TextKind, Vectors
from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.registry import get_pii_detector
from tessera.core.retrieval.runtime import get_embedder
from tessera.settings import Settings

T = TypeVar("T")


class AIClient(Protocol):
    async def analyze_pii(
        self,
        text: str,
        *,
        language: str = "en",
        entities: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> list[PiiEntity]: ...

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> tuple[str, Vectors]:
        """(the embedding model's name, one L2-normalised row per text)."""
        ...

    async def close(self) -> None: ...


class InProcessAIClient:
    """Runs the models in this process; CPU work goes to a small pool so the event loop stays free."""

    def __init__(self, settings: Settings, *, workers: int = 2) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-ai")

    async def _run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: function(*args, **kwargs))

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
        detector = get_pii_detector(self.settings.privacy)
        found: list[PiiEntity] = await self._run(
            detector.analyze,
            text,
            language=language,
            entities=entities,
            allow=allow,
            deny=deny,
            score_threshold=score_threshold,
        )
        return found

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> tuple[str, Vectors]:
        embedder = get_embedder(self.settings.embeddings)
        return embedder.name, await embedder.embed(texts, kind=kind)

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
