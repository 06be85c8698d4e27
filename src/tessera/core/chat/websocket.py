"""`GET /api/v1/chat/ws`: chat over a WebSocket.

Protocol (JSON text frames):

* The first frame authenticates: `{"type": "auth", "token": "<JWT or API key>"}` (optionally
  `"org_id"`), within `AUTH_TIMEOUT` seconds. A token never goes in the URL. The server answers
  `{"type": "ready", "user_id", "org_id"}`, or closes with 1008 and the reason.
* `{"type": "message", "content", "conversation_id"?, "collections"?, "assistant_id"?, "style"?}` asks
  a question (`collections` and `assistant_id` only when it starts a conversation):
  the server sends `{"type": "delta", "text"}` frames (verified sentences, as they are generated),
  then `{"type": "response", "message_id", "user_message_id", "conversation_id", "content",
  "citations", "grounded", "model", "timestamp"}`. One question at a time per connection.
* What the user does on other connections in the same organization — other sockets, `POST
  /chat/send`, in this API process or another one when Redis is configured (`events.py`) —
  arrives as the same frames marked `"mirror": true`: `{"type": "user_message",
  "conversation_id", "message_id", "content", "timestamp"}`, then `delta` frames (with
  `conversation_id`), then `response`. Turns the user asks in another organization never do.
* `{"type": "ping"}` gets `{"type": "pong"}`; the server sends `{"type": "ping"}` every
  `HEARTBEAT_SECONDS` so proxies keep the connection open, and a client may answer it with
  `{"type": "pong"}` (accepted, not answered).
* A frame that is not JSON, has an unknown type or invalid fields gets `{"type": "error", "code",
  "message", "details"?}` and the connection stays open. A frame over `MAX_FRAME_CHARS` closes it
  with 1009. Closing the connection cancels the answer being generated (it is not stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from pydantic import ValidationError

from tessera.core.assistants import service as assistants
from tessera.core.auth import principal as principal_service
from tessera.core.auth.principal import Principal
from tessera.core.auth.tokens import API_KEY_PREFIX
from tessera.core.chat import service
from tessera.core.chat.events import (
    Audience,
    ChatEvent,
    ChatEvents,
    Subscription,
    delta_frame,
    question_frame,
    response_frame,
)
from tessera.core.chat.schemas import ChatReply, ChatSend
from tessera.core.db.session import unit_of_work
from tessera.core.errors import AppError
from tessera.core.moderation.service import Gate
from tessera.core.observability.logging import get_logger
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.usage import service as usage
from tessera.settings import Settings

logger = get_logger("tessera.chat.ws")
# Its own router: the HTTP routers' dependencies (rate limits) read an HTTP request.
socket_router = APIRouter(prefix="/chat", tags=["chat"])

AUTH_TIMEOUT = 10.0
HEARTBEAT_SECONDS = 20.0
MAX_FRAME_CHARS = 16_000
PERMISSIONS = ("conversations:write", "documents:read")


class _Connection:
    def __init__(self, websocket: WebSocket) -> None:
        self.id = uuid.uuid4().hex
        self.websocket = websocket
        self.lock = asyncio.Lock()
        self.answering: asyncio.Task[None] | None = None
        self.busy = False  # cleared before the response is sent, so the next question is welcome

    async def send(self, payload: dict[str, Any]) -> None:
        async with self.lock:
            await self.websocket.send_text(json.dumps(payload, default=str, ensure_ascii=False))

    async def error(self, code: str, message: str, details: Any = None) -> None:
        await self.send({"type": "error", "code": code, "message": message, "details": details})


async def _authenticate(websocket: WebSocket, frame: dict[str, Any]) -> Principal:
    settings: Settings = websocket.app.state.settings
    token = frame.get("token")
    if frame.get("type") != "auth" or not isinstance(token, str) or not token:
        raise PermissionError('the first message must be {"type": "auth", "token": "…"}')
    org = frame.get("org_id")
    try:
        requested_org = uuid.UUID(org) if isinstance(org, str) else None
    except ValueError as error:
        raise PermissionError("org_id is not a UUID") from error
    async with unit_of_work(websocket.app.state.sessionmaker) as session:
        try:
            if token.startswith(API_KEY_PREFIX):
                principal = await principal_service.principal_from_api_key(
                    session, settings, token, requested_org=requested_org
                )
            else:
                principal = await principal_service.principal_from_access_token(
                    session, settings, token, requested_org=requested_org
                )
        except AppError as error:
            raise PermissionError(error.message) from error
    missing = [p for p in PERMISSIONS if not principal.can(p)]
    if principal.org_id is None or missing:
        raise PermissionError(f"this needs the {', '.join(missing) or 'an active organization'} permission")
    return principal


@socket_router.websocket("/ws")
async def chat_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    connection = _Connection(websocket)
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), timeout=AUTH_TIMEOUT)
        principal = await _authenticate(websocket, json.loads(raw) if len(raw) <= MAX_FRAME_CHARS else {})
    except (TimeoutError, PermissionError, ValueError) as error:
        reason = "authenticate first" if isinstance(error, TimeoutError) else str(error) or "invalid auth frame"
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION, reason=reason[:120])
        return
    except WebSocketDisconnect:
        return
    await connection.send({"type": "ready", "user_id": str(principal.user.id), "org_id": str(principal.org_id)})
    events: ChatEvents = websocket.app.state.chat_events
    async with events.subscribe(Audience.of(principal)) as subscription:
        heartbeat = asyncio.create_task(_heartbeat(connection))
        mirror = asyncio.create_task(_mirror(connection, subscription))
        try:
            await _serve(connection, principal)
        finally:
            heartbeat.cancel()
            mirror.cancel()
            if connection.answering is not None:
                connection.answering.cancel()  # the client left: stop generating
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await connection.answering


async def _heartbeat(connection: _Connection) -> None:
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await connection.send({"type": "ping"})


async def _mirror(connection: _Connection, subscription: Subscription) -> None:
    """Forward what the user's other connections (in any process) do, marked `mirror: true`."""
    with contextlib.suppress(Exception):
        async for event in subscription.events():
            if event.origin != connection.id:
                await connection.send(event.frame | {"mirror": True})


async def _serve(connection: _Connection, principal: Principal) -> None:
    websocket = connection.websocket
    while True:
        try:
            raw = await websocket.receive_text()
        except WebSocketDisconnect:
            return
        except KeyError:  # a binary frame
            await connection.error("invalid_frame", "Frames are JSON text")
            continue
        if len(raw) > MAX_FRAME_CHARS:
            await websocket.close(
                code=status.WS_1009_MESSAGE_TOO_BIG, reason=f"frames are at most {MAX_FRAME_CHARS} characters"
            )
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            await connection.error("invalid_frame", "The frame is not JSON")
            continue
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "ping":
            await connection.send({"type": "pong"})
        elif kind == "pong":
            continue  # a client's answer to our heartbeat
        elif kind == "message":
            if connection.busy:
                await connection.error("busy", "One question at a time: wait for the response")
                continue
            try:
                body = ChatSend.model_validate({k: v for k, v in frame.items() if k != "type"} | {"stream": True})
            except ValidationError as error:
                details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in error.errors()]
                await connection.error("invalid_input", "The message is not valid", details)
                continue
            connection.busy = True
            connection.answering = asyncio.create_task(_answer(connection, principal, body))
        else:
            await connection.error("invalid_frame", 'Unknown frame type: use "message", "ping" or "pong"')


async def _answer(connection: _Connection, principal: Principal, body: ChatSend) -> None:
    app = connection.websocket.app
    settings: Settings = app.state.settings
    gate = Gate(app.state.sessionmaker, settings.moderation, principal, "chat_ws")
    try:
        await gate.question(body.content)
        async with unit_of_work(app.state.sessionmaker, write=False) as session:
            await usage.check_budget(session, principal)
            assistant_id = await service.assistant_of(session, principal, body)
            configured = await assistants.configure_by_id(session, principal, settings, assistant_id)
        events: ChatEvents = app.state.chat_events
        audience = Audience.of(principal)
        conversation_id: uuid.UUID | None = None
        async for item in service.stream_send(
            app.state.sessionmaker, principal, body, settings=configured.generation,
            embedder=get_embedder(settings.embeddings), chat=configured.chat, screen=gate.answer,
            configured=configured, policies=app.state.chat_policies,
        ):  # fmt: skip
            if isinstance(item, service.Turn):
                conversation_id = item.conversation_id
                frame = question_frame(item.conversation_id, item.question_id, item.ask.question, item.question_at)
                await events.publish(audience, ChatEvent(connection.id, frame))
            elif isinstance(item, ChatReply):
                await usage.record_detached(
                    app.state.sessionmaker, principal, configured.generation, model=item.model, source="chat_ws",
                    input_tokens=item.usage.input_tokens, output_tokens=item.usage.output_tokens,
                )  # fmt: skip
                connection.busy = False
                frame = response_frame(item)
                await connection.send(frame)
                await events.publish(audience, ChatEvent(connection.id, frame))
            else:
                assert conversation_id is not None
                frame = delta_frame(conversation_id, item)
                await connection.send(frame)
                await events.publish(audience, ChatEvent(connection.id, frame))
    except AppError as error:
        connection.busy = False
        with contextlib.suppress(Exception):
            await connection.error(error.code, error.message, error.details)
    except (WebSocketDisconnect, RuntimeError):
        return  # the socket closed under us
    except Exception:
        connection.busy = False
        logger.exception("chat answer failed")
        with contextlib.suppress(Exception):
            await connection.error("internal_error", "The answer could not be completed")
