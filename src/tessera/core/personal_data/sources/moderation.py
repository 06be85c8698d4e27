"""Moderation flags: the user's questions that were refused, and answers withheld from them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.moderation.models import ModerationFlag
from tessera.core.personal_data.sources.common import affected, fields, in_org


class ModerationFlagsSource:
    name = "moderation_flags"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        rows = await session.execute(
            select(ModerationFlag).where(ModerationFlag.user_id == user_id).order_by(ModerationFlag.id)
        )
        return [
            fields(row, "id", "org_id", "direction", "source", "categories", "excerpt", "moderator", "created_at")
            for row in rows.scalars()
        ]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        result = await session.execute(
            in_org(delete(ModerationFlag).where(ModerationFlag.user_id == user_id), ModerationFlag.org_id, org_id)
        )
        return affected(result)
