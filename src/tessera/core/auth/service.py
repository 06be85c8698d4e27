"""Sign-up, sign-in, token rotation, sign-out and multi-factor authentication.

Failures that must be remembered even though the request fails (a failed password, a reused
refresh token) are written by `run_after_transaction` once the request has rolled back;
everything else joins the caller's transaction. Sign-in with a password is the exception: it
opens its own short transactions around the (slow) password check, see `sign_in`.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.audit.service import Actor, RequestMeta, record_event
from tessera.core.auth import mfa, passwords, tokens
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
    OrganizationNotFound,
    ReauthenticationRequired,
    RefreshTokenReused,
    RegistrationClosed,
    TokenExpired,
    WeakPassword,
)
from tessera.core.auth.models import AuthSession, Membership, Organization, RefreshToken, Role, User
from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.db.session import run_after_transaction, unit_of_work
from tessera.settings import Settings


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


def normalise_email(email: str) -> str:
    return email.strip().lower()


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "org"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


def check_password_policy(settings: Settings, password: str, *, email: str, name: str | None) -> None:
    problems = passwords.password_problems(
        password, min_length=settings.auth.password_min_length, email=email, name=name
    )
    if problems:
        raise WeakPassword("The password " + "; ".join(problems), details={"problems": problems})


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == normalise_email(email)))).scalar_one_or_none()


async def create_organization(session: AsyncSession, *, name: str, owner: User) -> Organization:
    org = Organization(name=name, slug=slugify(name))
    session.add(org)
    await session.flush()
    session.add(Membership(org_id=org.id, user_id=owner.id, role=Role.owner))
    if owner.default_org_id is None:
        owner.default_org_id = org.id
    await session.flush()
    return org


async def create_user(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str,
    enforce_policy: bool = True,
) -> User:
    email = normalise_email(email)
    if enforce_policy:
        check_password_policy(settings, password, email=email, name=name)
    if await get_user_by_email(session, email) is not None:
        raise EmailTaken("An account with this e-mail already exists")
    user = User(email=email, name=name, password_hash=await passwords.hash_password(password))
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as error:
        # A concurrent registration with this e-mail committed between the check and the insert.
        raise EmailTaken("An account with this e-mail already exists") from error
    return user


async def register(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    password: str,
    name: str,
    org_name: str | None,
    invitation_token: str | None,
    meta: RequestMeta,
) -> tuple[User, uuid.UUID | None]:
    """Create an account: with an invitation it joins that organization, otherwise (by default)
    it gets a new organization that it owns. Returns the user and the organization to activate."""
    # Imported here: orgs builds on auth, so auth reaches it only for this one use case.
    from tessera.core.orgs import service as orgs_service

    if invitation_token is None and not settings.auth.allow_registration:
        raise RegistrationClosed("Self-registration is turned off on this server; ask for an invitation")
    invitation = None
    if invitation_token is not None:
        invitation = await orgs_service.find_open_invitation(session, invitation_token)
        orgs_service.check_invitation_email(invitation, email)
    user = await create_user(session, settings, email=email, password=password, name=name)
    org_id: uuid.UUID | None = None
    if invitation is not None:
        await orgs_service.accept_invitation(session, invitation=invitation, user=user, meta=meta)
        org_id = invitation.org_id
    elif settings.auth.registration_creates_org:
        org = await create_organization(session, name=org_name or f"{name}'s organization", owner=user)
        org_id = org.id
        await record_event(
            session, action="org.created", org_id=org.id, actor=Actor("user", user.id, user.email), meta=meta,
            target_type="organization", target_id=org.id, details={"name": org.name},
        )  # fmt: skip
    if org_id is not None:
        await record_event(
            session, action="user.registered", org_id=org_id, actor=Actor("user", user.id, user.email), meta=meta,
            target_type="user", target_id=user.id, details={"email": user.email},
        )  # fmt: skip
    return user, org_id


def _lockout_seconds(settings: Settings, failures: int) -> int:
    over = failures - settings.auth.lockout_threshold
    if over < 0:
        return 0
    return int(min(settings.auth.lockout_max_seconds, settings.auth.lockout_base_seconds * 2 ** min(over, 20)))


def _record_failed_sign_in(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    user_id: uuid.UUID | None,
    reason: str,
    meta: RequestMeta,
) -> None:
    """Count the failure and audit it once the failing request has rolled back."""

    async def record(side: AsyncSession) -> None:
        org_id = None
        if user_id is not None:
            # One atomic increment: a read-modify-write would lose counts when failures arrive in
            # parallel, and a burst of guesses could then stay under the lock-out threshold.
            row = (
                await side.execute(
                    update(User)
                    .where(User.id == user_id)
                    .values(failed_login_count=User.failed_login_count + 1)
                    .returning(User.failed_login_count, User.default_org_id)
                )
            ).one_or_none()
            if row is not None:
                failures, org_id = row
                seconds = _lockout_seconds(settings, failures)
                if seconds:
                    await side.execute(
                        update(User)
                        .where(User.id == user_id)
                        .values(locked_until=utcnow() + timedelta(seconds=seconds))
                    )
        await record_event(
            side, action="auth.login_failed", org_id=org_id, actor=Actor("anonymous", user_id, email), meta=meta,
            target_type="user" if user_id else None, target_id=user_id, details={"reason": reason},
        )  # fmt: skip

    run_after_transaction(session, record)


def _raise_if_locked(user: User) -> None:
    if user.locked_until is not None:
        remaining = (user.locked_until - utcnow()).total_seconds()
        if remaining > 0:
            raise AccountLocked("Too many failed sign-ins; try again later", retry_after=math.ceil(remaining))


async def _resolve_sign_in_org(session: AsyncSession, user: User, requested: uuid.UUID | None) -> uuid.UUID | None:
    if requested is not None:
        role = await membership_role(session, user_id=user.id, org_id=requested)
        if role is None:
            raise OrganizationNotFound("Organization not found")
        return requested
    if user.default_org_id is not None and await membership_role(session, user.id, user.default_org_id):
        return user.default_org_id
    first = (
        await session.execute(
            select(Membership.org_id).where(Membership.user_id == user.id).order_by(Membership.created_at).limit(1)
        )
    ).scalar_one_or_none()
    return first


async def membership_role(session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID) -> Role | None:
    return (
        await session.execute(select(Membership.role).where(Membership.user_id == user_id, Membership.org_id == org_id))
    ).scalar_one_or_none()


async def _check_second_factor(
    session: AsyncSession,
    settings: Settings,
    *,
    user: User,
    code: str,
    meta: RequestMeta,
) -> str:
    """Consume a TOTP code or a recovery code; returns which one was used."""
    # Re-read the row under a lock: sign-ins racing with one code (or one recovery code) would
    # otherwise all see it unused and all get in. (SQLite write transactions are serial already.)
    await session.refresh(user, with_for_update=True)
    assert user.mfa_secret is not None
    step = mfa.matching_step(user.mfa_secret, code, last_step=user.mfa_last_step)
    if step is not None:
        user.mfa_last_step = step
        return "totp"
    hashed = mfa.recovery_code_hash(code)
    remaining = [stored for stored in user.mfa_recovery_codes if not tokens.secrets_match_hash(hashed, stored)]
    if len(remaining) < len(user.mfa_recovery_codes):
        user.mfa_recovery_codes = remaining
        await record_event(
            session, action="auth.mfa_recovery_code_used", org_id=user.default_org_id,
            actor=Actor("user", user.id, user.email), meta=meta, target_type="user", target_id=user.id,
            details={"remaining": len(remaining)},
        )  # fmt: skip
        return "recovery_code"
    _record_failed_sign_in(session, settings, email=user.email, user_id=user.id, reason="bad_mfa_code", meta=meta)
    raise InvalidMfaCode("The code is wrong or was already used")


async def sign_in(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    email: str,
    password: str,
    mfa_code: str | None,
    org_id: uuid.UUID | None,
    meta: RequestMeta,
) -> TokenPair:
    """Sign in with a password, in two short transactions around the password check.

    Argon2 costs ~60 ms of CPU (more when sign-ins arrive together). It runs with no transaction
    open: on SQLite a write transaction holds the database's only write lock, and holding it for
    the hash made concurrent sign-ins queue behind each other until they failed with "database is
    locked". So: read the user (read-only), verify (and, if the parameters changed, rehash) the
    password in a worker thread, then write the sign-in in its own transaction, which re-reads the
    user and accepts only if the stored hash is still the one verified.
    """
    async with unit_of_work(sessionmaker, write=False) as session:
        user = await get_user_by_email(session, email)
        if user is not None:
            _raise_if_locked(user)  # refused before the password is checked, and not counted
    verified_hash = user.password_hash if user is not None else None
    valid = await passwords.verify_password(verified_hash, password) and user is not None
    rehashed = None
    if valid and verified_hash is not None and passwords.needs_rehash(verified_hash):
        rehashed = await passwords.hash_password(password)
    async with unit_of_work(sessionmaker) as session:
        return await _sign_in_verified(
            session, settings, email=email, verified_hash=verified_hash if valid else None, rehashed=rehashed,
            mfa_code=mfa_code, org_id=org_id, meta=meta,
        )  # fmt: skip


async def _sign_in_verified(
    session: AsyncSession,
    settings: Settings,
    *,
    email: str,
    verified_hash: str | None,
    rehashed: str | None,
    mfa_code: str | None,
    org_id: uuid.UUID | None,
    meta: RequestMeta,
) -> TokenPair:
    """The write half of `sign_in`: `verified_hash` is the stored hash the password matched (None:
    it matched none)."""
    user = await get_user_by_email(session, email)
    if user is not None:
        _raise_if_locked(user)  # locked by failures that finished while the password was checked
    # A password changed meanwhile is not the one verified: as wrong as any other.
    if verified_hash is None or user is None or user.password_hash != verified_hash:
        _record_failed_sign_in(
            session, settings, email=normalise_email(email), user_id=user.id if user else None,
            reason="bad_password" if user else "unknown_email", meta=meta,
        )  # fmt: skip
        raise InvalidCredentials("E-mail or password is wrong")
    if not user.is_active:
        raise AccountDisabled("The account has been disabled")
    if user.mfa_enabled:
        if mfa_code is None:
            challenge = tokens.encode_mfa_challenge(
                key=settings.signing_key, issuer=settings.auth.jwt_issuer, user_id=user.id,
                ttl_seconds=settings.auth.mfa_challenge_ttl_seconds,
            )  # fmt: skip
            raise MfaRequired(
                "This account uses multi-factor authentication: send mfa_code, or POST the code with "
                "this mfa_token to /auth/mfa/verify",
                details={"mfa_token": challenge},
            )
        await _check_second_factor(session, settings, user=user, code=mfa_code, meta=meta)
    if rehashed is not None:
        user.password_hash = rehashed
    return await _complete_sign_in(
        session, settings, user=user, org_id=org_id, mfa_verified=user.mfa_enabled, meta=meta
    )


async def verify_mfa_challenge(
    session: AsyncSession,
    settings: Settings,
    *,
    mfa_token: str,
    code: str,
    meta: RequestMeta,
) -> TokenPair:
    user_id = tokens.decode_mfa_challenge(mfa_token, key=settings.signing_key, issuer=settings.auth.jwt_issuer)
    user = await session.get(User, user_id)
    if user is None or not user.is_active or not user.mfa_enabled:
        raise InvalidToken("The MFA challenge is not valid")
    _raise_if_locked(user)
    await _check_second_factor(session, settings, user=user, code=code, meta=meta)
    return await _complete_sign_in(session, settings, user=user, org_id=None, mfa_verified=True, meta=meta)


async def _complete_sign_in(
    session: AsyncSession,
    settings: Settings,
    *,
    user: User,
    org_id: uuid.UUID | None,
    mfa_verified: bool,
    meta: RequestMeta,
) -> TokenPair:
    active_org = await _resolve_sign_in_org(session, user, org_id)
    user.failed_login_count = 0
    user.locked_until = None
    user.last_login_at = utcnow()
    pair = await _start_session(session, settings, user=user, org_id=active_org, mfa_verified=mfa_verified, meta=meta)
    await record_event(
        session, action="auth.login", org_id=active_org, actor=Actor("user", user.id, user.email), meta=meta,
        target_type="user", target_id=user.id, details={"mfa": mfa_verified, "session_id": str(pair.session_id)},
    )  # fmt: skip
    return pair


async def _start_session(
    session: AsyncSession,
    settings: Settings,
    *,
    user: User,
    org_id: uuid.UUID | None,
    mfa_verified: bool,
    meta: RequestMeta,
) -> TokenPair:
    now = utcnow()
    auth_session = AuthSession(
        user_id=user.id,
        org_id=org_id,
        mfa_verified=mfa_verified,
        expires_at=now + timedelta(seconds=settings.auth.refresh_token_ttl_seconds),
        ip=meta.ip,
        user_agent=(meta.user_agent or "")[:500] or None,
    )
    session.add(auth_session)
    await session.flush()
    return await _issue_tokens(session, settings, auth_session=auth_session, user_id=user.id, org_id=org_id)


async def _issue_tokens(
    session: AsyncSession,
    settings: Settings,
    *,
    auth_session: AuthSession,
    user_id: uuid.UUID,
    org_id: uuid.UUID | None,
) -> TokenPair:
    now = utcnow()
    refresh = tokens.new_secret()
    session.add(
        RefreshToken(
            session_id=auth_session.id,
            token_hash=tokens.hash_secret(refresh),
            created_at=now,
            expires_at=auth_session.expires_at,
        )
    )
    access = tokens.encode_access_token(
        key=settings.signing_key, issuer=settings.auth.jwt_issuer, user_id=user_id, org_id=org_id,
        session_id=auth_session.id, ttl_seconds=settings.auth.access_token_ttl_seconds,
    )  # fmt: skip
    await session.flush()
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=settings.auth.access_token_ttl_seconds,
        session_id=auth_session.id,
    )


async def refresh_tokens(
    session: AsyncSession,
    settings: Settings,
    *,
    refresh_token: str,
    meta: RequestMeta,
) -> TokenPair:
    row = (
        await session.execute(
            select(RefreshToken, AuthSession, User)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .join(User, User.id == AuthSession.user_id)
            .where(RefreshToken.token_hash == tokens.hash_secret(refresh_token))
        )
    ).one_or_none()
    if row is None:
        raise InvalidToken("The refresh token is not valid")
    stored, auth_session, user = row
    now = utcnow()
    if auth_session.revoked_at is not None:
        raise InvalidToken("This sign-in has ended; sign in again")
    if stored.rotated_at is not None:
        # A rotated token came back: either the client or a thief holds a copy. End the sign-in.
        session_id, org_id, actor = auth_session.id, auth_session.org_id, Actor("user", user.id, user.email)

        async def revoke(side: AsyncSession) -> None:
            await side.execute(
                update(AuthSession)
                .where(AuthSession.id == session_id)
                .values(revoked_at=now, revoke_reason="refresh_token_reused")
            )
            await record_event(
                side, action="auth.refresh_token_reused", org_id=org_id, actor=actor, meta=meta,
                target_type="auth_session", target_id=session_id,
            )  # fmt: skip

        run_after_transaction(session, revoke)
        raise RefreshTokenReused("This refresh token was already used; the sign-in has been ended for safety")
    if stored.expires_at <= now or auth_session.expires_at <= now:
        raise TokenExpired("The refresh token has expired; sign in again")
    if not user.is_active:
        raise AccountDisabled("The account has been disabled")
    # Only one of two concurrent refreshes with the same token may win.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidToken("The refresh token is not valid")
    org_id = auth_session.org_id
    if org_id is not None and await membership_role(session, user.id, org_id) is None:
        org_id = await _resolve_sign_in_org(session, user, None)
        auth_session.org_id = org_id
    return await _issue_tokens(session, settings, auth_session=auth_session, user_id=user.id, org_id=org_id)


async def sign_out(
    session: AsyncSession,
    principal: Principal,
    *,
    refresh_token: str | None,
    all_sessions: bool,
    meta: RequestMeta,
) -> int:
    """End the current sign-in (or the one a refresh token belongs to, or all of them); returns how many."""
    now = utcnow()
    query = update(AuthSession).where(AuthSession.user_id == principal.user_id, AuthSession.revoked_at.is_(None))
    if all_sessions:
        pass
    elif refresh_token is not None:
        session_id = (
            await session.execute(
                select(RefreshToken.session_id).where(RefreshToken.token_hash == tokens.hash_secret(refresh_token))
            )
        ).scalar_one_or_none()
        if session_id is None:
            raise InvalidToken("The refresh token is not valid")
        query = query.where(AuthSession.id == session_id)
    elif principal.session_id is not None:
        query = query.where(AuthSession.id == principal.session_id)
    else:
        return 0
    result = await session.execute(query.values(revoked_at=now, revoke_reason="logout"))
    count = int(result.rowcount)  # type: ignore[attr-defined]
    await record_event(
        session, action="auth.logout", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=principal.user_id, details={"sessions_ended": count, "all": all_sessions},
    )  # fmt: skip
    return count


async def switch_org(
    session: AsyncSession, settings: Settings, principal: Principal, *, org_id: uuid.UUID, meta: RequestMeta
) -> TokenPair:
    if principal.session_id is None:
        raise InvalidToken("API keys belong to one organization and cannot switch")
    if await membership_role(session, principal.user_id, org_id) is None:
        raise OrganizationNotFound("Organization not found")
    auth_session = await session.get(AuthSession, principal.session_id)
    if auth_session is None or auth_session.revoked_at is not None:
        raise InvalidToken("This sign-in has ended; sign in again")
    # Rotate: refresh tokens issued for the previous organization stop working.
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.session_id == auth_session.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=utcnow())
    )
    auth_session.org_id = org_id
    user = await load_user(session, principal)
    user.default_org_id = org_id
    await record_event(
        session, action="auth.org_switched", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="organization", target_id=org_id,
    )  # fmt: skip
    return await _issue_tokens(session, settings, auth_session=auth_session, user_id=principal.user_id, org_id=org_id)


@dataclass(frozen=True, slots=True)
class OrgMembership:
    """One organization the caller belongs to, with their role in it."""

    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime
    role: Role


_organization = Organization.__table__
_membership = Membership.__table__
# Prebuilt: `GET /auth/me` runs it on every call.
_MEMBERSHIPS_QUERY = (
    select(
        _organization.c.id, _organization.c.name, _organization.c.slug, _organization.c.created_at, _membership.c.role
    )
    .select_from(_membership.join(_organization, _organization.c.id == _membership.c.org_id))
    .where(_membership.c.user_id == bindparam("user_id"))
    .order_by(_organization.c.name)
)


async def list_memberships(session: AsyncSession, principal: Principal) -> list[OrgMembership]:
    """The caller's organizations. An API key belongs to one organization and sees only that one."""
    rows = (await session.execute(_MEMBERSHIPS_QUERY, {"user_id": principal.user_id})).all()
    memberships = [
        OrgMembership(id=row.id, name=row.name, slug=row.slug, created_at=row.created_at, role=Role(row.role))
        for row in rows
    ]
    if principal.api_key_id is not None:
        memberships = [membership for membership in memberships if membership.id == principal.org_id]
    return memberships


async def list_sessions(session: AsyncSession, user_id: uuid.UUID) -> list[AuthSession]:
    rows = await session.execute(
        select(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > utcnow())
        .order_by(AuthSession.created_at.desc())
    )
    return list(rows.scalars())


async def require_recent_sign_in(session: AsyncSession, principal: Principal, *, within_seconds: int) -> None:
    """Ask for a fresh sign-in before an irreversible action: the caller's sign-in (password, and MFA
    where enabled) must be at most `within_seconds` old; refreshing tokens does not make it newer.

    Raises:
        ReauthenticationRequired: the sign-in is older (or the caller is no signed-in user).
    """
    if within_seconds <= 0:
        return
    started = None
    if principal.session_id is not None:
        started = await session.scalar(select(AuthSession.created_at).where(AuthSession.id == principal.session_id))
    if started is None or utcnow() - started > timedelta(seconds=within_seconds):
        minutes = max(1, within_seconds // 60)
        raise ReauthenticationRequired(
            f"This cannot be undone: sign in again (POST /api/v1/auth/login) and retry within {minutes} minutes"
        )


async def load_user(session: AsyncSession, principal: Principal) -> User:
    user = await session.get(User, principal.user_id)
    if user is None:
        raise InvalidToken("The token is not valid")
    return user


async def change_password(
    session: AsyncSession, settings: Settings, principal: Principal, *, current: str, new: str, meta: RequestMeta
) -> None:
    user = await load_user(session, principal)
    if not await passwords.verify_password(user.password_hash, current):
        raise InvalidCredentials("The current password is wrong")
    check_password_policy(settings, new, email=user.email, name=user.name)
    user.password_hash = await passwords.hash_password(new)
    # Every other sign-in ends: a changed password is often a response to a compromise.
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None), AuthSession.id != principal.session_id)
        .values(revoked_at=utcnow(), revoke_reason="password_changed")
    )
    await record_event(
        session, action="auth.password_changed", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=user.id,
    )  # fmt: skip


async def set_up_mfa(session: AsyncSession, settings: Settings, principal: Principal) -> tuple[str, str]:
    user = await load_user(session, principal)
    if user.mfa_enabled:
        raise MfaAlreadyEnabled("MFA is already enabled; disable it first to set up a new authenticator")
    user.mfa_secret = mfa.new_totp_secret()
    await session.flush()
    return user.mfa_secret, mfa.provisioning_uri(user.mfa_secret, email=user.email, issuer=settings.auth.mfa_issuer)


async def enable_mfa(session: AsyncSession, principal: Principal, *, code: str, meta: RequestMeta) -> list[str]:
    user = await load_user(session, principal)
    if user.mfa_enabled:
        raise MfaAlreadyEnabled("MFA is already enabled")
    if user.mfa_secret is None:
        raise MfaNotSetUp("Call POST /auth/mfa/setup first")
    step = mfa.matching_step(user.mfa_secret, code, last_step=None)
    if step is None:
        raise InvalidMfaCode("The code is wrong; check the authenticator app's clock")
    codes, hashes = mfa.new_recovery_codes()
    user.mfa_enabled = True
    user.mfa_last_step = step
    user.mfa_recovery_codes = hashes
    await record_event(
        session, action="auth.mfa_enabled", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=user.id,
    )  # fmt: skip
    return codes


async def disable_mfa(
    session: AsyncSession, principal: Principal, *, password: str, code: str, meta: RequestMeta
) -> None:
    user = await load_user(session, principal)
    if not user.mfa_enabled or user.mfa_secret is None:
        raise MfaNotEnabled("MFA is not enabled")
    if not await passwords.verify_password(user.password_hash, password):
        raise InvalidCredentials("The password is wrong")
    hashed = mfa.recovery_code_hash(code)
    step = mfa.matching_step(user.mfa_secret, code, last_step=user.mfa_last_step)
    if step is None and not any(tokens.secrets_match_hash(hashed, stored) for stored in user.mfa_recovery_codes):
        raise InvalidMfaCode("The code is wrong or was already used")
    user.mfa_enabled = False
    user.mfa_secret = None
    user.mfa_last_step = None
    user.mfa_recovery_codes = []
    await record_event(
        session, action="auth.mfa_disabled", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=user.id,
    )  # fmt: skip


async def regenerate_recovery_codes(
    session: AsyncSession, principal: Principal, *, code: str, meta: RequestMeta
) -> list[str]:
    user = await load_user(session, principal)
    if not user.mfa_enabled or user.mfa_secret is None:
        raise MfaNotEnabled("MFA is not enabled")
    step = mfa.matching_step(user.mfa_secret, code, last_step=user.mfa_last_step)
    if step is None:
        raise InvalidMfaCode("The code is wrong or was already used")
    user.mfa_last_step = step
    codes, hashes = mfa.new_recovery_codes()
    user.mfa_recovery_codes = hashes
    await record_event(
        session, action="auth.mfa_recovery_codes_regenerated", org_id=principal.org_id, actor=principal.actor,
        meta=meta, target_type="user", target_id=user.id,
    )  # fmt: skip
    return codes


async def issue_first_session(
    session: AsyncSession, settings: Settings, *, user: User, org_id: uuid.UUID | None, meta: RequestMeta
) -> TokenPair:
    """Sign a just-registered user in."""
    user.last_login_at = utcnow()
    return await _start_session(session, settings, user=user, org_id=org_id, mfa_verified=False, meta=meta)
