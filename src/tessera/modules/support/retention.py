"""Retention: each organization that sets `retention_days` has its chat messages older than that
purged, with the conversations left empty, resolved hand-offs and the analytics turns of the same
age. Runs as a scheduled workflow (`jobs.py`); `purge_expired` is the work itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.personal_data.sources.common import affected
from tessera.modules.support.models import Handoff, HandoffStatus, SupportSettings, SupportTurn


@dataclass
class Purged:
    organizations: int = 0
    messages: int = 0
    conversations: int = 0
    handoffs: int = 0
    turns: int = 0


async def purge_expired(session: AsyncSession, now: datetime) -> Purged:
    purged = Purged()
    policies = (
        await session.execute(
            sa.select(SupportSettings.org_id, SupportSettings.retention_days).where(
                SupportSettings.retention_days.is_not(None)
            )
        )
    ).all()
    for org_id, days in policies:
        assert days is not None  # the query keeps organizations with a retention only
        cutoff = now - timedelta(days=days)
        purged.organizations += 1
        purged.messages += affected(
            await session.execute(
                sa.delete(ChatMessage).where(ChatMessage.org_id == org_id, ChatMessage.created_at < cutoff)
            )
        )
        emptied = sa.select(ChatMessage.id).where(ChatMessage.conversation_id == Conversation.id).exists()
        purged.conversations += affected(
            await session.execute(
                sa.delete(Conversation).where(Conversation.org_id == org_id, Conversation.updated_at < cutoff, ~emptied)
            )
        )
        purged.handoffs += affected(
            await session.execute(
                sa.delete(Handoff).where(
                    Handoff.org_id == org_id, Handoff.status == HandoffStatus.resolved, Handoff.updated_at < cutoff
                )
            )
        )
        turns = sa.update(SupportTurn).where(SupportTurn.org_id == org_id, SupportTurn.created_at < cutoff)
        # Analytics keep their counts: the turn only loses who asked.
        purged.turns += affected(await session.execute(turns.values(user_id=None, conversation_id=None)))
    return purged
