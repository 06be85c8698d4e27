from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from tessera.core.ai.dependencies import AIClientDep
from tessera.core.ai.errors import AIServiceUnavailable
from tessera.core.auth.dependencies import RequestMetaDep, SettingsDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput
from tessera.core.intents import service
from tessera.core.intents.errors import (
    IntentNameTaken,
    IntentNotFound,
    IntentSetNameTaken,
    IntentSetNotFound,
    IntentSetNotTrainable,
    IntentSetNotTrained,
    IntentSetTooLarge,
    IntentTrainingConflict,
    IntentVersionNotFound,
)
from tessera.core.intents.schemas import (
    ActiveVersionUpdate,
    ClassifyRequest,
    ClassifyResponse,
    IntentCreate,
    IntentRead,
    IntentSetCreate,
    IntentSetPage,
    IntentSetRead,
    IntentSetReplace,
    IntentSetUpdate,
    IntentSetVersionPage,
    IntentSetVersionRead,
    IntentUpdate,
)
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(prefix="/ai/intents", tags=["intents"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("intents:read")]
Writer = Annotated[Principal, require("intents:write")]
Deleter = Annotated[Principal, require("intents:delete")]
VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="Version number (1, 2, …).")]


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    summary="Classify a text into an intent set's intents",
    description="Embeds the text and scores it with the set's active version (the pinned one, else the latest): "
    "the most probable intent, its `confidence`, the `top_k` alternatives, and `out_of_scope` when the confidence "
    "is under the threshold (the set's, else the version's calibrated one, else the server's default) or the text "
    "is closer to the set's out-of-scope examples. `set` is the set's id or name. 409 `intent_set_not_trained` "
    "before the first training, `intent_model_mismatch` when the server's embedding model changed since the active "
    "version was trained. Needs `intents:read`.",
    responses={
        404: IntentSetNotFound.schema(),
        409: IntentSetNotTrained.schema(),
        422: InvalidInput.schema(),
        503: AIServiceUnavailable.schema(),
    },
)
async def classify(
    body: ClassifyRequest, settings: SettingsDep, principal: Reader, session: DbSession, ai: AIClientDep
) -> ClassifyResponse:
    return await service.classify(session, principal, ai, body, settings.intents)


@router.post(
    "/sets",
    response_model=IntentSetRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an intent set",
    description="A named set of intents, each with example phrases, and optional out-of-scope examples. Train it "
    "(`POST /sets/{id}/train`) before classifying. Needs `intents:write`.",
    responses={409: IntentSetNameTaken.schema(), 413: IntentSetTooLarge.schema(), 422: InvalidInput.schema()},
)
async def create_set(
    body: IntentSetCreate,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    meta: RequestMetaDep,
    response: Response,
) -> IntentSetRead:
    intent_set = await service.create_set(session, principal, body, settings.intents, meta=meta)
    response.headers["Location"] = f"/api/v1/ai/intents/sets/{intent_set.id}"
    return await service.read_set(session, intent_set)


@router.get(
    "/sets",
    response_model=IntentSetPage,
    summary="List the organization's intent sets",
    description="Newest first, without the example phrases; `q` matches the name.",
)
async def list_sets(
    principal: Reader,
    session: DbSession,
    page: PageParamsDep,
    q: Annotated[str | None, Query(max_length=63, description="Text in the name.")] = None,
) -> IntentSetPage:
    items, cursor = await service.list_sets(session, principal, params=page, search=q)
    return IntentSetPage(items=items, next_cursor=cursor)


@router.get(
    "/sets/{set_id}",
    response_model=IntentSetRead,
    summary="An intent set",
    description="Its intents with their example phrases, its out-of-scope examples, the active and latest "
    "versions, and whether it changed since the active version was trained.",
    responses={404: IntentSetNotFound.schema()},
)
async def get_set(set_id: uuid.UUID, principal: Reader, session: DbSession) -> IntentSetRead:
    return await service.read_set(session, await service.get_set(session, principal, set_id))


@router.put(
    "/sets/{set_id}",
    response_model=IntentSetRead,
    summary="Replace an intent set's definition",
    description="The whole set as in `POST /sets`: intents not listed are removed, listed ones get exactly the "
    "examples given (intents keep their id where their name stays). Trained versions are unchanged: train again "
    "to use the new definition. Needs `intents:write`.",
    responses={
        404: IntentSetNotFound.schema(),
        409: IntentSetNameTaken.schema(),
        413: IntentSetTooLarge.schema(),
        422: InvalidInput.schema(),
    },
)
async def replace_set(
    set_id: uuid.UUID,
    body: IntentSetReplace,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    meta: RequestMetaDep,
) -> IntentSetRead:
    intent_set = await service.replace_set(session, principal, set_id, body, settings.intents, meta=meta)
    return await service.read_set(session, intent_set)


@router.patch(
    "/sets/{set_id}",
    response_model=IntentSetRead,
    summary="Change an intent set's settings",
    description="Name, description, classifier (from the next training), out-of-scope threshold (`null`: the "
    "calibrated one) and out-of-scope examples. Fields left out keep their value. Needs `intents:write`.",
    responses={
        404: IntentSetNotFound.schema(),
        409: IntentSetNameTaken.schema(),
        413: IntentSetTooLarge.schema(),
        422: InvalidInput.schema(),
    },
)
async def update_set(
    set_id: uuid.UUID,
    body: IntentSetUpdate,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    meta: RequestMetaDep,
) -> IntentSetRead:
    intent_set = await service.update_set(session, principal, set_id, body, settings.intents, meta=meta)
    return await service.read_set(session, intent_set)


@router.delete(
    "/sets/{set_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an intent set",
    description="With its intents and every trained version. Needs `intents:delete`.",
    responses={404: IntentSetNotFound.schema()},
)
async def delete_set(set_id: uuid.UUID, principal: Deleter, session: DbSession, meta: RequestMetaDep) -> Response:
    await service.delete_set(session, principal, set_id, meta=meta)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sets/{set_id}/intents",
    response_model=IntentRead,
    status_code=status.HTTP_201_CREATED,
    summary="Add an intent to a set",
    description="A name unique in the set and its example phrases. Needs `intents:write`.",
    responses={
        404: IntentSetNotFound.schema(),
        409: IntentNameTaken.schema(),
        413: IntentSetTooLarge.schema(),
        422: InvalidInput.schema(),
    },
)
async def add_intent(
    set_id: uuid.UUID, body: IntentCreate, settings: SettingsDep, principal: Writer, session: DbSession
) -> IntentRead:
    intent = await service.add_intent(session, principal, set_id, body, settings.intents)
    return IntentRead.model_validate(intent)


@router.patch(
    "/sets/{set_id}/intents/{intent_id}",
    response_model=IntentRead,
    summary="Rename an intent, add or remove example phrases",
    description="`remove_examples` (exact phrases) go first, then `add_examples` are appended (duplicates "
    "dropped). Needs `intents:write`.",
    responses={
        404: IntentNotFound.schema(),
        409: IntentNameTaken.schema(),
        413: IntentSetTooLarge.schema(),
        422: InvalidInput.schema(),
    },
)
async def update_intent(
    set_id: uuid.UUID,
    intent_id: uuid.UUID,
    body: IntentUpdate,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
) -> IntentRead:
    intent = await service.update_intent(session, principal, set_id, intent_id, body, settings.intents)
    return IntentRead.model_validate(intent)


@router.delete(
    "/sets/{set_id}/intents/{intent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an intent from a set",
    description="Trained versions keep it until the set is trained again. Needs `intents:write`.",
    responses={404: IntentNotFound.schema()},
)
async def delete_intent(set_id: uuid.UUID, intent_id: uuid.UUID, principal: Writer, session: DbSession) -> Response:
    await service.delete_intent(session, principal, set_id, intent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/sets/{set_id}/train",
    response_model=IntentSetVersionRead,
    status_code=status.HTTP_201_CREATED,
    summary="Train a new version of an intent set",
    description="Embeds every example phrase, fits the set's classifier, estimates its accuracy out of sample "
    "(a 20% holdout from 1,000 examples, cross-validation below) and calibrates the out-of-scope threshold from "
    "it; stores the result as a new immutable version, which becomes active unless a version is pinned. Runs in "
    "the request: seconds for hundreds of examples, about a minute for 10,000. Needs `intents:write`.",
    responses={
        404: IntentSetNotFound.schema(),
        409: IntentTrainingConflict.schema(),
        422: IntentSetNotTrainable.schema(),
        503: AIServiceUnavailable.schema(),
    },
)
async def train_set(
    set_id: uuid.UUID,
    settings: SettingsDep,
    principal: Writer,
    session: DbSession,
    ai: AIClientDep,
    meta: RequestMetaDep,
    response: Response,
) -> IntentSetVersionRead:
    version = await service.train_set(session, principal, set_id, ai, settings.intents, meta=meta)
    intent_set = await service.get_set(session, principal, set_id)
    response.headers["Location"] = f"/api/v1/ai/intents/sets/{set_id}/versions/{version.version}"
    return service.version_read(intent_set, version)


@router.get(
    "/sets/{set_id}/versions",
    response_model=IntentSetVersionPage,
    summary="An intent set's trained versions",
    description="Newest first: classifier, embedding model, counts, accuracy, calibrated threshold, which is active.",
    responses={404: IntentSetNotFound.schema()},
)
async def list_versions(
    set_id: uuid.UUID, principal: Reader, session: DbSession, page: PageParamsDep
) -> IntentSetVersionPage:
    intent_set, rows, cursor = await service.list_versions(session, principal, set_id, params=page)
    return IntentSetVersionPage(items=[service.version_read(intent_set, row) for row in rows], next_cursor=cursor)


@router.get(
    "/sets/{set_id}/versions/{version}",
    response_model=IntentSetVersionRead,
    summary="One trained version of an intent set",
    responses={404: IntentVersionNotFound.schema()},
)
async def get_version(
    set_id: uuid.UUID, version: VersionNumber, principal: Reader, session: DbSession
) -> IntentSetVersionRead:
    intent_set, row = await service.get_version(session, principal, set_id, version)
    return service.version_read(intent_set, row)


@router.put(
    "/sets/{set_id}/active-version",
    response_model=IntentSetRead,
    summary="Pin the version classification uses, or follow the latest",
    description='`{"version": 2}` pins version 2 (a rollback: later trainings do not move it); '
    '`{"version": null}` makes the latest version active again. Needs `intents:write`.',
    responses={404: IntentVersionNotFound.schema(), 422: InvalidInput.schema()},
)
async def set_active_version(
    set_id: uuid.UUID, body: ActiveVersionUpdate, principal: Writer, session: DbSession, meta: RequestMetaDep
) -> IntentSetRead:
    intent_set = await service.set_active_version(session, principal, set_id, body.version, meta=meta)
    return await service.read_set(session, intent_set)
