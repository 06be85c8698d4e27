"""Chat models by provider name, built from the `generation` settings, each behind retries and a
circuit breaker, chained with the configured fallbacks."""

from __future__ import annotations

from collections.abc import Callable

from tessera.core.embeddings.base import Embedder
from tessera.core.generation.base import ChatModel
from tessera.core.generation.resilience import CircuitBreaker, FallbackChatModel, ResilientChatModel
from tessera.settings import ChatProviderName, GenerationSettings

Factory = Callable[[GenerationSettings, Embedder | None], ChatModel]


def _extractive(settings: GenerationSettings, embedder: Embedder | None) -> ChatModel:
    from tessera.core.generation.extractive import ExtractiveChatModel

    return ExtractiveChatModel(embedder)


def _openai(settings: GenerationSettings, embedder: Embedder | None) -> ChatModel:
    from tessera.core.generation.openai import OpenAIChatModel

    return OpenAIChatModel(settings)


def _anthropic(settings: GenerationSettings, embedder: Embedder | None) -> ChatModel:
    from tessera.core.generation.anthropic import AnthropicChatModel

    return AnthropicChatModel(settings)


def _llamacpp(settings: GenerationSettings, embedder: Embedder | None) -> ChatModel:
    from tessera.core.generation.llamacpp import LlamaCppChatModel

    return LlamaCppChatModel(settings)


def _fake(settings: GenerationSettings, embedder: Embedder | None) -> ChatModel:
    from tessera.core.generation.fake import FakeChatModel

    return FakeChatModel()


CHAT_PROVIDERS: dict[str, Factory] = {
    "extractive": _extractive,
    "openai": _openai,
    "anthropic": _anthropic,
    "llamacpp": _llamacpp,
    "fake": _fake,
}


def create_chat_model(settings: GenerationSettings, embedder: Embedder | None = None) -> ChatModel:
    """The configured provider, then its fallbacks (each once, in order), as one model.

    Raises:
        ValueError: a provider is unknown or its settings do not describe a usable model.
    """
    names: list[ChatProviderName] = list(dict.fromkeys([settings.provider, *settings.fallback]))
    chain: list[ChatModel] = []
    for name in names:
        factory = CHAT_PROVIDERS.get(name)
        if factory is None:
            raise ValueError(f"unknown chat provider {name!r}: use one of {sorted(CHAT_PROVIDERS)}")
        model = factory(settings, embedder)
        if name == "extractive":
            chain.append(model)  # offline and deterministic: nothing to retry
            continue
        breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_seconds)
        chain.append(
            ResilientChatModel(model, retries=settings.retries, backoff=settings.backoff_seconds, breaker=breaker)
        )
    return chain[0] if len(chain) == 1 else FallbackChatModel(chain)
