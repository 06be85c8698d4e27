from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.core.generation.schemas import AnswerSentence, Citation, Style, Usage
from tessera.core.pagination import Page
from tessera.core.strings import Label, Text

Tag = str


def _clean_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    if any(len(t) > 40 for t in cleaned):
        raise ValueError("a tag has at most 40 characters")
    return cleaned


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Label | None = Field(None, min_length=1, max_length=200, description="Default: the first question.")
    collections: list[uuid.UUID] | None = Field(
        None,
        max_length=100,
        description="Collections its questions search; default: the assistant's, or every one you can see.",
    )
    assistant_id: uuid.UUID | None = Field(None, description="The assistant that answers (`/assistants`).")
    tags: list[Label] = Field(default_factory=list, max_length=20, examples=[["billing", "urgent"]])

    _tags = field_validator("tags")(lambda v: _clean_tags(v))


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Label | None = Field(None, min_length=1, max_length=200)
    tags: list[Label] | None = Field(None, max_length=20)
    archived: bool | None = None

    _tags = field_validator("tags")(lambda v: _clean_tags(v))

    @model_validator(mode="after")
    def _something(self) -> ConversationUpdate:
        if self.title is None and self.tags is None and self.archived is None:
            raise ValueError("give at least one of title, tags, archived")
        return self


class ConversationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    tags: list[str]
    archived: bool
    collections: list[uuid.UUID] | None
    assistant_id: uuid.UUID | None
    message_count: int
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None


class ChatRoute(BaseModel):
    """How a product answered instead of (or besides) the grounded answer pipeline: e.g. the
    support bot's FAQ match (`faq`), a hand-off to a human (`handoff`), a greeting (`intent`)."""

    kind: str = Field(description="`answer` (grounded answer), `faq`, `handoff`, `intent`, …")
    id: uuid.UUID | None = Field(None, description="What answered: the FAQ, the hand-off…")
    title: str | None = Field(None, description="E.g. the FAQ's question.")
    url: str | None = Field(None, description="Where to read more, e.g. the FAQ's page.")
    score: float | None = Field(None, description="How confident the match was (0 to 1).")
    intent: str | None = Field(None, description="The detected intent, for `intent` and `handoff` routes.")


class MessageRead(BaseModel):
    id: uuid.UUID
    conversation_id: uuid.UUID
    role: Literal["user", "assistant"]
    content: str
    citations: list[Citation] = Field(default_factory=list)
    sentences: list[AnswerSentence] = Field(default_factory=list)
    grounded: bool | None = None
    search_query: str | None = Field(None, description="The standalone question retrieval ran with (follow-ups).")
    model: str | None = None
    prompt: str | None = None
    usage: Usage
    latency_ms: float | None = None
    feedback: Literal["up", "down"] | None = None
    feedback_comment: str | None = None
    route: ChatRoute | None = None
    created_at: datetime


class ConversationDetail(ConversationRead):
    messages: list[MessageRead]


ConversationPage = Page[ConversationRead]


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"]
    comment: Text | None = Field(None, max_length=2_000)


class ChatSend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Text = Field(min_length=1, max_length=4_000, examples=["How do I change the battery?"])
    conversation_id: uuid.UUID | None = Field(None, description="Continue this conversation; default: a new one.")
    collections: list[uuid.UUID] | None = Field(
        None, max_length=100, description="For a new conversation: the collections it searches."
    )
    assistant_id: uuid.UUID | None = Field(
        None, description="For a new conversation: the assistant that answers it (`/assistants`)."
    )
    style: Style | None = Field(None, description="`concise`, `detailed` or `bullets`; default: the assistant's.")
    stream: bool = Field(
        False,
        description="Answer as server-sent events: `delta` (verified text pieces), `citations`, then `done` (the "
        "stored reply, whose `content` is authoritative) or `error`.",
    )

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is blank")
        return value


class ChatReply(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID = Field(description="The assistant's message.")
    user_message_id: uuid.UUID
    content: str = Field(description="The answer, each supported sentence followed by its `[n]` citations.")
    citations: list[Citation]
    sentences: list[AnswerSentence]
    grounded: bool
    search_query: str
    model: str
    fallback_from: list[dict[str, Any]] = Field(default_factory=list)
    usage: Usage
    latency_ms: float
    created_at: datetime
    route: ChatRoute | None = Field(None, description="How a product module routed the message (see `ChatRoute`).")
    stored: bool = Field(
        True,
        description="False when the conversation is not kept (e.g. no data-processing consent): ids are "
        "then not addressable later.",
    )
