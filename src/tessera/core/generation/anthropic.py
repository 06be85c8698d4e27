"""Anthropic's Messages API (`POST {base_url}/v1/messages`). System messages travel in `system`;
structured output is asked for in the system prompt (the JSON schema) and validated here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import ValidationError

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.http import DONE, check, json_object, sse_events, unavailable
from tessera.core.generation.text import estimate_tokens
from tessera.settings import GenerationSettings

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicChatModel:
    def __init__(self, settings: GenerationSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not settings.model:
            raise ValueError("the anthropic chat provider needs TESSERA_GENERATION__MODEL")
        if settings.api_key is None:
            raise ValueError("the anthropic chat provider needs TESSERA_GENERATION__API_KEY")
        self.model = settings.model
        self.name = f"anthropic:{settings.model}"
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = settings.timeout_seconds
        self._api_key = settings.api_key.get_secret_value()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"x-api-key": self._api_key, "anthropic-version": API_VERSION},
                timeout=self.timeout,
                transport=self._transport,
            )
        return self._client

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        if request.schema is not None:
            system += "\n\nAnswer with one JSON object only, no prose, matching this JSON schema:\n" + json.dumps(
                request.schema.model_json_schema()
            )
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"],
        }
        if system.strip():
            body["system"] = system.strip()
        if stream:
            body["stream"] = True
        return body

    async def complete(self, request: ChatRequest) -> ChatResult:
        try:
            response = await self._http().post("/v1/messages", json=self._body(request, stream=False))
        except httpx.HTTPError as error:
            raise unavailable(self.name, error) from error
        check(self.name, response)
        try:
            payload = response.json()
            text = "".join(block.get("text", "") for block in payload["content"] if block.get("type") == "text")
            usage = payload.get("usage") or {}
            result = ChatResult(
                text=text,
                model=f"anthropic:{payload.get('model') or self.model}",
                input_tokens=int(
                    usage.get("input_tokens") or sum(estimate_tokens(m.content) for m in request.messages)
                ),
                output_tokens=int(usage.get("output_tokens") or estimate_tokens(text)),
                finish_reason=str(payload.get("stop_reason") or "stop"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ProviderRejected(f"{self.name} answered in an unexpected shape") from error
        if request.schema is not None:
            try:
                result.parsed = request.schema.model_validate(json_object(self.name, text))
            except ValidationError as error:
                raise ProviderRejected(f"{self.name} answered JSON that does not fit the schema") from error
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        try:
            async with self._http().stream("POST", "/v1/messages", json=self._body(request, stream=True)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    check(self.name, response)
                async for event, data in sse_events(response):
                    if data is DONE:  # not Anthropic's way, but a compatible proxy may send it
                        break
                    if event == "error" or data.get("type") == "error":
                        kind = (data.get("error") or {}).get("type")
                        if kind in ("overloaded_error", "api_error"):  # an outage, sent after the 200
                            raise ProviderUnavailable(f"{self.name} failed mid-stream ({kind})", details=data)
                        raise ProviderRejected(f"{self.name} failed mid-stream", details=data)
                    if data.get("type") == "content_block_delta":
                        piece = (data.get("delta") or {}).get("text")
                        if piece:
                            yield piece
        except httpx.HTTPError as error:
            raise unavailable(self.name, error) from error

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
