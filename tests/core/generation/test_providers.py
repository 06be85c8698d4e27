"""The hosted chat providers against a real HTTP server (Starlette on uvicorn, 127.0.0.1) that
speaks OpenAI's `/v1/chat/completions` and Anthropic's `/v1/messages`: answers, token counts,
request bodies and headers, streams, structured output, and every way a call can fail."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.anthropic import API_VERSION, AnthropicChatModel
from tessera.core.generation.base import ChatModel, ChatRequest, Message
from tessera.core.generation.openai import OpenAIChatModel
from tessera.core.generation.text import estimate_tokens
from tessera.settings import GenerationSettings
from tests.servers import serve_in_thread

ANSWER = "Grey herons wait in shallow water [1]."
PIECES = re.findall(r"\S+\s*", ANSWER)
OPENAI_USAGE = {"prompt_tokens": 41, "completion_tokens": 9, "total_tokens": 50}
ANTHROPIC_USAGE = {"input_tokens": 37, "output_tokens": 8}

MESSAGES = (
    Message("system", "You answer from the numbered sources."),
    Message("user", "Where do herons wait?"),
    Message("assistant", "Let me check the sources."),
    Message("system", "Cite every sentence."),
    Message("user", "Answer now."),
)
REQUEST = ChatRequest(messages=MESSAGES, max_tokens=123, temperature=0.7)


class Verdict(BaseModel):
    answer: str
    confidence: float


VERDICT_JSON = '{"answer": "in shallow water", "confidence": 0.75}'


# --- an OpenAI- and Anthropic-compatible chat server --------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A JSON body instead of the answer."""
    text: str | None = None
    """A raw (non-JSON) body instead of the answer."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering."""
    stall: float = 0.0
    """Streams: seconds to wait after the first piece."""
    error_after: int | None = None
    """Anthropic streams: an `error` event after this many pieces."""


@dataclass
class ChatService:
    url: str = ""
    answer: str = ANSWER
    usage: bool = True
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.answer = ANSWER
            self.usage = True
            self.requests.clear()
            self.script.clear()

    def only_request(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        with self.lock:
            assert len(self.requests) == 1, self.requests
            return self.requests[0]

    async def _scripted(self, request: Request) -> tuple[dict[str, Any], Reply]:
        body = await request.json()
        with self.lock:
            self.requests.append((request.url.path, body, dict(request.headers)))
            reply = self.script.pop(0) if self.script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return body, reply

    @staticmethod
    def _override(reply: Reply, error: dict[str, Any]) -> Response | None:
        if reply.text is not None:
            return Response(reply.text, status_code=reply.status, headers=reply.headers, media_type="text/plain")
        if reply.status != 200 or reply.body is not None:
            body = reply.body if reply.body is not None else error
            return JSONResponse(body, status_code=reply.status, headers=reply.headers)
        return None

    def _pieces(self) -> list[str]:
        return re.findall(r"\S+\s*", self.answer)

    async def openai(self, request: Request) -> Response:
        body, reply = await self._scripted(request)
        override = self._override(reply, {"error": {"message": "scripted", "type": "server_error"}})
        if override is not None:
            return override
        if body.get("stream"):
            usage = self.usage and (body.get("stream_options") or {}).get("include_usage")
            return StreamingResponse(self._openai_chunks(body, reply, bool(usage)), media_type="text/event-stream")
        payload: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": f"{body['model']}-2024-07-18",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": self.answer}, "finish_reason": "length"}
            ],
        }
        if self.usage:
            payload["usage"] = OPENAI_USAGE
        return JSONResponse(payload)

    async def _openai_chunks(self, body: dict[str, Any], reply: Reply, usage: bool) -> AsyncIterator[str]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
            data = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"], "choices": choices}
            return f"data: {json.dumps({**data, **extra})}\n\n"

        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for number, piece in enumerate(self._pieces()):
            yield chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            if number == 0 and reply.stall:
                await asyncio.sleep(reply.stall)
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage:
            yield chunk([], usage=OPENAI_USAGE)
        yield "data: [DONE]\n\n"

    async def anthropic(self, request: Request) -> Response:
        body, reply = await self._scripted(request)
        override = self._override(reply, {"type": "error", "error": {"type": "api_error", "message": "scripted"}})
        if override is not None:
            return override
        if body.get("stream"):
            return StreamingResponse(self._anthropic_events(body, reply), media_type="text/event-stream")
        half = len(self.answer) // 2
        payload: dict[str, Any] = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": f"{body['model']}-20241022",
            # Two text blocks around a block of another type: only the text is the answer.
            "content": [
                {"type": "text", "text": self.answer[:half]},
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}},
                {"type": "text", "text": self.answer[half:]},
            ],
            "stop_reason": "max_tokens",
        }
        if self.usage:
            payload["usage"] = ANTHROPIC_USAGE
        return JSONResponse(payload)

    async def _anthropic_events(self, body: dict[str, Any], reply: Reply) -> AsyncIterator[str]:
        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        message = {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"], "content": []}
        yield event("message_start", {"message": {**message, "usage": {"input_tokens": 37, "output_tokens": 1}}})
        yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
        yield event("ping", {})
        for number, piece in enumerate(self._pieces()):
            if reply.error_after == number:
                error = {"type": "invalid_request_error", "message": "scripted mid-stream"}
                yield event("error", {"error": error})
                return
            yield event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
            if number == 0 and reply.stall:
                await asyncio.sleep(reply.stall)
        yield event("content_block_stop", {"index": 0})
        yield event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 8}})
        yield event("message_stop", {})


@pytest.fixture(scope="module")
def chat_server() -> Iterator[ChatService]:
    service = ChatService()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", service.openai, methods=["POST"]),
            Route("/v1/messages", service.anthropic, methods=["POST"]),
        ]
    )
    with serve_in_thread(app, "chat") as url:
        service.url = url
        yield service


@pytest.fixture
def service(chat_server: ChatService) -> ChatService:
    chat_server.reset()
    return chat_server


Build = Callable[..., ChatModel]


@pytest.fixture
async def models() -> AsyncIterator[list[ChatModel]]:
    """Models a test builds, closed after it (their HTTP clients hold connections)."""
    built: list[ChatModel] = []
    yield built
    for model in built:
        await model.close()


@pytest.fixture
def openai(service: ChatService, models: list[ChatModel]) -> Build:
    def build(**overrides: Any) -> OpenAIChatModel:
        values: dict[str, Any] = {"provider": "openai", "model": "m", "base_url": f"{service.url}/v1", "api_key": "k"}
        model = OpenAIChatModel(GenerationSettings(**{**values, **overrides}))
        models.append(model)
        return model

    return build


@pytest.fixture
def anthropic(service: ChatService, models: list[ChatModel]) -> Build:
    def build(**overrides: Any) -> AnthropicChatModel:
        values: dict[str, Any] = {"provider": "anthropic", "model": "m", "base_url": service.url, "api_key": "k"}
        model = AnthropicChatModel(GenerationSettings(**{**values, **overrides}))
        models.append(model)
        return model

    return build


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest, openai: Build, anthropic: Build) -> Build:
    """Either provider, for what both must do alike."""
    return openai if request.param == "openai" else anthropic


async def collect(pieces: AsyncIterator[str], into: list[str] | None = None) -> list[str]:
    out = into if into is not None else []
    async for piece in pieces:
        out.append(piece)
    return out


def closed_port() -> int:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port: int = closed.getsockname()[1]
    return port


def estimated_prompt() -> int:
    return sum(estimate_tokens(m.content) for m in MESSAGES)


# --- OpenAI --------------------------------------------------------------------------------------


class TestOpenAI:
    async def test_complete_returns_text_model_and_usage(self, service: ChatService, openai: Build) -> None:
        result = await openai().complete(REQUEST)

        assert result.text == ANSWER
        assert result.model == "openai:m-2024-07-18"  # the model the server says answered
        assert (result.input_tokens, result.output_tokens) == (41, 9)
        assert result.finish_reason == "length"
        assert result.parsed is None

    async def test_request_body_and_bearer_key(self, service: ChatService, openai: Build) -> None:
        await openai(api_key="s3cret").complete(REQUEST)

        path, body, headers = service.only_request()
        assert path == "/v1/chat/completions"
        assert body == {
            "model": "m",
            "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
            "max_tokens": 123,
            "temperature": 0.7,
        }
        assert headers["authorization"] == "Bearer s3cret"

    async def test_no_api_key_sends_no_authorization(self, service: ChatService, openai: Build) -> None:
        await openai(api_key=None, base_url=f"{service.url}/v1/").complete(REQUEST)  # a trailing slash too

        path, _, headers = service.only_request()
        assert path == "/v1/chat/completions"
        assert "authorization" not in headers

    async def test_missing_usage_is_estimated(self, service: ChatService, openai: Build) -> None:
        service.usage = False

        result = await openai().complete(REQUEST)

        assert result.input_tokens == estimated_prompt()
        assert result.output_tokens == estimate_tokens(ANSWER)
        assert result.input_tokens > 0
        assert result.output_tokens > 0
        assert result.model == "openai:m-2024-07-18"

    async def test_stream_yields_the_pieces_in_order(self, service: ChatService, openai: Build) -> None:
        pieces = await collect(openai().stream(REQUEST))

        assert pieces == PIECES  # no empty role delta, nothing from the usage chunk
        assert len(pieces) > 3
        _, body, _ = service.only_request()
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert body["max_tokens"] == 123

    async def test_structured_output_asks_for_the_schema_and_parses(self, service: ChatService, openai: Build) -> None:
        service.answer = VERDICT_JSON

        result = await openai().complete(ChatRequest(messages=MESSAGES, schema=Verdict))

        assert result.parsed == Verdict(answer="in shallow water", confidence=0.75)
        assert isinstance(result.parsed, Verdict)
        _, body, _ = service.only_request()
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "Verdict", "schema": Verdict.model_json_schema(), "strict": False},
        }

    async def test_structured_output_in_a_fenced_block(self, service: ChatService, openai: Build) -> None:
        service.answer = f"```json\n{VERDICT_JSON}\n```"

        result = await openai().complete(ChatRequest(messages=MESSAGES, schema=Verdict))

        assert result.parsed == Verdict(answer="in shallow water", confidence=0.75)

    async def test_plain_requests_ask_for_no_format(self, service: ChatService, openai: Build) -> None:
        await openai().complete(REQUEST)

        _, body, _ = service.only_request()
        assert "response_format" not in body
        assert "stream" not in body

    @pytest.mark.parametrize(
        "answer",
        [
            "The herons wait in water.",  # no JSON at all
            '{"answer": "in shallow water", "confidence": }',  # broken JSON
            '{"answer": "in shallow water"}',  # a required field missing
            '{"answer": "in shallow water", "confidence": "very"}',  # a field of the wrong type
            "[0.75]",  # JSON, but not an object
        ],
    )
    async def test_structured_output_that_does_not_fit_is_rejected(
        self, service: ChatService, openai: Build, answer: str
    ) -> None:
        service.answer = answer

        with pytest.raises(ProviderRejected):
            await openai().complete(ChatRequest(messages=MESSAGES, schema=Verdict))

    async def test_constructing_without_model_is_refused(self) -> None:
        with pytest.raises(ValueError, match="TESSERA_GENERATION__MODEL"):
            OpenAIChatModel(GenerationSettings(provider="openai", api_key="k"))


# --- Anthropic ----------------------------------------------------------------------------------


class TestAnthropic:
    async def test_complete_returns_text_model_and_usage(self, service: ChatService, anthropic: Build) -> None:
        result = await anthropic().complete(REQUEST)

        assert result.text == ANSWER  # both text blocks, nothing of the tool block
        assert result.model == "anthropic:m-20241022"
        assert (result.input_tokens, result.output_tokens) == (37, 8)
        assert result.finish_reason == "max_tokens"

    async def test_request_body_headers_and_system(self, service: ChatService, anthropic: Build) -> None:
        await anthropic(api_key="s3cret").complete(REQUEST)

        path, body, headers = service.only_request()
        assert path == "/v1/messages"
        assert body == {
            "model": "m",
            "max_tokens": 123,
            "temperature": 0.7,
            "system": "You answer from the numbered sources.\n\nCite every sentence.",
            "messages": [
                {"role": "user", "content": "Where do herons wait?"},
                {"role": "assistant", "content": "Let me check the sources."},
                {"role": "user", "content": "Answer now."},
            ],
        }
        assert headers["x-api-key"] == "s3cret"
        assert headers["anthropic-version"] == API_VERSION == "2023-06-01"
        assert "authorization" not in headers

    async def test_no_system_message_sends_no_system(self, service: ChatService, anthropic: Build) -> None:
        await anthropic().complete(ChatRequest(messages=[Message("user", "Where do herons wait?")]))

        _, body, _ = service.only_request()
        assert "system" not in body
        assert body["messages"] == [{"role": "user", "content": "Where do herons wait?"}]

    async def test_missing_usage_is_estimated(self, service: ChatService, anthropic: Build) -> None:
        service.usage = False

        result = await anthropic().complete(REQUEST)

        assert result.input_tokens == estimated_prompt()
        assert result.output_tokens == estimate_tokens(ANSWER)
        assert (result.input_tokens, result.output_tokens) != (37, 8)

    async def test_stream_yields_the_pieces_in_order(self, service: ChatService, anthropic: Build) -> None:
        pieces = await collect(anthropic().stream(REQUEST))

        assert pieces == PIECES  # only content_block_delta text, not message_start, ping or message_delta
        _, body, _ = service.only_request()
        assert body["stream"] is True
        assert body["system"] == "You answer from the numbered sources.\n\nCite every sentence."
        assert all(m["role"] != "system" for m in body["messages"])

    async def test_error_event_mid_stream_is_raised(self, service: ChatService, anthropic: Build) -> None:
        service.script.append(Reply(error_after=2))
        pieces: list[str] = []

        with pytest.raises(ProviderRejected, match="failed mid-stream") as raised:
            await collect(anthropic().stream(REQUEST), pieces)

        assert pieces == PIECES[:2]
        assert raised.value.details["error"]["type"] == "invalid_request_error"

    async def test_structured_output_is_asked_in_the_system_prompt(
        self, service: ChatService, anthropic: Build
    ) -> None:
        service.answer = f"Here it is:\n{VERDICT_JSON}"

        result = await anthropic().complete(ChatRequest(messages=MESSAGES, schema=Verdict))

        assert result.parsed == Verdict(answer="in shallow water", confidence=0.75)
        _, body, _ = service.only_request()
        assert body["system"].startswith("You answer from the numbered sources.\n\nCite every sentence.\n\n")
        assert body["system"].endswith(json.dumps(Verdict.model_json_schema()))
        assert "response_format" not in body

    async def test_structured_output_without_system_messages(self, service: ChatService, anthropic: Build) -> None:
        service.answer = VERDICT_JSON

        await anthropic().complete(ChatRequest(messages=[Message("user", "Where?")], schema=Verdict))

        _, body, _ = service.only_request()
        assert body["system"].startswith("Answer with one JSON object only")
        assert json.dumps(Verdict.model_json_schema()) in body["system"]

    @pytest.mark.parametrize("answer", ["They wait in water.", '{"answer": 3}', '{"confidence": 0.5}'])
    async def test_structured_output_that_does_not_fit_is_rejected(
        self, service: ChatService, anthropic: Build, answer: str
    ) -> None:
        service.answer = answer

        with pytest.raises(ProviderRejected):
            await anthropic().complete(ChatRequest(messages=MESSAGES, schema=Verdict))

    @pytest.mark.parametrize(
        ("values", "missing"),
        [({"api_key": "k"}, "TESSERA_GENERATION__MODEL"), ({"model": "m"}, "TESSERA_GENERATION__API_KEY")],
    )
    async def test_constructing_without_model_or_key_is_refused(self, values: dict[str, Any], missing: str) -> None:
        with pytest.raises(ValueError, match=missing):
            AnthropicChatModel(GenerationSettings(provider="anthropic", **values))


# --- failures, alike for both providers ----------------------------------------------------------


class TestFailures:
    @pytest.mark.parametrize("status", [500, 502, 503, 529])
    async def test_server_errors_are_unavailable(self, service: ChatService, provider: Build, status: int) -> None:
        service.script.append(Reply(status))

        with pytest.raises(ProviderUnavailable, match=f"answered {status}") as raised:
            await provider().complete(REQUEST)

        assert raised.value.details["status"] == status
        assert raised.value.details["provider"] in {"openai:m", "anthropic:m"}
        assert raised.value.details["body"]["error"]  # the server's error body, for the logs
        assert raised.value.headers == {}

    async def test_429_is_unavailable_with_retry_after(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "7"}))

        with pytest.raises(ProviderUnavailable, match="answered 429") as raised:
            await provider().complete(REQUEST)

        assert raised.value.headers == {"Retry-After": "7"}
        assert raised.value.details["body"] == {"error": {"message": "slow down"}}

    @pytest.mark.parametrize("status", [400, 401, 404, 422])
    async def test_client_errors_are_rejected(self, service: ChatService, provider: Build, status: int) -> None:
        service.script.append(Reply(status, body={"error": {"message": "bad request"}}))

        with pytest.raises(ProviderRejected, match=f"refused the request \\({status}\\)") as raised:
            await provider().complete(REQUEST)

        assert raised.value.details["status"] == status
        assert raised.value.details["body"] == {"error": {"message": "bad request"}}

    async def test_non_json_error_body_is_kept_as_text(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(503, text="upstream connect error"))

        with pytest.raises(ProviderUnavailable) as raised:
            await provider().complete(REQUEST)

        assert raised.value.details["body"] == "upstream connect error"

    @pytest.mark.parametrize("status", [503, 429])
    async def test_stream_errors_before_the_first_piece_are_unavailable(
        self, service: ChatService, provider: Build, status: int
    ) -> None:
        service.script.append(Reply(status, headers={"Retry-After": "3"}))
        pieces: list[str] = []

        with pytest.raises(ProviderUnavailable, match=f"answered {status}") as raised:
            await collect(provider().stream(REQUEST), pieces)

        assert pieces == []
        assert raised.value.headers == {"Retry-After": "3"}

    async def test_stream_refusal_is_rejected(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(400))

        with pytest.raises(ProviderRejected, match=r"refused the request \(400\)"):
            await collect(provider().stream(REQUEST))

    async def test_closed_port_is_unavailable(self, openai: Build, anthropic: Build) -> None:
        url = f"http://127.0.0.1:{closed_port()}"
        for model in (openai(base_url=f"{url}/v1"), anthropic(base_url=url)):
            with pytest.raises(ProviderUnavailable, match="did not answer: ConnectError"):
                await model.complete(REQUEST)
            with pytest.raises(ProviderUnavailable, match="did not answer: ConnectError"):
                await collect(model.stream(REQUEST))

    async def test_timeout_is_unavailable(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(delay=1.0))

        with pytest.raises(ProviderUnavailable, match="did not answer: ReadTimeout"):
            await provider(timeout_seconds=0.3).complete(REQUEST)

    async def test_stream_timeout_is_unavailable(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(delay=1.0))

        with pytest.raises(ProviderUnavailable, match="did not answer: ReadTimeout"):
            await collect(provider(timeout_seconds=0.3).stream(REQUEST))

    async def test_stream_that_stalls_after_a_piece_is_unavailable(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(stall=1.0))
        pieces: list[str] = []

        with pytest.raises(ProviderUnavailable, match="did not answer: ReadTimeout"):
            await collect(provider(timeout_seconds=0.3).stream(REQUEST), pieces)

        assert pieces == PIECES[:1]  # what was sent stays sent

    async def test_stream_of_non_json_data_is_rejected(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(text="data: {not json\n\n"))

        with pytest.raises(ProviderRejected, match="not JSON"):
            await collect(provider().stream(REQUEST))

    async def test_model_recovers_after_a_failure(self, service: ChatService, provider: Build) -> None:
        model = provider()
        service.script.append(Reply(503))
        with pytest.raises(ProviderUnavailable):
            await model.complete(REQUEST)

        result = await model.complete(REQUEST)

        assert result.text == ANSWER
        assert len(service.requests) == 2

    async def test_close_then_use_again(self, service: ChatService, provider: Build) -> None:
        model = provider()
        assert (await model.complete(REQUEST)).text == ANSWER
        await model.close()
        await model.close()  # twice is harmless

        assert (await model.complete(REQUEST)).text == ANSWER
        assert len(service.requests) == 2


WRONG_OPENAI: list[Any] = [
    {"id": "x"},  # no choices
    {"choices": []},
    {"choices": [{"index": 0}]},  # no message
    {"choices": None},
    ["not", "an", "object"],
]
WRONG_ANTHROPIC: list[Any] = [
    {"id": "x"},  # no content
    {"content": None},
    {"content": 3},
    ["not", "an", "object"],
]


class TestWrongShape:
    @pytest.mark.parametrize("body", WRONG_OPENAI)
    async def test_openai_answer_in_the_wrong_shape_is_rejected(
        self, service: ChatService, openai: Build, body: Any
    ) -> None:
        service.script.append(Reply(body=body))

        with pytest.raises(ProviderRejected, match="unexpected shape"):
            await openai().complete(REQUEST)

    @pytest.mark.parametrize("body", WRONG_ANTHROPIC)
    async def test_anthropic_answer_in_the_wrong_shape_is_rejected(
        self, service: ChatService, anthropic: Build, body: Any
    ) -> None:
        service.script.append(Reply(body=body))

        with pytest.raises(ProviderRejected, match="unexpected shape"):
            await anthropic().complete(REQUEST)

    async def test_non_json_answer_is_rejected(self, service: ChatService, provider: Build) -> None:
        service.script.append(Reply(text="<html>gateway</html>"))

        with pytest.raises(ProviderRejected, match="unexpected shape"):
            await provider().complete(REQUEST)
