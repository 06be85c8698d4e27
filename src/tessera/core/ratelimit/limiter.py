"""Rate limits on the `limits` library: memory storage in one process, Redis across many."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio import storage as aio_storage
from limits.aio import strategies

from tessera.settings import RateLimitSettings

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


class RateLimiter:
    def __init__(self, settings: RateLimitSettings, redis_url: str | None) -> None:
        self.settings = settings
        if redis_url:
            self.storage: aio_storage.Storage = aio_storage.storage_from_string(
                "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            )
        else:
            self.storage = aio_storage.MemoryStorage()
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
        item = self.limit_for(group)
        allowed = await self._limiter.hit(item, group, key)
        stats = await self._limiter.get_window_stats(item, group, key)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        return LimitResult(allowed=allowed, limit=item.amount, remaining=stats.remaining, reset_after=reset_after)

    async def check_storage(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.storage.check(), timeout=2))
        except Exception:
            return False

    async def reset(self) -> None:
        await self.storage.reset()
