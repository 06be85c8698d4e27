"""A generation profile is a connection of its own: its `model`, `base_url` and `api_key` never come
from the server's default connection, and a fallback chain never reaches another remote provider
with the profile's (or the server's) key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tessera.core.assistants.models import Assistant
from tessera.core.assistants.service import generation_settings
from tessera.core.generation.anthropic import AnthropicChatModel
from tessera.core.generation.openai import DEFAULT_BASE_URL, OpenAIChatModel
from tessera.settings import ChatProfile, GenerationSettings

SERVER = {
    "provider": "openai",
    "model": "internal-model",
    "base_url": "http://models.internal:8000/v1",
    "api_key": "sk-server-default-key",
    "fallback": ["anthropic", "extractive"],
    "timeout_seconds": 30,
}


def server(**profiles: dict[str, Any]) -> GenerationSettings:
    return GenerationSettings.model_validate(SERVER | {"profiles": profiles})


def assistant(provider: str | None) -> Assistant:
    return Assistant(
        name="a", title="a", provider=provider, instructions="", sources=None, temperature=None,
        max_answer_tokens=None, prompt_version=None,
    )  # fmt: skip


def test_unset_connection_fields_mean_the_providers_public_api_not_the_servers() -> None:
    generation = generation_settings(server(gpt={"provider": "openai", "model": "gpt-4o-mini"}), assistant("gpt"))
    assert (generation.provider, generation.model, generation.base_url, generation.api_key) == (
        "openai", "gpt-4o-mini", None, None,
    )  # fmt: skip
    model = OpenAIChatModel(generation)
    assert model.base_url == DEFAULT_BASE_URL
    assert model._api_key is None
    assert generation.timeout_seconds == 30  # not a connection field: inherited


def test_a_profiles_own_connection_is_used() -> None:
    profile = {"provider": "openai", "model": "llama3", "base_url": "http://localhost:11434/v1", "api_key": "k"}
    generation = generation_settings(server(ollama=profile | {"timeout_seconds": 120}), assistant("ollama"))
    assert generation.base_url == "http://localhost:11434/v1"
    assert generation.api_key is not None
    assert generation.api_key.get_secret_value() == "k"
    assert generation.timeout_seconds == 120


def test_an_inherited_fallback_drops_remote_providers_that_would_need_the_servers_connection() -> None:
    profiles = {
        "gpt": {"provider": "openai", "model": "gpt-4o-mini"},
        "claude": {"provider": "anthropic", "model": "claude-x", "api_key": "sk-ant"},
        "own": {"provider": "openai", "model": "gpt-4o-mini", "fallback": ["openai", "extractive"]},
    }
    settings = server(**profiles)
    assert generation_settings(settings, assistant("gpt")).fallback == ["extractive"]
    claude = generation_settings(settings, assistant("claude"))
    assert claude.fallback == ["anthropic", "extractive"]  # its own provider, with its own connection
    assert AnthropicChatModel(claude).base_url == "https://api.anthropic.com"
    assert generation_settings(settings, assistant("own")).fallback == ["openai", "extractive"]
    # Without an assistant profile, the server's own connection is untouched.
    assert generation_settings(settings, assistant(None)).base_url == SERVER["base_url"]


def test_a_profiles_fallback_cannot_name_another_remote_provider(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot name anthropic"):
        ChatProfile.model_validate({"provider": "openai", "model": "m", "fallback": ["anthropic", "extractive"]})
    gguf = tmp_path / "m.gguf"
    allowed = {"provider": "openai", "model": "m", "fallback": ["llamacpp", "extractive", "fake"]}
    assert ChatProfile.model_validate(allowed | {"model_path": gguf}).fallback == ["llamacpp", "extractive", "fake"]
