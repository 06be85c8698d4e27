from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.core.retrieval.fusion import Fusion

Mode = Literal["keyword", "semantic", "hybrid"]


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
    fusion: Fusion = Field("weighted", description="How hybrid combines the two rankings: `weighted` or `rrf`.")
    semantic_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the semantic score in `weighted` fusion (keyword gets the rest)."
    )
    rerank: Literal["none"] = Field("none", description="Reranker; `none` ships offline.")


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
    components: dict[str, ScoreComponent] = Field(description="Keyword and/or semantic score and rank of this hit.")


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[SearchHit]
    next_cursor: str | None
    embedding_model: str | None = None
    took_ms: float
