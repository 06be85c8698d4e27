"""Conversations and chat: each conversation is its owner's alone (another user's, even in the
same organization, is a 404), and every question is answered by the grounded answer pipeline
(`generation/service.py`) with the conversation's recent turns as history.

A follow-up ("and how long does it last?") is rewritten into a standalone question before
retrieval: when it has few content words or leans on a pronoun, the previous question is put in
front of it, so the search finds what the conversation is about.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.assistants import service as assistants
from tessera.core.assistants.service import Configured
from tessera.core.auth.principal import Principal
from tessera.core.chat.errors import ConversationNotFound, MessageNotFound
from tessera.core.chat.models import ChatMessage, Conversation, Feedback, MessageRole
from tessera.core.chat.schemas import ChatReply, ChatSend, ConversationCreate, ConversationUpdate, FeedbackCreate
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import InvalidInput
from tessera.core.generation import service as generation
from tessera.core.generation.base import ChatModel, Message
from tessera.core.generation.schemas import AskRequest, AskResponse
from tessera.core.generation.service import Screen
from tessera.core.pagination import PageParams, paginate
from tessera.core.retrieval.analysis import WORD, query_stems
from tessera.settings import GenerationSettings

# Words that point back at an earlier turn: a question holding one is not standalone.
ANAPHORA = frozenset(
    {
        *("it", "its", "they", "them", "their", "theirs", "this", "that", "these", "those"),
        *("he", "him", "his", "she", "her", "hers", "there", "one"),
    }
)
STANDALONE_STEMS = 4
HISTORY_MESSAGES = 20


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
    search_query: str
    started: float


async def assistant_of(session: AsyncSession, principal: Principal, body: ChatSend) -> uuid.UUID | None:
    """The assistant that answers this message: the one the conversation started with (checking
    that the conversation is the caller's), or the one a new conversation asks for."""
    if body.conversation_id is None:
        return body.assistant_id
    for field in ("collections", "assistant_id"):
        if getattr(body, field) is not None:
            raise InvalidInput(f"`{field}` is set when a conversation starts; leave it out to continue one")
    return (await get_conversation(session, principal, body.conversation_id)).assistant_id


async def start_turn(
    session: AsyncSession, principal: Principal, body: ChatSend, configured: Configured | None = None
) -> Turn:
    """Find or start the conversation and store the question. `configured`: the conversation's
    assistant (see `assistant_of`), whose collections, style and mode apply."""
    started = time.perf_counter()
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
    earlier = list(await messages_of(session, conversation))[-HISTORY_MESSAGES:]
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
        conversation_id=conversation.id,
        question_id=question.id,
        question_at=question.created_at,
        ask=ask,
        history=[Message(m.role.value, m.content) for m in earlier],
        search_query=query,
        started=started,
    )


async def finish_turn(session: AsyncSession, principal: Principal, turn: Turn, answer: AskResponse) -> ChatReply:
    """Store the answer in the conversation."""
    conversation = await get_conversation(session, principal, turn.conversation_id)
    latency = round((time.perf_counter() - turn.started) * 1000, 2)
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
        created_at=utcnow(),
    )
    session.add(reply)
    conversation.message_count += 1
    conversation.last_message_at = conversation.updated_at = reply.created_at
    await session.flush()
    return ChatReply(
        conversation_id=conversation.id,
        message_id=reply.id,
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
        created_at=reply.created_at,
    )


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
) -> ChatReply:
    """Store the question, answer it with the conversation's history, store the answer."""
    turn = await start_turn(session, principal, body, configured)
    answer = await generation.ask(
        session, principal, turn.ask, settings=settings, embedder=embedder, chat=chat,
        history=turn.history, search_query=turn.search_query, screen=screen,
    )  # fmt: skip
    return await finish_turn(session, principal, turn, answer)


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
) -> AsyncIterator[Turn | str | ChatReply]:
    """`send`, answering piece by piece: the stored question (a `Turn`), verified text pieces,
    then the stored reply.

    Each step has its own transaction: the question is stored before generation starts, and the
    answer only once it is complete. When the client goes away the generator is closed where it
    is, so a cancelled answer is never stored (the question stays, unanswered)."""
    async with unit_of_work(sessionmaker) as session:
        turn = await start_turn(session, principal, body, configured)
    yield turn
    async with unit_of_work(sessionmaker, write=False) as session:
        prepared = await generation.prepare(
            session, principal, turn.ask, settings=settings, embedder=embedder,
            history=turn.history, search_query=turn.search_query,
        )  # fmt: skip
    answer: AskResponse | None = None
    async for item in generation.stream_answer(prepared, chat, settings=settings, embedder=embedder, screen=screen):
        if isinstance(item, str):
            yield item
        else:
            answer = item
    assert answer is not None
    async with unit_of_work(sessionmaker) as session:
        reply = await finish_turn(session, principal, turn, answer)
    # Yielded once committed: what the caller does next may write (on SQLite, one writer at a time).
    yield reply
