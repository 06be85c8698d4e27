from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.core.generation.schemas import Style
from tessera.core.pagination import Page
from tessera.core.retrieval.schemas import Mode
from tessera.core.strings import Label, Text

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
# Model names the OpenAI-compatible API already uses.
RESERVED_NAMES = frozenset({"tessera", "tessera-embedding"})

_EXAMPLE: dict[str, Any] = {
    "name": "support-bot",
    "title": "Support assistant",
    "description": "Answers customers from the help centre and the product manuals.",
    "collections": ["0192f0c4-6a1e-7cc3-9f47-2c1d5b7e8a10"],
    "provider": None,
    "instructions": "Answer in a friendly tone, in the language of the question.",
    "style": "concise",
}


def _not_reserved(name: str | None) -> str | None:
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a built-in model name")
    return name


class AssistantFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Label | None = Field(None, min_length=1, max_length=200, description="Display name (default: `name`).")
    description: Text | None = Field(None, max_length=2_000)
    collections: list[uuid.UUID] | None = Field(
        None, max_length=100, description="Collections it answers from; null: every collection the asking user sees."
    )
    provider: str | None = Field(
        None,
        max_length=40,
        description="Chat model: null for the server's (`generation.provider`), `extractive`, or a profile name "
        "from `GET /assistants/providers`.",
    )
    instructions: Text | None = Field(
        None,
        max_length=4_000,
        description="Extra system instructions for language models (tone, audience, language). They follow the "
        "grounding rules and never override them, and replace the server's `generation.instructions`; empty or "
        "whitespace-only (or null) means unset: the server's instructions apply. The offline `extractive` model "
        "does not read them.",
    )
    style: Style | None = Field(None, description="Default answer style: `concise`, `detailed` or `bullets`.")
    mode: Mode | None = Field(None, description="Retrieval: `keyword`, `semantic` or `hybrid`.")
    sources: int | None = Field(None, ge=1, le=50, description="Passages retrieved per answer (null: server's).")
    temperature: float | None = Field(None, ge=0, le=2)
    max_answer_tokens: int | None = Field(None, ge=16, le=16_384)
    prompt_version: str | None = Field(None, pattern=r"^v\d+$", description="Prompt template version (null: server's).")


class AssistantCreate(AssistantFields):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="Unique in the organization; the model name in the OpenAI-compatible API (`/v1`).",
        examples=["support-bot"],
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})
    _name = field_validator("name")(_not_reserved)


class AssistantUpdate(AssistantFields):
    """Fields left out keep their value; `null` resets a setting to the server's default."""

    name: str | None = Field(None, pattern=NAME_PATTERN)

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"instructions": "Be brief."}]})
    _name = field_validator("name")(_not_reserved)


class AssistantRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    title: str
    description: str
    collections: list[uuid.UUID] | None
    provider: str | None
    instructions: str
    style: Style
    mode: Mode
    sources: int | None
    temperature: float | None
    max_answer_tokens: int | None
    prompt_version: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class AssistantPage(Page[AssistantRead]):
    pass


class ProviderRead(BaseModel):
    name: str = Field(description="What an assistant's `provider` is set to (`null` is the server's default).")
    provider: str = Field(description="The provider behind it: `extractive`, `openai`, `anthropic`, `llamacpp`, …")
    model: str | None = None
    default: bool = Field(description="Whether this is the server's default chat model.")
