"""The pseudonym vault: entries of the scopes of the user's conversations (`conversation:<id>`).

Run before the conversations source, whose ids name the scopes. Entries of other scopes belong to
whoever made them for the organization (a case number, a document) and name no user.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.chat.models import Conversation
from tessera.core.personal_data.sources.common import affected, fields, in_org
from tessera.core.privacy.models import PiiVaultEntry

_CHUNK = 500


async def _conversation_scopes(session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> list[str]:
    owned = in_org(select(Conversation.id).where(Conversation.user_id == user_id), Conversation.org_id, org_id)
    return [f"conversation:{conversation_id}" for conversation_id in (await session.execute(owned)).scalars()]


class PiiVaultSource:
    """Surrogates and entity types are exported; the originals are stored encrypted and were typed
    in the conversation itself, which the archive holds."""

    name = "pii_vault"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        scopes = await _conversation_scopes(session, user_id, None)
        found: list[dict[str, Any]] = []
        for start in range(0, len(scopes), _CHUNK):
            rows = await session.execute(
                select(PiiVaultEntry)
                .where(PiiVaultEntry.scope.in_(scopes[start : start + _CHUNK]))
                .order_by(PiiVaultEntry.created_at)
            )
            found += [
                fields(row, "org_id", "scope", "entity_type", "surrogate", "created_at") for row in rows.scalars()
            ]
        return found

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        scopes = await _conversation_scopes(session, user_id, org_id)
        count = 0
        for start in range(0, len(scopes), _CHUNK):
            result = await session.execute(
                delete(PiiVaultEntry).where(PiiVaultEntry.scope.in_(scopes[start : start + _CHUNK]))
            )
            count += affected(result)
        return count
