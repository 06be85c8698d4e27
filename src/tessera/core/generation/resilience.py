"""Retries, a circuit breaker per provider, and the fallback chain.

* `ResilientChatModel` retries a provider's `ProviderUnavailable` (timeouts, 5xx, 429) with
  exponential backoff and jitter, and opens its circuit after `failures` failures in a row: for
  `cooldown` seconds calls fail at once, then one trial call decides (half-open). A
  `ProviderRejected` (the request itself is wrong) is not retried and counts as the provider being
  up; a call that ends without a verdict (cancelled, a stream the client left) frees the trial.
* `FallbackChatModel` tries each model of the chain in order and moves on when one is
  unavailable (or its circuit is open), so an outage of a hosted model degrades answers to the
  next model (by default the offline `extractive` one) instead of failing requests. The result
  says which model answered and which ones failed.
* A stream is retried or handed to the next model only before its first piece: text already
  sent cannot be taken back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatModel, ChatRequest, ChatResult
from tessera.core.observability.logging import get_logger

logger = get_logger("tessera.generation")


class CircuitBreaker:
    def __init__(self, failures: int = 5, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def retry_after(self) -> float:
        return 0.0 if self.opened_at is None else max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True  # one call tries; the others still fail fast
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def release(self) -> None:
        """A call ended without a verdict on the provider (cancelled, or our request was refused):
        let the next call be the trial."""
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._trial = False


class ResilientChatModel:
    def __init__(
        self,
        inner: ChatModel,
        *,
        retries: int = 2,
        backoff: float = 0.5,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker or CircuitBreaker()

    def _refuse(self) -> ProviderUnavailable:
        wait = max(1, round(self.breaker.retry_after()))
        return ProviderUnavailable(
            f"{self.name} is unavailable (circuit open after repeated failures)",
            details={"provider": self.name, "retry_after_seconds": wait},
            headers={"Retry-After": str(wait)},
        )

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(self.backoff * (2**attempt) * (0.5 + random.random() / 2))

    async def complete(self, request: ChatRequest) -> ChatResult:
        for attempt in range(self.retries + 1):
            if not self.breaker.allow():
                raise self._refuse()
            try:
                result = await self.inner.complete(request)
            except ProviderRejected:
                self.breaker.success()  # the provider answered: it is up, our request was the problem
                raise
            except BaseException as error:
                if not isinstance(error, ProviderUnavailable):
                    self.breaker.release()
                    raise
                self.breaker.failure()
                logger.warning("chat model unavailable", model=self.name, attempt=attempt + 1, error=error.message)
                if attempt == self.retries:
                    raise
                await self._pause(attempt)
                continue
            self.breaker.success()
            return result
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        for attempt in range(self.retries + 1):
            if not self.breaker.allow():
                raise self._refuse()
            started = False
            try:
                async for piece in self.inner.stream(request):
                    started = True
                    yield piece
            except ProviderRejected:
                self.breaker.success()
                raise
            except BaseException as error:  # also the client going away (GeneratorExit, cancellation)
                if not isinstance(error, ProviderUnavailable):
                    self.breaker.release()
                    raise
                self.breaker.failure()
                logger.warning("chat model unavailable", model=self.name, attempt=attempt + 1, error=error.message)
                if started or attempt == self.retries:
                    raise
                await self._pause(attempt)
                continue
            self.breaker.success()
            return

    async def close(self) -> None:
        await self.inner.close()


class FallbackChatModel:
    def __init__(self, chain: Sequence[ChatModel]) -> None:
        if not chain:
            raise ValueError("a fallback chain needs at least one model")
        self.chain = list(chain)
        self.name = self.chain[0].name

    async def complete(self, request: ChatRequest) -> ChatResult:
        failed: list[dict[str, str]] = []
        for model in self.chain:
            try:
                result = await model.complete(request)
            except ProviderUnavailable as error:
                failed.append({"model": model.name, "error": error.message})
                if model is self.chain[-1]:
                    raise
                logger.warning("falling back to the next chat model", failed=model.name, error=error.message)
                continue
            if failed:
                result.metadata["fallback_from"] = failed
            return result
        raise AssertionError("unreachable")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        for model in self.chain:
            started = False
            try:
                async for piece in model.stream(request):
                    started = True
                    yield piece
                return
            except ProviderUnavailable as error:
                if started or model is self.chain[-1]:
                    raise
                logger.warning("falling back to the next chat model", failed=model.name, error=error.message)

    async def close(self) -> None:
        for model in self.chain:
            await model.close()
