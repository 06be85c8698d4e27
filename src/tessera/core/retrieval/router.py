from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.documents.errors import CollectionNotFound, DocumentNotFound
from tessera.core.documents.router import _document_read
from tessera.core.documents.schemas import DocumentRead
from tessera.core.embeddings.base import Embedder
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval import service
from tessera.core.retrieval.filters import InvalidFilter
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import SearchRequest, SearchResponse
from tessera.settings import Settings

router = APIRouter(tags=["search"], dependencies=[rate_limit("default")])
SearchReader = Annotated[Principal, require("documents:read")]


def _embedder(request: Request) -> Embedder:
    settings: Settings = request.app.state.settings
    return get_embedder(settings.embeddings)


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search documents",
    description="Keyword (BM25), semantic (embeddings) or hybrid (both, fused) search over the chunks of the "
    "collections you can see, with metadata filters applied inside the query. Hits carry the document, "
    "the chunk text, a highlighted snippet, pages, heading path, offsets into the document's text, the "
    "score and its components. Page with `cursor`.",
    responses={404: CollectionNotFound.schema(), 422: InvalidFilter.schema()},
)
async def search(body: SearchRequest, request: Request, principal: SearchReader, session: DbSession) -> SearchResponse:
    embedder = _embedder(request) if body.mode != "keyword" else None
    return await service.search(session, principal, body, embedder=embedder)


class SimilarDocument(DocumentRead):
    similarity: float = 0.0


class SimilarDocuments(BaseModel):
    items: list[SimilarDocument]


@router.get(
    "/documents/{document_id}/similar",
    response_model=SimilarDocuments,
    summary="Documents like this one",
    description="Nearest documents by meaning (the mean of this document's chunk vectors against every "
    "chunk), in the collections you can see.",
    responses={404: DocumentNotFound.schema()},
)
async def similar(
    document_id: uuid.UUID,
    request: Request,
    principal: SearchReader,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SimilarDocuments:
    found = await service.similar_documents_query(
        session, principal, document_id, embedder=_embedder(request), limit=limit
    )
    return SimilarDocuments(
        items=[_document_read(document, SimilarDocument, similarity=round(score, 6)) for document, score in found]
    )
