"""One embedder per process (per event loop for remote ones: their HTTP clients belong to a loop)."""

from __future__ import annotations

import asyncio
import threading

from tessera.core.embeddings.base import Embedder
from tessera.settings import EmbeddingSettings, RetrievalSettings

_lock = threading.Lock()
_embedders: dict[tuple[str, int], Embedder] = {}


def get_embedder(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.registry import create_embedder

    loop_key = id(asyncio.get_running_loop()) if settings.provider == "openai" else 0
    key = (settings.model_dump_json(), loop_key)
    with _lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = create_embedder(settings)
            _embedders[key] = embedder
        return embedder


def retrieval_settings() -> RetrievalSettings:
    """The running server's retrieval settings (those the document pipeline was configured with)."""
    from tessera.core.documents.runtime import PipelineContext

    return PipelineContext.settings().retrieval
