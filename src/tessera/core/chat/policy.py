"""`ChatPolicy`: a product module's say in how chat messages are answered.

The chat service (`service.py`) asks every policy the app holds (`app.state.chat_policies`, in
order) at four points of a turn:

1. `stores_conversation`: whether this user's conversation may be stored (data-processing
   consent). When a policy says no, the turn runs without touching the conversation tables: the
   reply's ids are not addressable later (`ChatReply.stored` is false). `assistant_id` is the
   assistant the chat is addressed to (None: the organization's default chat), which is also
   `turn.assistant_id` in the later calls: a policy may govern only some assistants' chats.
2. `before_answer` (read-only session): an answer that replaces the grounded answer pipeline, e.g.
   a confident FAQ match or a greeting. The first policy that answers wins.
3. `after_answer` (no session, no I/O): the pipeline's answer, possibly changed, e.g. with a
   hand-off notice when the sources did not answer.
4. `record` (the write transaction that stores the reply): what the policy keeps of the turn,
   e.g. hand-off rows, notifications to agents, analytics.

A policy keeps what it decided on `turn.extras` (keyed by its own name) between these calls.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.chat.schemas import ChatReply
from tessera.core.generation.schemas import AskResponse

if TYPE_CHECKING:
    from tessera.core.chat.service import Turn


class ChatPolicy(Protocol):
    async def stores_conversation(
        self, session: AsyncSession, principal: Principal, assistant_id: uuid.UUID | None
    ) -> bool: ...

    async def before_answer(self, session: AsyncSession, principal: Principal, turn: Turn) -> AskResponse | None: ...

    def after_answer(self, principal: Principal, turn: Turn, answer: AskResponse) -> AskResponse: ...

    async def record(self, session: AsyncSession, principal: Principal, turn: Turn, reply: ChatReply) -> None: ...
