from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status
from pydantic import BaseModel

from tessera.core.auth.dependencies import RequestMetaDep, SettingsDep, require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.documents.errors import CollectionNotFound, DocumentNotFound, NotCollectionManager
from tessera.core.documents.router import API_PREFIX, _document_read
from tessera.core.documents.schemas import DocumentRead
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import ProviderRejected, ProviderUnavailable
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.retrieval import evaluations, reindex, service
from tessera.core.retrieval.errors import EvaluationNotFound, ReindexInProgress, UnknownJudgedDocuments
from tessera.core.retrieval.filters import InvalidFilter
from tessera.core.retrieval.rerank import Reranker, select_reranker
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.schemas import (
    EvaluationCreate,
    EvaluationDetail,
    EvaluationPage,
    EvaluationRead,
    JudgedQueryRead,
    ReindexRequest,
    ReindexStatus,
    RerankChoice,
    SearchRequest,
    SearchResponse,
)
from tessera.settings import Settings

router = APIRouter(tags=["search"], dependencies=[rate_limit("default")])
SearchReader = Annotated[Principal, require("documents:read")]


def _embedder(request: Request) -> Embedder:
    settings: Settings = request.app.state.settings
    return get_embedder(settings.embeddings)


def _reranker(request: Request, requested: RerankChoice) -> Reranker | None:
    settings: Settings = request.app.state.settings
    return select_reranker(settings.retrieval.reranker, requested)


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Search documents",
    description="Keyword (BM25), semantic (embeddings) or hybrid (both, fused) search over the chunks of the "
    "collections you can see, with metadata filters applied inside the query. Hits carry the document, "
    "the chunk text, a highlighted snippet, pages, heading path, offsets into the document's text, the "
    "score and its components. Page with `cursor`. With `rerank`, the server's reranker reorders the top hits.",
    responses={
        404: CollectionNotFound.schema(),
        422: InvalidFilter.schema(),
        502: ProviderRejected.schema(),
        503: ProviderUnavailable.schema(),
    },
)
async def search(body: SearchRequest, request: Request, principal: SearchReader, session: DbSession) -> SearchResponse:
    embedder = _embedder(request) if body.mode != "keyword" else None
    reranker = _reranker(request, body.rerank)
    candidates = request.app.state.settings.retrieval.reranker.candidates
    return await service.search(
        session, principal, body, embedder=embedder, reranker=reranker, rerank_candidates=candidates
    )


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


# ---------------------------------------------------------------------------------------------
# re-indexing a collection

CollectionManager = Annotated[Principal, require("collections:write")]
CollectionReader = Annotated[Principal, require("collections:read")]


@router.post(
    "/collections/{collection_id}/reindex",
    response_model=ReindexStatus,
    status_code=202,
    tags=["collections"],
    summary="Re-index a collection",
    description="Rebuild the indexes of every ready document of the collection from its stored chunks, without "
    "parsing again: `vectors` embeds with the configured model (documents whose vectors are already of that "
    "model are skipped unless `force`), `text` rewrites the full-text entries, `all` does both. Runs as a "
    "background job in batches; a document's old vectors go only when its new ones are written, so search "
    "keeps working meanwhile. Only the collection's owner or an organization admin. Follow it with GET.",
    responses={
        403: NotCollectionManager.schema(),
        404: CollectionNotFound.schema(),
        409: ReindexInProgress.schema(),
    },
)
async def start_reindex(
    collection_id: uuid.UUID,
    request: Request,
    principal: CollectionManager,
    session: DbSession,
    meta: RequestMetaDep,
    body: ReindexRequest | None = None,
) -> ReindexStatus:
    return await reindex.start_reindex(
        session, principal, collection_id, body or ReindexRequest(),
        model=_embedder(request).name, jobs=request.app.state.jobs, meta=meta,
    )  # fmt: skip


@router.get(
    "/collections/{collection_id}/reindex",
    response_model=ReindexStatus,
    tags=["collections"],
    summary="Re-index progress",
    description="How many ready documents of the collection have vectors of the configured model for every "
    "chunk, and the state of the latest re-index run (`queued`, `running`; else `complete`, `failed` or "
    "`incomplete`).",
    responses={404: CollectionNotFound.schema()},
)
async def reindex_progress(
    collection_id: uuid.UUID, request: Request, principal: CollectionReader, session: DbSession
) -> ReindexStatus:
    return await reindex.reindex_status(
        session, principal, collection_id, model=_embedder(request).name, jobs=request.app.state.jobs
    )


# ---------------------------------------------------------------------------------------------
# evaluations of a collection on the caller's judged queries

# Results show which documents answer which queries: reading the collection's documents is needed too.
evaluations_router = APIRouter(
    prefix="/collections/{collection_id}/evaluations",
    tags=["evaluations"],
    dependencies=[rate_limit("default"), require("documents:read")],
)
EvaluationReader = Annotated[Principal, require("evaluations:read")]
EvaluationWriter = Annotated[Principal, require("evaluations:write")]
EvaluationDeleter = Annotated[Principal, require("evaluations:delete")]

_EVALUATION_EXAMPLE = {
    "name": "baseline",
    "queries": [
        {"id": "reset", "query": "how do I reset the router", "relevant": {"0192f7a4-5b1c-7d2e-8f3a-4b5c6d7e8f90": 2}},
        {"query": "warranty period", "relevant": ["0192f7a4-6c2d-7e3f-9a4b-5c6d7e8f9a01"]},
    ],
    "modes": ["keyword", "semantic", "hybrid"],
}


@evaluations_router.post(
    "",
    response_model=EvaluationRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Evaluate retrieval on your own judged queries",
    description="Send 1 to 1,000 queries, each with the documents of this collection that answer it "
    "(`{document_id: grade}` or a list of ids), and get the figures of `tessera eval retrieval` for your "
    "collection: nDCG@10, Recall@10, Recall@100, MRR@10 and search latency p50/p95 per mode, plus each "
    "query's result. Answers 202 with the stored evaluation (`queued`) and its URL in `Location`; the run "
    "is a job, so poll the evaluation until `completed` or `failed`. Runs are kept with the embedding "
    "model, fusion settings and the collection's size, to compare over time. Needs `evaluations:write` "
    "and `documents:read`.",
    responses={404: CollectionNotFound.schema(), 422: UnknownJudgedDocuments.schema()},
)
async def start_evaluation(
    collection_id: uuid.UUID,
    body: Annotated[EvaluationCreate, Body(openapi_examples={"judged queries": {"value": _EVALUATION_EXAMPLE}})],
    request: Request,
    response: Response,
    principal: EvaluationWriter,
    session: DbSession,
    settings: SettingsDep,
    meta: RequestMetaDep,
) -> EvaluationRead:
    evaluation = await evaluations.start_evaluation(
        session, principal, collection_id, body, settings=settings, jobs=request.app.state.jobs, meta=meta
    )
    response.headers["Location"] = f"{API_PREFIX}/collections/{collection_id}/evaluations/{evaluation.id}"
    return EvaluationRead.model_validate(evaluation)


@evaluations_router.get(
    "",
    response_model=EvaluationPage,
    summary="List a collection's evaluations",
    description="Newest first, each with its status, settings, the collection's size at the time and the "
    "headline metrics per mode (`metrics`), ready to chart over time. Per-query results are on each "
    "evaluation.",
    responses={404: CollectionNotFound.schema()},
)
async def list_evaluations(
    collection_id: uuid.UUID, principal: EvaluationReader, session: DbSession, page: PageParamsDep
) -> EvaluationPage:
    rows, cursor = await evaluations.list_evaluations(session, principal, collection_id, params=page)
    return EvaluationPage(items=[EvaluationRead.model_validate(row) for row in rows], next_cursor=cursor)


@evaluations_router.get(
    "/{evaluation_id}",
    response_model=EvaluationDetail,
    summary="One evaluation with per-query results",
    description="The metrics per mode and, for every query, per mode: its nDCG@10, recall and reciprocal "
    "rank, its latency, the rank of each judged document (null beyond 100) and the top 10 documents "
    "ranked, to see which queries fail and what came instead.",
    responses={404: EvaluationNotFound.schema()},
)
async def get_evaluation(
    collection_id: uuid.UUID, evaluation_id: uuid.UUID, principal: EvaluationReader, session: DbSession
) -> EvaluationDetail:
    evaluation = await evaluations.get_evaluation(session, principal, collection_id, evaluation_id)
    queries = await evaluations.judged_queries(session, evaluation)
    return EvaluationDetail.model_validate(
        {
            **EvaluationRead.model_validate(evaluation).model_dump(),
            "queries": [
                JudgedQueryRead(
                    id=q.query_key,
                    query=q.text,
                    relevant=q.relevant,
                    results={mode: q.results[mode] for mode in evaluation.modes if mode in q.results},
                )
                for q in queries
            ],
        }
    )


@evaluations_router.delete(
    "/{evaluation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an evaluation",
    description="Removes the evaluation and its per-query results; a run in progress stops.",
    responses={404: EvaluationNotFound.schema()},
)
async def delete_evaluation(
    collection_id: uuid.UUID,
    evaluation_id: uuid.UUID,
    principal: EvaluationDeleter,
    session: DbSession,
    meta: RequestMetaDep,
) -> None:
    await evaluations.delete_evaluation(session, principal, collection_id, evaluation_id, meta=meta)
