"""Who is calling: a user signed in with a JWT, or an API key acting for its creator."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, bindparam, select, update
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
class UserSnapshot:
    """The caller's user row as read when the request was authenticated (plain values, no ORM).

    Load the `User` entity with `session.get(User, principal.user_id)` to change it.
    """

    id: uuid.UUID
    email: str
    name: str
    is_active: bool
    mfa_enabled: bool
    created_at: datetime
    last_login_at: datetime | None
    default_org_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Principal:
    user: UserSnapshot
    org_id: uuid.UUID | None
    role: Role | None
    method: Literal["jwt", "api_key"]
    session_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    scopes: tuple[str, ...] | None = None
    # When the credential stops being valid (token, sign-in or key expiry), for caches.
    valid_until: datetime | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

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


# Authentication runs on every request, so its statements are built once, as Core selects of plain
# columns: building an ORM select and hydrating entities cost more than the query itself.
_user = User.__table__
_session = AuthSession.__table__
_membership = Membership.__table__
_api_key = ApiKey.__table__
_USER_COLUMNS = (
    _user.c.id,
    _user.c.email,
    _user.c.name,
    _user.c.is_active,
    _user.c.mfa_enabled,
    _user.c.created_at,
    _user.c.last_login_at,
    _user.c.default_org_id,
)
_ACCESS_TOKEN_QUERY = (
    select(*_USER_COLUMNS, _session.c.revoked_at, _session.c.expires_at, _membership.c.role)
    .select_from(
        _user.join(
            _session, and_(_session.c.id == bindparam("session_id"), _session.c.user_id == _user.c.id)
        ).outerjoin(_membership, and_(_membership.c.user_id == _user.c.id, _membership.c.org_id == bindparam("org_id")))
    )
    .where(_user.c.id == bindparam("user_id"))
)
_API_KEY_QUERY = (
    select(
        *_USER_COLUMNS,
        _api_key.c.id.label("key_id"),
        _api_key.c.org_id.label("key_org_id"),
        _api_key.c.key_hash,
        _api_key.c.scopes,
        _api_key.c.expires_at.label("key_expires_at"),
        _api_key.c.last_used_at,
        _api_key.c.revoked_at.label("key_revoked_at"),
        _membership.c.role,
    )
    .select_from(
        _api_key.join(_user, _user.c.id == _api_key.c.created_by_id).outerjoin(
            _membership, and_(_membership.c.user_id == _user.c.id, _membership.c.org_id == _api_key.c.org_id)
        )
    )
    .where(_api_key.c.prefix == bindparam("prefix"))
)


def user_snapshot(row: Any) -> UserSnapshot:
    """A snapshot from anything with the user columns: a `User` entity or a row of them."""
    return UserSnapshot(
        id=row.id,
        email=row.email,
        name=row.name,
        is_active=row.is_active,
        mfa_enabled=row.mfa_enabled,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
        default_org_id=row.default_org_id,
    )


async def principal_from_access_token(
    session: AsyncSession, settings: Settings, token: str, *, requested_org: uuid.UUID | None
) -> Principal:
    claims = tokens.decode_access_token(token, key=settings.signing_key, issuer=settings.auth.jwt_issuer)
    org_id = requested_org or claims.org_id
    # One round trip: the user, the sign-in session (revocation) and the membership (role).
    row = (
        await session.execute(
            _ACCESS_TOKEN_QUERY, {"session_id": claims.session_id, "org_id": org_id, "user_id": claims.user_id}
        )
    ).one_or_none()
    if row is None:
        raise InvalidToken("The token is not valid")
    if row.revoked_at is not None:
        raise InvalidToken("This sign-in has ended; sign in again")
    if row.expires_at <= utcnow():
        raise TokenExpired("This sign-in has expired; sign in again")
    if not row.is_active:
        raise AccountDisabled("The account has been disabled")
    role = Role(row.role) if row.role is not None else None
    if role is None and requested_org is not None:
        raise OrganizationNotFound("Organization not found")
    return Principal(
        user=user_snapshot(row),
        org_id=org_id if role is not None else None,
        role=role,
        method="jwt",
        session_id=claims.session_id,
        valid_until=min(claims.expires_at, row.expires_at),
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
    row = (await session.execute(_API_KEY_QUERY, {"prefix": prefix})).one_or_none()
    # The hash is compared even for unknown prefixes, so timing does not reveal which prefixes exist.
    matches = tokens.secrets_match(key, row.key_hash if row else "0" * 64)
    if row is None or not matches:
        raise InvalidToken("The API key is not valid")
    now = utcnow()
    if row.key_revoked_at is not None:
        raise InvalidToken("The API key has been revoked")
    if row.key_expires_at is not None and row.key_expires_at <= now:
        raise TokenExpired("The API key has expired")
    if not row.is_active or row.role is None:
        # The creator left the organization or was disabled: their keys stop working with them.
        raise InvalidToken("The API key is no longer valid")
    if requested_org is not None and requested_org != row.key_org_id:
        raise OrganizationNotFound("Organization not found")
    interval = timedelta(seconds=settings.auth.api_key_touch_interval_seconds)
    key_id: uuid.UUID = row.key_id
    if row.last_used_at is None or now - row.last_used_at >= interval:
        # After the request, in its own short transaction: read-only requests stay read-only, and
        # a burst of calls writes the timestamp at most once per interval.
        schedule_api_key_touch(session, key_id, now)
    return Principal(
        user=user_snapshot(row),
        org_id=row.key_org_id,
        role=Role(row.role),
        method="api_key",
        api_key_id=key_id,
        scopes=tuple(row.scopes),
        valid_until=row.key_expires_at,
    )


def schedule_api_key_touch(session: AsyncSession, key_id: uuid.UUID, now: datetime) -> None:
    """Record the key's use after the request, in its own short transaction."""

    async def touch(side: AsyncSession) -> None:
        await side.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))

    run_after_transaction(session, touch)


@dataclass(slots=True)
class _CacheEntry:
    principal: Principal
    generation: int
    fresh_until: float  # time.monotonic()
    valid_until: datetime | None  # token, sign-in or key expiry


class PrincipalCache:
    """Principals recently resolved from a credential, so most requests skip the JWT check and the
    database round trip.

    An entry is used only while (a) it is younger than `ttl_seconds`, (b) its credential has not
    expired, and (c) no write request has finished in this process since it was read (the
    `WriteClock` generation). So a sign-out, revoked key or role change made through this process
    applies at once; one made through another process applies within `ttl_seconds`.
    """

    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[tuple[str, uuid.UUID | None], _CacheEntry] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._memberships: dict[uuid.UUID, tuple[Any, int, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def get(self, credential: str, org: uuid.UUID | None, generation: int) -> Principal | None:
        key = (credential, org)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if (
            entry.generation != generation
            or time.monotonic() >= entry.fresh_until
            or (entry.valid_until is not None and entry.valid_until <= utcnow())
        ):
            del self._entries[key]
            return None
        return entry.principal

    def put(
        self,
        credential: str,
        org: uuid.UUID | None,
        principal: Principal,
        *,
        generation: int,
        valid_until: datetime | None,
    ) -> None:
        if not self.enabled:
            return
        if len(self._entries) >= self.max_entries:
            # Oldest first: dicts keep insertion order.
            del self._entries[next(iter(self._entries))]
        self._entries[(credential, org)] = _CacheEntry(
            principal, generation, time.monotonic() + self.ttl_seconds, valid_until
        )

    def get_memberships(self, user_id: uuid.UUID, generation: int) -> Any | None:
        """A user's organizations and roles as last read, under the same rules as principals."""
        entry = self._memberships.get(user_id)
        if entry is None:
            return None
        value, read_at_generation, fresh_until = entry
        if read_at_generation != generation or time.monotonic() >= fresh_until:
            del self._memberships[user_id]
            return None
        return value

    def put_memberships(self, user_id: uuid.UUID, value: Any, *, generation: int) -> None:
        if not self.enabled:
            return
        if len(self._memberships) >= self.max_entries:
            del self._memberships[next(iter(self._memberships))]
        self._memberships[user_id] = (value, generation, time.monotonic() + self.ttl_seconds)

    def touch_due(self, key_id: uuid.UUID, interval_seconds: float) -> bool:
        """Whether an API key's `last_used_at` should be written now (at most once an interval)."""
        last = self._touched.get(key_id)
        if last is not None and time.monotonic() - last < interval_seconds:
            return False
        self.note_touch_decided(key_id)
        return True

    def note_touch_decided(self, key_id: uuid.UUID) -> None:
        """The database path has just judged the key's last use (written it, or found it recent)."""
        if len(self._touched) >= self.max_entries:
            self._touched.clear()
        self._touched[key_id] = time.monotonic()
