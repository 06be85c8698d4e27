from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from tessera.core.api_keys import service
from tessera.core.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPage, ApiKeyRead
from tessera.core.auth.dependencies import RequestMetaDep, require
from tessera.core.auth.errors import ApiKeyNotFound, InvalidScope
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(prefix="/api-keys", tags=["api keys"], dependencies=[rate_limit("default")])

KeyReader = Annotated[Principal, require("api_keys:read")]
KeyWriter = Annotated[Principal, require("api_keys:write")]


@router.post(
    "",
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    description="Returns the key once; only its hash is stored. Use it as `X-API-Key: <key>` or "
    "`Authorization: Bearer <key>`. It acts for you in the active organization, within its scopes.",
    responses={422: InvalidScope.schema()},
)
async def create_api_key(
    body: ApiKeyCreate, principal: KeyWriter, session: DbSession, meta: RequestMetaDep
) -> ApiKeyCreated:
    assert principal.org_id is not None
    api_key, secret = await service.create_api_key(
        session, principal, org_id=principal.org_id, name=body.name, scopes=body.scopes,
        expires_at=body.expires_at, meta=meta,
    )  # fmt: skip
    return ApiKeyCreated(**ApiKeyRead.model_validate(api_key).model_dump(), key=secret)


@router.get(
    "",
    response_model=ApiKeyPage,
    summary="List API keys",
    description="Admins see every key of the organization; others see their own. Secrets are never shown.",
)
async def list_api_keys(
    principal: KeyReader,
    session: DbSession,
    page: PageParamsDep,
    include_revoked: Annotated[bool, Query(description="Also list revoked keys.")] = False,
) -> ApiKeyPage:
    assert principal.org_id is not None
    rows, cursor = await service.list_api_keys(
        session, principal, org_id=principal.org_id, include_revoked=include_revoked, params=page
    )
    return ApiKeyPage(items=[ApiKeyRead.model_validate(row) for row in rows], next_cursor=cursor)


@router.get("/{key_id}", response_model=ApiKeyRead, summary="One API key", responses={404: ApiKeyNotFound.schema()})
async def get_api_key(key_id: uuid.UUID, principal: KeyReader, session: DbSession) -> ApiKeyRead:
    assert principal.org_id is not None
    return ApiKeyRead.model_validate(
        await service.get_api_key(session, principal, org_id=principal.org_id, key_id=key_id)
    )


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
    description="The key stops working at once. Revoking a revoked key succeeds.",
    responses={404: ApiKeyNotFound.schema()},
)
async def revoke_api_key(key_id: uuid.UUID, principal: KeyWriter, session: DbSession, meta: RequestMetaDep) -> None:
    assert principal.org_id is not None
    await service.revoke_api_key(session, principal, org_id=principal.org_id, key_id=key_id, meta=meta)
