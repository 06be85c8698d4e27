"""The support module's personal data (registered with `tessera.core.personal_data`).

- profiles (language, time zone, consents) and hand-offs (the user's question) are the user's:
  exported, and deleted on erasure; the hand-off's question is also scrubbed from the webhook
  payloads that announced it to the organization's systems;
- FAQ votes are exported; on erasure they are deleted (the FAQ's counts keep them);
- analytics turns hold no text: they are exported as counts, and on erasure lose who asked and
  the conversation, keeping the organization's figures;
- FAQs the user wrote or edited and hand-offs they resolved belong to the organization: they
  stay, unlinked from the user.

Wordings learned from helpful votes are not linked to anyone, and a wording holding personal
data is never learned (`faqs._impersonal`).
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Text, cast
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.notifications.models import NotificationDelivery
from tessera.core.personal_data.registry import register_source
from tessera.core.personal_data.sources.common import REDACTED, affected
from tessera.core.personal_data.sources.common import in_org as _in_org
from tessera.modules.support.models import Faq, FaqFeedback, Handoff, SupportProfile, SupportTurn


class SupportSource:
    name = "support"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        profiles = (await session.execute(sa.select(SupportProfile).where(SupportProfile.user_id == user_id))).scalars()
        votes = (await session.execute(sa.select(FaqFeedback).where(FaqFeedback.user_id == user_id))).scalars()
        handoffs = (await session.execute(sa.select(Handoff).where(Handoff.user_id == user_id))).scalars()
        turns = (
            await session.execute(
                sa.select(SupportTurn.org_id, SupportTurn.route, SupportTurn.created_at).where(
                    SupportTurn.user_id == user_id
                )
            )
        ).all()
        routes: Counter[tuple[str, str]] = Counter((str(org), route.value) for org, route, _ in turns)
        return {
            "profiles": [
                {
                    "org_id": p.org_id, "language": p.language, "timezone": p.timezone,
                    **{
                        name: {"given": getattr(p, name), "at": getattr(p, f"{name}_at"),
                               "version": getattr(p, f"{name}_version")}
                        for name in ("gdpr_consent", "data_processing_consent", "marketing_consent")
                    },
                }
                for p in profiles
            ],
            "faq_feedback": [
                {"org_id": v.org_id, "faq_id": v.faq_id, "helpful": v.helpful, "query": v.query,
                 "comment": v.comment, "created_at": v.created_at}
                for v in votes
            ],
            "handoffs": [
                {"id": h.id, "org_id": h.org_id, "question": h.question, "reason": h.reason, "status": h.status,
                 "created_at": h.created_at}
                for h in handoffs
            ],
            "bot_turns": [{"org_id": org, "route": route, "count": n} for (org, route), n in sorted(routes.items())],
        }  # fmt: skip

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        changed = 0
        handoffs = (
            (
                await session.execute(
                    _in_org(sa.select(Handoff).where(Handoff.user_id == user_id), Handoff.org_id, org_id)
                )
            )
            .scalars()
            .all()
        )
        for handoff in handoffs:
            changed += await _scrub_announcements(session, handoff)
        changed += affected(
            await session.execute(_in_org(sa.delete(Handoff).where(Handoff.user_id == user_id), Handoff.org_id, org_id))
        )
        for deletion in (
            _in_org(sa.delete(SupportProfile).where(SupportProfile.user_id == user_id), SupportProfile.org_id, org_id),
            _in_org(sa.delete(FaqFeedback).where(FaqFeedback.user_id == user_id), FaqFeedback.org_id, org_id),
        ):
            changed += affected(await session.execute(deletion))
        unlinked = sa.update(SupportTurn).where(SupportTurn.user_id == user_id)
        for update in (
            _in_org(unlinked.values(user_id=None, conversation_id=None), SupportTurn.org_id, org_id),
            _in_org(sa.update(Handoff).where(Handoff.resolved_by == user_id), Handoff.org_id, org_id).values(
                resolved_by=None
            ),
            _in_org(sa.update(Faq).where(Faq.created_by == user_id), Faq.org_id, org_id).values(created_by=None),
            _in_org(sa.update(Faq).where(Faq.updated_by == user_id), Faq.org_id, org_id).values(updated_by=None),
        ):
            changed += affected(await session.execute(update))
        return changed


async def _scrub_announcements(session: AsyncSession, handoff: Handoff) -> int:
    """The hand-off's question out of the webhook payloads and e-mails that carried it."""
    mentions = cast(NotificationDelivery.payload, Text).contains(str(handoff.id), autoescape=True)
    deliveries = (
        (
            await session.execute(
                sa.select(NotificationDelivery).where(NotificationDelivery.org_id == handoff.org_id, mentions)
            )
        )
        .scalars()
        .all()
    )
    for delivery in deliveries:
        delivery.payload = _without(delivery.payload, handoff.question)
    return len(deliveries)


def _without(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return value.replace(text, REDACTED) if text in value else value
    if isinstance(value, dict):
        return {key: _without(item, text) for key, item in value.items()}
    if isinstance(value, list):
        return [_without(item, text) for item in value]
    return value


register_source(SupportSource())
