"""Hand-offs: questions the bot passed to the organization's agents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.pagination import PageParams, paginate
from tessera.modules.support import faqs
from tessera.modules.support.errors import HandoffNotFound
from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus
from tessera.modules.support.schemas import HandoffUpdate


async def get_handoff(session: AsyncSession, principal: Principal, handoff_id: uuid.UUID) -> Handoff:
    found = await session.get(Handoff, handoff_id)
    if found is None or found.org_id != principal.org_id:
        raise HandoffNotFound("Hand-off not found")
    return found


async def list_handoffs(
    session: AsyncSession,
    principal: Principal,
    *,
    params: PageParams,
    status: str | None = None,
    reason: str | None = None,
) -> tuple[Sequence[Handoff], str | None]:
    query = sa.select(Handoff).where(Handoff.org_id == faqs.org_of(principal))
    if status is not None:
        query = query.where(Handoff.status == HandoffStatus(status))
    if reason is not None:
        query = query.where(Handoff.reason == HandoffReason(reason))
    return await paginate(session, query, key=Handoff.id, params=params)


async def update_handoff(
    session: AsyncSession, principal: Principal, handoff_id: uuid.UUID, body: HandoffUpdate
) -> Handoff:
    handoff = await get_handoff(session, principal, handoff_id)
    if body.note is not None:
        handoff.note = body.note
    if "faq_id" in body.model_fields_set:  # another organization's FAQ is a 404, as everywhere
        handoff.faq_id = (await faqs.get_faq(session, principal, body.faq_id)).id if body.faq_id else None
    if body.status is not None and HandoffStatus(body.status) != handoff.status:
        handoff.status = HandoffStatus(body.status)
        resolved = handoff.status == HandoffStatus.resolved
        handoff.resolved_by = principal.user_id if resolved else None
        handoff.resolved_at = utcnow() if resolved else None
    handoff.updated_at = utcnow()
    await session.flush()
    return handoff
