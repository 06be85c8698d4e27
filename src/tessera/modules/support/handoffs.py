"""Hand-offs: questions the bot passed to the organization's agents."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.ai.client import AIClient
from tessera.core.auth.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.embeddings.base import Embedder
from tessera.core.pagination import PageParams, paginate
from tessera.modules.support import faqs
from tessera.modules.support.errors import HandoffNotFound
from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus
from tessera.modules.support.schemas import HandoffUpdate
from tessera.modules.support.settings import SupportModuleSettings


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
    session: AsyncSession,
    principal: Principal,
    handoff_id: uuid.UUID,
    body: HandoffUpdate,
    embedder: Embedder,
    settings: SupportModuleSettings,
    ai: AIClient | None,
) -> tuple[Handoff, bool]:
    """The updated hand-off, and whether the FAQ it was resolved with learned its question's wording
    (as from a helpful vote: a question the bot missed is found the next time it is asked)."""
    handoff = await get_handoff(session, principal, handoff_id)
    if body.note is not None:
        handoff.note = body.note
    answering = None
    answering_changed = "faq_id" in body.model_fields_set
    if answering_changed:  # another organization's FAQ is a 404, as everywhere
        answering = await faqs.get_faq(session, principal, body.faq_id) if body.faq_id else None
        handoff.faq_id = answering.id if answering is not None else None
    newly_resolved = False
    if body.status is not None and HandoffStatus(body.status) != handoff.status:
        handoff.status = HandoffStatus(body.status)
        newly_resolved = handoff.status == HandoffStatus.resolved
        handoff.resolved_by = principal.user_id if newly_resolved else None
        handoff.resolved_at = utcnow() if newly_resolved else None
    handoff.updated_at = utcnow()
    learned = False
    # Learned once it is both resolved and named: in one request or over two, in either order.
    if (
        handoff.faq_id is not None
        and handoff.status == HandoffStatus.resolved
        and (answering_changed or newly_resolved)
    ):
        if answering is None:  # named in an earlier request
            answering = await faqs.get_faq(session, principal, handoff.faq_id)
        learned = await faqs.learn_wording(session, answering, handoff.question, embedder, settings, ai)
    await session.flush()
    return handoff, learned
