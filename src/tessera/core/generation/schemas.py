from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.core.retrieval.schemas import Mode
from tessera.core.strings import Text

Style = Literal["concise", "detailed", "bullets"]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Text = Field(min_length=1, max_length=4_000, examples=["How long do hearing aid batteries last?"])
    collections: list[uuid.UUID] | None = Field(
        None, max_length=100, description="Collections to answer from; default: every collection you can see."
    )
    filters: dict[str, Any] | None = Field(
        None,
        description="Metadata conditions on the sources, as in `POST /search`.",
        examples=[{"year": {"gte": 2020}}],
    )
    style: Style = Field("concise", description="`concise` (default), `detailed` or `bullets`.")
    mode: Mode = Field("hybrid", description="How sources are retrieved: `keyword`, `semantic` or `hybrid`.")
    assistant_id: uuid.UUID | None = Field(
        None,
        description="Answer as this assistant (`/assistants`): its collections, chat model and instructions, and its "
        "style and mode unless given here. `collections`, when given, must be among the assistant's.",
    )
    stream: bool = Field(
        False,
        description="Answer as server-sent events: `delta` (verified text pieces), `citations`, then `done` (the "
        "full reply; its `answer` is authoritative) or `error`.",
    )


class Citation(BaseModel):
    number: int = Field(description="The source number the answer's `[n]` markers refer to.")
    document_id: uuid.UUID
    chunk_id: uuid.UUID
    document_title: str | None = None
    filename: str | None = None
    page_start: int | None = None
    page_end: int | None = None
    heading_path: list[str] = Field(default_factory=list)
    quote: str = Field(description="The exact source text that supports the sentences listed in `sentences`.")
    retrieval_score: float = Field(description="The source's search score.")
    support: float = Field(description="How strongly the quote supports its sentences (0 to 1, the best of them).")
    sentences: list[int] = Field(description="Indexes (in `sentences`) of the answer sentences this quote supports.")


class AnswerSentence(BaseModel):
    index: int
    text: str = Field(description="The sentence without citation markers.")
    citations: list[int] = Field(description="Source numbers that support it (empty when it makes no claim).")
    claim: bool = Field(description="Whether it states something to check (connective sentences do not).")
    supported: bool = Field(
        description="Whether the sources support it. Unsupported sentences are only returned "
        "when the server marks rather than drops them (`generation.unsupported`)."
    )
    support: float


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int


class AskResponse(BaseModel):
    question: str
    answer: str = Field(description="The answer, each supported sentence followed by its `[n]` citations.")
    grounded: bool = Field(
        description="True when the answer makes claims and the sources support every one; "
        "false for the honest 'the sources don't answer this' reply."
    )
    sentences: list[AnswerSentence]
    citations: list[Citation]
    dropped_sentences: int = Field(description="Sentences of the model's answer removed as unsupported.")
    model: str = Field(description="The model that answered (`provider:model`).")
    fallback_from: list[dict[str, str]] = Field(
        default_factory=list, description="Models that were unavailable before this one answered."
    )
    prompt: str = Field(description="The prompt template and version, e.g. `answer.v2`.")
    usage: Usage
    took_ms: float

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "question": "How long do hearing aid batteries last?",
                    "answer": "Size 312 batteries last 3 to 10 days depending on use [1].",
                    "grounded": True,
                    "sentences": [
                        {
                            "index": 0,
                            "text": "Size 312 batteries last 3 to 10 days depending on use.",
                            "citations": [1],
                            "claim": True,
                            "supported": True,
                            "support": 0.93,
                        }
                    ],
                    "citations": [
                        {
                            "number": 1,
                            "document_id": "0193a1f0-0000-7000-8000-000000000001",
                            "chunk_id": "0193a1f0-0000-7000-8000-000000000002",
                            "document_title": "Battery guide",
                            "filename": "batteries.pdf",
                            "page_start": 4,
                            "page_end": 4,
                            "heading_path": ["Batteries", "Life"],
                            "quote": "Size 312 batteries last 3 to 10 days depending on use.",
                            "retrieval_score": 0.82,
                            "support": 0.93,
                            "sentences": [0],
                        }
                    ],
                    "dropped_sentences": 0,
                    "model": "extractive:v1",
                    "fallback_from": [],
                    "prompt": "answer.v2",
                    "usage": {"input_tokens": 812, "output_tokens": 18},
                    "took_ms": 74.2,
                }
            ]
        }
    )
