"""Identity: memberships, sign-ins (sessions and their refresh tokens), API keys and invitations.

The account row itself (`user_account`) is the archive's `user` and is deleted by the erase use
case once every source has run (service.py), not by a source.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.models import ApiKey, AuthSession, Invitation, Membership, Organization, RefreshToken, User
from tessera.core.auth.service import slugify
from tessera.core.personal_data.sources.common import REDACTED, affected, fields, in_org

SESSION_FIELDS = (
    "id", "org_id", "created_at", "expires_at", "revoked_at", "revoke_reason", "ip", "user_agent", "mfa_verified",
)  # fmt: skip
# Never `key_hash`.
API_KEY_FIELDS = (
    "id", "org_id", "name", "prefix", "scopes", "created_at", "expires_at", "last_used_at", "revoked_at",
)  # fmt: skip


class MembershipsSource:
    """Memberships and roles. Erasing also takes the user's name out of the names of their
    organizations that stay (registration names one "<name>'s organization"), and its slug."""

    name = "memberships"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(Membership, Organization.name)
            .join(Organization, Organization.id == Membership.org_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at)
        )
        return [
            {"org_id": m.org_id, "organization": org_name, "role": m.role, "joined_at": m.created_at}
            for m, org_name in rows
        ]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        user_name = await session.scalar(select(User.name).where(User.id == user_id))
        count = await _unname_organizations(session, user_id, org_id, user_name) if user_name else 0
        if org_id is not None:
            await session.execute(
                update(User).where(User.id == user_id, User.default_org_id == org_id).values(default_org_id=None)
            )
        result = await session.execute(
            in_org(delete(Membership).where(Membership.user_id == user_id), Membership.org_id, org_id)
        )
        return count + affected(result)


async def _unname_organizations(
    session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None, user_name: str
) -> int:
    name = user_name.strip()
    if not name:
        return 0
    in_scope = (
        [org_id]
        if org_id is not None
        else list((await session.execute(select(Membership.org_id).where(Membership.user_id == user_id))).scalars())
    )
    pattern = re.compile(re.escape(name), re.IGNORECASE)
    name_slug = slugify(name).rsplit("-", 1)[0]
    count = 0
    for org in (await session.execute(select(Organization).where(Organization.id.in_(in_scope)))).scalars():
        if not pattern.search(org.name):
            continue
        org.name = pattern.sub(REDACTED, org.name)
        if name_slug in org.slug:
            org.slug = slugify(org.name)
        count += 1
    await session.flush()
    return count


class SessionsSource:
    """Sign-ins with the IP and user agent they came from. Refresh tokens are hashes: erased, never exported.
    An organization's erase takes the sign-ins whose active organization it is."""

    name = "sessions"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(AuthSession).where(AuthSession.user_id == user_id).order_by(AuthSession.created_at)
        )
        return [fields(row, *SESSION_FIELDS) for row in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        ids = in_org(select(AuthSession.id).where(AuthSession.user_id == user_id), AuthSession.org_id, org_id)
        tokens = await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(ids.scalar_subquery())))
        sessions = await session.execute(delete(AuthSession).where(AuthSession.id.in_(ids.scalar_subquery())))
        return affected(tokens) + affected(sessions)


class ApiKeysSource:
    """Keys the user created: names, prefixes and scopes are exported, the key hash never."""

    name = "api_keys"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(select(ApiKey).where(ApiKey.created_by_id == user_id).order_by(ApiKey.created_at))
        return [fields(row, *API_KEY_FIELDS) for row in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        result = await session.execute(
            in_org(delete(ApiKey).where(ApiKey.created_by_id == user_id), ApiKey.org_id, org_id)
        )
        return affected(result)


class InvitationsSource:
    """Invitations sent to the user's e-mail (deleted), and those the user sent or accepted
    (kept for the organization, unlinked). Invitees' e-mails are theirs: never exported here."""

    name = "invitations"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        email = await session.scalar(select(User.email).where(User.id == user_id))
        received = await session.execute(
            select(Invitation).where(Invitation.email == email).order_by(Invitation.created_at)
        )
        sent = await session.execute(
            select(Invitation).where(Invitation.invited_by_id == user_id).order_by(Invitation.created_at)
        )
        keep = ("id", "org_id", "role", "created_at", "expires_at", "accepted_at", "revoked_at")
        return {
            "received": [fields(row, *keep) for row in received.scalars()],
            "sent": [fields(row, *keep) for row in sent.scalars()],
        }

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        email = await session.scalar(select(User.email).where(User.id == user_id))
        count = 0
        if email is not None:
            received = await session.execute(
                in_org(delete(Invitation).where(Invitation.email == email), Invitation.org_id, org_id)
            )
            count += affected(received)
        for column in (Invitation.invited_by_id, Invitation.accepted_by_id):
            unlinked = await session.execute(
                in_org(update(Invitation).where(column == user_id), Invitation.org_id, org_id).values({column: None})
            )
            count += affected(unlinked)
        return count
