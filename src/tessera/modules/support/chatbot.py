"""The support bot: how `POST /chat/send` and the chat WebSocket answer in an organization whose
support bot is on (it is once the organization has FAQs or support settings; `chatbot_enabled`).
It is the organization's default chat: a conversation addressed to an assistant
(`assistant_id`) is that assistant's to answer, with its own collections and prompt.

In order:
1. small talk: a greeting or a thanks gets the bot's own reply; a request for a human is handed
   off at once (`smalltalk.py`);
2. a confident FAQ match (score at or above the organization's threshold): the FAQ's answer and
   its link;
3. the grounded answer pipeline over the organization's support collections;
4. when that finds no answer: a hand-off. The question is recorded as unanswered, the user is
   told so plainly, and agents are notified (e-mail to the organization's hand-off addresses,
   and the `support.handoff` webhook event). A question far from every FAQ that the sources do
   not answer either is recorded as out of scope, without notifying anyone.

Without data-processing consent (`GET/PATCH /support/profile`), the user's conversation is not
stored (organizations may turn the requirement off: `require_consent`). Every turn leaves a
`SupportTurn` row with how it was answered, for analytics: no message text.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.chat.schemas import ChatReply, ChatRoute
from tessera.core.chat.service import Turn
from tessera.core.db.base import new_id
from tessera.core.errors import AppError
from tessera.core.generation.schemas import AskResponse, Usage
from tessera.core.notifications import service as notifications
from tessera.core.observability.logging import get_logger
from tessera.core.retrieval.runtime import get_embedder
from tessera.modules.support import configuration, faqs, search, smalltalk
from tessera.modules.support.models import (
    Faq,
    Handoff,
    HandoffReason,
    SupportSettings,
    SupportTurn,
    TurnRoute,
)
from tessera.settings import Settings

logger = get_logger("tessera.support.chatbot")
KEY = "support"
HANDOFF_EVENT = "support.handoff"
# Below this FAQ score a question the sources do not answer is taken as outside the bot's domain.
OUT_OF_SCOPE_SCORE = 0.3


@dataclass
class Decision:
    """What the bot decided for one turn (kept on `turn.extras["support"]`)."""

    org_id: uuid.UUID
    language: str | None
    started: float
    route: TurnRoute = TurnRoute.grounded
    intent: str | None = None
    faq_id: uuid.UUID | None = None
    score: float | None = None
    top_score: float = 0.0
    handoff: HandoffReason | None = None
    handoff_id: uuid.UUID | None = None
    notify: tuple[str, ...] = ()
    """The organization's hand-off e-mail addresses."""

    def hand_off(self, reason: HandoffReason) -> uuid.UUID:
        self.handoff, self.handoff_id = reason, new_id()
        return self.handoff_id


def _answer(turn: Turn, text: str, model: str, *, grounded: bool = True) -> AskResponse:
    """A reply the bot composed itself (no sources, so no citations)."""
    return AskResponse(
        question=turn.ask.question, answer=text, grounded=grounded, sentences=[], citations=[],
        dropped_sentences=0, model=model, prompt=model, usage=Usage(input_tokens=0, output_tokens=0), took_ms=0.0,
    )  # fmt: skip


class SupportChatPolicy:
    """The `ChatPolicy` (core/chat/policy.py) of the support product."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def _active(
        self, session: AsyncSession, org_id: uuid.UUID, assistant_id: uuid.UUID | None
    ) -> SupportSettings | None:
        if assistant_id is not None:
            return None
        row = await session.get(SupportSettings, org_id)
        return row if row is not None and row.chatbot_enabled else None

    async def stores_conversation(
        self, session: AsyncSession, principal: Principal, assistant_id: uuid.UUID | None
    ) -> bool:
        assert principal.org_id is not None
        org = await self._active(session, principal.org_id, assistant_id)
        if org is None or not org.require_consent:
            return True
        profile = await configuration.profile_of(session, principal)
        return profile is not None and profile.data_processing_consent

    async def before_answer(self, session: AsyncSession, principal: Principal, turn: Turn) -> AskResponse | None:
        assert principal.org_id is not None
        org = await self._active(session, principal.org_id, turn.assistant_id)
        if org is None:
            return None
        profile = await configuration.profile_of(session, principal)
        language = (profile.language if profile else None) or org.default_language
        decision = Decision(
            org_id=org.org_id, language=language, started=time.perf_counter(), notify=tuple(org.handoff_emails)
        )
        turn.extras[KEY] = decision
        question = turn.ask.question
        talk = smalltalk.detect(question)
        if talk == "human":
            decision.route, decision.intent = TurnRoute.handoff, "human"
            turn.route = ChatRoute(kind="handoff", intent="human", id=decision.hand_off(HandoffReason.requested))
            return _answer(turn, smalltalk.phrase("human", language), "support:handoff")
        if talk is not None:
            decision.route, decision.intent = TurnRoute.intent, talk
            turn.route = ChatRoute(kind="intent", intent=talk)
            return _answer(turn, smalltalk.phrase(talk, language), "support:smalltalk")
        embedder = get_embedder(self.settings.embeddings)
        support = self.settings.support
        candidates = await search.rank(
            session, None, org.org_id, turn.search_query, embedder, support, limit=1,
            language=await self._faq_language(session, org.org_id, language),
        )  # fmt: skip
        threshold = search.effective_threshold(org, support)
        if candidates:
            best = candidates[0]
            decision.top_score = best.scores.score
            if best.scores.score >= threshold:
                faq = await session.get(Faq, best.entry.id)
                if faq is not None:
                    url = faqs.faq_url(faq, org.faq_url_template)
                    decision.route, decision.faq_id, decision.score = TurnRoute.faq, faq.id, best.scores.score
                    turn.route = ChatRoute(kind="faq", id=faq.id, title=faq.question, url=url, score=best.scores.score)
                    text = f"{faq.answer}\n\n{smalltalk.phrase('more', language)} {url}"
                    return _answer(turn, text, "support:faq")
        if org.collections is not None and turn.ask.collections is None:
            turn.ask = turn.ask.model_copy(update={"collections": [uuid.UUID(c) for c in org.collections]})
        return None

    async def _faq_language(self, session: AsyncSession, org_id: uuid.UUID, language: str | None) -> str | None:
        """The user's language when the organization has FAQs in it; else every language."""
        if language is None:
            return None
        found = (
            await session.execute(sa.select(Faq.id).where(Faq.org_id == org_id, Faq.language == language).limit(1))
        ).first()
        return language if found is not None else None

    def after_answer(self, principal: Principal, turn: Turn, answer: AskResponse) -> AskResponse:
        decision: Decision | None = turn.extras.get(KEY)
        if decision is None:
            return answer
        if answer.grounded:
            turn.route = ChatRoute(kind="answer")
            return answer
        if decision.top_score < OUT_OF_SCOPE_SCORE:
            decision.route, decision.intent = TurnRoute.intent, "out_of_scope"
            turn.route = ChatRoute(
                kind="intent", intent="out_of_scope", id=decision.hand_off(HandoffReason.out_of_scope)
            )
            notice = smalltalk.phrase("out_of_scope", decision.language)
        else:
            decision.route = TurnRoute.handoff
            turn.route = ChatRoute(kind="handoff", intent="no_answer", id=decision.hand_off(HandoffReason.no_answer))
            notice = smalltalk.phrase("no_answer", decision.language)
        return answer.model_copy(update={"answer": f"{answer.answer}\n\n{notice}".strip()})

    async def record(self, session: AsyncSession, principal: Principal, turn: Turn, reply: ChatReply) -> None:
        decision: Decision | None = turn.extras.get(KEY)
        if decision is None:
            return
        if decision.handoff is not None:
            handoff = Handoff(
                id=decision.handoff_id, org_id=decision.org_id, user_id=principal.user_id,
                conversation_id=turn.conversation_id if turn.store else None, question=turn.ask.question,
                language=decision.language, reason=decision.handoff,
            )  # fmt: skip
            session.add(handoff)
            await session.flush()
            if decision.handoff != HandoffReason.out_of_scope:
                await self._notify(session, principal, decision, handoff)
        if decision.faq_id is not None:
            await session.execute(sa.update(Faq).where(Faq.id == decision.faq_id).values(view_count=Faq.view_count + 1))
        session.add(
            SupportTurn(
                org_id=decision.org_id, user_id=principal.user_id,
                conversation_id=turn.conversation_id if turn.store else None, route=decision.route,
                intent=decision.intent, faq_id=decision.faq_id, match_score=decision.score,
                handoff_id=decision.handoff_id, language=decision.language, latency_ms=reply.latency_ms,
                stored=turn.store,
            )
        )  # fmt: skip
        await session.flush()

    async def _notify(self, session: AsyncSession, principal: Principal, decision: Decision, handoff: Handoff) -> None:
        """E-mail the organization's hand-off addresses and emit the webhook event. A notification
        that cannot be queued is logged: the hand-off itself is recorded either way."""
        payload = {
            "handoff_id": str(handoff.id), "org_id": str(handoff.org_id), "user_id": str(principal.user_id),
            "user_email": principal.email,
            "conversation_id": str(handoff.conversation_id) if handoff.conversation_id else None,
            "question": handoff.question, "reason": handoff.reason.value, "language": handoff.language,
        }  # fmt: skip
        try:
            await notifications.emit(session, org_id=handoff.org_id, event=HANDOFF_EVENT, payload=payload)
            if decision.notify:
                await notifications.queue_email(
                    session, org_id=handoff.org_id, to=list(decision.notify),
                    subject=f"Support hand-off: {' '.join(handoff.question.split())[:120]}",
                    text=_email_text(principal, handoff),
                )  # fmt: skip
        except (AppError, ValueError) as error:
            logger.warning("hand-off notification not queued", handoff_id=str(handoff.id), error=str(error))


def _email_text(principal: Principal, handoff: Handoff) -> str:
    return (
        f"A user needs help from the support team.\n\n"
        f"From: {principal.email}\n"
        f"Reason: {handoff.reason.value.replace('_', ' ')}\n"
        f"Language: {handoff.language or 'unknown'}\n\n"
        f"Question:\n{handoff.question}\n\n"
        f"Hand-off: /api/v1/support/handoffs/{handoff.id}\n"
    )
