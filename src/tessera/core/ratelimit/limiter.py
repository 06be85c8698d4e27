"""Rate limits on the `limits` library: memory storage in one process, Redis across many."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from limits import RateLimitItem, parse
from limits.aio import storage as aio_storage
from limits.aio import strategies
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from tessera.core.errors import ProviderUnavailable
from tessera.settings import RateLimitSettings

REDIS_TIMEOUT_SECONDS = 2.0
DEFAULT_REDIS_PORT = 6379

STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}


@dataclass(frozen=True, slots=True)
class LimitResult:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until a slot frees up

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_after),
        }


def _limits_uri(redis_url: str) -> str:
    """The URL in the spelling limits expects: `async+redis+unix://` for sockets, and a port always
    (redis-py defaults it to 6379, limits refuses a URL without one)."""
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    parts = urlsplit(redis_url)
    if parts.port is None:
        parts = parts._replace(netloc=f"{parts.netloc}:{DEFAULT_REDIS_PORT}")
    return "async+" + urlunsplit(parts)


class SweepingMemoryStorage(aio_storage.MemoryStorage):
    """limits' in-process storage, sweeping expired entries at most once a second.

    The stock async MemoryStorage starts a sweep after every call, and the sweep hands each key's
    bisect to a worker thread: on a busy server that is a thread round trip per request and per
    key, which cost more than the rest of an authenticated request. The sweep below does the same
    trimming on the event loop (a bisect per key), once a second. It overrides the name-mangled
    hook of limits' MemoryStorage (pinned in uv.lock; tests/core/ratelimit covers the behaviour).
    """

    SWEEP_INTERVAL_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_INTERVAL_SECONDS
        self._sweep()

    def _sweep(self) -> None:
        now = time.time()
        for key in list(self.events):
            events = self.events.get(key)
            if events:
                # Newest first: keep the entries whose expiry is still ahead.
                cutoff = bisect.bisect_left(events, -now, key=lambda event: -event.expiry)
                events = self.events[key] = events[:cutoff]
            if not events and not self.locks[key].locked():
                self.events.pop(key, None)
                self.locks.pop(key, None)
        for key, expires_at in list(self.expirations.items()):
            if expires_at <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, redis_url: str | None) -> None:
        self.settings = settings
        self._redis_pool: ConnectionPool[Any] | None = None
        if redis_url:
            self._redis_pool = ConnectionPool.from_url(
                redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
            )
            # limits defaults to the coredis client; we ship redis-py. The pool is ours, so
            # `close()` can release its connections.
            client_options: dict[str, Any] = {"connection_pool": self._redis_pool}
            self.storage: aio_storage.Storage = aio_storage.RedisStorage(
                _limits_uri(redis_url), implementation="redispy", wrap_exceptions=True, **client_options
            )
        else:
            self.storage = SweepingMemoryStorage()
        self._limiter = STRATEGIES[settings.strategy](self.storage)
        self._groups: dict[str, RateLimitItem] = {}

    def limit_for(self, group: str) -> RateLimitItem:
        item = self._groups.get(group)
        if item is None:
            spec = getattr(self.settings, group, None)
            if not isinstance(spec, str):
                raise KeyError(f"unknown rate limit group {group!r}")
            item = self._groups[group] = parse(spec)
        return item

    async def hit(self, group: str, key: str) -> LimitResult:
        """Count one request of `key` in `group`.

        Raises:
            ProviderUnavailable: the storage (Redis) does not answer; a 503, not a 500.
        """
        item = self.limit_for(group)
        try:
            allowed = await self._limiter.hit(item, group, key)
            stats = await self._limiter.get_window_stats(item, group, key)
        except (StorageError, TimeoutError) as error:
            raise ProviderUnavailable(
                "The rate limit store is unavailable; try again shortly", headers={"Retry-After": "5"}
            ) from error
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return LimitResult(allowed=allowed, limit=item.amount, remaining=stats.remaining, reset_after=reset_after)

    async def check_storage(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.storage.check(), timeout=2))
        except Exception:
            return False

    async def close(self) -> None:
        if self._redis_pool is not None:
            await self._redis_pool.disconnect()
