from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from tessera.core.auth.dependencies import api_key_scheme, client_ip, get_optional_principal, oauth2_scheme
from tessera.core.db.session import DbSession
from tessera.core.errors import AppError, TooManyRequests
from tessera.core.ratelimit.limiter import RateLimiter


async def enforce_limit(request: Request, group: str, key: str) -> None:
    limiter: RateLimiter | None = request.app.state.limiter
    if limiter is None:
        return
    result = await limiter.hit(group, key)
    # Copied onto the response, success or error, by the middleware.
    request.state.rate_limit_headers = result.headers()
    if not result.allowed:
        raise TooManyRequests(
            f"Rate limit of {result.limit} requests exceeded; retry in {result.reset_after} s",
            retry_after=result.reset_after,
            headers=result.headers(),
            details={"limit": result.limit, "group": group},
        )


def _ip_key(request: Request) -> str:
    return f"ip:{client_ip(request) or 'unknown'}"


def rate_limit(group: str) -> Any:
    """Limit a route group, with the limit `TESSERA_RATE_LIMIT__<GROUP>`.

    `auth` counts per client IP and never looks at credentials, so a stale token cannot block a new
    sign-in. Other groups count per user or API key when signed in, and per IP under the
    `anonymous` limit otherwise, including calls whose credentials are invalid.
    """
    if group == "auth":

        async def check_ip(request: Request) -> None:
            await enforce_limit(request, group, _ip_key(request))

        return Depends(check_ip)

    async def check(
        request: Request,
        session: DbSession,
        bearer: Annotated[str | None, Depends(oauth2_scheme)],
        api_key: Annotated[str | None, Depends(api_key_scheme)],
    ) -> None:
        try:
            principal = await get_optional_principal(request, session, bearer, api_key)
        except AppError:
            # Credentials that identify no one count against the caller's IP like no credentials,
            # so guessing tokens or keys is limited too. The route then sees the same error.
            await enforce_limit(request, "anonymous", _ip_key(request))
            raise
        if principal is None:
            await enforce_limit(request, "anonymous", _ip_key(request))
        else:
            await enforce_limit(request, group, principal.rate_limit_key)

    check.__name__ = f"rate_limit_{group}"
    return Depends(check)
