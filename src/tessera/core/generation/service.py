"""Grounded answers: retrieve → numbered sources within a token budget → generate → verify.

The model sees the sources numbered; its answer is split into sentences and each one checked
against the sources it cites (`verify.py`). Only supported sentences keep citations, each with the
exact quote that supports it; unsupported ones are dropped (or marked, per settings). When the
search finds nothing, no model is called; when nothing in the answer is supported, the reply is
the honest "the sources don't answer this", never an unsourced claim.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.principal import Principal
from tessera.core.embeddings.base import Embedder
from tessera.core.generation.base import ChatModel, ChatRequest, Message, Source
from tessera.core.generation.extractive import NOT_FOUND, cite
from tessera.core.generation.prompts import STYLE_RULES, format_sources, load_prompt
from tessera.core.generation.schemas import AnswerSentence, AskRequest, AskResponse, Citation, Usage
from tessera.core.generation.text import estimate_tokens, truncate_tokens
from tessera.core.generation.verify import CheckedSentence, verify
from tessera.core.retrieval import service as retrieval
from tessera.core.retrieval.schemas import SearchHit, SearchRequest
from tessera.settings import GenerationSettings


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
) -> AskResponse:
    """`history`: earlier turns of a conversation, oldest first (trimmed to `history_tokens`, oldest
    dropped first); `search_query`: what to retrieve with when it differs from the question (a
    follow-up rewritten as a standalone question)."""
    started = time.perf_counter()
    search = SearchRequest(
        query=(search_query or body.question)[:2_000],
        collections=body.collections,
        filters=body.filters,
        mode=body.mode,
        limit=settings.sources,
    )
    found = await retrieval.search(session, principal, search, embedder=embedder if body.mode != "keyword" else None)
    hits = {str(hit.chunk_id): hit for hit in found.hits}
    sources = build_sources(found.hits, settings.context_tokens)
    prompt = load_prompt("answer", settings.prompt_version)

    def reply(
        text: str,
        checked: list[CheckedSentence],
        model: str,
        usage: Usage,
        *,
        grounded: bool,
        dropped_sentences: int,
        fallback_from: Sequence[dict[str, str]] = (),
    ) -> AskResponse:
        return AskResponse(
            question=body.question,
            answer=text,
            sentences=[_sentence(i, s) for i, s in enumerate(checked)],
            citations=_citations(checked, sources, hits),
            model=model,
            prompt=prompt.id,
            usage=usage,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
            grounded=grounded,
            dropped_sentences=dropped_sentences,
            fallback_from=list(fallback_from),
        )

    if not sources:
        return reply(NOT_FOUND, [], chat.name, Usage(input_tokens=0, output_tokens=0), grounded=False,
                     dropped_sentences=0)  # fmt: skip
    system, user = prompt.render(
        organization=organization,
        style_rule=STYLE_RULES[body.style],
        sources=format_sources(sources),
        question=body.question,
    )
    messages = [system, *trim_history(history, settings.history_tokens), user]
    result = await chat.complete(
        ChatRequest(
            messages=messages,
            sources=sources,
            question=body.question,
            style=body.style,
            max_tokens=settings.max_answer_tokens,
            temperature=settings.temperature,
        )
    )
    usage = Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)
    fallback = list(result.metadata.get("fallback_from") or [])
    if result.text.strip() == NOT_FOUND or result.metadata.get("grounded") is False:
        return reply(NOT_FOUND, [], result.model, usage, grounded=False, dropped_sentences=0, fallback_from=fallback)
    verified = await verify(
        result.text,
        sources,
        embedder=embedder,
        policy=settings.unsupported,
        lexical_threshold=settings.lexical_support,
        semantic_threshold=settings.semantic_support,
    )
    kept = verified.kept
    if not any(s.claim and s.supported for s in kept):
        return reply(NOT_FOUND, [], result.model, usage, grounded=False, dropped_sentences=len(verified.sentences),
                     fallback_from=fallback)  # fmt: skip
    return reply(
        _answer_text(kept, bullets=body.style == "bullets"),
        kept,
        result.model,
        usage,
        grounded=verified.grounded,
        dropped_sentences=verified.dropped,
        fallback_from=fallback,
    )


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


def _answer_text(sentences: Sequence[CheckedSentence], *, bullets: bool) -> str:
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
