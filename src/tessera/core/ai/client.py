"""`AIClient`: how the API asks for AI work (PII, entities, embeddings).

In process by default; over HTTP to a `tessera serve --role ai` when `ai.url` is set
(`tessera.core.ai.remote`). Both speak the same methods, so routes and services never know
where the models run. The AI side is stateless compute: organization policies (allow and deny
lists, the pseudonym vault, intent sets) stay with the API and travel as arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field

from tessera.core.ai.status import ModelBoard, ModelsStatus, resident_memory_mb
from tessera.core.embeddings.base import Embedder, TextKind, Vectors
from tessera.core.entities.base import EntityExtractor
from tessera.core.entities.registry import load_entity_extractor
from tessera.core.entities.schemas import ClinicalContext, EntityExtraction
from tessera.core.observability.logging import get_logger
from tessera.core.privacy.base import PiiDetector, PiiEntity
from tessera.core.privacy.registry import get_pii_detector
from tessera.core.retrieval.runtime import get_embedder
from tessera.settings import Settings

T = TypeVar("T")
logger = get_logger("tessera.ai")


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

    async def extract_entities(self, text: str, *, language: str = "en") -> EntityExtraction:
        """General (spaCy) and clinical entities of `text`, sorted by start (see EntityExtractor.extract)."""
        ...

    async def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        """The structured context of a visit note or transcript for a SOAP draft, with its entities."""
        ...

    async def warm_up(self) -> None:
        """Load every model now rather than on first use (never raises: failures show in status)."""
        ...

    async def health(self) -> AIHealth: ...

    async def models_status(self) -> ModelsStatus: ...

    async def close(self) -> None: ...


class AIHealth(BaseModel):
    status: Literal["ok", "unavailable"] = Field(description="`ok` when AI requests can be served now.")
    mode: Literal["in_process", "remote"]
    url: str | None = Field(None, description="The AI service, in remote mode.")
    circuit: Literal["closed", "open", "half_open"] | None = Field(
        None, description="Remote mode: `open` while calls fail fast after repeated failures."
    )
    retry_after_seconds: float | None = Field(None, description="While the circuit is open: until the next trial.")
    detail: str | None = None
    models_ready: list[str] = Field(default_factory=list, description="Capabilities whose models are loaded.")


WARM_UP_TEXT = "Warm-up: John Smith was seen on 3 March 2024 for tinnitus in the left ear."


class InProcessAIClient:
    """Runs the models in this process; CPU work goes to a small pool so the event loop stays free."""

    def __init__(self, settings: Settings, *, workers: int = 2) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tessera-ai")
        self.models = ModelBoard(
            {
                "pii": f"{settings.privacy.detector}",
                "entities": f"{settings.entities.extractor}",
                "embeddings": f"{settings.embeddings.provider}",
            }
        )

    def _pii(self) -> PiiDetector:
        def build() -> PiiDetector:
            detector = get_pii_detector(self.settings.privacy)
            detector.analyze(WARM_UP_TEXT)  # models inside load on first use: count that as loading
            return detector

        return self.models.load("pii", build, describe=lambda detector: detector.name)

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
        def analyze() -> list[PiiEntity]:
            return self._pii().analyze(
                text,
                language=language,
                entities=entities,
                allow=allow,
                deny=deny,
                score_threshold=self.settings.privacy.score_threshold if score_threshold is None else score_threshold,
            )

        found: list[PiiEntity] = await self._run(analyze)
        return found

    def _entities(self) -> EntityExtractor:
        return self.models.load(
            "entities", lambda: load_entity_extractor(self.settings.entities), describe=lambda e: e.model
        )

    async def extract_entities(self, text: str, *, language: str = "en") -> EntityExtraction:
        def extract() -> EntityExtraction:
            return self._entities().extract(text, language=language)

        extraction: EntityExtraction = await self._run(extract)
        return extraction

    async def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        def build() -> ClinicalContext:
            return self._entities().clinical_context(text, language=language)

        context: ClinicalContext = await self._run(build)
        return context

    async def embed(self, texts: Sequence[str], *, kind: TextKind = "passage") -> tuple[str, Vectors]:
        embedder = get_embedder(self.settings.embeddings)
        if not self.models.is_ready("embeddings"):
            await self._load_embedder(embedder)
        return embedder.name, await embedder.embed(texts, kind=kind)

    async def _load_embedder(self, embedder: Embedder) -> None:
        with self.models.measure("embeddings") as record:
            await embedder.embed([WARM_UP_TEXT], kind="query")
            record(embedder.name)

    async def warm_up(self) -> None:
        loads: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("pii", lambda: self._run(self._pii)),
            ("entities", lambda: self._run(self._entities)),
            ("embeddings", lambda: self._load_embedder(get_embedder(self.settings.embeddings))),
        ]
        for capability, load in loads:  # one at a time, so each one's memory growth is its own
            try:
                await load()
            except Exception:
                logger.exception("loading an AI model failed", capability=capability)
        logger.info("AI models warmed up", models=[s.model_dump(mode="json") for s in self.models.snapshot()])

    async def health(self) -> AIHealth:
        ready = [s.capability for s in self.models.snapshot() if s.state == "ready"]
        return AIHealth(status="ok", mode="in_process", models_ready=ready)

    async def models_status(self) -> ModelsStatus:
        return ModelsStatus(mode="in_process", process_memory_mb=resident_memory_mb(), models=self.models.snapshot())

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
