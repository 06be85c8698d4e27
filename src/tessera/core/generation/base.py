"""The chat model protocol: messages (and the numbered sources they may cite) in, text out.

A `ChatRequest` carries the conversation as role/content messages, already rendered from a
versioned prompt template, plus the sources that template numbered. Hosted and local language
models read only the messages; the offline `extractive` model composes its answer from the
sources themselves. Every provider returns token counts (counted locally where the provider
gives none), and raises `ProviderUnavailable` (retry may help: timeouts, 5xx, 429) or
`ProviderRejected` (it will not: 4xx, malformed answers) from `tessera.core.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Source:
    """A retrieved passage, numbered as the prompt numbers it ([1], [2], …)."""

    number: int
    text: str
    document_id: str
    chunk_id: str
    title: str | None = None
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    score: float = 0.0


@dataclass(frozen=True)
class ChatRequest:
    messages: Sequence[Message]
    sources: Sequence[Source] = ()
    question: str = ""
    """The user's question as asked (the extractive model answers it from `sources`)."""
    style: str = "concise"
    """`concise`, `detailed` or `bullets`: how long and in what shape the answer should be."""
    max_tokens: int = 512
    temperature: float = 0.2
    schema: type[BaseModel] | None = None
    """Ask for JSON matching this model (`ChatResult.parsed` then holds the validated object)."""


@dataclass
class ChatResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str = "stop"
    parsed: BaseModel | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ChatModel(Protocol):
    name: str
    """`provider:model`, stored with every message it writes."""

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[str]:
        """The answer's text in pieces, as it is produced."""
        ...

    async def close(self) -> None: ...
