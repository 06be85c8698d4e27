from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from tessera.core.assistants import service as assistants
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.chat import service
from tessera.core.chat.errors import ConversationNotFound, MessageNotFound
from tessera.core.chat.events import Audience, ChatEvent, ChatEvents, delta_frame, question_frame, response_frame
from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.chat.schemas import (
    ChatReply,
    ChatRoute,
    ChatSend,
    ConversationCreate,
    ConversationDetail,
    ConversationPage,
    ConversationRead,
    ConversationUpdate,
    FeedbackCreate,
    MessageRead,
)
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput, ProviderRejected, ProviderUnavailable
from tessera.core.generation import sse
from tessera.core.generation.schemas import Usage
from tessera.core.generation.sse import stream_response
from tessera.core.moderation.service import Gate
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.usage import service as usage
from tessera.settings import GenerationSettings, Settings

conversations_router = APIRouter(prefix="/conversations", tags=["conversations"], dependencies=[rate_limit("default")])
chat_router = APIRouter(prefix="/chat", tags=["chat"], dependencies=[rate_limit("default")])
HTTP_ORIGIN = "http"  # the origin of events from HTTP requests: every chat socket mirrors them
Reader = Annotated[Principal, require("conversations:read")]
Writer = Annotated[Principal, require("conversations:write")]
Deleter = Annotated[Principal, require("conversations:delete")]


def message_read(message: ChatMessage) -> MessageRead:
    return MessageRead(
        id=message.id,
        conversation_id=message.conversation_id,
        role=message.role.value,
        content=message.content,
        citations=message.citations,
        sentences=message.sentences,
        grounded=message.grounded,
        search_query=message.search_query,
        model=message.model,
        prompt=message.prompt,
        usage=Usage(input_tokens=message.input_tokens, output_tokens=message.output_tokens),
        latency_ms=message.latency_ms,
        feedback=message.feedback.value if message.feedback else None,
        feedback_comment=message.feedback_comment,
        route=ChatRoute.model_validate(message.route) if message.route else None,
        created_at=message.created_at,
    )


def conversation_read(conversation: Conversation) -> ConversationRead:
    return ConversationRead.model_validate(conversation)


@conversations_router.post(
    "",
    response_model=ConversationRead,
    status_code=status.HTTP_201_CREATED,
    summary="Start a conversation",
    description="An empty conversation, optionally limited to some collections and tagged. `POST /chat/send` "
    "without `conversation_id` also starts one.",
)
async def create_conversation(
    body: ConversationCreate, principal: Writer, session: DbSession, response: Response
) -> ConversationRead:
    conversation = await service.create_conversation(session, principal, body)
    response.headers["Location"] = f"/api/v1/conversations/{conversation.id}"
    return conversation_read(conversation)


@conversations_router.get(
    "",
    response_model=ConversationPage,
    summary="List your conversations",
    description="Newest first, without archived ones unless `archived=true` (or `all`). `q` searches titles and "
    "message text; `tag` keeps those with the tag.",
)
async def list_conversations(
    principal: Reader,
    session: DbSession,
    page: PageParamsDep,
    q: Annotated[str | None, Query(max_length=200, description="Text in the title or a message.")] = None,
    tag: Annotated[str | None, Query(max_length=40)] = None,
    archived: Annotated[
        str, Query(pattern="^(true|false|all)$", description="`false` (default), `true`, `all`.")
    ] = "false",
) -> ConversationPage:
    rows, cursor = await service.list_conversations(
        session, principal, params=page, search=q, tag=tag, archived=None if archived == "all" else archived == "true"
    )
    return ConversationPage(items=[conversation_read(c) for c in rows], next_cursor=cursor)


@conversations_router.get(
    "/{conversation_id}",
    response_model=ConversationDetail,
    summary="A conversation with its messages",
    description="Messages oldest first; assistant messages carry their verified citations, model, tokens, latency "
    "and your feedback.",
    responses={404: ConversationNotFound.schema()},
)
async def get_conversation(conversation_id: uuid.UUID, principal: Reader, session: DbSession) -> ConversationDetail:
    conversation = await service.get_conversation(session, principal, conversation_id)
    messages = await service.messages_of(session, conversation)
    return ConversationDetail(
        **conversation_read(conversation).model_dump(), messages=[message_read(m) for m in messages]
    )


@conversations_router.patch(
    "/{conversation_id}",
    response_model=ConversationRead,
    summary="Rename, tag or archive a conversation",
    responses={404: ConversationNotFound.schema(), 422: InvalidInput.schema()},
)
async def update_conversation(
    conversation_id: uuid.UUID, body: ConversationUpdate, principal: Writer, session: DbSession
) -> ConversationRead:
    return conversation_read(await service.update_conversation(session, principal, conversation_id, body))


@conversations_router.delete(
    "/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a conversation and its messages",
    responses={404: ConversationNotFound.schema()},
)
async def delete_conversation(conversation_id: uuid.UUID, principal: Deleter, session: DbSession) -> Response:
    await service.delete_conversation(session, principal, conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@conversations_router.post(
    "/{conversation_id}/messages/{message_id}/feedback",
    response_model=MessageRead,
    summary="Rate an answer",
    description="`up` or `down`, with an optional comment; rating again replaces the earlier rating.",
    responses={404: MessageNotFound.schema(), 422: InvalidInput.schema()},
)
async def add_feedback(
    conversation_id: uuid.UUID, message_id: uuid.UUID, body: FeedbackCreate, principal: Writer, session: DbSession
) -> MessageRead:
    return message_read(await service.add_feedback(session, principal, conversation_id, message_id, body))


_SEND_EXAMPLE: dict[str, Any] = {"content": "How long do size 312 batteries last?"}


@chat_router.post(
    "/send",
    response_model=ChatReply,
    summary="Send a message and get a grounded answer",
    description="Stores your message in the conversation (a new one without `conversation_id`), answers it from "
    "the conversation's collections with verified citations (as `POST /ask`) using the conversation's recent "
    "turns, and stores the answer. A follow-up that leans on earlier turns is searched together with the "
    "previous question (`search_query`). With `stream: true` the answer comes as server-sent events "
    '(`text/event-stream`): `delta` events carry verified text as it is generated (`{"text"}`; a sentence is '
    "sent once the sources support it), then `citations`, then `done` with the stored reply (the JSON answer's "
    'shape; its `content` is authoritative), or `error` (`{"error": {code, message}}`). Closing the connection '
    "cancels the answer; the question stays in the conversation, unanswered.",
    responses={
        404: {
            **ConversationNotFound.schema(),
            "description": "The conversation (`conversation_not_found`) or the assistant (`assistant_not_found`) "
            "does not exist or is not yours.",
        },
        422: InvalidInput.schema(),
        502: ProviderRejected.schema(),
        503: ProviderUnavailable.schema(),
    },
    openapi_extra={"requestBody": {"content": {"application/json": {"example": _SEND_EXAMPLE}}}},
)
async def send(
    body: ChatSend,
    request: Request,
    background: BackgroundTasks,
    principal: Writer,
    session: DbSession,
    _reader: Annotated[Principal, require("documents:read")],
) -> ChatReply | StreamingResponse:
    settings: Settings = request.app.state.settings
    gate = Gate(request.app.state.sessionmaker, settings.moderation, principal, "chat", session=session)
    await gate.question(body.content)  # a flagged message is refused before anything is stored
    await usage.check_budget(session, principal)
    # Errors a client can fix (another user's conversation, an unknown assistant) are answered
    # before a stream starts, with their status code.
    assistant_id = await service.assistant_of(session, principal, body)
    configured = await assistants.configure_by_id(session, principal, settings, assistant_id)
    if body.stream:
        return stream_response(
            _events(
                request,
                principal,
                configured.generation,
                service.stream_send(
                    request.app.state.sessionmaker,
                    principal,
                    body,
                    settings=configured.generation,
                    embedder=get_embedder(settings.embeddings),
                    chat=configured.chat,
                    screen=gate.detached().answer,
                    configured=configured,
                    policies=request.app.state.chat_policies,
                ),
            )
        )
    reply = await service.send(
        session,
        principal,
        body,
        settings=configured.generation,
        embedder=get_embedder(settings.embeddings),
        chat=configured.chat,
        screen=gate.answer,
        configured=configured,
        policies=request.app.state.chat_policies,
    )
    usage.record(
        session, principal, configured.generation, model=reply.model, source="chat",
        input_tokens=reply.usage.input_tokens, output_tokens=reply.usage.output_tokens,
    )  # fmt: skip
    # Background tasks run once the response is sent, after the transaction committed.
    background.add_task(_mirror_reply, request.app.state.chat_events, Audience.of(principal), body.content, reply)
    return reply


async def _mirror_reply(events: ChatEvents, audience: Audience, question: str, reply: ChatReply) -> None:
    """The turn, for the user's open chat sockets in the same organization."""
    asked = question_frame(reply.conversation_id, reply.user_message_id, question, reply.created_at)
    await events.publish(audience, ChatEvent(HTTP_ORIGIN, asked))
    await events.publish(audience, ChatEvent(HTTP_ORIGIN, response_frame(reply)))


async def _events(
    request: Request,
    principal: Principal,
    generation: GenerationSettings,
    items: AsyncIterator[service.Turn | str | ChatReply],
) -> AsyncIterator[bytes]:
    events: ChatEvents = request.app.state.chat_events
    audience = Audience.of(principal)
    conversation_id: uuid.UUID | None = None
    async for item in items:
        if isinstance(item, service.Turn):
            conversation_id = item.conversation_id
            frame = question_frame(item.conversation_id, item.question_id, item.ask.question, item.question_at)
            await events.publish(audience, ChatEvent(HTTP_ORIGIN, frame))
        elif isinstance(item, str):
            assert conversation_id is not None
            await events.publish(audience, ChatEvent(HTTP_ORIGIN, delta_frame(conversation_id, item)))
            yield sse.event("delta", {"text": item})
        else:
            await events.publish(audience, ChatEvent(HTTP_ORIGIN, response_frame(item)))
            await usage.record_detached(
                request.app.state.sessionmaker, principal, generation, model=item.model, source="chat",
                input_tokens=item.usage.input_tokens, output_tokens=item.usage.output_tokens,
            )  # fmt: skip
            yield sse.event("citations", {"citations": [c.model_dump(mode="json") for c in item.citations]})
            yield sse.event("done", item.model_dump(mode="json"))
