"""Who is calling: a user signed in with a JWT, or an API key acting for its creator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import Actor
from tessera.core.auth import tokens
from tessera.core.auth.errors import AccountDisabled, InvalidToken, OrganizationNotFound, TokenExpired
from tessera.core.auth.models import ApiKey, AuthSession, Membership, Role, User
from tessera.core.auth.permissions import role_allows, scopes_allow
from tessera.core.db.base import utcnow
from tessera.core.db.session import run_after_transaction
from tessera.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    user: User  # attached to the request's session; use user_id/email after it ends
    user_id: uuid.UUID
    email: str
    org_id: uuid.UUID | None
    role: Role | None
    method: Literal["jwt", "api_key"]
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: tuple[str, ...] | None = None

    def can(self, permission: str) -> bool:
        if self.role is None or not role_allows(self.role, permission):
            return False
        return self.scopes is None or scopes_allow(self.scopes, permission)

    @property
    def actor(self) -> Actor:
        if self.api_key_id is not None:
            return Actor(type="api_key", id=self.api_key_id, label=self.email)
        return Actor(type="user", id=self.user_id, label=self.email)

    @property
    def rate_limit_key(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


async def principal_from_access_token(
    session: AsyncSession, settings: Settings, token: str, *, requested_org: uuid.UUID | None
) -> Principal:
    claims = tokens.decode_access_token(token, key=settings.signing_key, issuer=settings.auth.jwt_issuer)
    org_id = requested_org or claims.org_id
    # One round trip: the user, the sign-in session (revocation) and the membership (role).
    row = (
        await session.execute(
            select(User, AuthSession.revoked_at, AuthSession.expires_at, Membership.role)
            .join(AuthSession, and_(AuthSession.id == claims.session_id, AuthSession.user_id == User.id))
            .outerjoin(Membership, and_(Membership.user_id == User.id, Membership.org_id == org_id))
            .where(User.id == claims.user_id)
        )
    ).one_or_none()
    if row is None:
        raise InvalidToken("The token is not valid")
    user, revoked_at, session_expires_at, role = row
    if revoked_at is not None:
        raise InvalidToken("This sign-in has ended; sign in again")
    if session_expires_at <= utcnow():
        raise TokenExpired("This sign-in has expired; sign in again")
    if not user.is_active:
        raise AccountDisabled("The account has been disabled")
    if role is None and requested_org is not None:
        raise OrganizationNotFound("Organization not found")
    return Principal(
        user=user,
        user_id=user.id,
        email=user.email,
        org_id=org_id if role is not None else None,
        role=role,
        method="jwt",
        session_id=claims.session_id,
    )


async def principal_from_api_key(
    session: AsyncSession,
    settings: Settings,
    key: str,
    *,
    requested_org: uuid.UUID | None,
) -> Principal:
    prefix = tokens.api_key_prefix(key)
    if prefix is None:
        raise InvalidToken("The API key is not valid")
    row = (
        await session.execute(
            select(ApiKey, User, Membership.role)
            .join(User, User.id == ApiKey.created_by_id)
            .outerjoin(Membership, and_(Membership.user_id == User.id, Membership.org_id == ApiKey.org_id))
            .where(ApiKey.prefix == prefix)
        )
    ).one_or_none()
    # The hash is compared even for unknown prefixes, so timing does not reveal which prefixes exist.
    matches = tokens.secrets_match(key, row[0].key_hash if row else "0" * 64)
    if row is None or not matches:
        raise InvalidToken("The API key is not valid")
    api_key, user, role = row
    now = utcnow()
    if api_key.revoked_at is not None:
        raise InvalidToken("The API key has been revoked")
    if api_key.expires_at is not None and api_key.expires_at <= now:
        raise TokenExpired("The API key has expired")
    if not user.is_active or role is None:
        # The creator left the organization or was disabled: their keys stop working with them.
        raise InvalidToken("The API key is no longer valid")
    if requested_org is not None and requested_org != api_key.org_id:
        raise OrganizationNotFound("Organization not found")
    interval = timedelta(seconds=settings.auth.api_key_touch_interval_seconds)
    if api_key.last_used_at is None or now - api_key.last_used_at >= interval:
        # After the request, in its own short transaction: read-only requests stay read-only, and
        # a burst of calls writes the timestamp at most once per interval.
        async def touch(side: AsyncSession) -> None:
            await side.execute(update(ApiKey).where(ApiKey.id == api_key.id).values(last_used_at=now))

        run_after_transaction(session, touch)
    return Principal(
        user=user,
        user_id=user.id,
        email=user.email,
        org_id=api_key.org_id,
        role=role,
        method="api_key",
        api_key_id=api_key.id,
        scopes=tuple(api_key.scopes),
    )
