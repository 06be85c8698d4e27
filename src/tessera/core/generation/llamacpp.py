"""A local GGUF model through llama-cpp-python (install it yourself: `pip install llama-cpp-python`;
build notes in STACK.md: it compiles for ~10 minutes and needs `CMAKE_ARGS=-DGGML_NATIVE=OFF`).

Generation runs in a worker thread (one at a time per model), never on the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.http import json_object
from tessera.core.generation.text import estimate_tokens
from tessera.settings import GenerationSettings


class LlamaCppChatModel:
    def __init__(self, settings: GenerationSettings) -> None:
        if settings.model_path is None:
            raise ValueError("the llamacpp chat provider needs TESSERA_GENERATION__MODEL_PATH (a .gguf file)")
        try:
            import llama_cpp  # noqa: F401
        except ImportError as error:
            raise ValueError(
                "the llamacpp chat provider needs llama-cpp-python: pip install llama-cpp-python"
            ) from error
        self.path = Path(settings.model_path)
        if not self.path.is_file():
            raise ValueError(f"TESSERA_GENERATION__MODEL_PATH: no file at {self.path}")
        self.name = f"llamacpp:{self.path.stem}"
        self.context = settings.context_tokens + settings.max_answer_tokens + 256
        self._llama: Any = None
        self._lock = threading.Lock()

    def _model(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            self._llama = Llama(model_path=str(self.path), n_ctx=self.context, verbose=False)
        return self._llama

    def _run(self, request: ChatRequest) -> dict[str, Any]:
        with self._lock:
            try:
                answer: dict[str, Any] = self._model().create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    response_format={"type": "json_object"} if request.schema is not None else None,
                )
            except (RuntimeError, ValueError, OSError) as error:
                raise ProviderUnavailable(f"{self.name} failed: {error}") from error
            return answer

    async def complete(self, request: ChatRequest) -> ChatResult:
        payload = await asyncio.to_thread(self._run, request)
        text = payload["choices"][0]["message"].get("content") or ""
        usage = payload.get("usage") or {}
        result = ChatResult(
            text=text,
            model=self.name,
            input_tokens=int(usage.get("prompt_tokens") or sum(estimate_tokens(m.content) for m in request.messages)),
            output_tokens=int(usage.get("completion_tokens") or estimate_tokens(text)),
            finish_reason=str(payload["choices"][0].get("finish_reason") or "stop"),
        )
        if request.schema is not None:
            try:
                result.parsed = request.schema.model_validate(json_object(self.name, text))
            except ValueError as error:
                raise ProviderRejected(f"{self.name} answered JSON that does not fit the schema") from error
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        # llama.cpp on a CPU produces a few tokens a second: the whole answer, then one piece.
        yield (await self.complete(request)).text

    async def close(self) -> None:
        self._llama = None
