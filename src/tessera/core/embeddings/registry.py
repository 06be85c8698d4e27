"""Embedders by provider name, built from the `embeddings` settings section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from tessera.core.embeddings.base import Embedder
from tessera.settings import EmbeddingSettings

EmbeddingProviderName = Literal["local", "openai", "fake"]


def _local(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.local import LocalOnnxEmbedder  # onnxruntime loads only when chosen

    return LocalOnnxEmbedder(settings)


def _openai(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.openai import OpenAIEmbedder

    return OpenAIEmbedder(settings)


def _fake(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.fake import FakeEmbedder

    # `max_tokens` counts words here: passages longer than it are embedded in windows.
    return FakeEmbedder(settings.dimension or 64, window_words=settings.max_tokens)


EMBEDDING_PROVIDERS: dict[EmbeddingProviderName, Callable[[EmbeddingSettings], Embedder]] = {
    "local": _local,
    "openai": _openai,
    "fake": _fake,
}
EMBEDDERS = EMBEDDING_PROVIDERS


def create_embedder(settings: EmbeddingSettings) -> Embedder:
    """The configured embedder, behind an LRU of vectors when `cache_entries` > 0.

    Raises:
        ValueError: the settings do not describe a usable embedder (e.g. `openai` without
            `base_url` or `model`).
    """
    factory = EMBEDDING_PROVIDERS.get(settings.provider)
    if factory is None:
        raise ValueError(f"unknown embeddings provider {settings.provider!r}: use one of {sorted(EMBEDDING_PROVIDERS)}")
    embedder = factory(settings)
    if settings.cache_entries > 0:
        from tessera.core.embeddings.cache import CachedEmbedder

        return CachedEmbedder(embedder, settings.cache_entries)
    return embedder
