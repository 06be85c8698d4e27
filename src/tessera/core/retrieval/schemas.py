from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.core.pagination import Page
from tessera.core.retrieval.fusion import DEFAULT_FUSION, DEFAULT_SEMANTIC_WEIGHT, Fusion
from tessera.core.retrieval.models import EvaluationStatus

Mode = Literal["keyword", "semantic", "hybrid"]
# `none`, `configured`, or a reranker provider (tessera.core.retrieval.rerank.RerankerProviderName).
RerankChoice = Literal["none", "configured", "cross-encoder", "http"]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2_000, examples=["how do I reset the router"])
    collections: list[uuid.UUID] | None = Field(
        None, max_length=100, description="Collections to search; default: every collection you can see."
    )
    filters: dict[str, Any] | None = Field(
        None,
        description="Metadata and document-field conditions, all of which must hold. A value is an equality or "
        'an object of operators (eq, ne, in, nin, gt, gte, lt, lte): `{"year": {"gte": 2020}, "doc_type": "pdf"}`.',
        examples=[{"year": {"gte": 2020}, "team": {"in": ["red", "blue"]}}],
    )
    mode: Mode = Field("hybrid", description="`keyword` (BM25), `semantic` (embeddings) or `hybrid` (both, fused).")
    limit: int = Field(10, ge=1, le=100)
    cursor: str | None = Field(None, max_length=32, description="`next_cursor` of the previous page.")
    fusion: Fusion = Field(
        DEFAULT_FUSION,
        description="How hybrid combines the two rankings: `dbsf` (scores scaled by their spread; default), "
        "`weighted` (min-max scaled) or `rrf` (reciprocal ranks).",
    )
    semantic_weight: float = Field(
        DEFAULT_SEMANTIC_WEIGHT,
        ge=0.0,
        le=1.0,
        description="Weight of the semantic score in `dbsf` and `weighted` fusion (keyword gets the rest).",
    )
    rerank: RerankChoice = Field(
        "none",
        description="Reorder the top hits with the server's reranker: `configured` (whichever it is) or its "
        "provider's name (`cross-encoder`, `http`); `none` (default) keeps the first-stage order. Asking for a "
        "reranker the server does not have is a 422 `reranker_not_configured`.",
    )


class ScoreComponent(BaseModel):
    score: float
    rank: int


class SearchHit(BaseModel):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    collection_id: uuid.UUID
    document_title: str | None
    filename: str
    ordinal: int
    text: str
    snippet: str = Field(description="The best passage of the chunk with query words in `<mark>…</mark>`.")
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    start_offset: int
    end_offset: int
    score: float
    components: dict[str, ScoreComponent] = Field(
        description="Keyword and/or semantic score and rank of this hit, and `rerank` where a reranker ordered it."
    )


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[SearchHit]
    next_cursor: str | None
    embedding_model: str | None = None
    reranker: str | None = Field(None, description="The reranker that ordered the top hits, if one was asked for.")
    took_ms: float


# ---------------------------------------------------------------------------------------------
# evaluations of a collection on the user's own judged queries

MODES: tuple[Mode, ...] = ("keyword", "semantic", "hybrid")
MAX_JUDGED_QUERIES = 1_000
MAX_RELEVANT_PER_QUERY = 1_000


def _no_nul(value: str, what: str) -> str:
    # PostgreSQL text and JSONB cannot hold NUL characters.
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value


class JudgedQueryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, min_length=1, max_length=200, description="Your id for the query; default: its position, from 1."
    )
    query: str = Field(min_length=1, max_length=2_000, examples=["how do I reset the router"])
    relevant: dict[str, int] | list[str] = Field(
        description="Documents of this collection that answer the query: `{document_id: grade}` with integer "
        "grades of at least 1 (higher is more relevant, as in BEIR qrels), or a list of document ids, each "
        "graded 1. Ids that are not documents of the collection make the request a 422 that lists them.",
        examples=[{"0192f7a4-5b1c-7d2e-8f3a-4b5c6d7e8f90": 2}],
    )

    @field_validator("id")
    @classmethod
    def _clean_id(cls, value: str | None) -> str | None:
        return _no_nul(value, "id") if value is not None else None

    @field_validator("query")
    @classmethod
    def _clean_query(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("query must not be blank")
        return _no_nul(value, "query")

    @field_validator("relevant")
    @classmethod
    def _check_relevant(cls, value: dict[str, int] | list[str]) -> dict[str, int] | list[str]:
        grades = value if isinstance(value, dict) else dict.fromkeys(value, 1)
        if not grades:
            raise ValueError("name at least one relevant document")
        if len(grades) > MAX_RELEVANT_PER_QUERY:
            raise ValueError(f"at most {MAX_RELEVANT_PER_QUERY} relevant documents per query")
        for document_id, grade in grades.items():
            if not 1 <= len(document_id) <= 64:
                raise ValueError("document ids are 1 to 64 characters")
            _no_nul(document_id, "document ids")
            if grade < 1:
                raise ValueError(f"grades are integers of at least 1 (document {document_id!r} has {grade})")
        return value

    def grades(self) -> dict[str, int]:
        """`relevant` as `{document_id: grade}`, whichever form it came in."""
        return dict(self.relevant) if isinstance(self.relevant, dict) else dict.fromkeys(self.relevant, 1)


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        None, max_length=200, description="A label for the run, e.g. the change it measures.", examples=["baseline"]
    )
    queries: list[JudgedQueryCreate] = Field(
        min_length=1, max_length=MAX_JUDGED_QUERIES, description="1 to 1,000 queries with their relevant documents."
    )
    modes: list[Mode] = Field(
        default_factory=lambda: list(MODES),
        min_length=1,
        max_length=3,
        description="Search modes to evaluate, each over every query; default all three.",
    )
    fusion: Fusion = Field(DEFAULT_FUSION, description="As in search: how hybrid combines the two rankings.")
    semantic_weight: float = Field(
        DEFAULT_SEMANTIC_WEIGHT, ge=0.0, le=1.0, description="As in search: the semantic share of the fusion."
    )

    @field_validator("name")
    @classmethod
    def _clean_name(cls, value: str | None) -> str | None:
        value = value.strip() if value is not None else None
        return _no_nul(value, "name") if value else None

    @model_validator(mode="after")
    def _query_ids(self) -> EvaluationCreate:
        self.modes = list(dict.fromkeys(self.modes))
        for position, query in enumerate(self.queries, start=1):
            if query.id is None:
                query.id = str(position)
        counts = Counter(query.id for query in self.queries)
        repeated = sorted(str(key) for key, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(f"query ids must be unique; repeated: {', '.join(repeated[:10])}")
        return self


class ModeMetrics(BaseModel):
    ndcg_at_10: float = Field(description="nDCG@10 with graded gains, the mean over the queries.")
    recall_at_10: float
    recall_at_100: float
    mrr_at_10: float = Field(description="Reciprocal rank of the first relevant document in the top 10, the mean.")
    latency_p50_ms: float = Field(description="Median time of one search call (the first page), embedding included.")
    latency_p95_ms: float
    queries: int


class EvaluationError(BaseModel):
    code: str
    message: str


class EvaluationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    collection_id: uuid.UUID
    name: str | None
    status: EvaluationStatus = Field(description="`queued`, `running`, `completed` or `failed` (see `error`).")
    modes: list[Mode]
    fusion: Fusion
    semantic_weight: float
    embedding_model: str | None = Field(description="Model of semantic and hybrid search; null for keyword only.")
    document_count: int = Field(description="Searchable (ready) documents of the collection when the run started.")
    chunk_count: int
    query_count: int
    metrics: dict[Mode, ModeMetrics] = Field(description="Headline figures of each finished mode.")
    error: EvaluationError | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @model_validator(mode="after")
    def _metrics_in_mode_order(self) -> EvaluationRead:
        # JSONB keeps its own key order; show the modes in the order they were asked for.
        self.metrics = {mode: self.metrics[mode] for mode in self.modes if mode in self.metrics}
        return self


EvaluationPage = Page[EvaluationRead]


class RelevantRank(BaseModel):
    document_id: str
    grade: int
    rank: int | None = Field(description="Position among the ranked documents, from 1; null when not in the top 100.")


class QueryModeResult(BaseModel):
    ndcg_at_10: float
    recall_at_10: float
    recall_at_100: float
    mrr_at_10: float
    latency_ms: float | None
    relevant: list[RelevantRank] = Field(description="Each judged document with where this mode ranked it.")
    top: list[str] = Field(description="The first 10 documents this mode ranked, to see what came instead.")


class JudgedQueryRead(BaseModel):
    id: str
    query: str
    relevant: dict[str, int]
    results: dict[Mode, QueryModeResult]


class EvaluationDetail(EvaluationRead):
    queries: list[JudgedQueryRead] = Field(description="Every query in the order given, with its results per mode.")


# ---------------------------------------------------------------------------------------------
# re-indexing a collection

ReindexScope = Literal["vectors", "text", "all"]
ReindexState = Literal["queued", "running", "complete", "incomplete", "failed"]


class ReindexRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"scope": "vectors", "force": False}, {"scope": "all"}]}
    )

    scope: ReindexScope = Field(
        "vectors",
        description="`vectors`: embed again with the configured model; `text`: rebuild the full-text entries; "
        "`all`: both.",
    )
    force: bool = Field(
        False,
        description="Also rewrite documents whose vectors are already of the current model (without it they "
        "are skipped; `text` always rewrites every ready document).",
    )


class ReindexStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "job_id": "retrieval.reindex:0192f7a4-5b1c-7d2e-8f3a-4b5c6d7e8f90:local:all-MiniLM-L6-v2-int8:0c1d",
                    "status": "running",
                    "collection_id": "0192f7a4-5b1c-7d2e-8f3a-4b5c6d7e8f90",
                    "model": "local:all-MiniLM-L6-v2-int8",
                    "documents_total": 1200,
                    "documents_done": 450,
                }
            ]
        }
    )

    job_id: str | None = Field(description="The latest re-index run of the collection; null when none is known.")
    status: ReindexState = Field(
        description="`queued` or `running` while a run is under way; otherwise `complete` (every ready document "
        "has vectors of the model), `failed` (the latest run failed) or `incomplete`."
    )
    collection_id: uuid.UUID
    model: str = Field(description="The configured embedding model, whose vectors are counted.")
    documents_total: int = Field(description="Ready documents of the collection.")
    documents_done: int = Field(description="Ready documents with a vector of `model` for every chunk.")
