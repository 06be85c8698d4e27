"""A scripted chat model for tests: fixed answers in turn, or the first sentence of the first
source with its citation; it can fail a number of times first, as a flaky hosted model does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation.base import ChatRequest, ChatResult
from tessera.core.generation.text import estimate_tokens, sentences


class FakeChatModel:
    def __init__(
        self,
        answers: Sequence[str] = (),
        *,
        name: str = "fake:scripted",
        unavailable: int = 0,
        rejected: int = 0,
    ) -> None:
        self.name = name
        self.answers = list(answers)
        self.unavailable = unavailable
        self.rejected = rejected
        self.calls: list[ChatRequest] = []

    def _answer(self, request: ChatRequest) -> str:
        self.calls.append(request)
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ProviderUnavailable(f"{self.name} is down (scripted)")
        if self.rejected > 0:
            self.rejected -= 1
            raise ProviderRejected(f"{self.name} refused (scripted)")
        if self.answers:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if not request.sources:
            return "I have no sources for this."
        first = sentences(request.sources[0].text)
        return f"{first[0].text if first else request.sources[0].text} [{request.sources[0].number}]"

    async def complete(self, request: ChatRequest) -> ChatResult:
        text = self._answer(request)
        return ChatResult(
            text=text,
            model=self.name,
            input_tokens=sum(estimate_tokens(m.content) for m in request.messages),
            output_tokens=estimate_tokens(text),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        text = self._answer(request)
        for word in text.split(" "):
            yield word + " "

    async def close(self) -> None:
        return None
