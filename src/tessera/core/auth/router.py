from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response, status
from pydantic import EmailStr, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.auth import service
from tessera.core.auth.dependencies import CurrentPrincipal, RequestMetaDep, SettingsDep
from tessera.core.auth.errors import (
    AccountDisabled,
    AccountLocked,
    EmailTaken,
    InvalidCredentials,
    InvalidMfaCode,
    InvalidToken,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaNotSetUp,
    MfaRequired,
    RefreshTokenReused,
    RegistrationClosed,
    WeakPassword,
)
from tessera.core.auth.principal import PrincipalCache
from tessera.core.auth.schemas import (
    LoginRequest,
    LogoutRequest,
    MembershipRead,
    MeResponse,
    MfaDisableRequest,
    MfaEnableRequest,
    MfaEnableResponse,
    MfaSetupResponse,
    MfaVerifyRequest,
    PasswordChangeRequest,
    RefreshRequest,
    RegisterRequest,
    SessionRead,
    SwitchOrgRequest,
    TokenResponse,
    UserRead,
)
from tessera.core.auth.service import TokenPair
from tessera.core.db.session import DbSession, WriteClock
from tessera.core.errors import AppError, InvalidInput
from tessera.core.ratelimit.dependencies import rate_limit

_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


def _responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    return {error.status_code: error.schema() for error in errors}


def _token_response(pair: TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in)


async def _no_store(response: Response) -> None:
    # Tokens, TOTP secrets and recovery codes must not be kept by any cache (RFC 6749 section 5.1).
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


async def _sessionmaker(request: Request) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """For password sign-in, which opens its own short transactions around the password check
    (`service.sign_in`); counts as a write request for the caches, as `DbSession` does."""
    try:
        yield request.app.state.sessionmaker
    finally:
        clock: WriteClock | None = getattr(request.app.state, "write_clock", None)
        if clock is not None:
            clock.tick()


Sessionmaker = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker, scope="function")]


# Sign-in endpoints share the stricter per-IP "auth" limit; the rest use the caller's own limit.
public_router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[rate_limit("auth"), Depends(_no_store)])
router = APIRouter(prefix="/auth", tags=["auth"], dependencies=[rate_limit("default"), Depends(_no_store)])


@public_router.post(
    "/register",
    response_model=TokenResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
    description="Creates a user and, unless joining with an invitation, a new organization they own. "
    "Returns tokens for the new account, so the client is signed in at once.",
    responses=_responses(WeakPassword, EmailTaken, RegistrationClosed),
)
async def register(
    body: RegisterRequest, session: DbSession, settings: SettingsDep, meta: RequestMetaDep
) -> TokenResponse:
    user, org_id = await service.register(
        session, settings, email=body.email, password=body.password, name=body.name, org_name=body.org_name,
        invitation_token=body.invitation_token, meta=meta,
    )  # fmt: skip
    pair = await service.issue_first_session(session, settings, user=user, org_id=org_id, meta=meta)
    return _token_response(pair)


@public_router.post(
    "/login",
    response_model=TokenResponse,
    summary="Sign in with e-mail and password",
    description="With MFA on, include `mfa_code`; without it the answer is 401 `mfa_required` whose "
    "`details.mfa_token` can be completed at `/auth/mfa/verify`. Repeated failures lock the account "
    "for a growing time (429 `account_locked` with `Retry-After`).",
    responses=_responses(InvalidCredentials, MfaRequired, AccountLocked, AccountDisabled),
)
async def login(
    body: LoginRequest, sessionmaker: Sessionmaker, settings: SettingsDep, meta: RequestMetaDep
) -> TokenResponse:
    pair = await service.sign_in(
        sessionmaker, settings, email=body.email, password=body.password, mfa_code=body.mfa_code,
        org_id=body.org_id, meta=meta,
    )  # fmt: skip
    return _token_response(pair)


@public_router.post(
    "/token",
    response_model=TokenResponse,
    summary="OAuth2 password grant (form)",
    description="The same as `/auth/login` as an OAuth2 form, so the docs page's Authorize button works. "
    "Put an MFA code in `client_secret` when MFA is on.",
    responses=_responses(InvalidCredentials, MfaRequired, AccountLocked),
)
async def token(
    sessionmaker: Sessionmaker,
    settings: SettingsDep,
    meta: RequestMetaDep,
    username: Annotated[str, Form(max_length=320, description="The e-mail address.")],
    password: Annotated[str, Form(max_length=256)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
    scope: Annotated[str, Form(max_length=1_000)] = "",
    client_id: Annotated[str | None, Form(max_length=200)] = None,
    client_secret: Annotated[str | None, Form(max_length=64)] = None,
) -> TokenResponse:
    try:
        # Validated like `LoginRequest.email`: a bare "@" check let NUL and other junk reach the
        # database (where PostgreSQL refuses NUL in text, a 500).
        username = _EMAIL.validate_python(username)
    except ValidationError as error:
        raise InvalidInput("username must be an e-mail address") from error
    pair = await service.sign_in(
        sessionmaker, settings, email=username, password=password, mfa_code=client_secret or None,
        org_id=None, meta=meta,
    )  # fmt: skip
    return _token_response(pair)


@public_router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="Exchange a refresh token for new tokens",
    description="Rotates: the refresh token sent stops working. Sending an already-rotated token again "
    "ends the whole sign-in (401 `refresh_token_reused`), since a copy of it has leaked.",
    responses=_responses(InvalidToken, RefreshTokenReused),
)
async def refresh(
    body: RefreshRequest, session: DbSession, settings: SettingsDep, meta: RequestMetaDep
) -> TokenResponse:
    pair = await service.refresh_tokens(session, settings, refresh_token=body.refresh_token, meta=meta)
    return _token_response(pair)


@public_router.post(
    "/mfa/verify",
    response_model=TokenResponse,
    summary="Complete an MFA sign-in",
    description="Send the `mfa_token` from a 401 `mfa_required` answer with a TOTP or recovery code.",
    responses=_responses(InvalidMfaCode, InvalidToken, AccountLocked),
)
async def mfa_verify(
    body: MfaVerifyRequest,
    session: DbSession,
    settings: SettingsDep,
    meta: RequestMetaDep,
) -> TokenResponse:
    pair = await service.verify_mfa_challenge(session, settings, mfa_token=body.mfa_token, code=body.code, meta=meta)
    return _token_response(pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out",
    description="Ends the current sign-in: its access and refresh tokens stop working. "
    "Send `all_sessions: true` to sign out everywhere.",
    responses=_responses(InvalidToken),
)
async def logout(
    principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep, body: LogoutRequest | None = None
) -> None:
    body = body or LogoutRequest()
    await service.sign_out(
        session, principal, refresh_token=body.refresh_token, all_sessions=body.all_sessions, meta=meta
    )


@router.get(
    "/me",
    response_model=MeResponse,
    summary="Who am I",
    description="The signed-in user (or the API key's creator), the active organization and role, "
    "and every organization the user belongs to.",
    responses=_responses(InvalidToken),
)
async def me(request: Request, principal: CurrentPrincipal, session: DbSession) -> MeResponse:
    # Read on every page load of a client: served from the principal cache (same freshness rules:
    # any write in this process, or `auth.principal_cache_seconds`, makes it read again).
    cache: PrincipalCache = request.app.state.principal_cache
    generation = request.app.state.write_clock.value
    memberships = cache.get_memberships(principal.user_id, generation)
    if memberships is None:
        memberships = await service.list_memberships(session, principal)
        if principal.api_key_id is None:
            cache.put_memberships(principal.user_id, memberships, generation=generation)
    elif principal.api_key_id is not None:
        memberships = [m for m in memberships if m.id == principal.org_id]
    return MeResponse(
        user=UserRead.model_validate(principal.user),
        org_id=principal.org_id,
        role=principal.role,
        auth_method=principal.method,
        scopes=list(principal.scopes) if principal.scopes is not None else None,
        memberships=[MembershipRead(org_id=org.id, org_name=org.name, role=org.role) for org in memberships],
    )


@router.post(
    "/switch-org",
    response_model=TokenResponse,
    summary="Make another of your organizations the active one",
    description="Returns new tokens whose `org` claim names it. `X-Org-Id` does the same for one request.",
)
async def switch_org(
    body: SwitchOrgRequest, principal: CurrentPrincipal, session: DbSession, settings: SettingsDep, meta: RequestMetaDep
) -> TokenResponse:
    pair = await service.switch_org(session, settings, principal, org_id=body.org_id, meta=meta)
    return _token_response(pair)


@router.get("/sessions", response_model=list[SessionRead], summary="Your active sign-ins")
async def sessions(principal: CurrentPrincipal, session: DbSession) -> list[SessionRead]:
    rows = await service.list_sessions(session, principal.user_id)
    return [
        SessionRead.model_validate(row).model_copy(update={"current": row.id == principal.session_id}) for row in rows
    ]


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Change your password",
    description="Ends every other sign-in of the account.",
    responses=_responses(InvalidCredentials, WeakPassword),
)
async def change_password(
    body: PasswordChangeRequest, principal: CurrentPrincipal, session: DbSession, settings: SettingsDep,
    meta: RequestMetaDep,
) -> None:  # fmt: skip
    await service.change_password(
        session, settings, principal, current=body.current_password, new=body.new_password, meta=meta
    )


@router.post(
    "/mfa/setup",
    response_model=MfaSetupResponse,
    summary="Start MFA set-up",
    description="Returns a new TOTP secret and an `otpauth://` URI for an authenticator app. "
    "MFA is on only after `/auth/mfa/enable` with a code from the app.",
    responses=_responses(MfaAlreadyEnabled),
)
async def mfa_setup(principal: CurrentPrincipal, session: DbSession, settings: SettingsDep) -> MfaSetupResponse:
    secret, uri = await service.set_up_mfa(session, settings, principal)
    return MfaSetupResponse(secret=secret, otpauth_uri=uri)


@router.post(
    "/mfa/enable",
    response_model=MfaEnableResponse,
    summary="Turn MFA on",
    description="Confirms the authenticator with a current code; returns ten one-time recovery codes, shown once.",
    responses=_responses(InvalidMfaCode, MfaNotSetUp, MfaAlreadyEnabled),
)
async def mfa_enable(
    body: MfaEnableRequest, principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep
) -> MfaEnableResponse:
    codes = await service.enable_mfa(session, principal, code=body.code, meta=meta)
    return MfaEnableResponse(enabled=True, recovery_codes=codes)


@router.post(
    "/mfa/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Turn MFA off",
    description="Needs the password and a current TOTP or recovery code.",
    responses=_responses(InvalidMfaCode, InvalidCredentials, MfaNotEnabled),
)
async def mfa_disable(
    body: MfaDisableRequest, principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep
) -> None:
    await service.disable_mfa(session, principal, password=body.password, code=body.code, meta=meta)


@router.post(
    "/mfa/recovery-codes",
    response_model=MfaEnableResponse,
    summary="Replace your recovery codes",
    description="Needs a current TOTP code; the old recovery codes stop working.",
    responses=_responses(InvalidMfaCode, MfaNotEnabled),
)
async def mfa_recovery_codes(
    body: MfaEnableRequest, principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep
) -> MfaEnableResponse:
    codes = await service.regenerate_recovery_codes(session, principal, code=body.code, meta=meta)
    return MfaEnableResponse(enabled=True, recovery_codes=codes)
