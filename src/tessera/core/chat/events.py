"""Live chat events per user and organization, across connections and API processes.

Every turn publishes what happens in it — the user's message, the answer's verified pieces, the
stored answer — on its audience's channel (the user *within the organization* the turn was asked
in), tagged with the connection it came from. Each chat WebSocket listens on the channel of its
user and organization and forwards what other connections did, so a second tab, device or process
shows the conversation as it happens. A user who belongs to several organizations has one channel
per organization: a socket signed in to one never sees the turns asked in another.

`LocalChatEvents` reaches the connections of this process (the embedded default).
`RedisChatEvents` (when `redis_url` is set) publishes through Redis pub/sub, so a socket served by
one API process sees a turn answered by another. A process holds one pub/sub connection, however
many sockets it serves: it subscribes to an audience's channel while it has a socket open here,
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

from tessera.core.auth.principal import Principal
from tessera.core.chat.schemas import ChatReply
from tessera.core.observability.logging import get_logger

logger = get_logger("tessera.chat.events")

QUEUE_SIZE = 1_000
CHANNEL_PREFIX = "tessera:chat:"


@dataclass(frozen=True)
class Audience:
    """Who sees a turn's events: one user, within one organization."""

    org_id: uuid.UUID
    user_id: uuid.UUID

    @property
    def channel(self) -> str:
        return f"{CHANNEL_PREFIX}org:{self.org_id}:user:{self.user_id}"

    @classmethod
    def from_channel(cls, channel: str) -> Audience:
        """Raises ValueError for a channel that is not an audience's."""
        parts = channel.removeprefix(CHANNEL_PREFIX).split(":")
        if len(parts) != 4 or parts[0] != "org" or parts[2] != "user":
            raise ValueError(f"not a chat channel: {channel!r}")
        return cls(uuid.UUID(parts[1]), uuid.UUID(parts[3]))

    @classmethod
    def of(cls, principal: Principal) -> Audience:
        """The signed-in user within the organization they act in (chat needs one)."""
        if principal.org_id is None:
            raise ValueError("chat events belong to an organization")
        return cls(principal.org_id, principal.user.id)


@dataclass(frozen=True)
class ChatEvent:
    origin: str
    """The connection that caused it (a socket's id, or `http`): a socket skips its own events."""
    frame: dict[str, Any]
    """What a WebSocket client receives."""


@dataclass(eq=False)  # hashed by identity: an audience's subscriptions are a set
class Subscription:
    audience: Audience
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
    async def publish(self, audience: Audience, event: ChatEvent) -> None: ...

    def subscribe(self, audience: Audience) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def close(self) -> None: ...


class LocalChatEvents:
    """This process's connections only."""

    def __init__(self) -> None:
        self._subscribers: dict[Audience, set[Subscription]] = {}

    def _deliver(self, audience: Audience, event: ChatEvent) -> None:
        for subscription in list(self._subscribers.get(audience, ())):
            subscription.deliver(event)

    async def publish(self, audience: Audience, event: ChatEvent) -> None:
        self._deliver(audience, event)

    @contextlib.asynccontextmanager
    async def subscribe(self, audience: Audience) -> AsyncIterator[Subscription]:
        subscription = Subscription(audience)
        self._subscribers.setdefault(audience, set()).add(subscription)
        try:
            yield subscription
        finally:
            await self._leave(subscription)

    async def _leave(self, subscription: Subscription) -> bool:
        """Forget a subscription; True when it was its audience's last one here."""
        mine = self._subscribers.get(subscription.audience)
        if mine is None:
            return False
        mine.discard(subscription)
        if mine:
            return False
        del self._subscribers[subscription.audience]
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

    async def publish(self, audience: Audience, event: ChatEvent) -> None:
        payload = json.dumps({"origin": event.origin, "frame": event.frame}, default=str, ensure_ascii=False)
        try:
            await self._redis.publish(audience.channel, payload)
        except Exception as error:  # the answer is stored either way; only the live mirror is lost
            logger.warning(
                "chat event not published", org_id=str(audience.org_id), user_id=str(audience.user_id), error=str(error)
            )
            self._deliver(audience, event)  # this process's other sockets still see it

    @contextlib.asynccontextmanager
    async def subscribe(self, audience: Audience) -> AsyncIterator[Subscription]:
        subscription = Subscription(audience)
        async with self._lock:
            first = audience not in self._subscribers
            self._subscribers.setdefault(audience, set()).add(subscription)
            if first:
                await self._pubsub.subscribe(audience.channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read(), name="chat-events-reader")
        try:
            yield subscription
        finally:
            async with self._lock:
                if await self._leave(subscription):
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(audience.channel)

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
                audience = Audience.from_channel(channel)
                payload = json.loads(message["data"])
                event = ChatEvent(origin=str(payload["origin"]), frame=dict(payload["frame"]))
            except (ValueError, KeyError, TypeError):
                logger.warning("chat events: malformed message ignored", channel=channel)
                continue
            self._deliver(audience, event)

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
        "route": reply.route.model_dump(mode="json") if reply.route else None,
        "stored": reply.stored,
        "timestamp": reply.created_at.isoformat(),
    }


def create_chat_events(redis_url: str | None) -> ChatEvents:
    return RedisChatEvents(redis_url) if redis_url else LocalChatEvents()
