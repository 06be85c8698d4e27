"""A local GGUF model through llama-cpp-python, the optional extra `tessera[llamacpp]`:
`CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'tessera[llamacpp]'` (it compiles for 8 to 11 minutes and,
built without that flag, segfaults on some CPUs; see STACK.md).

Generation runs in a worker thread (one at a time per model), never on the event loop. Whatever
llama-cpp raises is turned into `ProviderRejected` or `ProviderUnavailable` here, so a prompt
longer than the context window is a 502 `provider_rejected` (not retried, no fallback) and a
model that cannot be loaded or fails while generating is a 503 `provider_unavailable` (retried,
then the fallback chain).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.http import json_object
from tessera.core.generation.text import estimate_tokens
from tessera.settings import GenerationSettings

INSTALL = "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'tessera[llamacpp]'"


class LlamaModel(Protocol):
    """What this provider uses of `llama_cpp.Llama`."""

    def create_chat_completion(self, **kwargs: Any) -> Any: ...


class LlamaCppChatModel:
    def __init__(self, settings: GenerationSettings, *, llama: LlamaModel | None = None) -> None:
        """`llama` stands in for the `llama_cpp.Llama` loaded from `settings.model_path` (tests);
        without it the package and the file are checked here and the model is loaded on first use."""
        if settings.model_path is None:
            raise ValueError("the llamacpp chat provider needs TESSERA_GENERATION__MODEL_PATH (a .gguf file)")
        self.path = Path(settings.model_path)
        if llama is None:
            try:
                import llama_cpp  # noqa: F401
            except ImportError as error:
                raise ValueError(f"the llamacpp chat provider needs llama-cpp-python: {INSTALL}") from error
            if not self.path.is_file():
                raise ValueError(f"TESSERA_GENERATION__MODEL_PATH: no file at {self.path}")
        self.name = f"llamacpp:{self.path.stem}"
        self.context = settings.context_tokens + settings.max_answer_tokens + 256
        self._given = llama
        self._llama: LlamaModel | None = llama
        self._lock = threading.Lock()

    def _model(self) -> LlamaModel:
        if self._llama is None:
            try:
                from llama_cpp import Llama

                self._llama = Llama(model_path=str(self.path), n_ctx=self.context, verbose=False)
            except Exception as error:  # a corrupt or unsupported file, too little memory
                raise ProviderUnavailable(
                    f"{self.name} could not be loaded: {error}", details={"provider": self.name}
                ) from error
        return self._llama

    def _run(self, request: ChatRequest) -> Any:
        with self._lock:
            model = self._model()
            try:
                return model.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    response_format={"type": "json_object"} if request.schema is not None else None,
                )
            except ValueError as error:
                # llama-cpp's ValueErrors are about the request, above all "Requested tokens (…)
                # exceed context window of …": asking again will not help.
                raise ProviderRejected(
                    f"{self.name} rejected the prompt (too long for its {self.context}-token context window?): {error}",
                    details={"provider": self.name, "context_tokens": self.context},
                ) from error
            except Exception as error:  # RuntimeError from llama_decode, OSError, MemoryError, …
                raise ProviderUnavailable(f"{self.name} failed: {error}", details={"provider": self.name}) from error

    def _result(self, request: ChatRequest, payload: Any) -> ChatResult:
        try:
            choice = payload["choices"][0]
            text = str(choice["message"].get("content") or "")
            usage = payload.get("usage") or {}
            return ChatResult(
                text=text,
                model=self.name,
                input_tokens=int(
                    usage.get("prompt_tokens") or sum(estimate_tokens(m.content) for m in request.messages)
                ),
                output_tokens=int(usage.get("completion_tokens") or estimate_tokens(text)),
                finish_reason=str(choice.get("finish_reason") or "stop"),
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:
            raise ProviderRejected(f"{self.name} returned a malformed completion") from error

    async def complete(self, request: ChatRequest) -> ChatResult:
        payload = await asyncio.to_thread(self._run, request)
        result = self._result(request, payload)
        if request.schema is not None:
            try:
                result.parsed = request.schema.model_validate(json_object(self.name, result.text))
            except ValueError as error:
                raise ProviderRejected(f"{self.name} answered JSON that does not fit the schema") from error
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        # llama.cpp on a CPU produces a few tokens a second: the whole answer, then one piece.
        yield (await self.complete(request)).text

    async def close(self) -> None:
        self._llama = self._given  # a model loaded here is freed, and loaded again if used
