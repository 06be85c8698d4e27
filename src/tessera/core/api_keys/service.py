"""API keys: created by a user for one organization, limited by scopes and by the creator's role."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth import tokens
from tessera.core.auth.errors import ApiKeyNotFound, InvalidScope
from tessera.core.auth.models import ApiKey
from tessera.core.auth.permissions import is_valid_permission, role_allows
from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.errors import InvalidInput, PermissionDenied
from tessera.core.pagination import PageParams, paginate

MAX_KEYS_PER_ORG = 1_000


def _check_scopes(principal: Principal, scopes: list[str]) -> list[str]:
    if principal.api_key_id is not None:
        # A leaked key must not be able to mint fresh keys that outlive its revocation.
        raise PermissionDenied("API keys cannot create API keys; sign in as a user")
    cleaned = sorted({scope.strip() for scope in scopes})
    invalid = [scope for scope in cleaned if not is_valid_permission(scope)]
    if invalid:
        raise InvalidScope(
            "Scopes must look like 'resource:action' ('documents:read', 'documents:*', '*:read' or '*')",
            details={"invalid": invalid},
        )
    assert principal.role is not None
    # A key can never do more than its creator: every concrete scope must be within the role.
    beyond = [scope for scope in cleaned if "*" not in scope and not role_allows(principal.role, scope)]
    if beyond:
        raise InvalidScope("These scopes exceed what your role allows", details={"beyond_role": beyond})
    return cleaned


async def create_api_key(
    session: AsyncSession,
    principal: Principal,
    *,
    org_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
    meta: RequestMeta,
) -> tuple[ApiKey, str]:
    """Returns the stored key and the full secret, which is never shown again."""
    cleaned = _check_scopes(principal, scopes)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at must be in the future")
    count = await session.scalar(
        select(func.count()).select_from(ApiKey).where(ApiKey.org_id == org_id, ApiKey.revoked_at.is_(None))
    )
    if (count or 0) >= MAX_KEYS_PER_ORG:
        raise InvalidInput(f"An organization can have at most {MAX_KEYS_PER_ORG} active API keys")
    secret, prefix = tokens.new_api_key()
    api_key = ApiKey(
        org_id=org_id,
        created_by_id=principal.user_id,
        name=name,
        prefix=prefix,
        key_hash=tokens.hash_secret(secret),
        scopes=cleaned,
        expires_at=expires_at,
    )
    session.add(api_key)
    await session.flush()
    await record_event(
        session, action="api_key.created", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="api_key", target_id=api_key.id, details={"name": name, "scopes": cleaned, "prefix": prefix},
    )  # fmt: skip
    return api_key, secret


def _sees_all_keys(principal: Principal) -> bool:
    """Admins manage every key of the organization; other members only their own."""
    return principal.can("members:write")


async def list_api_keys(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, include_revoked: bool, params: PageParams
) -> tuple[list[ApiKey], str | None]:
    query = select(ApiKey).where(ApiKey.org_id == org_id)
    if not _sees_all_keys(principal):
        query = query.where(ApiKey.created_by_id == principal.user_id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    rows, cursor = await paginate(session, query, key=ApiKey.id, params=params)
    return list(rows), cursor


async def get_api_key(session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    api_key = (
        await session.execute(select(ApiKey).where(ApiKey.id == key_id, ApiKey.org_id == org_id))
    ).scalar_one_or_none()
    if api_key is None or (not _sees_all_keys(principal) and api_key.created_by_id != principal.user_id):
        raise ApiKeyNotFound("API key not found")
    return api_key


async def revoke_api_key(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, key_id: uuid.UUID, meta: RequestMeta
) -> None:
    api_key = await get_api_key(session, principal, org_id=org_id, key_id=key_id)
    if api_key.revoked_at is not None:
        return  # Revoking twice is not an error: the outcome the caller wants already holds.
    api_key.revoked_at = utcnow()
    await record_event(
        session, action="api_key.revoked", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="api_key", target_id=api_key.id, details={"name": api_key.name, "prefix": api_key.prefix},
    )  # fmt: skip
    await session.flush()
