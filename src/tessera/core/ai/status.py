"""What the AI side has loaded: each capability's model, state, load time and memory.

Models load lazily, on first use or at warm-up; `ModelBoard` records when each one became ready,
how long that took and how much the process's resident memory grew meanwhile (a fair estimate
while loads run one at a time, which warm-up does).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")
ModelState = Literal["not_loaded", "loading", "ready", "failed"]


class ModelStatus(BaseModel):
    capability: str = Field(description="What the model does: `pii`, `entities`, `embeddings`.")
    model: str | None = Field(None, description="The model or engine, with its version where known.")
    state: ModelState = "not_loaded"
    load_seconds: float | None = Field(None, description="Time to load (and run once), in seconds.")
    memory_mb: float | None = Field(None, description="Growth of the process's resident memory while it loaded.")
    loaded_at: datetime | None = None
    error: str | None = Field(None, description="Why loading failed, when it did.")


class ModelsStatus(BaseModel):
    mode: Literal["in_process", "remote"] = Field(description="Where the models run, seen from this process.")
    url: str | None = Field(None, description="The AI service, in remote mode.")
    process_memory_mb: float = Field(description="Resident memory of the process that runs the models.")
    models: list[ModelStatus]


def resident_memory_mb() -> float:
    """Current resident set size (Linux `/proc`), else the peak from `getrusage`."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class ModelBoard:
    """One entry per capability; `load` builds a capability's model once, thread-safely."""

    def __init__(self, capabilities: dict[str, str | None]) -> None:
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in capabilities}
        self._status = {name: ModelStatus(capability=name, model=model) for name, model in capabilities.items()}
        self._built: dict[str, object] = {}

    def load(self, capability: str, build: Callable[[], T], *, describe: Callable[[T], str | None] | None = None) -> T:
        built = self._built.get(capability)
        if built is not None:
            return built  # type: ignore[return-value]
        with self._loading[capability]:
            built = self._built.get(capability)
            if built is not None:
                return built  # type: ignore[return-value]
            self._update(capability, state="loading", error=None)
            memory_before = resident_memory_mb()
            started = time.perf_counter()
            try:
                value = build()
            except Exception as error:
                self._update(capability, state="failed", error=f"{type(error).__name__}: {error}"[:300])
                raise
            self._update(
                capability,
                state="ready",
                load_seconds=round(time.perf_counter() - started, 3),
                memory_mb=round(max(0.0, resident_memory_mb() - memory_before), 1),
                loaded_at=datetime.now(UTC),
                model=describe(value) if describe else self._status[capability].model,
            )
            self._built[capability] = value
            return value

    def is_ready(self, capability: str) -> bool:
        return self._status[capability].state == "ready"

    @contextmanager
    def measure(self, capability: str) -> Iterator[Callable[[str | None], None]]:
        """Times a load done elsewhere (e.g. an async first call): the body calls the yielded
        function with the model's name once the model works."""
        described: list[str | None] = []
        self._update(capability, state="loading", error=None)
        memory_before = resident_memory_mb()
        started = time.perf_counter()
        try:
            yield described.append
        except BaseException as error:
            self._update(capability, state="failed", error=f"{type(error).__name__}: {error}"[:300])
            raise
        self._update(
            capability,
            state="ready",
            load_seconds=round(time.perf_counter() - started, 3),
            memory_mb=round(max(0.0, resident_memory_mb() - memory_before), 1),
            loaded_at=datetime.now(UTC),
            model=described[-1] if described else self._status[capability].model,
        )

    def _update(self, capability: str, **fields: object) -> None:
        with self._lock:
            self._status[capability] = self._status[capability].model_copy(update=fields)

    def snapshot(self) -> list[ModelStatus]:
        with self._lock:
            return [status.model_copy() for status in self._status.values()]
