"""Export and erasure of a user's personal data, over every registered source.

Erasure deletes the account row rather than keeping a tombstone account: every reference to the
user is deleted, unlinked (NULL) or, in the audit trail, replaced by a random tombstone id, so
nothing needs the row any more, and a row kept "for nothing" would still be data about someone
(when they joined, their last sign-in). The e-mail address becomes free to register again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.models import AuditChainHead, AuditEvent
from tessera.core.audit.service import Actor, RequestMeta, record_event
from tessera.core.auth.models import Membership, Organization, Role, User
from tessera.core.auth.principal import Principal
from tessera.core.auth.service import load_user, require_recent_sign_in
from tessera.core.db.base import utcnow
from tessera.core.db.session import is_sqlite
from tessera.core.documents import service as documents_service
from tessera.core.documents.storage.base import BlobStore
from tessera.core.orgs import service as orgs_service
from tessera.core.personal_data.errors import CannotEraseYourself, SignInRequired, SoleOwner
from tessera.core.personal_data.registry import PersonalDataSource, erasure_order, sources
from tessera.core.personal_data.schemas import ARCHIVE_FORMAT, AccountExport, PersonalDataArchive
from tessera.core.personal_data.sources.common import affected

# Who erased an account they no longer have: no id, no label (the audit trail keeps no trace of them).
ERASED_USER = Actor(type="user")


@dataclass(frozen=True, slots=True)
class Erasure:
    account_erased: bool
    sources: dict[str, int]
    organizations_deleted: list[uuid.UUID] = field(default_factory=list)


def _require_sign_in(principal: Principal) -> None:
    # An API key acts in one organization for automation; the archive spans every organization,
    # and erasure cannot be undone: both need the person, signed in.
    if principal.api_key_id is not None:
        raise SignInRequired("Sign in as the user to export or erase personal data; API keys cannot")


async def export_personal_data(
    session: AsyncSession, principal: Principal, *, meta: RequestMeta
) -> PersonalDataArchive:
    """Everything every source holds about the caller, as one archive; audited."""
    _require_sign_in(principal)
    user = await load_user(session, principal)
    data = {source.name: to_jsonable_python(await source.export(session, user.id)) for source in sources()}
    await record_event(
        session, action="personal_data.exported", org_id=principal.org_id, actor=principal.actor, meta=meta,
        target_type="user", target_id=user.id, details={"sources": sorted(data)},
    )  # fmt: skip
    return PersonalDataArchive(
        format=ARCHIVE_FORMAT, exported_at=utcnow(), user=AccountExport.model_validate(user), sources=data
    )


async def erase_account(
    session: AsyncSession, principal: Principal, *, store: BlobStore, meta: RequestMeta, reauthentication_seconds: int
) -> Erasure:
    """Erase the caller everywhere, then their account.

    Raises:
        SoleOwner: they are the only owner of an organization that has other members.
        SignInRequired: the caller is an API key.
        ReauthenticationRequired: they signed in more than `reauthentication_seconds` ago (0: not asked).
    """
    _require_sign_in(principal)
    await require_recent_sign_in(session, principal, within_seconds=reauthentication_seconds)
    user_id = principal.user_id
    leaving, deleting = await _plan_account_erasure(session, user_id)
    counts = await _erase_sources(session, user_id, None, erasure_order())
    for org_id in deleting:
        await _delete_organization(session, org_id, store)
    await session.execute(delete(User).where(User.id == user_id))
    # The erasure is recorded with no trace of the person: no id, label, IP or user agent.
    bare = RequestMeta(request_id=meta.request_id)
    for org_id in leaving:
        await record_event(
            session, action="personal_data.erased", org_id=org_id, actor=ERASED_USER, meta=bare,
            target_type="user", details={"scope": "account"},
        )  # fmt: skip
    await record_event(
        session, action="personal_data.erased", org_id=None, actor=ERASED_USER, meta=bare, target_type="user",
        details={
            "scope": "account",
            "organizations_left": len(leaving),
            "organizations_deleted": [str(org_id) for org_id in deleting],
            "sources": counts,
        },
    )  # fmt: skip
    return Erasure(account_erased=True, sources=counts, organizations_deleted=deleting)


async def erase_member(
    session: AsyncSession, principal: Principal, *, user_id: uuid.UUID, store: BlobStore, meta: RequestMeta
) -> Erasure:
    """An admin erases a member's personal data in the active organization and removes them from
    it; a member left in no organization is erased altogether, account included.

    Raises:
        CannotEraseYourself: the caller named themselves (use `erase_account`).
        MemberNotFound: no such member in this organization (another organization's user included).
        PermissionDenied: the member is an owner (or otherwise above the caller) and the caller is not.
    """
    assert principal.org_id is not None
    org_id = principal.org_id
    if user_id == principal.user_id:
        raise CannotEraseYourself("To erase your own account use DELETE /api/v1/me")
    # The same checks and effects as removing the member (404, 403 for owners, keys and sign-ins end).
    await orgs_service.remove_member(session, principal, org_id=org_id, user_id=user_id, meta=meta)
    order = erasure_order()
    counts = await _erase_sources(session, user_id, org_id, order)
    remaining = await session.scalar(select(func.count()).select_from(Membership).where(Membership.user_id == user_id))
    account_erased = not remaining
    if account_erased:
        more = await _erase_sources(session, user_id, None, order)
        counts = {name: counts.get(name, 0) + more.get(name, 0) for name in {**counts, **more}}
        await session.execute(delete(User).where(User.id == user_id))
    await record_event(
        session, action="personal_data.erased", org_id=org_id, actor=principal.actor, meta=meta, target_type="user",
        details={"scope": "organization", "account_erased": account_erased, "sources": counts},
    )  # fmt: skip
    return Erasure(account_erased=account_erased, sources=counts)


async def _erase_sources(
    session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None, order: list[PersonalDataSource]
) -> dict[str, int]:
    return {source.name: await source.erase(session, user_id, org_id) for source in order}


async def _plan_account_erasure(session: AsyncSession, user_id: uuid.UUID) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """The organizations the user leaves, and those deleted with them (they are their only member).

    Raises `SoleOwner` for organizations they alone own while others belong to them.
    """
    memberships = dict(
        (await session.execute(select(Membership.org_id, Membership.role).where(Membership.user_id == user_id))).all()
    )
    if not memberships:
        return [], []
    # Locking the organizations holds off joins (an insert that references the row waits on
    # PostgreSQL) and role changes, so the counts below stay true until the erasure commits.
    await session.execute(
        select(Organization.id)
        .where(Organization.id.in_(list(memberships)))
        .order_by(Organization.id)
        .with_for_update()
    )
    owned = [org_id for org_id, role in memberships.items() if role == Role.owner]
    others: dict[uuid.UUID, tuple[int, int]] = {
        org_id: (owners, members)
        for org_id, owners, members in await session.execute(
            select(
                Membership.org_id,
                func.count().filter(Membership.role == Role.owner),
                func.count(),
            )
            .where(Membership.org_id.in_(owned), Membership.user_id != user_id)
            .group_by(Membership.org_id)
        )
    }
    deleting: list[uuid.UUID] = []
    blocked: list[uuid.UUID] = []
    for org_id in owned:
        other_owners, other_members = others.get(org_id, (0, 0))
        if other_members == 0:
            deleting.append(org_id)
        elif other_owners == 0:
            blocked.append(org_id)
    if blocked:
        names = dict(
            (
                await session.execute(select(Organization.id, Organization.name).where(Organization.id.in_(blocked)))
            ).all()
        )
        raise SoleOwner(
            "You are the only owner of an organization that has other members; make one of them owner first "
            "(PATCH /api/v1/members/{user_id}), then erase your account",
            details={"organizations": [{"id": str(org_id), "name": names[org_id]} for org_id in blocked]},
        )
    leaving = [org_id for org_id in memberships if org_id not in deleting]
    return sorted(leaving, key=str), sorted(deleting, key=str)


async def _delete_organization(session: AsyncSession, org_id: uuid.UUID, store: BlobStore) -> None:
    """Delete an organization whose only member is being erased, with everything in it.

    Its audit chain goes too: it records only that person's work, which is what is being erased.
    The system chain keeps an `org.deleted` event with the chain's last seq and hash.
    """
    await documents_service.delete_org_documents(session, org_id, store)
    head = (
        await session.execute(select(AuditChainHead).where(AuditChainHead.chain_id == org_id).with_for_update())
    ).scalar_one_or_none()
    removed = await session.execute(delete(AuditEvent).where(AuditEvent.chain_id == org_id))
    await session.execute(delete(AuditChainHead).where(AuditChainHead.chain_id == org_id))
    # Index bookkeeping per organization that no foreign key ties to it (migrations 0003, 0004):
    # SQLite's count of vector deletes, PostgreSQL's BM25 statistics (the words of its documents).
    if is_sqlite(session):
        await session.execute(text("DELETE FROM chunk_vector_epoch WHERE org_id = :org_id"), {"org_id": org_id.hex})
    else:
        for table in ("chunk_fts_term", "chunk_fts_stats"):
            await session.execute(text(f"DELETE FROM {table} WHERE org_id = :org_id"), {"org_id": org_id})
    # Everything else that belongs to the organization goes with it (ON DELETE CASCADE).
    await session.execute(delete(Organization).where(Organization.id == org_id))
    details: dict[str, Any] = {"reason": "sole_member_erased", "audit_events": affected(removed)}
    if head is not None:
        details["audit_head"] = {"seq": head.seq, "hash": head.hash}
    await record_event(
        session, action="org.deleted", org_id=None, actor=ERASED_USER, target_type="organization", target_id=org_id,
        details=details,
    )  # fmt: skip
