from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from tessera.core.assistants import service as assistants
from tessera.core.assistants.errors import AssistantNotFound
from tessera.core.assistants.service import Configured
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession, unit_of_work
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation import service, sse
from tessera.core.generation.base import Source
from tessera.core.generation.schemas import AskRequest, AskResponse
from tessera.core.generation.sse import stream_response
from tessera.core.moderation.service import ContentFlagged, Gate
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.usage import service as usage
from tessera.core.usage.service import BudgetExceeded
from tessera.settings import Settings

router = APIRouter(tags=["answers"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("documents:read")]


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Answer a question from your documents, with verified citations",
    description="Retrieves passages from the collections you can see (hybrid search, filters applied inside the "
    "query), numbers them, asks the configured chat model for an answer citing them, then checks every sentence "
    "of the answer against the sources it cites. Supported sentences carry `[n]` citations whose `quote` is the "
    "exact source text; unsupported ones are dropped (or flagged, per server settings). When the sources do not "
    "answer, the reply says so (`grounded: false`) instead of guessing. With the default offline `extractive` "
    "model the answer is composed of source sentences. With `stream: true`: server-sent events `sources` (what "
    "retrieval found, before the model runs: number, document, chunk, title, page, heading path, score), `delta` "
    "(verified text as it is generated), `citations`, `done` (the full reply) or `error`.",
    responses={
        404: {
            **CollectionNotFound.schema(),
            "description": f"{CollectionNotFound.__doc__} Or (`{AssistantNotFound.code}`) the assistant.",
        },
        422: ContentFlagged.schema(),
        429: BudgetExceeded.schema(),
        502: ProviderRejected.schema(),
        503: ProviderUnavailable.schema(),
    },
)
async def ask(
    body: AskRequest, request: Request, principal: Reader, session: DbSession
) -> AskResponse | StreamingResponse:
    settings: Settings = request.app.state.settings
    embedder = get_embedder(settings.embeddings)
    gate = Gate(request.app.state.sessionmaker, settings.moderation, principal, "ask", session=session)
    await gate.question(body.question)
    await usage.check_budget(session, principal)
    configured = await assistants.configure_by_id(session, principal, settings, body.assistant_id)
    body = configured.apply(body)
    if body.stream:
        return stream_response(_events(request, principal, body, configured, embedder, gate.detached()))
    answer = await service.ask(
        session,
        principal,
        body,
        settings=configured.generation,
        embedder=embedder,
        chat=configured.chat,
        screen=gate.answer,
    )
    usage.record(
        session, principal, configured.generation, model=answer.model, source="ask",
        input_tokens=answer.usage.input_tokens, output_tokens=answer.usage.output_tokens,
    )  # fmt: skip
    return answer


def source_summary(source: Source) -> dict[str, object]:
    return {
        "number": source.number,
        "document_id": source.document_id,
        "chunk_id": source.chunk_id,
        "title": source.title,
        "page": source.page,
        "heading_path": list(source.heading_path),
        "score": round(source.score, 4),
    }


async def _events(
    request: Request, principal: Principal, body: AskRequest, configured: Configured, embedder: Embedder, gate: Gate
) -> AsyncIterator[bytes]:
    generation = configured.generation
    async with unit_of_work(request.app.state.sessionmaker, write=False) as session:
        prepared = await service.prepare(session, principal, body, settings=generation, embedder=embedder)
    # What was found goes out before the model runs, so a client can show its sources at once.
    yield sse.event("sources", {"sources": [source_summary(source) for source in prepared.sources]})
    async for item in service.stream_answer(
        prepared, configured.chat, settings=generation, embedder=embedder, screen=gate.answer
    ):
        if isinstance(item, str):
            yield sse.event("delta", {"text": item})
        else:
            await usage.record_detached(
                request.app.state.sessionmaker, principal, generation, model=item.model, source="ask",
                input_tokens=item.usage.input_tokens, output_tokens=item.usage.output_tokens,
            )  # fmt: skip
            yield sse.event("citations", {"citations": [c.model_dump(mode="json") for c in item.citations]})
            yield sse.event("done", item.model_dump(mode="json"))
