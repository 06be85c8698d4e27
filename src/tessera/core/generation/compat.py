"""The OpenAI-compatible API under `/v1`: `POST /v1/chat/completions` (plain and streamed),
`GET /v1/models` and `POST /v1/embeddings`, so tools built for OpenAI's client work unchanged
against Tessera. Authenticate with a Tessera API key (or an access token) as the bearer token.

A model name is an assistant: an assistant of the organization by its name (`/api/v1/assistants`:
its collections, chat model and instructions); `tessera` answers from every collection the key can
see with the server's defaults; `collection:<id>` from that collection. Answers are Tessera's
grounded answers (retrieval, generation with the configured chat model, verification):
`choices[0].message.content` holds the verified answer with its `[n]` markers, and the response
adds `citations` and `grounded`.

The API is stateless, as OpenAI's is: earlier `user`/`assistant` messages are the conversation's
history and the last message must be the user's question. Client `system` messages are not
passed on: Tessera's own prompt decides how sources are used. A follow-up ("and how long do they
live?") is searched with as a standalone question, rewritten exactly as chat conversations rewrite
theirs (`core/chat/service.py`: the previous question put in front of a question that points back;
with a language model, the model's rewrite); the response's `search_query` says what was searched.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.core.assistants import service as assistants
from tessera.core.assistants.errors import AssistantNotFound
from tessera.core.assistants.service import Configured
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.chat import service as chat_service
from tessera.core.db.base import utcnow
from tessera.core.db.session import DbSession, unit_of_work
from tessera.core.documents import service as documents
from tessera.core.errors import InvalidInput, NotFound, ProviderRejected, ProviderUnavailable
from tessera.core.generation import service
from tessera.core.generation.base import ChatModel, Message
from tessera.core.generation.schemas import AskRequest, AskResponse
from tessera.core.generation.sse import HEADERS, error_event
from tessera.core.generation.text import estimate_tokens
from tessera.core.moderation.service import Gate
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.strings import Text
from tessera.core.usage import service as usage
from tessera.settings import GenerationSettings, Settings

router = APIRouter(prefix="/v1", tags=["openai-compatible"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("documents:read")]
DEFAULT_MODEL = "tessera"
COLLECTION_PREFIX = "collection:"
EMBEDDING_ALIAS = "tessera-embedding"
MAX_EMBED_INPUTS = 2_048


class ModelNotFound(NotFound):
    """No assistant or embedding model has this name."""

    code = "model_not_found"


class ContentPart(BaseModel):
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Text | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI's many optional fields are accepted and ignored

    model: str = Field(min_length=1, max_length=200, examples=["tessera"])
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=200)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1, le=16_384)
    max_completion_tokens: int | None = Field(None, ge=1, le=16_384)

    @field_validator("messages")
    @classmethod
    def _ends_with_a_question(cls, messages: list[ChatMessageIn]) -> list[ChatMessageIn]:
        if messages[-1].role != "user" or not messages[-1].text().strip():
            raise ValueError("the last message must be the user's question")
        if len(messages[-1].text()) > 4_000:
            raise ValueError("the question is longer than 4,000 characters")
        return messages


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: Text | list[Text] = Field(examples=["How long do batteries last?"])
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="`base64`: little-endian float32 bytes, as OpenAI's client asks by default."
    )

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        items = [value] if isinstance(value, str) else value
        if not items or len(items) > MAX_EMBED_INPUTS:
            raise ValueError(f"give 1 to {MAX_EMBED_INPUTS} inputs")
        if any(len(item) > 32_000 for item in items):
            raise ValueError("an input is longer than 32,000 characters")
        return value


async def _assistant(
    session: Any, principal: Principal, settings: Settings, model: str
) -> tuple[Configured, AskRequest]:
    """What answers for a model name, and the question's collections (None: every visible one)."""
    not_found = ModelNotFound(f"No model named {model!r}: see GET /v1/models", details={"model": model})
    if model == DEFAULT_MODEL:
        return await assistants.configure(session, principal, settings, None), AskRequest(question="?")
    if model.startswith(COLLECTION_PREFIX):
        try:
            collection_id = uuid.UUID(model[len(COLLECTION_PREFIX) :])
        except ValueError:
            raise not_found from None
        visible = {c.id for c in await documents.visible_collections(session, principal)}
        if collection_id not in visible:
            raise not_found
        configured = await assistants.configure(session, principal, settings, None)
        return configured, AskRequest(question="?", collections=[collection_id])
    assistant = await assistants.find_by_name(session, principal, model)
    if assistant is None:
        raise not_found
    try:
        configured = await assistants.configure(session, principal, settings, assistant)
    except AssistantNotFound:
        raise not_found from None
    return configured, configured.apply(AskRequest(question="?"))


def _ask(body: ChatCompletionRequest, template: AskRequest) -> tuple[AskRequest, list[Message]]:
    history = [
        Message("user" if m.role == "user" else "assistant", m.text())
        for m in body.messages[:-1]
        if m.role in ("user", "assistant") and m.text().strip()
    ]
    return template.model_copy(update={"question": body.messages[-1].text()}), history


async def _standalone(
    ask: AskRequest, history: list[Message], chat: ChatModel, generation: GenerationSettings
) -> chat_service.Turn:
    """The question as a chat conversation would search with it (`turn.search_query`), with what a
    model's rewrite cost (`turn.extra_*_tokens`). A stateless turn: nothing is stored, so it has no
    conversation or message ids (nil UUIDs) and no summary."""
    nil = uuid.UUID(int=0)
    turn = chat_service.Turn(
        conversation_id=nil,
        question_id=nil,
        question_at=utcnow(),
        ask=ask,
        history=service.trim_history(history, generation.history_tokens),
        search_query=chat_service.standalone_question(ask.question, [m.content for m in history if m.role == "user"]),
        started=time.perf_counter(),
    )
    if history:
        await chat_service.condense(turn, chat, generation)
    return turn


def _with_rewrite_cost(answer: AskResponse, turn: chat_service.Turn) -> AskResponse:
    """The answer's token counts with the rewrite's, as chat replies count them."""
    if not (turn.extra_input_tokens or turn.extra_output_tokens):
        return answer
    usage = answer.usage.model_copy(
        update={
            "input_tokens": answer.usage.input_tokens + turn.extra_input_tokens,
            "output_tokens": answer.usage.output_tokens + turn.extra_output_tokens,
        }
    )
    return answer.model_copy(update={"usage": usage})


def _settings_for(generation: GenerationSettings, body: ChatCompletionRequest) -> GenerationSettings:
    updates: dict[str, Any] = {}
    if body.temperature is not None:
        updates["temperature"] = body.temperature
    if body.max_completion_tokens or body.max_tokens:
        updates["max_answer_tokens"] = body.max_completion_tokens or body.max_tokens
    return generation.model_copy(update=updates) if updates else generation


def _usage(answer: AskResponse) -> dict[str, int]:
    return {
        "prompt_tokens": answer.usage.input_tokens,
        "completion_tokens": answer.usage.output_tokens,
        "total_tokens": answer.usage.input_tokens + answer.usage.output_tokens,
    }


def _extensions(answer: AskResponse, search_query: str) -> dict[str, Any]:
    return {
        "citations": [c.model_dump(mode="json") for c in answer.citations],
        "grounded": answer.grounded,
        "answered_by": answer.model,
        "search_query": search_query,
    }


@router.get(
    "/models",
    summary="Models (assistants) you can use",
    description="`tessera` (every collection you can see), the organization's assistants by name, "
    "`collection:<id>` per collection, and the embedding model for `/v1/embeddings`, in OpenAI's list format.",
)
async def list_models(request: Request, principal: Reader, session: DbSession) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    created = int(time.time())
    models = [{"id": DEFAULT_MODEL, "object": "model", "created": created, "owned_by": "tessera"}]
    visible = await documents.visible_collections(session, principal)
    visible_ids = {str(c.id) for c in visible}
    for assistant in await assistants.all_assistants(session, principal):
        if assistant.collections is None or visible_ids & set(assistant.collections):
            models.append(
                {"id": assistant.name, "object": "model", "created": int(assistant.created_at.timestamp()),
                 "owned_by": "organization", "name": assistant.title, "description": assistant.description}
            )  # fmt: skip
    for collection in visible:
        models.append(
            {"id": f"{COLLECTION_PREFIX}{collection.id}", "object": "model", "created": created,
             "owned_by": "tessera", "name": collection.name}
        )  # fmt: skip
    embedder = get_embedder(settings.embeddings)
    models.append({"id": embedder.name, "object": "model", "created": created, "owned_by": "tessera"})
    return {"object": "list", "data": models}


@router.post(
    "/chat/completions",
    summary="Chat completions (OpenAI-compatible), answered from your documents",
    description="OpenAI's chat completions request and response, plain or streamed (`stream: true`: `data:` "
    "chunks then `data: [DONE]`). The answer is Tessera's grounded answer: verified sentences with `[n]` "
    "markers; the response adds `citations` (document, chunk, pages, exact quote), `grounded`, `answered_by` "
    "and `search_query` (a follow-up is searched with as a standalone question, as in chat conversations).",
    responses={
        404: ModelNotFound.schema(),
        422: InvalidInput.schema(),
        502: ProviderRejected.schema(),
        503: ProviderUnavailable.schema(),
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request, principal: Reader, session: DbSession) -> Any:
    settings: Settings = request.app.state.settings
    configured, template = await _assistant(session, principal, settings, body.model)
    gate = Gate(request.app.state.sessionmaker, settings.moderation, principal, "openai", session=session)
    await gate.question(body.messages[-1].text())
    await usage.check_budget(session, principal)
    ask, history = _ask(body, template)
    generation = _settings_for(configured.generation, body)
    embedder = get_embedder(settings.embeddings)
    chat = configured.chat
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        return StreamingResponse(
            _stream(request, principal, body, ask, history, generation, chat, completion_id, created, gate.detached()),
            media_type="text/event-stream",
            headers=HEADERS,
        )
    turn = await _standalone(ask, history, chat, generation)
    answer = await service.ask(
        session, principal, ask, settings=generation, embedder=embedder, chat=chat, history=history,
        search_query=turn.search_query, screen=gate.answer,
    )  # fmt: skip
    answer = _with_rewrite_cost(answer, turn)
    usage.record(
        session, principal, generation, model=answer.model, source="openai",
        input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens,
    )  # fmt: skip
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.answer}, "finish_reason": "stop"}],
        "usage": _usage(answer),
        **_extensions(answer, turn.search_query),
    }


async def _stream(
    request: Request,
    principal: Principal,
    body: ChatCompletionRequest,
    ask: AskRequest,
    history: list[Message],
    generation: GenerationSettings,
    chat: ChatModel,
    completion_id: str,
    created: int,
    gate: Gate,
) -> AsyncIterator[bytes]:

    settings: Settings = request.app.state.settings
    embedder = get_embedder(settings.embeddings)

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra,
        }  # fmt: skip
        return f"data: {json.dumps(payload, default=str, ensure_ascii=False)}\n\n".encode()

    try:
        yield chunk({"role": "assistant", "content": ""})
        turn = await _standalone(ask, history, chat, generation)
        async with unit_of_work(request.app.state.sessionmaker, write=False) as session:
            prepared = await service.prepare(
                session, principal, ask, settings=generation, embedder=embedder, history=history,
                search_query=turn.search_query,
            )  # fmt: skip
        answer: AskResponse | None = None
        async for item in service.stream_answer(
            prepared, chat, settings=generation, embedder=embedder, screen=gate.answer
        ):
            if isinstance(item, str):
                yield chunk({"content": item})
            else:
                answer = item
        assert answer is not None
        answer = _with_rewrite_cost(answer, turn)
        await usage.record_detached(
            request.app.state.sessionmaker, principal, generation, model=answer.model, source="openai",
            input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens,
        )  # fmt: skip
        yield chunk({}, "stop", **_extensions(answer, turn.search_query))
        if body.stream_options is not None and body.stream_options.include_usage:
            payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                       "model": body.model, "choices": [], "usage": _usage(answer)}  # fmt: skip
            yield f"data: {json.dumps(payload)}\n\n".encode()
        yield b"data: [DONE]\n\n"
    except Exception as error:  # the status line is sent: report in-band, as OpenAI does
        yield error_event(error).replace(b"event: error\n", b"")


@router.post(
    "/embeddings",
    summary="Embeddings (OpenAI-compatible)",
    description="Vectors of the configured embedding model (`model`: its name from `/v1/models`, or "
    f"`{EMBEDDING_ALIAS}`), unit length, in OpenAI's response format. At most {MAX_EMBED_INPUTS} inputs.",
    responses={404: ModelNotFound.schema(), 422: InvalidInput.schema()},
)
async def embeddings(body: EmbeddingRequest, request: Request, principal: Reader) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    embedder = get_embedder(settings.embeddings)
    if body.model not in (embedder.name, EMBEDDING_ALIAS):
        raise ModelNotFound(
            f"No embedding model named {body.model!r}: use {embedder.name!r}", details={"model": body.model}
        )
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors = await embedder.embed(texts, kind="passage")
    tokens = sum(estimate_tokens(t) for t in texts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: Any, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]
