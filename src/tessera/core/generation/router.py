from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.generation import service
from tessera.core.generation.runtime import get_chat_model
from tessera.core.generation.schemas import AskRequest, AskResponse
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval.filters import InvalidFilter
from tessera.core.retrieval.runtime import get_embedder
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
    "model the answer is composed of source sentences.",
    responses={
        404: CollectionNotFound.schema(),
        422: InvalidFilter.schema(),
        502: ProviderRejected.schema(),
        503: ProviderUnavailable.schema(),
    },
)
async def ask(body: AskRequest, request: Request, principal: Reader, session: DbSession) -> AskResponse:
    settings: Settings = request.app.state.settings
    embedder = get_embedder(settings.embeddings)
    return await service.ask(
        session,
        principal,
        body,
        settings=settings.generation,
        embedder=embedder,
        chat=get_chat_model(settings),
    )
