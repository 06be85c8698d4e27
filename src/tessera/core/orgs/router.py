from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, status

from tessera.core.auth.dependencies import CurrentPrincipal, RequestMetaDep, SettingsDep, require
from tessera.core.auth.errors import (
    AlreadyMember,
    InvitationEmailMismatch,
    InvitationNotFound,
    LastOwner,
    MemberNotFound,
    OrganizationNotFound,
)
from tessera.core.auth.models import Membership, User
from tessera.core.auth.principal import Principal
from tessera.core.auth.service import list_memberships
from tessera.core.db.session import DbSession
from tessera.core.errors import PermissionDenied
from tessera.core.orgs import service
from tessera.core.orgs.schemas import (
    InvitationAccept,
    InvitationAccepted,
    InvitationCreate,
    InvitationCreated,
    InvitationPage,
    InvitationRead,
    MemberPage,
    MemberRead,
    MemberUpdate,
    OrganizationCreate,
    OrganizationRead,
    OrganizationUpdate,
)
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(tags=["organizations"], dependencies=[rate_limit("default")])

OrgReader = Annotated[Principal, require("org:read")]
OrgWriter = Annotated[Principal, require("org:write")]
MemberReader = Annotated[Principal, require("members:read")]
MemberWriter = Annotated[Principal, require("members:write")]
MemberSelf = Annotated[Principal, require("members:read")]


def _member(row: tuple[Membership, User]) -> MemberRead:
    membership, user = row
    return MemberRead(
        user_id=user.id, email=user.email, name=user.name, role=membership.role, joined_at=membership.created_at
    )


@router.get(
    "/orgs",
    response_model=list[OrganizationRead],
    summary="Your organizations",
    description="Every organization you belong to; with an API key, only the key's own organization.",
)
async def list_orgs(principal: CurrentPrincipal, session: DbSession) -> list[OrganizationRead]:
    return [OrganizationRead.model_validate(org) for org in await list_memberships(session, principal)]


@router.post(
    "/orgs",
    response_model=OrganizationRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create an organization",
    description="You become its owner. Switch to it with `/auth/switch-org` or `X-Org-Id`.",
)
async def create_org(
    body: OrganizationCreate, principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep
) -> OrganizationRead:
    if principal.api_key_id is not None:
        raise PermissionDenied("API keys cannot create organizations")
    org = await service.create_org(session, principal, name=body.name, meta=meta)
    return OrganizationRead.model_validate(org)


@router.get(
    "/orgs/current",
    response_model=OrganizationRead,
    summary="The active organization",
    responses={404: OrganizationNotFound.schema()},
)
async def current_org(principal: OrgReader, session: DbSession) -> OrganizationRead:
    assert principal.org_id is not None
    return OrganizationRead.model_validate(await service.get_org(session, principal.org_id))


@router.patch("/orgs/current", response_model=OrganizationRead, summary="Rename the active organization")
async def update_org(
    body: OrganizationUpdate, principal: OrgWriter, session: DbSession, meta: RequestMetaDep
) -> OrganizationRead:
    assert principal.org_id is not None
    org = await service.rename_org(session, principal, org_id=principal.org_id, name=body.name, meta=meta)
    return OrganizationRead.model_validate(org)


@router.get("/members", response_model=MemberPage, summary="Members of the active organization")
async def list_members(principal: MemberReader, session: DbSession, page: PageParamsDep) -> MemberPage:
    assert principal.org_id is not None
    rows, cursor = await service.list_members(session, org_id=principal.org_id, params=page)
    return MemberPage(items=[_member(row) for row in rows], next_cursor=cursor)


@router.patch(
    "/members/{user_id}",
    response_model=MemberRead,
    summary="Change a member's role",
    description="Only owners grant or remove the owner role; the last owner cannot be demoted (409 `last_owner`).",
    responses={404: MemberNotFound.schema(), 409: LastOwner.schema()},
)
async def change_member_role(
    user_id: uuid.UUID, body: MemberUpdate, principal: MemberWriter, session: DbSession, meta: RequestMetaDep
) -> MemberRead:
    assert principal.org_id is not None
    row = await service.change_role(
        session, principal, org_id=principal.org_id, user_id=user_id, role=body.role, meta=meta
    )
    return _member(row)


@router.delete(
    "/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (or leave)",
    description="Admins remove members; anyone may remove themselves. Their API keys and sign-ins for this "
    "organization end. The last owner cannot leave (409 `last_owner`).",
    responses={404: MemberNotFound.schema(), 409: LastOwner.schema()},
)
async def remove_member(user_id: uuid.UUID, principal: MemberSelf, session: DbSession, meta: RequestMetaDep) -> None:
    assert principal.org_id is not None
    await service.remove_member(session, principal, org_id=principal.org_id, user_id=user_id, meta=meta)


@router.post(
    "/members/invitations",
    response_model=InvitationCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Invite someone by e-mail",
    description="Returns a token, shown once, to send to the invitee. They accept it at "
    "`/invitations/accept` when signed in, or pass it as `invitation_token` to `/auth/register`.",
    responses={409: AlreadyMember.schema()},
)
async def invite(
    body: InvitationCreate, principal: MemberWriter, session: DbSession, settings: SettingsDep, meta: RequestMetaDep
) -> InvitationCreated:
    assert principal.org_id is not None
    invitation, token = await service.invite(
        session, settings, principal, org_id=principal.org_id, email=body.email, role=body.role, meta=meta
    )
    return InvitationCreated(**InvitationRead.model_validate(invitation).model_dump(), token=token)


@router.get("/members/invitations", response_model=InvitationPage, summary="Open invitations")
async def list_invitations(principal: MemberWriter, session: DbSession, page: PageParamsDep) -> InvitationPage:
    assert principal.org_id is not None
    rows, cursor = await service.list_invitations(session, org_id=principal.org_id, params=page)
    return InvitationPage(items=[InvitationRead.model_validate(row) for row in rows], next_cursor=cursor)


@router.delete(
    "/members/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Withdraw an invitation",
    responses={404: InvitationNotFound.schema()},
)
async def revoke_invitation(
    invitation_id: uuid.UUID, principal: MemberWriter, session: DbSession, meta: RequestMetaDep
) -> None:
    assert principal.org_id is not None
    await service.revoke_invitation(session, principal, org_id=principal.org_id, invitation_id=invitation_id, meta=meta)


@router.post(
    "/invitations/accept",
    response_model=InvitationAccepted,
    summary="Accept an invitation",
    description="The signed-in user's e-mail must be the one invited.",
    responses={404: InvitationNotFound.schema(), 403: InvitationEmailMismatch.schema(), 409: AlreadyMember.schema()},
)
async def accept_invitation(
    body: InvitationAccept, principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep
) -> InvitationAccepted:
    if principal.api_key_id is not None:
        raise PermissionDenied("Sign in as the invited user to accept an invitation")
    membership, org = await service.accept_invitation_for(session, principal, token=body.token, meta=meta)
    return InvitationAccepted(org=OrganizationRead.model_validate(org), role=membership.role)
