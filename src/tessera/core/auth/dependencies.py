"""FastAPI dependencies: the current principal and permission checks."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from tessera.core.audit.service import RequestMeta
from tessera.core.auth import principal as principal_service
from tessera.core.auth.errors import NoActiveOrganization
from tessera.core.auth.principal import Principal, PrincipalCache
from tessera.core.auth.tokens import API_KEY_PREFIX
from tessera.core.db.base import utcnow
from tessera.core.db.session import DbSession, WriteClock
from tessera.core.errors import InvalidInput, NotAuthenticated, PermissionDenied
from tessera.settings import Settings

# Declared as security schemes so the docs page shows an Authorize button for both.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="JWT from /auth/login or /auth/token, or an API key, as `Authorization: Bearer <token>`.",
)
api_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from POST /api-keys.")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def client_ip(request: Request) -> str | None:
    settings: Settings = request.app.state.settings
    if settings.rate_limit.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else None


async def get_request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
        request_id=getattr(request.state, "request_id", None),
    )


RequestMetaDep = Annotated[RequestMeta, Depends(get_request_meta)]


def _requested_org(request: Request) -> uuid.UUID | None:
    raw = request.headers.get("x-org-id")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise InvalidInput("X-Org-Id must be an organization id (UUID)") from error


async def get_optional_principal(
    request: Request,
    session: DbSession,
    bearer: Annotated[str | None, Depends(oauth2_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal | None:
    """The caller, or None when no credentials were sent. Bad credentials are a 401, never anonymous."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    settings: Settings = request.app.state.settings
    requested_org = _requested_org(request)
    if api_key is None and bearer is not None and bearer.startswith(API_KEY_PREFIX):
        api_key, bearer = bearer, None
    credential = api_key or bearer
    if credential is None:
        return None
    cache: PrincipalCache = request.app.state.principal_cache
    clock: WriteClock = request.app.state.write_clock
    # Noted before reading, so a write finishing meanwhile makes what we read stale at once.
    generation = clock.value
    principal = cache.get(credential, requested_org, generation)
    if principal is not None:
        if principal.api_key_id is not None and cache.touch_due(
            principal.api_key_id, settings.auth.api_key_touch_interval_seconds
        ):
            principal_service.schedule_api_key_touch(session, principal.api_key_id, utcnow())
    else:
        if api_key is not None:
            principal = await principal_service.principal_from_api_key(
                session, settings, api_key, requested_org=requested_org
            )
            # principal_from_api_key wrote `last_used_at` or found it recent: cache hits that
            # follow must not write it again within the interval.
            if principal.api_key_id is not None:
                cache.note_touch_decided(principal.api_key_id)
        else:
            principal = await principal_service.principal_from_access_token(
                session, settings, credential, requested_org=requested_org
            )
        cache.put(credential, requested_org, principal, generation=generation, valid_until=principal.valid_until)
    # Read by the logging and rate-limit layers.
    request.state.principal = principal
    return principal


async def get_principal(principal: Annotated[Principal | None, Depends(get_optional_principal)]) -> Principal:
    if principal is None:
        raise NotAuthenticated("Authentication required: send a bearer token or an X-API-Key header")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


def require(permission: str) -> Any:
    """A dependency that lets the call through only when the caller holds `permission`."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.org_id is None:
            raise NoActiveOrganization("No active organization: pick one with X-Org-Id or POST /auth/switch-org")
        if not principal.can(permission):
            raise PermissionDenied(f"This needs the '{permission}' permission", details={"permission": permission})
        return principal

    check.__name__ = f"require_{permission.replace(':', '_').replace('*', 'any')}"
    return Depends(check)
