"""Any OpenAI-compatible `POST {base_url}/chat/completions` server: OpenAI, vLLM, Ollama,
llama.cpp's server, Groq, Together — and Tessera's own `/v1` API.

Structured output asks for `response_format: json_schema` (strict) and validates the answer
with the Pydantic model; streams ask for the usage in the last chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import ValidationError

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.http import DONE, check, json_object, sse_events, stream_error, unavailable
from tessera.core.generation.text import estimate_tokens
from tessera.settings import GenerationSettings

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIChatModel:
    def __init__(self, settings: GenerationSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.model:
            raise ValueError("the openai chat provider needs TESSERA_GENERATION__MODEL")
        self.model = settings.model
        self.name = f"openai:{settings.model}"
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = settings.timeout_seconds
        self._api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
            self._client = httpx.AsyncClient(
                base_url=self.base_url, headers=headers, timeout=self.timeout, transport=self._transport
            )
        return self._client

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema.__name__,
                    "schema": request.schema.model_json_schema(),
                    # Not OpenAI's strict mode: it needs every property required and no additional
                    # ones, which Pydantic's schemas with defaults are not; the answer is validated here.
                    "strict": False,
                },
            }
        return body

    async def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = await self._http().post("/chat/completions", json=self._body(request, stream=False))
        except httpx.HTTPError as error:
            raise unavailable(self.name, error) from error
        check(self.name, response)
        try:
            payload = response.json()
            choice = payload["choices"][0]
            text = choice["message"].get("content") or ""
            usage = payload.get("usage") or {}
            result = ChatResult(
                text=str(text),
                model=f"openai:{payload.get('model') or self.model}",
                input_tokens=int(
                    usage.get("prompt_tokens") or sum(estimate_tokens(m.content) for m in request.messages)
                ),
                output_tokens=int(usage.get("completion_tokens") or estimate_tokens(str(text))),
                finish_reason=str(choice.get("finish_reason") or "stop"),
            )
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
            raise ProviderRejected(f"{self.name} answered in an unexpected shape") from error
        if request.schema is not None:
            try:
                result.parsed = request.schema.model_validate(json_object(self.name, text))
            except ValidationError as error:
                raise ProviderRejected(f"{self.name} answered JSON that does not fit the schema") from error
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        try:
            async with self._http().stream(
                "POST", "/chat/completions", json=self._body(request, stream=True)
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check(self.name, response)
                finished = False
                async for _event, chunk in sse_events(response):
                    if chunk is DONE:
                        finished = True
                        continue
                    if chunk.get("error"):  # an error once the stream started (OpenAI's and Tessera's way)
                        raise stream_error(self.name, chunk["error"])
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
                        finished = finished or bool(choice.get("finish_reason"))
                if not finished:
                    raise ProviderUnavailable(
                        f"{self.name} ended its stream before the answer was complete", details={"provider": self.name}
                    )
        except httpx.HTTPError as error:
            raise unavailable(self.name, error) from error

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
