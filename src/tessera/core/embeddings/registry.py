"""Embedders by provider name, built from the `embeddings` settings."""

from __future__ import annotations

from collections.abc import Callable

from tessera.core.embeddings.base import Embedder
from tessera.core.embeddings.fake import FakeEmbedder
from tessera.settings import EmbeddingSettings


def _local(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.local import LocalOnnxEmbedder

    return LocalOnnxEmbedder(settings)


def _openai(settings: EmbeddingSettings) -> Embedder:
    from tessera.core.embeddings.openai import OpenAIEmbedder

    if not settings.base_url or not settings.model:
        raise ValueError("the openai embedder needs TESSERA_EMBEDDINGS__BASE_URL and TESSERA_EMBEDDINGS__MODEL")
    return OpenAIEmbedder(settings)


def _fake(settings: EmbeddingSettings) -> Embedder:
    return FakeEmbedder(settings.dimension or 64)


EMBEDDERS: dict[str, Callable[[EmbeddingSettings], Embedder]] = {"local": _local, "openai": _openai, "fake": _fake}


def create_embedder(settings: EmbeddingSettings) -> Embedder:
    try:
        factory = EMBEDDERS[settings.provider]
    except KeyError:
        raise ValueError(f"unknown embeddings provider {settings.provider!r}") from None
    embedder = factory(settings)
    if settings.cache_entries > 0:
        from tessera.core.embeddings.cache import CachedEmbedder

        return CachedEmbedder(embedder, settings.cache_entries)
    return embedder
