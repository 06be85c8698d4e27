"""Live chat events per user, across connections and API processes.

Every turn publishes what happens in it — the user's message, the answer's verified pieces, the
stored answer — on its user's channel, tagged with the connection it came from. Each chat
WebSocket listens on its user's channel and forwards what other connections did, so a second tab,
device or process shows the conversation as it happens.

`LocalChatEvents` reaches the connections of this process (the embedded default).
`RedisChatEvents` (when `redis_url` is set) publishes through Redis pub/sub, so a socket served by
one API process sees a turn answered by another. A process holds one pub/sub connection, however
many sockets it serves: it subscribes to a user's channel while that user has a socket open here,
and routes each message to the local subscribers.

Delivery is best effort, like the sockets themselves: a subscriber that falls `QUEUE_SIZE` events
behind loses the oldest, and a Redis outage loses the events published during it (answers are
stored either way; a client catches up with `GET /api/v1/conversations/{id}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tessera.core.chat.schemas import ChatReply
from tessera.core.observability.logging import get_logger

logger = get_logger("tessera.chat.events")

QUEUE_SIZE = 1_000
CHANNEL_PREFIX = "tessera:chat:user:"


@dataclass(frozen=True)
class ChatEvent:
    origin: str
    """The connection that caused it (a socket's id, or `http`): a socket skips its own events."""
    frame: dict[str, Any]
    """What a WebSocket client receives."""


@dataclass(eq=False)  # hashed by identity: a user's subscriptions are a set
class Subscription:
    user_id: uuid.UUID
    queue: asyncio.Queue[ChatEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))

    def deliver(self, event: ChatEvent) -> None:
        if self.queue.full():  # a stalled reader loses the oldest events, never blocks the others
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def events(self) -> AsyncIterator[ChatEvent]:
        while True:
            yield await self.queue.get()


class ChatEvents(Protocol):
    async def publish(self, user_id: uuid.UUID, event: ChatEvent) -> None: ...

    def subscribe(self, user_id: uuid.UUID) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


class LocalChatEvents:
    """This process's connections only."""

    def __init__(self) -> None:
        self._subscribers: dict[uuid.UUID, set[Subscription]] = {}

    def _deliver(self, user_id: uuid.UUID, event: ChatEvent) -> None:
        for subscription in list(self._subscribers.get(user_id, ())):
            subscription.deliver(event)

    async def publish(self, user_id: uuid.UUID, event: ChatEvent) -> None:
        self._deliver(user_id, event)

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: uuid.UUID) -> AsyncIterator[Subscription]:
        subscription = Subscription(user_id)
        self._subscribers.setdefault(user_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            await self._leave(subscription)

    async def _leave(self, subscription: Subscription) -> bool:
        """Forget a subscription; True when it was its user's last one here."""
        mine = self._subscribers.get(subscription.user_id)
        if mine is None:
            return False
        mine.discard(subscription)
        if mine:
            return False
        del self._subscribers[subscription.user_id]
        return True

    async def close(self) -> None:
        self._subscribers.clear()


class RedisChatEvents(LocalChatEvents):
    """Every API process's connections, through Redis pub/sub."""

    def __init__(self, redis_url: str) -> None:
        from redis.asyncio import Redis

        super().__init__()
        self._redis: Redis[bytes] = Redis.from_url(redis_url)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def publish(self, user_id: uuid.UUID, event: ChatEvent) -> None:
        payload = json.dumps({"origin": event.origin, "frame": event.frame}, default=str, ensure_ascii=False)
        try:
            await self._redis.publish(f"{CHANNEL_PREFIX}{user_id}", payload)
        except Exception as error:  # the answer is stored either way; only the live mirror is lost
            logger.warning("chat event not published", user_id=str(user_id), error=str(error))
            self._deliver(user_id, event)  # this process's other sockets still see it

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: uuid.UUID) -> AsyncIterator[Subscription]:
        subscription = Subscription(user_id)
        async with self._lock:
            first = user_id not in self._subscribers
            self._subscribers.setdefault(user_id, set()).add(subscription)
            if first:
                await self._pubsub.subscribe(f"{CHANNEL_PREFIX}{user_id}")
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="chat-events-reader")
        try:
            yield subscription
        finally:
            async with self._lock:
                if await self._leave(subscription):
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(f"{CHANNEL_PREFIX}{user_id}")

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis restarted or the network blipped: redis-py resubscribes
                logger.warning("chat events: Redis read failed, retrying", error=str(error))
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            try:
                user_id = uuid.UUID(channel.removeprefix(CHANNEL_PREFIX))
                payload = json.loads(message["data"])
                event = ChatEvent(origin=str(payload["origin"]), frame=dict(payload["frame"]))
            except (ValueError, KeyError, TypeError):
                logger.warning("chat events: malformed message ignored", channel=channel)
                continue
            self._deliver(user_id, event)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        # types-redis predates `aclose` (redis-py 5), which replaced the deprecated `close`.
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await self._redis.aclose()  # type: ignore[attr-defined]
        await super().close()


def question_frame(conversation_id: uuid.UUID, message_id: uuid.UUID, content: str, created_at: Any) -> dict[str, Any]:
    return {
        "type": "user_message",
        "conversation_id": str(conversation_id),
        "message_id": str(message_id),
        "content": content,
        "timestamp": created_at.isoformat(),
    }


def delta_frame(conversation_id: uuid.UUID, text: str) -> dict[str, Any]:
    return {"type": "delta", "conversation_id": str(conversation_id), "text": text}


def response_frame(reply: ChatReply) -> dict[str, Any]:
    return {
        "type": "response",
        "message_id": str(reply.message_id),
        "user_message_id": str(reply.user_message_id),
        "conversation_id": str(reply.conversation_id),
        "content": reply.content,
        "citations": [c.model_dump(mode="json") for c in reply.citations],
        "grounded": reply.grounded,
        "model": reply.model,
        "timestamp": reply.created_at.isoformat(),
    }


def create_chat_events(redis_url: str | None) -> ChatEvents:
    return RedisChatEvents(redis_url) if redis_url else LocalChatEvents()
