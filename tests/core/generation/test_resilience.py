"""Retries, the circuit breaker (on an injected clock), the fallback chain, streams through both,
and the chain `create_chat_model` builds from the `generation` settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation import resilience
from tessera.core.generation.base import ChatModel, ChatRequest, ChatResult, Message
from tessera.core.generation.extractive import ExtractiveChatModel
from tessera.core.generation.fake import FakeChatModel
from tessera.core.generation.openai import OpenAIChatModel
from tessera.core.generation.registry import create_chat_model
from tessera.core.generation.resilience import CircuitBreaker, FallbackChatModel, ResilientChatModel
from tessera.settings import GenerationSettings

REQUEST = ChatRequest(messages=[Message("user", "Where do herons wait?")])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class BreaksMidStream:
    """Streams its first piece, then becomes unavailable (or rejects)."""

    def __init__(self, name: str = "fake:breaks", error: type[Exception] = ProviderUnavailable) -> None:
        self.name = name
        self.error = error
        self.calls = 0
        self.closed = False

    async def complete(self, request: ChatRequest) -> ChatResult:
        raise AssertionError("only streamed here")

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        self.calls += 1
        yield "partial "
        raise self.error(f"{self.name} broke mid-stream")

    async def close(self) -> None:
        self.closed = True


class Closing(FakeChatModel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed = 0

    async def close(self) -> None:
        self.closed += 1


async def collect(pieces: AsyncIterator[str], into: list[str] | None = None) -> list[str]:
    out = into if into is not None else []
    async for piece in pieces:
        out.append(piece)
    return out


def resilient(model: ChatModel, *, retries: int = 2, breaker: CircuitBreaker | None = None) -> ResilientChatModel:
    return ResilientChatModel(model, retries=retries, backoff=0, breaker=breaker or CircuitBreaker(failures=100))


# --- CircuitBreaker ------------------------------------------------------------------------------


class TestCircuitBreaker:
    def test_opens_after_failures_in_a_row(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=3, cooldown=10, clock=clock)

        for _ in range(2):
            assert breaker.allow()
            breaker.failure()
        assert breaker.state == "closed"
        assert breaker.allow()
        assert breaker.retry_after() == 0.0

        breaker.failure()

        assert breaker.state == "open"
        assert not breaker.allow()
        assert not breaker.allow()  # fails fast, again and again
        assert breaker.retry_after() == 10.0

    def test_a_success_resets_the_count(self) -> None:
        breaker = CircuitBreaker(failures=3, cooldown=10, clock=Clock())
        breaker.failure()
        breaker.failure()

        breaker.success()
        breaker.failure()
        breaker.failure()

        assert breaker.failures == 2
        assert breaker.state == "closed"
        breaker.failure()
        assert breaker.state == "open"

    def test_retry_after_counts_down(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
        breaker.failure()

        clock.advance(4)
        assert breaker.retry_after() == pytest.approx(6.0)
        assert breaker.state == "open"
        clock.advance(5.5)
        assert breaker.retry_after() == pytest.approx(0.5)
        assert not breaker.allow()
        clock.advance(3)
        assert breaker.retry_after() == 0.0  # never negative

    def test_half_open_allows_exactly_one_trial(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
        breaker.failure()

        clock.advance(10)

        assert breaker.state == "half_open"
        assert breaker.allow()  # the trial
        assert not breaker.allow()  # everyone else while it runs
        assert not breaker.allow()

    def test_a_failed_trial_reopens_for_a_whole_cooldown(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=3, cooldown=10, clock=clock)
        for _ in range(3):
            breaker.failure()
        clock.advance(12)
        assert breaker.allow()

        breaker.failure()  # the failed trial

        assert breaker.state == "open"
        assert breaker.retry_after() == 10.0
        assert not breaker.allow()
        clock.advance(10)
        assert breaker.state == "half_open"
        assert breaker.allow()  # a new trial after the new cooldown

    def test_a_successful_trial_closes_and_resets(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=2, cooldown=10, clock=clock)
        breaker.failure()
        breaker.failure()
        clock.advance(10)
        assert breaker.allow()

        breaker.success()

        assert breaker.state == "closed"
        assert breaker.failures == 0
        assert breaker.retry_after() == 0.0
        assert all(breaker.allow() for _ in range(5))
        breaker.failure()
        assert breaker.state == "closed"  # the count starts again from zero
        breaker.failure()
        assert breaker.state == "open"


# --- ResilientChatModel --------------------------------------------------------------------------


class TestResilientChatModel:
    async def test_succeeds_after_two_failures(self) -> None:
        fake = FakeChatModel(["Herons wait [1]."], unavailable=2)
        breaker = CircuitBreaker(failures=5)
        model = ResilientChatModel(fake, retries=2, backoff=0, breaker=breaker)

        result = await model.complete(REQUEST)

        assert result.text == "Herons wait [1]."
        assert len(fake.calls) == 3
        assert breaker.failures == 0  # the success reset the count
        assert model.name == "fake:scripted"

    async def test_gives_up_after_the_retries(self) -> None:
        fake = FakeChatModel(["never"], unavailable=10)
        model = resilient(fake, retries=2)

        with pytest.raises(ProviderUnavailable, match=r"down \(scripted\)"):
            await model.complete(REQUEST)

        assert len(fake.calls) == 3
        assert model.breaker.failures == 3

    async def test_no_retries_is_one_call(self) -> None:
        fake = FakeChatModel(["never"], unavailable=1)

        with pytest.raises(ProviderUnavailable):
            await resilient(fake, retries=0).complete(REQUEST)

        assert len(fake.calls) == 1

    async def test_rejected_is_not_retried_nor_counted(self) -> None:
        fake = FakeChatModel(["fine"], rejected=3)
        breaker = CircuitBreaker(failures=1)
        model = resilient(fake, retries=2, breaker=breaker)

        for expected_calls in (1, 2, 3):
            with pytest.raises(ProviderRejected, match=r"refused \(scripted\)"):
                await model.complete(REQUEST)
            assert len(fake.calls) == expected_calls

        assert breaker.failures == 0
        assert breaker.state == "closed"
        assert (await model.complete(REQUEST)).text == "fine"

    async def test_open_circuit_fails_fast_with_retry_after(self) -> None:
        clock = Clock()
        fake = FakeChatModel(["back again"], unavailable=2)
        model = resilient(fake, retries=1, breaker=CircuitBreaker(failures=2, cooldown=30, clock=clock))
        with pytest.raises(ProviderUnavailable, match=r"down \(scripted\)"):
            await model.complete(REQUEST)
        assert len(fake.calls) == 2

        with pytest.raises(ProviderUnavailable, match="circuit open") as raised:
            await model.complete(REQUEST)

        assert len(fake.calls) == 2  # the model was not called
        assert raised.value.headers == {"Retry-After": "30"}
        assert raised.value.details == {"provider": "fake:scripted", "retry_after_seconds": 30}
        clock.advance(25.6)
        with pytest.raises(ProviderUnavailable, match="circuit open") as later:
            await model.complete(REQUEST)
        assert later.value.headers == {"Retry-After": "4"}
        assert later.value.details["retry_after_seconds"] == 4
        assert len(fake.calls) == 2

        clock.advance(5)  # past the cooldown: one trial call, which succeeds
        assert (await model.complete(REQUEST)).text == "back again"
        assert len(fake.calls) == 3
        assert model.breaker.state == "closed"

    async def test_retry_after_is_at_least_one_second(self) -> None:
        clock = Clock()
        model = resilient(FakeChatModel(unavailable=1), retries=0, breaker=CircuitBreaker(1, 10, clock=clock))
        with pytest.raises(ProviderUnavailable):
            await model.complete(REQUEST)
        clock.advance(9.9)

        with pytest.raises(ProviderUnavailable, match="circuit open") as raised:
            await model.complete(REQUEST)

        assert raised.value.headers == {"Retry-After": "1"}

    async def test_circuit_opening_mid_retries_stops_them(self) -> None:
        fake = FakeChatModel(["never"], unavailable=10)
        model = resilient(fake, retries=5, breaker=CircuitBreaker(failures=2, cooldown=30, clock=Clock()))

        with pytest.raises(ProviderUnavailable, match="circuit open"):
            await model.complete(REQUEST)

        assert len(fake.calls) == 2

    @pytest.mark.parametrize(("jitter", "delays"), [(0.0, [0.25, 0.5, 1.0]), (1.0, [0.5, 1.0, 2.0])])
    async def test_backoff_doubles_with_jitter(
        self, monkeypatch: pytest.MonkeyPatch, jitter: float, delays: list[float]
    ) -> None:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        monkeypatch.setattr(resilience, "asyncio", SimpleNamespace(sleep=sleep))
        monkeypatch.setattr("tessera.core.generation.resilience.random.random", lambda: jitter)
        fake = FakeChatModel(["ok"], unavailable=3)
        model = ResilientChatModel(fake, retries=3, backoff=0.5, breaker=CircuitBreaker(failures=10))

        assert (await model.complete(REQUEST)).text == "ok"

        assert slept == pytest.approx(delays)

    async def test_stream_is_retried_before_its_first_piece(self) -> None:
        fake = FakeChatModel(["Herons wait here."], unavailable=2)
        model = resilient(fake, retries=2)

        pieces = await collect(model.stream(REQUEST))

        assert pieces == ["Herons ", "wait ", "here. "]
        assert len(fake.calls) == 3
        assert model.breaker.failures == 0

    async def test_stream_gives_up_after_the_retries(self) -> None:
        fake = FakeChatModel(["never"], unavailable=3)

        with pytest.raises(ProviderUnavailable, match=r"down \(scripted\)"):
            await collect(resilient(fake, retries=2).stream(REQUEST))

        assert len(fake.calls) == 3

    async def test_stream_is_not_retried_after_a_piece(self) -> None:
        inner = BreaksMidStream()
        model = resilient(inner, retries=3)
        pieces: list[str] = []

        with pytest.raises(ProviderUnavailable, match="broke mid-stream"):
            await collect(model.stream(REQUEST), pieces)

        assert pieces == ["partial "]
        assert inner.calls == 1
        assert model.breaker.failures == 1

    async def test_open_circuit_refuses_streams(self) -> None:
        fake = FakeChatModel(["x"], unavailable=1)
        model = resilient(fake, retries=0, breaker=CircuitBreaker(failures=1, cooldown=30, clock=Clock()))
        with pytest.raises(ProviderUnavailable):
            await collect(model.stream(REQUEST))

        with pytest.raises(ProviderUnavailable, match="circuit open") as raised:
            await collect(model.stream(REQUEST))

        assert raised.value.headers == {"Retry-After": "30"}
        assert len(fake.calls) == 1

    async def test_close_reaches_the_model(self) -> None:
        inner = Closing()

        await resilient(inner).close()

        assert inner.closed == 1


# --- FallbackChatModel ---------------------------------------------------------------------------


class TestFallbackChatModel:
    async def test_next_model_answers_when_the_first_is_unavailable(self) -> None:
        first = FakeChatModel(["from first"], name="fake:first", unavailable=1)
        second = FakeChatModel(["from second"], name="fake:second")
        chain = FallbackChatModel([first, second])

        result = await chain.complete(REQUEST)

        assert result.text == "from second"
        assert result.model == "fake:second"
        assert result.metadata["fallback_from"] == [{"model": "fake:first", "error": "fake:first is down (scripted)"}]
        assert (len(first.calls), len(second.calls)) == (1, 1)
        assert chain.name == "fake:first"

    async def test_first_answering_says_no_fallback(self) -> None:
        first = FakeChatModel(["from first"], name="fake:first")
        second = FakeChatModel(["from second"], name="fake:second")

        result = await FallbackChatModel([first, second]).complete(REQUEST)

        assert result.text == "from first"
        assert "fallback_from" not in result.metadata
        assert second.calls == []

    async def test_every_failure_is_listed(self) -> None:
        models = [
            FakeChatModel(name="fake:a", unavailable=1),
            FakeChatModel(name="fake:b", unavailable=1),
            FakeChatModel(["from c"], name="fake:c"),
        ]

        result = await FallbackChatModel(models).complete(REQUEST)

        assert [failed["model"] for failed in result.metadata["fallback_from"]] == ["fake:a", "fake:b"]
        assert result.model == "fake:c"

    async def test_all_unavailable_raises_the_last_error(self) -> None:
        first = FakeChatModel(name="fake:first", unavailable=1)
        second = FakeChatModel(name="fake:second", unavailable=1)

        with pytest.raises(ProviderUnavailable, match=r"^fake:second is down"):
            await FallbackChatModel([first, second]).complete(REQUEST)

        assert (len(first.calls), len(second.calls)) == (1, 1)

    async def test_rejected_is_not_fallen_back_from(self) -> None:
        first = FakeChatModel(name="fake:first", rejected=1)
        second = FakeChatModel(["from second"], name="fake:second")

        with pytest.raises(ProviderRejected, match="fake:first refused"):
            await FallbackChatModel([first, second]).complete(REQUEST)

        assert second.calls == []

    async def test_open_circuit_moves_on_without_calling_the_model(self) -> None:
        flaky = FakeChatModel(["from flaky"], name="fake:flaky", unavailable=1)
        guarded = resilient(flaky, retries=0, breaker=CircuitBreaker(failures=1, cooldown=60, clock=Clock()))
        backup = FakeChatModel(["from backup"], name="fake:backup")
        chain = FallbackChatModel([guarded, backup])
        await chain.complete(REQUEST)

        result = await chain.complete(REQUEST)

        assert result.text == "from backup"
        assert len(flaky.calls) == 1  # the open circuit answered for it the second time
        [failed] = result.metadata["fallback_from"]
        assert failed["model"] == "fake:flaky"
        assert "circuit open" in failed["error"]

    def test_empty_chain_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one model"):
            FallbackChatModel([])

    async def test_stream_hands_over_before_the_first_piece(self) -> None:
        first = FakeChatModel(["from first"], name="fake:first", unavailable=1)
        second = FakeChatModel(["from second"], name="fake:second")

        pieces = await collect(FallbackChatModel([first, second]).stream(REQUEST))

        assert pieces == ["from ", "second "]
        assert (len(first.calls), len(second.calls)) == (1, 1)

    async def test_stream_of_the_first_model_is_kept(self) -> None:
        first = FakeChatModel(["from first"], name="fake:first")
        second = FakeChatModel(["from second"], name="fake:second")

        assert await collect(FallbackChatModel([first, second]).stream(REQUEST)) == ["from ", "first "]
        assert second.calls == []

    async def test_stream_is_not_handed_over_after_a_piece(self) -> None:
        first = BreaksMidStream()
        second = FakeChatModel(["from second"], name="fake:second")
        pieces: list[str] = []

        with pytest.raises(ProviderUnavailable, match="broke mid-stream"):
            await collect(FallbackChatModel([first, second]).stream(REQUEST), pieces)

        assert pieces == ["partial "]
        assert second.calls == []

    async def test_stream_all_unavailable_raises_the_last_error(self) -> None:
        first = FakeChatModel(name="fake:first", unavailable=1)
        second = FakeChatModel(name="fake:second", unavailable=1)

        with pytest.raises(ProviderUnavailable, match=r"^fake:second is down"):
            await collect(FallbackChatModel([first, second]).stream(REQUEST))

    async def test_stream_rejected_is_not_fallen_back_from(self) -> None:
        first = FakeChatModel(name="fake:first", rejected=1)
        second = FakeChatModel(["from second"], name="fake:second")

        with pytest.raises(ProviderRejected):
            await collect(FallbackChatModel([first, second]).stream(REQUEST))

        assert second.calls == []

    async def test_retried_model_then_fallback_in_a_stream(self) -> None:
        flaky = FakeChatModel(["never"], name="fake:flaky", unavailable=10)
        backup = FakeChatModel(["from backup"], name="fake:backup")

        pieces = await collect(FallbackChatModel([resilient(flaky, retries=1), backup]).stream(REQUEST))

        assert pieces == ["from ", "backup "]
        assert len(flaky.calls) == 2

    async def test_close_reaches_every_model(self) -> None:
        models = [Closing(name="fake:a"), Closing(name="fake:b")]

        await FallbackChatModel(models).close()

        assert [m.closed for m in models] == [1, 1]


# --- create_chat_model ---------------------------------------------------------------------------


class TestCreateChatModel:
    def test_default_is_the_extractive_model_alone(self) -> None:
        settings = GenerationSettings()
        assert settings.provider == "extractive"
        assert settings.fallback == ["extractive"]

        model = create_chat_model(settings)

        assert isinstance(model, ExtractiveChatModel)
        assert model.name == "extractive:v1"

    def test_fake_then_extractive(self) -> None:
        settings = GenerationSettings(
            provider="fake",
            fallback=["extractive"],
            retries=4,
            backoff_seconds=0.1,
            breaker_failures=7,
            breaker_cooldown_seconds=12,
        )

        model = create_chat_model(settings)

        assert isinstance(model, FallbackChatModel)
        first, second = model.chain
        assert isinstance(first, ResilientChatModel)
        assert isinstance(first.inner, FakeChatModel)
        assert (first.retries, first.backoff) == (4, 0.1)
        assert (first.breaker.threshold, first.breaker.cooldown) == (7, 12)
        assert isinstance(second, ExtractiveChatModel)  # offline: not wrapped in retries
        assert model.name == "fake:scripted"

    async def test_the_built_chain_answers_and_falls_back(self) -> None:
        model = create_chat_model(GenerationSettings(provider="fake", fallback=["extractive"], backoff_seconds=0))
        assert isinstance(model, FallbackChatModel)
        first = model.chain[0]
        assert isinstance(first, ResilientChatModel)
        fake = first.inner
        assert isinstance(fake, FakeChatModel)

        assert (await model.complete(REQUEST)).model == "fake:scripted"
        fake.unavailable = 10
        result = await model.complete(REQUEST)

        assert result.model == "extractive:v1"
        assert result.metadata["fallback_from"][0]["model"] == "fake:scripted"
        assert len(fake.calls) == 1 + 3  # one answer, then the call and its two default retries

    def test_no_fallback_is_the_provider_alone(self) -> None:
        model = create_chat_model(GenerationSettings(provider="fake", fallback=[]))

        assert isinstance(model, ResilientChatModel)
        assert isinstance(model.inner, FakeChatModel)

    def test_the_provider_is_not_repeated_as_its_own_fallback(self) -> None:
        model = create_chat_model(GenerationSettings(provider="fake", fallback=["fake", "extractive"]))

        assert isinstance(model, FallbackChatModel)
        assert [m.name for m in model.chain] == ["fake:scripted", "extractive:v1"]

    async def test_a_hosted_provider_with_fallbacks(self) -> None:
        settings = GenerationSettings(
            provider="openai", model="m", base_url="http://127.0.0.1:9/v1", fallback=["fake", "extractive"]
        )

        model = create_chat_model(settings)

        assert isinstance(model, FallbackChatModel)
        assert [m.name for m in model.chain] == ["openai:m", "fake:scripted", "extractive:v1"]
        first = model.chain[0]
        assert isinstance(first, ResilientChatModel)
        assert isinstance(first.inner, OpenAIChatModel)
        await model.close()

    def test_a_provider_missing_its_settings_is_a_value_error(self) -> None:
        with pytest.raises(ValueError, match="TESSERA_GENERATION__MODEL"):
            create_chat_model(GenerationSettings(provider="openai"))

    @pytest.mark.parametrize("values", [{"provider": "gpt"}, {"provider": "fake", "fallback": ["extractive", "bard"]}])
    def test_unknown_provider_names_are_refused_by_the_settings(self, values: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            GenerationSettings(**values)


# --- a trial call without a verdict never leaves the circuit shut ------------------------------


class TestTrialWithoutVerdict:
    async def test_a_rejected_trial_counts_as_the_provider_being_up(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
        model = FakeChatModel(["ok"], unavailable=1, rejected=1)
        wrapped = resilient(model, retries=0, breaker=breaker)
        with pytest.raises(ProviderUnavailable):
            await wrapped.complete(REQUEST)
        assert breaker.state == "open"
        clock.advance(10)
        with pytest.raises(ProviderRejected):
            await wrapped.complete(REQUEST)
        assert breaker.state == "closed"
        assert (await wrapped.complete(REQUEST)).text == "ok"
        assert len(model.calls) == 3

    async def test_an_abandoned_trial_stream_frees_the_trial(self) -> None:
        clock = Clock()
        breaker = CircuitBreaker(failures=1, cooldown=10, clock=clock)
        model = FakeChatModel(["one two three"], unavailable=1)
        wrapped = resilient(model, retries=0, breaker=breaker)
        with pytest.raises(ProviderUnavailable):
            await wrapped.complete(REQUEST)
        clock.advance(10)
        stream = wrapped.stream(REQUEST)
        assert await stream.__anext__() == "one "
        await stream.aclose()  # the client went away mid-answer: the next call is the trial
        assert (await wrapped.complete(REQUEST)).text == "one two three"
