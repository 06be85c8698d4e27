"""Organizations, their members and invitations."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.service import Actor, RequestMeta, record_event
from tessera.core.auth import tokens
from tessera.core.auth.errors import (
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationNotFound,
    LastOwner,
    MemberNotFound,
    OrganizationNotFound,
)
from tessera.core.auth.models import ApiKey, AuthSession, Invitation, Membership, Organization, Role, User
from tessera.core.auth.permissions import role_rank
from tessera.core.auth.principal import Principal
from tessera.core.auth.service import create_organization, load_user, normalise_email
from tessera.core.db.base import utcnow
from tessera.core.errors import PermissionDenied
from tessera.core.pagination import PageParams, paginate
from tessera.settings import Settings


async def create_org(session: AsyncSession, principal: Principal, *, name: str, meta: RequestMeta) -> Organization:
    org = await create_organization(session, name=name, owner=await load_user(session, principal))
    await record_event(
        session, action="org.created", org_id=org.id, actor=principal.actor, meta=meta,
        target_type="organization", target_id=org.id, details={"name": name},
    )  # fmt: skip
    return org


async def get_org(session: AsyncSession, org_id: uuid.UUID) -> Organization:
    org = await session.get(Organization, org_id)
    if org is None:
        raise OrganizationNotFound("Organization not found")
    return org


async def rename_org(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, name: str, meta: RequestMeta
) -> Organization:
    org = await get_org(session, org_id)
    old = org.name
    org.name = name
    await record_event(
        session, action="org.renamed", org_id=org.id, actor=principal.actor, meta=meta,
        target_type="organization", target_id=org.id, details={"from": old, "to": name},
    )  # fmt: skip
    await session.flush()
    return org


async def list_members(
    session: AsyncSession, *, org_id: uuid.UUID, params: PageParams
) -> tuple[list[tuple[Membership, User]], str | None]:
    query = select(Membership).where(Membership.org_id == org_id)
    memberships, cursor = await paginate(session, query, key=Membership.id, params=params)
    users = {
        user.id: user
        for user in (await session.execute(select(User).where(User.id.in_([m.user_id for m in memberships])))).scalars()
    }
    return [(membership, users[membership.user_id]) for membership in memberships], cursor


async def _membership(session: AsyncSession, *, org_id: uuid.UUID, user_id: uuid.UUID) -> Membership:
    membership = (
        await session.execute(
            select(Membership).where(Membership.org_id == org_id, Membership.user_id == user_id).with_for_update()
        )
    ).scalar_one_or_none()
    if membership is None:
        raise MemberNotFound("Member not found")
    return membership


async def _lock_owners(session: AsyncSession, org_id: uuid.UUID) -> int:
    """Lock the organization's owner rows and count them.

    Every role change and removal takes this lock first, in id order, before the member's own row:
    two owners demoting each other at once then queue up (one gets 409 `last_owner`) instead of
    deadlocking on each other's rows, and the last two owners cannot both be demoted.
    """
    owners = (
        await session.execute(
            select(Membership.id)
            .where(Membership.org_id == org_id, Membership.role == Role.owner)
            .order_by(Membership.id)
            .with_for_update()
        )
    ).all()
    return len(owners)


def _check_can_manage(principal: Principal, *, current: Role | None, new: Role | None) -> None:
    """Only owners may grant, change or remove the owner role."""
    touches_owner = Role.owner in (current, new)
    if touches_owner and not principal.can("members:manage_owners"):
        raise PermissionDenied("Only an owner can grant or remove the owner role")
    assert principal.role is not None
    if current is not None and role_rank(current) > role_rank(principal.role):
        raise PermissionDenied("You cannot manage a member whose role is above yours")


async def change_role(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, user_id: uuid.UUID, role: Role, meta: RequestMeta
) -> tuple[Membership, User]:
    owners = await _lock_owners(session, org_id)
    membership = await _membership(session, org_id=org_id, user_id=user_id)
    _check_can_manage(principal, current=membership.role, new=role)
    if membership.role == Role.owner and role != Role.owner and owners <= 1:
        raise LastOwner("An organization must keep at least one owner; make someone else owner first")
    previous = membership.role
    membership.role = role
    await session.flush()
    await record_event(
        session, action="member.role_changed", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=user_id, details={"from": previous.value, "to": role.value},
    )  # fmt: skip
    user = await session.get(User, user_id)
    assert user is not None
    return membership, user


async def remove_member(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, user_id: uuid.UUID, meta: RequestMeta
) -> None:
    # Anyone may leave, but only when signed in: an API key (even a read-only one) must not be able
    # to take its creator out of the organization without the permission to remove members.
    leaving = user_id == principal.user_id and principal.api_key_id is None
    if not leaving and not principal.can("members:write"):
        raise PermissionDenied("This needs the 'members:write' permission", details={"permission": "members:write"})
    owners = await _lock_owners(session, org_id)
    membership = await _membership(session, org_id=org_id, user_id=user_id)
    if user_id != principal.user_id:
        _check_can_manage(principal, current=membership.role, new=None)
    if membership.role == Role.owner and owners <= 1:
        raise LastOwner("An organization must keep at least one owner; make someone else owner first")
    await session.delete(membership)
    # The member's API keys for this organization stop with their membership.
    now = utcnow()
    await session.execute(
        update(ApiKey)
        .where(ApiKey.org_id == org_id, ApiKey.created_by_id == user_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.org_id == org_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason="removed_from_org")
    )
    await record_event(
        session, action="member.removed" if user_id != principal.user_id else "member.left", org_id=org_id,
        actor=principal.actor, meta=meta, target_type="user", target_id=user_id,
        details={"role": membership.role.value},
    )  # fmt: skip
    await session.flush()


async def invite(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    *,
    org_id: uuid.UUID,
    email: str,
    role: Role,
    meta: RequestMeta,
) -> tuple[Invitation, str]:
    """Returns the invitation and its token (shown once; the link a mailer would send)."""
    _check_can_manage(principal, current=None, new=role)
    email = normalise_email(email)
    already = (
        await session.execute(
            select(func.count())
            .select_from(Membership)
            .join(User, User.id == Membership.user_id)
            .where(Membership.org_id == org_id, User.email == email)
        )
    ).scalar_one()
    if already:
        raise AlreadyMember("This person is already a member")
    # A new invitation replaces any open one for the same address.
    now = utcnow()
    await session.execute(
        update(Invitation)
        .where(
            Invitation.org_id == org_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = tokens.new_secret()
    invitation = Invitation(
        org_id=org_id,
        email=email,
        role=role,
        token_hash=tokens.hash_secret(token),
        invited_by_id=principal.user_id,
        expires_at=now + timedelta(seconds=settings.auth.invitation_ttl_seconds),
    )
    session.add(invitation)
    await session.flush()
    await record_event(
        session, action="member.invited", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="invitation", target_id=invitation.id, details={"email": email, "role": role.value},
    )  # fmt: skip
    return invitation, token


async def list_invitations(
    session: AsyncSession, *, org_id: uuid.UUID, params: PageParams
) -> tuple[list[Invitation], str | None]:
    query = select(Invitation).where(
        Invitation.org_id == org_id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None)
    )
    rows, cursor = await paginate(session, query, key=Invitation.id, params=params)
    return list(rows), cursor


async def revoke_invitation(
    session: AsyncSession, principal: Principal, *, org_id: uuid.UUID, invitation_id: uuid.UUID, meta: RequestMeta
) -> None:
    invitation = (
        await session.execute(
            select(Invitation).where(
                Invitation.id == invitation_id,
                Invitation.org_id == org_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
            )
        )
    ).scalar_one_or_none()
    if invitation is None:
        raise InvitationNotFound("Invitation not found")
    invitation.revoked_at = utcnow()
    await record_event(
        session, action="member.invitation_revoked", org_id=org_id, actor=principal.actor, meta=meta,
        target_type="invitation", target_id=invitation.id, details={"email": invitation.email},
    )  # fmt: skip
    await session.flush()


async def find_open_invitation(session: AsyncSession, token: str) -> Invitation:
    invitation = (
        await session.execute(select(Invitation).where(Invitation.token_hash == tokens.hash_secret(token)))
    ).scalar_one_or_none()
    if (
        invitation is None
        or invitation.accepted_at is not None
        or invitation.revoked_at is not None
        or invitation.expires_at <= utcnow()
    ):
        raise InvitationNotFound("The invitation does not exist, has expired, or was already used")
    return invitation


def check_invitation_email(invitation: Invitation, email: str) -> None:
    if normalise_email(email) != invitation.email:
        raise InvitationEmailMismatch("This invitation was sent to another e-mail address")


async def accept_invitation(
    session: AsyncSession, *, invitation: Invitation, user: User, meta: RequestMeta
) -> Membership:
    check_invitation_email(invitation, user.email)
    if await session.scalar(
        select(Membership.id).where(Membership.org_id == invitation.org_id, Membership.user_id == user.id)
    ):
        raise AlreadyMember("You are already a member of this organization")
    # Guard against two concurrent accepts of one invitation.
    claimed = await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None))
        .values(accepted_at=utcnow(), accepted_by_id=user.id)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise InvitationNotFound("The invitation was already used")
    membership = Membership(org_id=invitation.org_id, user_id=user.id, role=invitation.role)
    session.add(membership)
    if user.default_org_id is None:
        user.default_org_id = invitation.org_id
    await session.flush()
    await record_event(
        session, action="member.joined", org_id=invitation.org_id, actor=Actor("user", user.id, user.email),
        meta=meta, target_type="user", target_id=user.id,
        details={"role": invitation.role.value, "invitation_id": str(invitation.id)},
    )  # fmt: skip
    return membership


async def accept_invitation_for(
    session: AsyncSession, principal: Principal, *, token: str, meta: RequestMeta
) -> tuple[Membership, Organization]:
    invitation = await find_open_invitation(session, token)
    membership = await accept_invitation(
        session, invitation=invitation, user=await load_user(session, principal), meta=meta
    )
    return membership, await get_org(session, invitation.org_id)
