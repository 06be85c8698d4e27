from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from tessera.core.assistants import service
from tessera.core.assistants.errors import AssistantNameTaken, AssistantNotFound
from tessera.core.assistants.models import Assistant
from tessera.core.assistants.schemas import (
    AssistantCreate,
    AssistantPage,
    AssistantRead,
    AssistantUpdate,
    ProviderRead,
)
from tessera.core.auth.dependencies import RequestMetaDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.errors import InvalidInput
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.settings import Settings

router = APIRouter(prefix="/assistants", tags=["assistants"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("assistants:read")]
# What the organization's assistants say and which models they call: admins and owners (no member
# role grants `manage`).
Manager = Annotated[Principal, require("assistants:manage")]


def assistant_read(assistant: Assistant) -> AssistantRead:
    return AssistantRead.model_validate(assistant)


@router.get(
    "/providers",
    response_model=list[ProviderRead],
    summary="Chat models an assistant can use",
    description="`extractive` (offline) and the named profiles configured on the server (`generation.profiles`). "
    "An assistant whose `provider` is null uses the server's default model.",
)
async def list_providers(request: Request, principal: Reader) -> list[ProviderRead]:
    settings: Settings = request.app.state.settings
    return service.providers(settings.generation)


@router.post(
    "",
    response_model=AssistantRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an assistant",
    description="A named answer configuration: the collections it answers from, its chat model (`provider`), "
    "instructions, style and retrieval settings. Use it with `assistant_id` in `POST /ask` and `POST /chat/send`, "
    "or as the `model` of the OpenAI-compatible `POST /v1/chat/completions`. Needs `assistants:manage`.",
    responses={404: CollectionNotFound.schema(), 409: AssistantNameTaken.schema(), 422: InvalidInput.schema()},
)
async def create_assistant(
    body: AssistantCreate,
    request: Request,
    principal: Manager,
    session: DbSession,
    meta: RequestMetaDep,
    response: Response,
) -> AssistantRead:
    settings: Settings = request.app.state.settings
    assistant = await service.create_assistant(session, principal, body, settings.generation, meta=meta)
    response.headers["Location"] = f"/api/v1/assistants/{assistant.id}"
    return assistant_read(assistant)


@router.get(
    "",
    response_model=AssistantPage,
    summary="List the organization's assistants",
    description="Newest first (like conversations and collections), paged with `limit` and `cursor`; `q` matches "
    "the name or title.",
)
async def list_assistants(
    principal: Reader,
    session: DbSession,
    page: PageParamsDep,
    q: Annotated[str | None, Query(max_length=200, description="Text in the name or title.")] = None,
) -> AssistantPage:
    rows, cursor = await service.list_assistants(session, principal, params=page, search=q)
    return AssistantPage(items=[assistant_read(a) for a in rows], next_cursor=cursor)


@router.get(
    "/{assistant_id}",
    response_model=AssistantRead,
    summary="An assistant",
    responses={404: AssistantNotFound.schema()},
)
async def get_assistant(assistant_id: uuid.UUID, principal: Reader, session: DbSession) -> AssistantRead:
    return assistant_read(await service.get_assistant(session, principal, assistant_id))


@router.patch(
    "/{assistant_id}",
    response_model=AssistantRead,
    summary="Change an assistant",
    description="Fields left out keep their value; `null` resets a setting to the server's default. Conversations "
    "with the assistant use the change from their next message.",
    responses={
        404: AssistantNotFound.schema(),
        409: AssistantNameTaken.schema(),
        422: InvalidInput.schema(),
    },
)
async def update_assistant(
    assistant_id: uuid.UUID,
    body: AssistantUpdate,
    request: Request,
    principal: Manager,
    session: DbSession,
    meta: RequestMetaDep,
) -> AssistantRead:
    settings: Settings = request.app.state.settings
    assistant = await service.update_assistant(session, principal, assistant_id, body, settings.generation, meta=meta)
    return assistant_read(assistant)


@router.delete(
    "/{assistant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an assistant",
    description="Its conversations stay, and go on with the server's defaults.",
    responses={404: AssistantNotFound.schema()},
)
async def delete_assistant(
    assistant_id: uuid.UUID, principal: Manager, session: DbSession, meta: RequestMetaDep
) -> Response:
    await service.delete_assistant(session, principal, assistant_id, meta=meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
