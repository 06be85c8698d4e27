"""One chat model per process and settings (per event loop for HTTP providers: their clients
belong to a loop), so circuit breakers see every call of the process."""

from __future__ import annotations

import asyncio
import hashlib
import threading

from tessera.core.generation.base import ChatModel
from tessera.core.retrieval.runtime import get_embedder
from tessera.settings import GenerationSettings, Settings

_lock = threading.Lock()
_models: dict[tuple[str, int], ChatModel] = {}


def get_chat_model(settings: Settings, generation: GenerationSettings | None = None) -> ChatModel:
    """The chat model of `generation` (default: the server's `generation` settings; an assistant
    passes its own, see `core/assistants`)."""
    from tessera.core.generation.registry import create_chat_model

    generation = generation or settings.generation
    remote = {generation.provider, *generation.fallback} & {"openai", "anthropic"}
    secret = generation.api_key.get_secret_value() if generation.api_key else ""
    key = (
        generation.model_dump_json(exclude={"profiles", "instructions", "prices"})
        + hashlib.sha256(secret.encode()).hexdigest()
        + settings.embeddings.model_dump_json(),
        id(asyncio.get_running_loop()) if remote else 0,
    )
    with _lock:
        model = _models.get(key)
        if model is None:
            model = create_chat_model(generation, get_embedder(settings.embeddings))
            _models[key] = model
        return model


def forget_chat_models() -> None:
    with _lock:
        _models.clear()


async def close_chat_models() -> None:
    """Close the HTTP clients of the models this event loop uses (at shutdown) and forget them."""
    loop = id(asyncio.get_running_loop())
    with _lock:
        mine = [key for key in _models if key[1] in (loop, 0)]
        models = [_models.pop(key) for key in mine]
    for model in models:
        await model.close()
