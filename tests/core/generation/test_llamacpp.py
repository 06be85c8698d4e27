"""The llamacpp provider with a stand-in for a loaded `llama_cpp.Llama` (llama-cpp-python takes
10 minutes to build and is an optional extra): answers and token counts, and llama-cpp's errors
turned into `ProviderRejected` / `ProviderUnavailable` at the provider's boundary, so a prompt
longer than the context window is a 502 that is not retried, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, Message
from tessera.core.generation.extractive import ExtractiveChatModel
from tessera.core.generation.llamacpp import LlamaCppChatModel
from tessera.core.generation.resilience import CircuitBreaker, FallbackChatModel, ResilientChatModel
from tessera.settings import GenerationSettings

REQUEST = ChatRequest(messages=(Message("system", "Use the sources."), Message("user", "Where do herons wait?")))


class StandInLlama:
    """Answers like `llama_cpp.Llama.create_chat_completion`, or raises what it is given."""

    def __init__(self, *, raises: BaseException | None = None, reply: Any = None) -> None:
        self.raises = raises
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    def create_chat_completion(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        if self.raises is not None:
            raise self.raises
        if self.reply is not None:
            return self.reply
        return {
            "choices": [
                {"message": {"role": "assistant", "content": "In shallow water [1]."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 31, "completion_tokens": 6},
        }


def provider(llama: StandInLlama) -> LlamaCppChatModel:
    settings = GenerationSettings(provider="llamacpp", model_path=Path("/models/heron-7b.gguf"), fallback=[])
    return LlamaCppChatModel(settings, llama=llama)


async def test_an_answer_with_its_token_counts() -> None:
    llama = StandInLlama()
    result = await provider(llama).complete(REQUEST)
    assert (result.text, result.model, result.input_tokens, result.output_tokens) == (
        "In shallow water [1].", "llamacpp:heron-7b", 31, 6,
    )  # fmt: skip
    assert llama.calls[0]["messages"][1] == {"role": "user", "content": "Where do herons wait?"}
    assert [piece async for piece in provider(llama).stream(REQUEST)] == ["In shallow water [1]."]


async def test_a_prompt_longer_than_the_context_window_is_rejected() -> None:
    llama = StandInLlama(raises=ValueError("Requested tokens (5000) exceed context window of 3768"))
    with pytest.raises(ProviderRejected, match="context window") as raised:
        await provider(llama).complete(REQUEST)
    assert raised.value.status_code == 502
    assert raised.value.details["context_tokens"] == 3_000 + 512 + 256
    with pytest.raises(ProviderRejected):
        [piece async for piece in provider(llama).stream(REQUEST)]


async def test_a_rejected_prompt_is_not_retried_and_does_not_fall_back() -> None:
    llama = StandInLlama(raises=ValueError("Requested tokens (5000) exceed context window of 3768"))
    breaker = CircuitBreaker(failures=1)
    chain = FallbackChatModel(
        [ResilientChatModel(provider(llama), retries=2, backoff=0, breaker=breaker), ExtractiveChatModel(None)]
    )
    with pytest.raises(ProviderRejected):
        await chain.complete(REQUEST)
    assert len(llama.calls) == 1
    assert breaker.state == "closed"


@pytest.mark.parametrize("error", [RuntimeError("llama_decode returned -3"), OSError("cannot map file"), MemoryError()])
async def test_runtime_failures_are_unavailable_and_fall_back(error: BaseException) -> None:
    llama = StandInLlama(raises=error)
    with pytest.raises(ProviderUnavailable) as raised:
        await provider(llama).complete(REQUEST)
    assert raised.value.status_code == 503
    # Unavailable: retried, then the next model of the chain answers.
    chain = FallbackChatModel([ResilientChatModel(provider(llama), retries=1, backoff=0), ExtractiveChatModel(None)])
    result = await chain.complete(REQUEST)
    assert result.metadata["fallback_from"][0]["model"] == "llamacpp:heron-7b"


@pytest.mark.parametrize("reply", [{}, {"choices": []}, {"choices": [{"message": None}]}, "nonsense"])
async def test_a_malformed_completion_is_rejected(reply: Any) -> None:
    with pytest.raises(ProviderRejected, match="malformed"):
        await provider(StandInLlama(reply=reply)).complete(REQUEST)


class Where(BaseModel):
    place: str


async def test_structured_output_is_validated() -> None:
    good = StandInLlama(reply={"choices": [{"message": {"content": '{"place": "shallow water"}'}}]})
    result = await provider(good).complete(ChatRequest(messages=REQUEST.messages, schema=Where))
    assert result.parsed == Where(place="shallow water")
    assert good.calls[0]["response_format"] == {"type": "json_object"}
    bad = StandInLlama(reply={"choices": [{"message": {"content": '{"where": 1}'}}]})
    with pytest.raises(ProviderRejected, match="schema"):
        await provider(bad).complete(ChatRequest(messages=REQUEST.messages, schema=Where))


def test_without_llama_cpp_python_the_provider_says_how_to_install_it(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    settings = GenerationSettings(provider="llamacpp", model_path=gguf, fallback=[])
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'tessera\[llamacpp\]'"):
            LlamaCppChatModel(settings)
    else:  # pragma: no cover - where the extra is installed
        pytest.skip("llama-cpp-python is installed")
