"""Conversations and chat: each conversation is its owner's alone (another user's, even in the
same organization, is a 404), and every question is answered by the grounded answer pipeline
(`generation/service.py`) with the conversation's recent turns as history.

A follow-up ("and how long does it last?") is rewritten into a standalone question before
retrieval. With a language model, the model rewrites it from the recent turns; otherwise (the
offline extractive model, or when the model fails) a question with few content words or a pronoun
gets the previous question put in front of it, so the search finds what the conversation is about.

The prompt carries the most recent turns that fit `generation.history_tokens`. With a language
model, older turns are not just dropped: they are folded into a running summary of the
conversation (stored with it, so each turn is summarised once), sent after the system prompt.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.assistants import service as assistants
from tessera.core.assistants.service import Configured
from tessera.core.auth.principal import Principal
from tessera.core.chat.errors import ConversationNotFound, MessageNotFound
from tessera.core.chat.models import ChatMessage, Conversation, Feedback, MessageRole
from tessera.core.chat.policy import ChatPolicy
from tessera.core.chat.schemas import (
    ChatReply,
    ChatRoute,
    ChatSend,
    ConversationCreate,
    ConversationUpdate,
    FeedbackCreate,
)
from tessera.core.db.base import new_id, utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import AppError, InvalidInput
from tessera.core.generation import service as generation
from tessera.core.generation.base import ChatModel, ChatRequest, Message
from tessera.core.generation.prompts import load_prompt
from tessera.core.generation.schemas import AskRequest, AskResponse
from tessera.core.generation.service import Screen, trim_history
from tessera.core.observability.logging import get_logger
from tessera.core.pagination import PageParams, paginate
from tessera.core.retrieval.analysis import WORD, query_stems
from tessera.settings import GenerationSettings

logger = get_logger("tessera.chat")

# Words that point back at an earlier turn: a question holding one is not standalone.
ANAPHORA = frozenset(
    {
        *("it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those"),
        *("he", "him", "his", "she", "her", "hers", "there", "one"),
    }
)
STANDALONE_STEMS = 4
# Turns read for a new question at most (after the summarised ones): far more than any history budget.
UNSUMMARISED_LIMIT = 200
REWRITE_MAX_CHARS = 500
SUMMARY_WORDS = 150


def _owned(principal: Principal) -> sa.ColumnElement[bool]:
    return sa.and_(Conversation.org_id == principal.org_id, Conversation.user_id == principal.user.id)


async def get_conversation(session: AsyncSession, principal: Principal, conversation_id: uuid.UUID) -> Conversation:
    found = (
        await session.execute(sa.select(Conversation).where(Conversation.id == conversation_id, _owned(principal)))
    ).scalar_one_or_none()
    if found is None:
        raise ConversationNotFound("Conversation not found")
    return found


async def create_conversation(session: AsyncSession, principal: Principal, body: ConversationCreate) -> Conversation:
    assert principal.org_id is not None
    if body.assistant_id is not None:
        await assistants.get_assistant(session, principal, body.assistant_id)
    conversation = Conversation(
        org_id=principal.org_id,
        user_id=principal.user.id,
        title=body.title or "New conversation",
        tags=body.tags,
        collections=[str(c) for c in body.collections] if body.collections is not None else None,
        assistant_id=body.assistant_id,
    )
    session.add(conversation)
    await session.flush()
    return conversation


async def list_conversations(
    session: AsyncSession,
    principal: Principal,
    *,
    params: PageParams,
    search: str | None = None,
    tag: str | None = None,
    archived: bool | None = False,
) -> tuple[Sequence[Conversation], str | None]:
    """Newest first. `search` matches the title or any message's text (case-insensitive)."""
    query = sa.select(Conversation).where(_owned(principal))
    if archived is not None:
        query = query.where(Conversation.archived.is_(archived))
    if search:
        pattern = f"%{search.lower()}%"
        in_messages = sa.select(ChatMessage.id).where(
            ChatMessage.conversation_id == Conversation.id, sa.func.lower(ChatMessage.content).like(pattern)
        )
        query = query.where(sa.or_(sa.func.lower(Conversation.title).like(pattern), in_messages.exists()))
    rows, cursor = await paginate(session, query, key=Conversation.id, params=params)
    if tag:  # tags are few per conversation: filtered here, portable across backends
        rows = [row for row in rows if tag in row.tags]
    return rows, cursor


async def update_conversation(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, body: ConversationUpdate
) -> Conversation:
    conversation = await get_conversation(session, principal, conversation_id)
    if body.title is not None:
        conversation.title = body.title
    if body.tags is not None:
        conversation.tags = body.tags
    if body.archived is not None:
        conversation.archived = body.archived
    conversation.updated_at = utcnow()
    await session.flush()
    return conversation


async def delete_conversation(session: AsyncSession, principal: Principal, conversation_id: uuid.UUID) -> None:
    conversation = await get_conversation(session, principal, conversation_id)
    await session.execute(sa.delete(ChatMessage).where(ChatMessage.conversation_id == conversation.id))
    await session.delete(conversation)
    await session.flush()


async def messages_of(session: AsyncSession, conversation: Conversation) -> Sequence[ChatMessage]:
    query = (
        sa.select(ChatMessage)
        .where(ChatMessage.conversation_id == conversation.id)
        .order_by(ChatMessage.created_at, ChatMessage.id)
    )
    return (await session.execute(query)).scalars().all()


async def add_feedback(
    session: AsyncSession, principal: Principal, conversation_id: uuid.UUID, message_id: uuid.UUID, body: FeedbackCreate
) -> ChatMessage:
    conversation = await get_conversation(session, principal, conversation_id)
    message = await session.get(ChatMessage, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise MessageNotFound("Message not found")
    if message.role != MessageRole.assistant:
        raise InvalidInput("Feedback is given on the assistant's answers, not on your own messages")
    message.feedback = Feedback(body.rating)
    message.feedback_comment = body.comment
    await session.flush()
    return message


async def _unsummarised(session: AsyncSession, conversation: Conversation) -> list[ChatMessage]:
    """The conversation's messages after its summary, oldest first (at most the last `UNSUMMARISED_LIMIT`)."""
    query = sa.select(ChatMessage).where(ChatMessage.conversation_id == conversation.id)
    if conversation.summary_through is not None:
        through = await session.get(ChatMessage, conversation.summary_through)
        if through is not None:
            query = query.where(
                sa.or_(
                    ChatMessage.created_at > through.created_at,
                    sa.and_(ChatMessage.created_at == through.created_at, ChatMessage.id > through.id),
                )
            )
    query = query.order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc()).limit(UNSUMMARISED_LIMIT)
    return list(reversed((await session.execute(query)).scalars().all()))


def standalone_question(question: str, earlier_questions: Sequence[str]) -> str:
    """The question to search with: a follow-up gets the previous question in front of it."""
    if not earlier_questions:
        return question
    words = {w.lower() for w in WORD.findall(question)}
    if len(query_stems(question)) >= STANDALONE_STEMS and not words & ANAPHORA:
        return question
    return f"{earlier_questions[-1]} {question}"


@dataclass
class Turn:
    """A question stored in its conversation, ready to be answered."""

    conversation_id: uuid.UUID
    question_id: uuid.UUID
    question_at: datetime
    ask: AskRequest
    history: list[Message]
    """The recent turns that fit the history budget, oldest first."""
    search_query: str
    started: float
    summary: str | None = None
    """The conversation's summary of the turns before `history` (from a language model)."""
    unsummarised: list[Message] = field(default_factory=list)
    """Turns too old for `history` that `summary` does not cover yet."""
    unsummarised_through: uuid.UUID | None = None
    summarised: bool = False
    """Whether `condense` updated `summary` (stored with the answer)."""
    extra_input_tokens: int = 0
    extra_output_tokens: int = 0
    """What the model's rewriting and summarising cost (counted with the answer)."""
    store: bool = True
    """False: nothing of this turn goes into the conversation tables (no data-processing consent)."""
    user_id: uuid.UUID | None = None
    assistant_id: uuid.UUID | None = None
    """The assistant the chat is addressed to (None: the organization's default chat)."""
    route: ChatRoute | None = None
    """How a policy routed the answer (`policy.py`), stored with the reply."""
    extras: dict[str, Any] = field(default_factory=dict)
    """What each policy decided, under its own key, between its calls."""


async def assistant_of(session: AsyncSession, principal: Principal, body: ChatSend) -> uuid.UUID | None:
    """The assistant that answers this message: the one the conversation started with (checking
    that the conversation is the caller's), or the one a new conversation asks for."""
    if body.conversation_id is None:
        return body.assistant_id
    for name in ("collections", "assistant_id"):
        if getattr(body, name) is not None:
            raise InvalidInput(f"`{name}` is set when a conversation starts; leave it out to continue one")
    return (await get_conversation(session, principal, body.conversation_id)).assistant_id


async def start_turn(
    session: AsyncSession,
    principal: Principal,
    body: ChatSend,
    settings: GenerationSettings,
    configured: Configured | None = None,
    *,
    store: bool = True,
) -> Turn:
    """Find or start the conversation and store the question. `configured`: the conversation's
    assistant (see `assistant_of`), whose collections, style and mode apply. `store=False`: a turn
    that writes nothing (its conversation and question exist only in the reply)."""
    started = time.perf_counter()
    if not store:
        return _unstored_turn(principal, body, started, configured)
    if body.conversation_id is not None:
        await assistant_of(session, principal, body)  # the same checks as before the answer started
        conversation = await get_conversation(session, principal, body.conversation_id)
    else:
        title = " ".join(body.content.split())
        conversation = await create_conversation(
            session,
            principal,
            ConversationCreate(
                title=title[:77] + "…" if len(title) > 80 else title,
                collections=body.collections,
                assistant_id=body.assistant_id,
            ),
        )
    earlier = await _unsummarised(session, conversation)
    recent = trim_history([Message(m.role.value, m.content) for m in earlier], settings.history_tokens)
    older = earlier[: len(earlier) - len(recent)]
    query = standalone_question(body.content, [m.content for m in earlier if m.role == MessageRole.user])
    question = ChatMessage(
        conversation_id=conversation.id, org_id=conversation.org_id, role=MessageRole.user, content=body.content
    )
    session.add(question)
    conversation.message_count += 1
    conversation.last_message_at = conversation.updated_at = question.created_at = utcnow()
    await session.flush()
    collections = [uuid.UUID(c) for c in conversation.collections] if conversation.collections is not None else None
    # A style the user chose is set explicitly, so the assistant's default does not replace it.
    ask = AskRequest(question=body.content, collections=collections, **({"style": body.style} if body.style else {}))
    if configured is not None:
        ask = configured.apply(ask)
    return Turn(
        assistant_id=_assistant_id(configured),
        conversation_id=conversation.id,
        question_id=question.id,
        question_at=question.created_at,
        ask=ask,
        history=recent,
        search_query=query,
        started=started,
        summary=conversation.summary,
        unsummarised=[Message(m.role.value, m.content) for m in older],
        unsummarised_through=older[-1].id if older else None,
    )


def _unstored_turn(principal: Principal, body: ChatSend, started: float, configured: Configured | None) -> Turn:
    """A turn with no history and nothing written: a continued conversation cannot be, since none
    was stored (its id is a 404, as for any conversation that is not the caller's)."""
    if body.conversation_id is not None:
        raise ConversationNotFound("Conversation not found (conversations are not stored without consent)")
    collections = body.collections
    ask = AskRequest(question=body.content, collections=collections, **({"style": body.style} if body.style else {}))
    if configured is not None:
        ask = configured.apply(ask)
    return Turn(
        conversation_id=new_id(), question_id=new_id(), question_at=utcnow(), ask=ask, history=[],
        search_query=body.content, started=started, store=False, user_id=principal.user_id,
        assistant_id=_assistant_id(configured),
    )  # fmt: skip


def uses_language_model(settings: GenerationSettings) -> bool:
    return settings.provider != "extractive"


def _format_turns(messages: Sequence[Message]) -> str:
    lines = []
    for message in messages:
        who = "User" if message.role == "user" else "Assistant"
        text = " ".join(message.content.split())
        lines.append(f"{who}: {text}".replace("</conversation>", "</ conversation>").replace("</new_turns>", ""))
    return "\n".join(lines)


async def _model_text(chat: ChatModel, messages: Sequence[Message], max_tokens: int, turn: Turn) -> str | None:
    """A language model's reply, or None when none answered (failure, or only the extractive
    fallback did: it cannot rewrite or summarise)."""
    try:
        result = await chat.complete(ChatRequest(messages=messages, max_tokens=max_tokens, temperature=0.0))
    except AppError as error:
        logger.warning("conversation condensing skipped", error=error.message)
        return None
    if result.model.startswith("extractive") or result.metadata.get("grounded") is False:
        return None
    turn.extra_input_tokens += result.input_tokens
    turn.extra_output_tokens += result.output_tokens
    return result.text.strip()


async def condense(turn: Turn, chat: ChatModel, settings: GenerationSettings) -> None:
    """With a language model: summarise the turns that no longer fit the history budget into the
    conversation's summary, and rewrite a follow-up into a standalone question for retrieval. Any
    failure keeps what the heuristics gave (the previous summary; the question joined to the
    previous one), so a flaky model never fails a turn. Runs outside any write transaction."""
    if not uses_language_model(settings):
        return
    if turn.unsummarised:
        prompt = load_prompt("summary", "v1")
        messages = prompt.render(
            words=str(SUMMARY_WORDS), summary=turn.summary or "(none)", turns=_format_turns(turn.unsummarised)
        )
        summary = await _model_text(chat, messages, SUMMARY_WORDS * 2, turn)
        if summary:
            turn.summary, turn.summarised = summary[:4_000], True
    if not turn.history and not turn.summary:
        return
    context = ([Message("assistant", f"(Earlier: {turn.summary})")] if turn.summary else []) + turn.history[-6:]
    prompt = load_prompt("rewrite", "v1")
    rewritten = await _model_text(
        chat, prompt.render(conversation=_format_turns(context), question=turn.ask.question), 96, turn
    )
    if rewritten:
        rewritten = " ".join(rewritten.split()).strip("\"'")
        known = query_stems(" ".join([turn.ask.question, turn.summary or "", *(m.content for m in context)]))
        # A rewrite shares words with the conversation; anything else (a refusal, an answer) is not one.
        if 0 < len(rewritten) <= REWRITE_MAX_CHARS and set(query_stems(rewritten)) & set(known):
            turn.search_query = rewritten


async def finish_turn(
    session: AsyncSession,
    principal: Principal,
    turn: Turn,
    answer: AskResponse,
    policies: Sequence[ChatPolicy] = (),
) -> ChatReply:
    """Store the answer in the conversation (and the summary `condense` made), then let each
    policy record the turn in the same transaction."""
    reply = await _store_answer(session, principal, turn, answer)
    for policy in policies:
        await policy.record(session, principal, turn, reply)
    return reply


async def _store_answer(session: AsyncSession, principal: Principal, turn: Turn, answer: AskResponse) -> ChatReply:
    usage = answer.usage.model_copy(
        update={
            "input_tokens": answer.usage.input_tokens + turn.extra_input_tokens,
            "output_tokens": answer.usage.output_tokens + turn.extra_output_tokens,
        }
    )
    answer = answer.model_copy(update={"usage": usage})
    latency = round((time.perf_counter() - turn.started) * 1000, 2)
    if not turn.store:
        return _reply(turn, answer, message_id=new_id(), latency=latency, created_at=utcnow())
    conversation = await get_conversation(session, principal, turn.conversation_id)
    if turn.summarised and turn.unsummarised_through is not None:
        conversation.summary, conversation.summary_through = turn.summary, turn.unsummarised_through
    reply = ChatMessage(
        conversation_id=conversation.id,
        org_id=conversation.org_id,
        role=MessageRole.assistant,
        content=answer.answer,
        citations=[c.model_dump(mode="json") for c in answer.citations],
        sentences=[s.model_dump(mode="json") for s in answer.sentences],
        grounded=answer.grounded,
        search_query=turn.search_query if turn.search_query != turn.ask.question else None,
        model=answer.model,
        prompt=answer.prompt,
        input_tokens=answer.usage.input_tokens,
        output_tokens=answer.usage.output_tokens,
        latency_ms=latency,
        route=turn.route.model_dump(mode="json") if turn.route is not None else None,
        created_at=utcnow(),
    )
    session.add(reply)
    conversation.message_count += 1
    conversation.last_message_at = conversation.updated_at = reply.created_at
    await session.flush()
    return _reply(turn, answer, message_id=reply.id, latency=latency, created_at=reply.created_at)


def _reply(
    turn: Turn, answer: AskResponse, *, message_id: uuid.UUID, latency: float, created_at: datetime
) -> ChatReply:
    return ChatReply(
        conversation_id=turn.conversation_id,
        message_id=message_id,
        user_message_id=turn.question_id,
        content=answer.answer,
        citations=answer.citations,
        sentences=answer.sentences,
        grounded=answer.grounded,
        search_query=turn.search_query,
        model=answer.model,
        fallback_from=answer.fallback_from,
        usage=answer.usage,
        latency_ms=latency,
        created_at=created_at,
        route=turn.route,
        stored=turn.store,
    )


def _assistant_id(configured: Configured | None) -> uuid.UUID | None:
    return configured.assistant.id if configured is not None and configured.assistant is not None else None


async def stores_conversation(
    session: AsyncSession, principal: Principal, policies: Sequence[ChatPolicy], assistant_id: uuid.UUID | None
) -> bool:
    for policy in policies:
        if not await policy.stores_conversation(session, principal, assistant_id):
            return False
    return True


async def _policy_answer(
    session: AsyncSession, principal: Principal, turn: Turn, policies: Sequence[ChatPolicy]
) -> AskResponse | None:
    for policy in policies:
        answer = await policy.before_answer(session, principal, turn)
        if answer is not None:
            return answer
    return None


def _after(principal: Principal, turn: Turn, answer: AskResponse, policies: Sequence[ChatPolicy]) -> AskResponse:
    for policy in policies:
        answer = policy.after_answer(principal, turn, answer)
    return answer


async def send(
    session: AsyncSession,
    principal: Principal,
    body: ChatSend,
    *,
    settings: GenerationSettings,
    embedder: Embedder | None,
    chat: ChatModel,
    screen: Screen | None = None,
    configured: Configured | None = None,
    policies: Sequence[ChatPolicy] = (),
) -> ChatReply:
    """Store the question, answer it with the conversation's history, store the answer."""
    store = await stores_conversation(session, principal, policies, _assistant_id(configured))
    turn = await start_turn(session, principal, body, settings, configured, store=store)
    answer = await _policy_answer(session, principal, turn, policies)
    if answer is None:
        await condense(turn, chat, settings)
        answer = await generation.ask(
            session, principal, turn.ask, settings=settings, embedder=embedder, chat=chat,
            history=turn.history, search_query=turn.search_query, summary=turn.summary, screen=screen,
        )  # fmt: skip
        answer = _after(principal, turn, answer, policies)
    return await finish_turn(session, principal, turn, answer, policies)


async def stream_send(
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    body: ChatSend,
    *,
    settings: GenerationSettings,
    embedder: Embedder | None,
    chat: ChatModel,
    screen: Screen | None = None,
    configured: Configured | None = None,
    policies: Sequence[ChatPolicy] = (),
) -> AsyncIterator[Turn | str | ChatReply]:
    """`send`, answering piece by piece: the stored question (a `Turn`), verified text pieces,
    then the stored reply.

    Each step has its own transaction: the question is stored before generation starts, and the
    answer only once it is complete. When the client goes away the generator is closed where it
    is, so a cancelled answer is never stored (the question stays, unanswered)."""
    async with unit_of_work(sessionmaker, write=False) as session:
        store = await stores_conversation(session, principal, policies, _assistant_id(configured))
    async with unit_of_work(sessionmaker, write=store) as session:
        turn = await start_turn(session, principal, body, settings, configured, store=store)
    yield turn
    async with unit_of_work(sessionmaker, write=False) as session:
        answer = await _policy_answer(session, principal, turn, policies)
    if answer is not None:
        yield answer.answer  # decided whole (an FAQ's answer, a greeting): one piece
    else:
        await condense(turn, chat, settings)
        async with unit_of_work(sessionmaker, write=False) as session:
            prepared = await generation.prepare(
                session, principal, turn.ask, settings=settings, embedder=embedder,
                history=turn.history, search_query=turn.search_query, summary=turn.summary,
            )  # fmt: skip
        async for item in generation.stream_answer(prepared, chat, settings=settings, embedder=embedder, screen=screen):
            if isinstance(item, str):
                yield item
            else:
                answer = item
        assert answer is not None
        changed = _after(principal, turn, answer, policies)
        if changed.answer != answer.answer and changed.answer.startswith(answer.answer):
            yield changed.answer[len(answer.answer) :]  # e.g. a hand-off notice after the answer
        answer = changed
    async with unit_of_work(sessionmaker) as session:
        reply = await finish_turn(session, principal, turn, answer, policies)
    # Yielded once committed: what the caller does next may write (on SQLite, one writer at a time).
    yield reply
