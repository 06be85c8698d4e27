"""Conversations and their messages, with the feedback the user gave on answers."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.personal_data.sources.common import affected, fields, in_org

CONVERSATION_FIELDS = (
    "id", "org_id", "title", "tags", "archived", "collections", "assistant_id", "summary", "created_at",
    "updated_at", "last_message_at",
)  # fmt: skip
# Everything a message shows its reader; the per-sentence verification data (`sentences`) is
# how the answer was checked, already summed up in `grounded` and `citations`.
MESSAGE_FIELDS = (
    "id", "role", "content", "citations", "grounded", "search_query", "model", "input_tokens", "output_tokens",
    "feedback", "feedback_comment", "created_at",
)  # fmt: skip


class ConversationsSource:
    name = "conversations"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        conversations = (
            (
                await session.execute(
                    select(Conversation).where(Conversation.user_id == user_id).order_by(Conversation.id)
                )
            )
            .scalars()
            .all()
        )
        messages: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        owned = select(Conversation.id).where(Conversation.user_id == user_id)
        rows = await session.execute(
            select(ChatMessage)
            .where(ChatMessage.conversation_id.in_(owned.scalar_subquery()))
            .order_by(ChatMessage.created_at, ChatMessage.id)
        )
        for message in rows.scalars():
            messages[message.conversation_id].append(fields(message, *MESSAGE_FIELDS))
        return [
            {**fields(conversation, *CONVERSATION_FIELDS), "messages": messages[conversation.id]}
            for conversation in conversations
        ]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        owned = in_org(select(Conversation.id).where(Conversation.user_id == user_id), Conversation.org_id, org_id)
        messages = await session.execute(
            delete(ChatMessage).where(ChatMessage.conversation_id.in_(owned.scalar_subquery()))
        )
        conversations = await session.execute(
            in_org(delete(Conversation).where(Conversation.user_id == user_id), Conversation.org_id, org_id)
        )
        return affected(messages) + affected(conversations)
