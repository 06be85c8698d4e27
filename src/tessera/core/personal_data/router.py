from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from tessera.core.auth.dependencies import CurrentPrincipal, RequestMetaDep, SettingsDep, require
from tessera.core.auth.errors import LastOwner, MemberNotFound, ReauthenticationRequired
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.documents.storage.base import BlobStore
from tessera.core.errors import AppError, PermissionDenied
from tessera.core.personal_data import service
from tessera.core.personal_data.errors import CannotEraseYourself, SignInRequired, SoleOwner
from tessera.core.personal_data.schemas import ErasureRead, PersonalDataArchive
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(tags=["personal data"], dependencies=[rate_limit("default")])
MemberWriter = Annotated[Principal, require("members:write")]


async def get_blob_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blob_store
    return store


BlobStoreDep = Annotated[BlobStore, Depends(get_blob_store)]


@router.get(
    "/me/export",
    response_model=PersonalDataArchive,
    summary="Download all your personal data",
    description="One JSON archive (`tessera.personal-data/v1`) of everything Tessera holds about you, in every "
    "organization: your account, memberships and roles, sign-ins (IP address, user agent, times), API keys "
    "(names, prefixes, scopes), conversations with their messages and your feedback, moderation flags, usage, "
    "the audit events you caused, and each product module's data. Never passwords, secrets or their hashes. "
    "Served as an attachment; recorded in the audit trail (`personal_data.exported`). Needs a signed-in user "
    "(an API key gets 403 `sign_in_required`).",
    responses={403: SignInRequired.schema()},
)
async def export_my_data(
    principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep, response: Response
) -> PersonalDataArchive:
    archive = await service.export_personal_data(session, principal, meta=meta)
    day = archive.exported_at.date().isoformat()
    response.headers["Content-Disposition"] = f'attachment; filename="tessera-personal-data-{day}.json"'
    return archive


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase your account and personal data",
    description="Deletes your conversations and messages, sign-ins, API keys, MFA settings, memberships, "
    "moderation flags and every product module's data about you, anonymises your usage, unlinks you from what "
    "you created for your organizations (documents, collections, assistants), and deletes your account. Audit "
    "events keep what happened but lose who: your id becomes a random tombstone, and your IP addresses, user "
    "agents, e-mail and name are scrubbed. An organization whose only member you are is deleted with you. Cannot "
    "be undone. 409 `sole_owner` while you are the only owner of an organization with other members: make one "
    "of them owner first. Needs a signed-in user (an API key gets 403 `sign_in_required`) who signed in recently: "
    "a sign-in older than `auth.reauthentication_seconds` (15 minutes by default; refreshing tokens does not "
    "count) gets 403 `reauthentication_required`: sign in again with `POST /auth/login` and retry.",
    responses={
        403: AppError.schemas(
            SignInRequired,
            ReauthenticationRequired,
            description="An API key (`sign_in_required`), or a sign-in too old (`reauthentication_required`).",
        ),
        409: SoleOwner.schema(),
    },
)
async def erase_me(
    principal: CurrentPrincipal, session: DbSession, meta: RequestMetaDep, store: BlobStoreDep, settings: SettingsDep
) -> Response:
    await service.erase_account(
        session, principal, store=store, meta=meta, reauthentication_seconds=settings.auth.reauthentication_seconds
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/members/{user_id}/erase",
    response_model=ErasureRead,
    summary="Erase a member's personal data in this organization",
    description="For admins and owners (`members:write`). Erases the member's personal data in the active "
    "organization (their conversations and messages, moderation flags, sign-ins and API keys here; usage "
    "anonymised; audit events redacted) and removes them from it. If they belong to no other organization, "
    "their account is erased too (as `DELETE /me`; `account_erased: true`). A user who is not a member here is "
    "a 404; yourself is a 422 (use `DELETE /me`); an owner can only be erased by an owner (403).",
    responses={
        403: PermissionDenied.schema(),
        404: MemberNotFound.schema(),
        409: LastOwner.schema(),
        422: CannotEraseYourself.schema(),
    },
)
async def erase_member(
    user_id: uuid.UUID, principal: MemberWriter, session: DbSession, meta: RequestMetaDep, store: BlobStoreDep
) -> ErasureRead:
    erasure = await service.erase_member(session, principal, user_id=user_id, store=store, meta=meta)
    return ErasureRead(account_erased=erasure.account_erased, sources=erasure.sources)
