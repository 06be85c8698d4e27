"""Grounded answers: retrieve → numbered sources within a token budget → generate → verify.

The model sees the sources numbered; its answer is split into sentences and each one checked
against the sources it cites (`verify.py`). Only supported sentences keep citations, each with the
exact quote that supports it; unsupported ones are dropped (or marked, per settings). When the
search finds nothing, no model is called; when nothing in the answer is supported, the reply is
the honest "the sources don't answer this", never an unsourced claim.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.embeddings.base import Embedder
from tessera.core.generation.base import ChatModel, ChatRequest, ChatResult, Message, Source
from tessera.core.generation.extractive import NOT_FOUND, cite
from tessera.core.generation.prompts import STYLE_RULES, Prompt, format_instructions, format_sources, load_prompt
from tessera.core.generation.schemas import AnswerSentence, AskRequest, AskResponse, Citation, Usage
from tessera.core.generation.text import estimate_tokens, sentences, truncate_tokens
from tessera.core.generation.verify import CheckedSentence, verify
from tessera.core.retrieval import service as retrieval
from tessera.core.retrieval.schemas import SearchHit, SearchRequest
from tessera.settings import GenerationSettings

SUMMARY_HEADING = "Summary of the earlier conversation (context for follow-up questions, not a source):\n"
Screen = Callable[[str], Awaitable[str | None]]
"""Answer moderation: the notice to send instead of a withheld answer, or None."""


def build_sources(hits: Sequence[SearchHit], budget: int) -> list[Source]:
    """Numbered sources in rank order while they fit `budget` tokens (the last one cut to fit)."""
    sources: list[Source] = []
    used = 0
    for hit in hits:
        remaining = budget - used
        if remaining < 40:
            break
        text = truncate_tokens(hit.text, remaining)
        used += estimate_tokens(text) + 12  # the number, title and page line
        sources.append(
            Source(
                number=len(sources) + 1,
                text=text,
                document_id=str(hit.document_id),
                chunk_id=str(hit.chunk_id),
                title=hit.document_title or hit.filename,
                page=hit.page_start,
                heading_path=tuple(hit.heading_path),
                score=hit.score,
            )
        )
    return sources


@dataclass
class Prepared:
    """Everything an answer needs before the model runs: the sources and the request to the model
    (None when the search found nothing, and no model is called)."""

    body: AskRequest
    started: float
    hits: dict[str, SearchHit]
    sources: list[Source]
    prompt: Prompt
    request: ChatRequest | None


async def prepare(
    session: AsyncSession,
    principal: Principal,
    body: AskRequest,
    *,
    settings: GenerationSettings,
    embedder: Embedder | None,
    organization: str = "your organization",
    history: Sequence[Message] = (),
    search_query: str | None = None,
    summary: str | None = None,
) -> Prepared:
    """Retrieve and build the model's request. `history`: earlier turns of a conversation, oldest
    first (trimmed to `history_tokens`, oldest dropped first); `search_query`: what to retrieve with
    when it differs from the question (a follow-up rewritten as a standalone question); `summary`:
    of the turns before `history`, sent after the system prompt."""
    started = time.perf_counter()
    search = SearchRequest(
        query=(search_query or body.question)[:2_000],
        collections=body.collections,
        filters=body.filters,
        mode=body.mode,
        limit=settings.sources,
    )
    found = await retrieval.search(session, principal, search, embedder=embedder if body.mode != "keyword" else None)
    sources = build_sources(found.hits, settings.context_tokens)
    prompt = load_prompt("answer", settings.prompt_version)
    request = None
    if sources:
        system, user = prompt.render(
            organization=organization,
            style_rule=STYLE_RULES[body.style],
            sources=format_sources(sources),
            question=body.question,
            instructions=format_instructions(settings.instructions),
        )
        earlier = [Message("system", SUMMARY_HEADING + summary)] if summary else []
        request = ChatRequest(
            messages=[system, *earlier, *trim_history(history, settings.history_tokens), user],
            sources=sources,
            question=body.question,
            style=body.style,
            max_tokens=settings.max_answer_tokens,
            temperature=settings.temperature,
        )
    return Prepared(body, started, {str(h.chunk_id): h for h in found.hits}, sources, prompt, request)


def _reply(
    prepared: Prepared,
    text: str,
    checked: Sequence[CheckedSentence],
    model: str,
    usage: Usage,
    *,
    grounded: bool,
    dropped_sentences: int,
    fallback_from: Sequence[dict[str, str]] = (),
) -> AskResponse:
    return AskResponse(
        question=prepared.body.question,
        answer=text,
        sentences=[_sentence(i, s) for i, s in enumerate(checked)],
        citations=_citations(checked, prepared.sources, prepared.hits),
        model=model,
        prompt=prepared.prompt.id,
        usage=usage,
        took_ms=round((time.perf_counter() - prepared.started) * 1000, 2),
        grounded=grounded,
        dropped_sentences=dropped_sentences,
        fallback_from=list(fallback_from),
    )


def not_found(prepared: Prepared, model: str) -> AskResponse:
    """The reply when the search found nothing: no model was called."""
    return _reply(prepared, NOT_FOUND, [], model, Usage(input_tokens=0, output_tokens=0), grounded=False,
                  dropped_sentences=0)  # fmt: skip


async def finish(
    prepared: Prepared, result: ChatResult, *, settings: GenerationSettings, embedder: Embedder | None
) -> AskResponse:
    """Verify the model's answer against the sources and build the reply."""
    usage = Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    fallback = list(result.metadata.get("fallback_from") or [])
    if result.text.strip() == NOT_FOUND or result.metadata.get("grounded") is False:
        return _reply(prepared, NOT_FOUND, [], result.model, usage, grounded=False, dropped_sentences=0,
                      fallback_from=fallback)  # fmt: skip
    verified = await verify(
        result.text,
        prepared.sources,
        embedder=embedder,
        policy=settings.unsupported,
        lexical_threshold=settings.lexical_support,
        semantic_threshold=settings.semantic_support,
    )
    kept = verified.kept
    if not any(s.claim and s.supported for s in kept):
        return _reply(prepared, NOT_FOUND, [], result.model, usage, grounded=False,
                      dropped_sentences=len(verified.sentences), fallback_from=fallback)  # fmt: skip
    return _reply(
        prepared,
        answer_text(kept, bullets=prepared.body.style == "bullets"),
        kept,
        result.model,
        usage,
        grounded=verified.grounded,
        dropped_sentences=verified.dropped,
        fallback_from=fallback,
    )


async def ask(
    session: AsyncSession,
    principal: Principal,
    body: AskRequest,
    *,
    settings: GenerationSettings,
    embedder: Embedder | None,
    chat: ChatModel,
    organization: str = "your organization",
    history: Sequence[Message] = (),
    search_query: str | None = None,
    summary: str | None = None,
    screen: Screen | None = None,
) -> AskResponse:
    """Retrieve, generate, verify (see `prepare` for `history`, `search_query` and `summary`);
    `screen` (the answer moderation) returns a notice to send instead of an answer it withholds."""
    prepared = await prepare(
        session, principal, body, settings=settings, embedder=embedder, organization=organization,
        history=history, search_query=search_query, summary=summary,
    )  # fmt: skip
    if prepared.request is None:
        return not_found(prepared, chat.name)
    reply = await finish(prepared, await chat.complete(prepared.request), settings=settings, embedder=embedder)
    notice = await screen(reply.answer) if screen is not None else None
    return withheld(reply, notice) if notice is not None else reply


def withheld(reply: AskResponse, notice: str) -> AskResponse:
    """The reply with its answer withheld by moderation."""
    return reply.model_copy(
        update={"answer": notice, "citations": [], "sentences": [], "grounded": False, "dropped_sentences": 0}
    )


async def stream_answer(
    prepared: Prepared,
    chat: ChatModel,
    *,
    settings: GenerationSettings,
    embedder: Embedder | None,
    screen: Screen | None = None,
) -> AsyncIterator[str | AskResponse]:
    """The answer as it is generated: each sentence is verified as soon as it is complete and
    yielded (with its citations) only if kept, so nothing unsupported is ever shown as sourced;
    the last item is the full reply, verified as a whole: its `answer` is authoritative (it equals
    the pieces joined, except when nothing turned out to be supported: then it is the honest
    "not found" reply)."""
    if prepared.request is None:
        reply = not_found(prepared, chat.name)
        yield reply.answer
        yield reply
        return
    text = ""
    emitted = ""
    checked_upto = 0  # characters of `text` whose sentences were verified and sent
    held = False  # the last release held its sentences back (see `release`)

    async def release(upto: int) -> AsyncIterator[str]:
        """Verify and send the text up to `upto`. Until a supported claim has been sent, sentences
        that claim nothing (a heading, "Here is what I found:") are held back with `held`: should
        nothing turn out supported, the reply is the honest "not found", never a stray heading."""
        nonlocal emitted, held
        chunk = text[checked_upto:upto]
        if not chunk.strip():
            return
        verified = await verify(
            chunk, prepared.sources, embedder=embedder, policy=settings.unsupported,
            lexical_threshold=settings.lexical_support, semantic_threshold=settings.semantic_support,
        )  # fmt: skip
        held = not emitted and not any(s.claim and s.supported for s in verified.kept)
        if not verified.kept or held:
            return
        piece = answer_text(verified.kept, bullets=prepared.body.style == "bullets")
        separator = ("\n" if prepared.body.style == "bullets" else " ") if emitted else ""
        notice = await screen(piece) if screen is not None else None
        if notice is not None:
            stopped.append(notice)
            piece = notice
        emitted += separator + piece
        yield separator + piece

    stopped: list[str] = []  # a moderation notice: the answer stops there
    async for piece in chat.stream(prepared.request):
        if stopped:
            break
        text += piece
        spans = sentences(text)
        if len(spans) > 1:
            upto = spans[-1].start  # every sentence but the last, which may still grow
            if upto > checked_upto:
                async for out in release(upto):
                    yield out
                if not held:  # held sentences are verified again with what follows them
                    checked_upto = upto
    if not stopped:
        async for out in release(len(text)):
            yield out
    if stopped:
        reply = withheld(not_found(prepared, chat.name), stopped[0])
        yield reply
        return
    result = ChatResult(
        text=text,
        model=chat.name,
        input_tokens=sum(estimate_tokens(m.content) for m in prepared.request.messages),
        output_tokens=estimate_tokens(text),
    )
    reply = await finish(prepared, result, settings=settings, embedder=embedder)
    if not emitted:  # nothing was supported: the honest reply is the whole answer
        yield reply.answer
    yield reply


def trim_history(history: Sequence[Message], budget: int) -> list[Message]:
    """The most recent turns that fit `budget` tokens, oldest first (a turn is never cut)."""
    kept: list[Message] = []
    used = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content) + 4
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0].role != "user":  # a conversation window starts with a question
        kept.pop(0)
    return kept


def answer_text(sentences: Sequence[CheckedSentence], *, bullets: bool) -> str:
    parts = []
    for sentence in sentences:
        text = sentence.text
        if sentence.supported and sentence.cited:
            text = cite(text, ", ".join(str(n) for n in sentence.cited))
        parts.append(text)
    joined_bullets = all(p.lstrip().startswith(("-", "*", "•")) for p in parts)
    return "\n".join(parts) if bullets or joined_bullets else " ".join(parts)


def _sentence(index: int, sentence: CheckedSentence) -> AnswerSentence:
    return AnswerSentence(
        index=index,
        text=sentence.text,
        citations=sentence.cited if sentence.supported else [],
        claim=sentence.claim,
        supported=sentence.supported,
        support=sentence.support,
    )


def _citations(
    sentences: Sequence[CheckedSentence], sources: Sequence[Source], hits: dict[str, SearchHit]
) -> list[Citation]:
    by_number = {s.number: s for s in sources}
    found: dict[tuple[int, str], Citation] = {}
    for index, sentence in enumerate(sentences):
        if not sentence.supported or sentence.quote is None or sentence.quote_text is None:
            continue
        source = by_number[sentence.quote.source.number]
        key = (source.number, sentence.quote_text)
        citation = found.get(key)
        if citation is None:
            hit = hits[source.chunk_id]
            citation = found[key] = Citation(
                number=source.number,
                document_id=hit.document_id,
                chunk_id=hit.chunk_id,
                document_title=hit.document_title,
                filename=hit.filename,
                page_start=hit.page_start,
                page_end=hit.page_end,
                heading_path=list(hit.heading_path),
                quote=sentence.quote_text,
                retrieval_score=round(source.score, 6),
                support=sentence.support,
                sentences=[],
            )
        citation.sentences.append(index)
        citation.support = max(citation.support, sentence.support)
    return sorted(found.values(), key=lambda c: (c.number, c.sentences))
