"""Intent sets the user created and versions they trained (the organization's classifiers: kept,
unlinked from them)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.intents.models import IntentSet, IntentSetVersion
from tessera.core.personal_data.sources.common import affected, fields, in_org


class IntentSetsSource:
    name = "intent_sets"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        created = await session.execute(
            select(IntentSet).where(IntentSet.created_by == user_id).order_by(IntentSet.created_at)
        )
        trained = await session.execute(
            select(IntentSetVersion.set_id, IntentSetVersion.version, IntentSetVersion.trained_at, IntentSet.org_id)
            .join(IntentSet, IntentSet.id == IntentSetVersion.set_id)
            .where(IntentSetVersion.trained_by == user_id)
            .order_by(IntentSetVersion.trained_at)
        )
        return {
            "created": [fields(row, "id", "org_id", "name", "created_at") for row in created.scalars()],
            "trained": [row._asdict() for row in trained],
        }

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        sets = await session.execute(
            in_org(update(IntentSet).where(IntentSet.created_by == user_id), IntentSet.org_id, org_id).values(
                created_by=None
            )
        )
        in_scope = in_org(select(IntentSet.id), IntentSet.org_id, org_id)
        versions = await session.execute(
            update(IntentSetVersion)
            .where(IntentSetVersion.trained_by == user_id, IntentSetVersion.set_id.in_(in_scope.scalar_subquery()))
            .values(trained_by=None)
        )
        return affected(sets) + affected(versions)
