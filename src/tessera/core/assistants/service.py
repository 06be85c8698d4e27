"""Assistants: create, list, change, delete, and turn one into what answers a question — its
generation settings, its chat model and the collections it searches.

An assistant's collections are checked against the creator's view when it is saved, and against
the asking user's view when it answers: it only ever searches what the asking user can see, and
an assistant none of whose collections the user can see is, to them, not found.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.assistants.errors import AssistantNameTaken, AssistantNotFound
from tessera.core.assistants.models import Assistant
from tessera.core.assistants.schemas import AssistantCreate, AssistantUpdate, ProviderRead
from tessera.core.audit.service import NO_REQUEST, RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.documents import service as documents
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.errors import InvalidInput
from tessera.core.generation.base import ChatModel
from tessera.core.generation.prompts import load_prompt
from tessera.core.generation.runtime import get_chat_model
from tessera.core.generation.schemas import AskRequest
from tessera.core.pagination import PageParams, paginate
from tessera.settings import ChatProfile, GenerationSettings, Settings

EXTRACTIVE = "extractive"
# Providers that reach a server with `base_url` / `api_key`.
REMOTE = frozenset({"openai", "anthropic"})


def providers(generation: GenerationSettings) -> list[ProviderRead]:
    """What an assistant's `provider` may be set to (besides null, the server's default)."""
    listed = [ProviderRead(name=EXTRACTIVE, provider=EXTRACTIVE, model=None, default=generation.provider == EXTRACTIVE)]
    for name, profile in sorted(generation.profiles.items()):
        listed.append(ProviderRead(name=name, provider=profile.provider, model=profile.model, default=False))
    return listed


def _check_provider(generation: GenerationSettings, provider: str | None) -> None:
    if provider is None or provider == EXTRACTIVE or provider in generation.profiles:
        return
    choices = [p.name for p in providers(generation)]
    raise InvalidInput(
        f"Unknown provider {provider!r}: use null (the server's model) or one of {', '.join(choices)}",
        details={"field": "provider", "choices": choices},
    )


def _instructions(value: str | None) -> str:
    """Blank instructions are stored as "" (unset: the server's `generation.instructions` apply)."""
    return value if value and value.strip() else ""


def _check_prompt(version: str | None) -> None:
    if version is None:
        return
    try:
        load_prompt("answer", version)
    except FileNotFoundError:
        raise InvalidInput(f"No prompt version {version!r}", details={"field": "prompt_version"}) from None


async def _check_collections(session: AsyncSession, principal: Principal, collections: Sequence[uuid.UUID]) -> None:
    visible = {c.id for c in await documents.visible_collections(session, principal)}
    missing = [str(c) for c in collections if c not in visible]
    if missing:
        raise CollectionNotFound("Collection not found", details={"collections": missing})


def _owned(principal: Principal) -> sa.ColumnElement[bool]:
    return Assistant.org_id == principal.org_id


async def get_assistant(session: AsyncSession, principal: Principal, assistant_id: uuid.UUID) -> Assistant:
    found = (
        await session.execute(sa.select(Assistant).where(Assistant.id == assistant_id, _owned(principal)))
    ).scalar_one_or_none()
    if found is None:
        raise AssistantNotFound("Assistant not found")
    return found


async def find_by_name(session: AsyncSession, principal: Principal, name: str) -> Assistant | None:
    query = sa.select(Assistant).where(Assistant.name == name, _owned(principal))
    return (await session.execute(query)).scalar_one_or_none()


async def list_assistants(
    session: AsyncSession, principal: Principal, *, params: PageParams, search: str | None = None
) -> tuple[Sequence[Assistant], str | None]:
    query = sa.select(Assistant).where(_owned(principal))
    if search:
        pattern = f"%{search.lower()}%"
        query = query.where(
            sa.or_(sa.func.lower(Assistant.name).like(pattern), sa.func.lower(Assistant.title).like(pattern))
        )
    return await paginate(session, query, key=Assistant.id, params=params)


async def all_assistants(session: AsyncSession, principal: Principal, limit: int = 1_000) -> Sequence[Assistant]:
    query = sa.select(Assistant).where(_owned(principal)).order_by(Assistant.name).limit(limit)
    return (await session.execute(query)).scalars().all()


async def _save(session: AsyncSession, assistant: Assistant, changes: dict[str, Any], name: str) -> None:
    """Apply `changes` (or add a new assistant) in a savepoint: a taken name undoes them only."""
    await session.flush()  # earlier work stays outside the savepoint
    try:
        async with session.begin_nested():
            if assistant not in session:
                session.add(assistant)
            for field, value in changes.items():
                setattr(assistant, field, value)
            await session.flush()
    except IntegrityError as error:
        raise AssistantNameTaken(f"An assistant named {name!r} already exists", details={"name": name}) from error


async def create_assistant(
    session: AsyncSession,
    principal: Principal,
    body: AssistantCreate,
    generation: GenerationSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> Assistant:
    assert principal.org_id is not None
    _check_provider(generation, body.provider)
    _check_prompt(body.prompt_version)
    if body.collections is not None:
        await _check_collections(session, principal, body.collections)
    assistant = Assistant(
        org_id=principal.org_id,
        name=body.name,
        title=body.title or body.name,
        description=body.description or "",
        collections=[str(c) for c in dict.fromkeys(body.collections)] if body.collections is not None else None,
        provider=body.provider,
        instructions=_instructions(body.instructions),
        style=body.style or "concise",
        mode=body.mode or "hybrid",
        sources=body.sources,
        temperature=body.temperature,
        max_answer_tokens=body.max_answer_tokens,
        prompt_version=body.prompt_version,
        created_by=principal.user_id,
    )
    await _save(session, assistant, {}, body.name)
    await record_event(
        session, action="assistant.created", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="assistant", target_id=assistant.id, details={"name": assistant.name},
    )  # fmt: skip
    return assistant


async def update_assistant(
    session: AsyncSession,
    principal: Principal,
    assistant_id: uuid.UUID,
    body: AssistantUpdate,
    generation: GenerationSettings,
    *,
    meta: RequestMeta = NO_REQUEST,
) -> Assistant:
    assistant = await get_assistant(session, principal, assistant_id)
    given = body.model_fields_set
    if "provider" in given:
        _check_provider(generation, body.provider)
    if "prompt_version" in given:
        _check_prompt(body.prompt_version)
    if "collections" in given and body.collections is not None:
        await _check_collections(session, principal, body.collections)
    changes: dict[str, Any] = {}
    for field in given:
        value = getattr(body, field)
        if field == "collections":
            value = [str(c) for c in dict.fromkeys(value)] if value is not None else None
        elif value is None and field in ("name", "title", "style", "mode"):
            raise InvalidInput(f"`{field}` cannot be null", details={"field": field})
        elif field == "instructions":
            value = _instructions(value)
        elif value is None and field == "description":
            value = ""
        changes[field] = value
    changes["updated_at"] = utcnow()
    await _save(session, assistant, changes, changes.get("name", assistant.name))
    await record_event(
        session, action="assistant.updated", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="assistant", target_id=assistant.id, details={"fields": sorted(changes)},
    )  # fmt: skip
    return assistant


async def delete_assistant(
    session: AsyncSession, principal: Principal, assistant_id: uuid.UUID, *, meta: RequestMeta = NO_REQUEST
) -> None:
    assistant = await get_assistant(session, principal, assistant_id)
    await session.delete(assistant)
    await session.flush()
    await record_event(
        session, action="assistant.deleted", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="assistant", target_id=assistant_id, details={"name": assistant.name},
    )  # fmt: skip


def profile_settings(generation: GenerationSettings, profile: ChatProfile) -> dict[str, Any]:
    """The generation settings a profile replaces (see `ChatProfile`).

    Its connection (`model`, `base_url`, `api_key`) is the profile's alone, unset fields included:
    the server's API key is never sent to a profile's endpoint, and an unset `base_url` is the
    provider's public API. For the same reason a fallback chain inherited from the server keeps
    only the providers that need no connection (`extractive`, `llamacpp`, `fake`) besides the
    profile's own. `model_path`, `fallback` and `timeout_seconds` inherit when unset.
    """
    if profile.fallback is not None:
        fallback = profile.fallback
    else:
        fallback = [name for name in generation.fallback if name not in REMOTE or name == profile.provider]
    updates: dict[str, Any] = {
        "provider": profile.provider,
        "model": profile.model,
        "base_url": profile.base_url,
        "api_key": profile.api_key,
        "fallback": fallback,
    }
    if profile.model_path is not None:
        updates["model_path"] = profile.model_path
    if profile.timeout_seconds is not None:
        updates["timeout_seconds"] = profile.timeout_seconds
    return updates


def generation_settings(generation: GenerationSettings, assistant: Assistant | None) -> GenerationSettings:
    """The server's generation settings with the assistant's choices applied."""
    if assistant is None:
        return generation
    updates: dict[str, Any] = {}
    if assistant.instructions.strip():  # blank instructions are unset: the server's apply
        updates["instructions"] = assistant.instructions
    if assistant.provider == EXTRACTIVE:
        updates |= {"provider": EXTRACTIVE, "fallback": []}
    elif assistant.provider is not None:
        profile = generation.profiles.get(assistant.provider)
        if profile is None:  # the server's profiles changed since the assistant was saved
            raise InvalidInput(
                f"The assistant's provider {assistant.provider!r} is not configured on this server",
                details={"provider": assistant.provider},
            )
        updates |= profile_settings(generation, profile)
    for field in ("sources", "temperature", "max_answer_tokens", "prompt_version"):
        value = getattr(assistant, field)
        if value is not None:
            updates[field] = value
    return generation.model_copy(update=updates)


@dataclass(frozen=True)
class Configured:
    """What answers for an assistant (or, with `assistant` None, for the server's defaults)."""

    assistant: Assistant | None
    generation: GenerationSettings
    chat: ChatModel
    collections: list[uuid.UUID] | None
    """The assistant's collections that the asking user can see (None: all they can see)."""

    def apply(self, body: AskRequest) -> AskRequest:
        """The question with the assistant's collections, style and retrieval mode, where the caller
        did not choose; a caller's own `collections` must lie within the assistant's."""
        if self.assistant is None:
            return body
        updates: dict[str, Any] = {}
        given = body.model_fields_set
        if self.collections is not None:
            if body.collections is None:
                updates["collections"] = self.collections
            elif outside := [str(c) for c in body.collections if c not in self.collections]:
                raise InvalidInput("These collections are not among the assistant's", details={"collections": outside})
        if "style" not in given:
            updates["style"] = self.assistant.style
        if "mode" not in given:
            updates["mode"] = self.assistant.mode
        return body.model_copy(update=updates) if updates else body


async def configure(
    session: AsyncSession, principal: Principal, settings: Settings, assistant: Assistant | None
) -> Configured:
    """Raises AssistantNotFound when none of the assistant's collections is visible to the caller."""
    generation = generation_settings(settings.generation, assistant)
    collections = None
    if assistant is not None and assistant.collections is not None:
        visible = {c.id for c in await documents.visible_collections(session, principal)}
        collections = [c for c in (uuid.UUID(v) for v in assistant.collections) if c in visible]
        if not collections:
            raise AssistantNotFound("Assistant not found")
    return Configured(assistant, generation, get_chat_model(settings, generation), collections)


async def configure_by_id(
    session: AsyncSession, principal: Principal, settings: Settings, assistant_id: uuid.UUID | None
) -> Configured:
    assistant = await get_assistant(session, principal, assistant_id) if assistant_id is not None else None
    return await configure(session, principal, settings, assistant)
