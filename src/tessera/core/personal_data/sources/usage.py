"""Model usage per answer.

Erasing anonymises the rows instead of deleting them: without the user (and API key) they say
only that the organization used so many tokens of a model at a time, and the organization's
monthly totals, budgets and costs must stay right after a member is erased.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.personal_data.sources.common import affected, fields, in_org
from tessera.core.usage.models import UsageRecord


class UsageSource:
    name = "usage"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(UsageRecord).where(UsageRecord.user_id == user_id).order_by(UsageRecord.created_at)
        )
        return [
            fields(
                row, "org_id", "api_key_id", "model", "source", "input_tokens", "output_tokens", "cost", "created_at"
            )
            for row in rows.scalars()
        ]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        result = await session.execute(
            in_org(update(UsageRecord).where(UsageRecord.user_id == user_id), UsageRecord.org_id, org_id).values(
                user_id=None, api_key_id=None
            )
        )
        return affected(result)
