"""The support module's server settings (`TESSERA_SUPPORT__*`); each organization tunes its own
bot through `PUT /api/v1/support/settings`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SupportModuleSettings(BaseModel):
    match_threshold: float = Field(
        0.65,
        ge=0,
        le=1,
        description="Default FAQ match threshold on the combined score, for organizations that set none "
        "(calibrated on paraphrase sets: docs/BENCHMARKS.md).",
    )
    question_weight: float = Field(0.5, ge=0, le=1, description="Weight of the query-question cosine.")
    answer_weight: float = Field(0.3, ge=0, le=1, description="Weight of the query-answer cosine.")
    question_terms_weight: float = Field(0.15, ge=0, le=1, description="Weight of BM25 over question and keywords.")
    answer_terms_weight: float = Field(0.05, ge=0, le=1, description="Weight of BM25 over the answer.")
    learn_from_feedback: bool = Field(
        True, description="A query marked helpful on an FAQ becomes one of its phrasings."
    )
    max_learned_phrasings: int = Field(200, ge=0, le=10_000, description="Learned phrasings kept per FAQ.")
    max_import_rows: int = Field(5_000, ge=1, le=100_000, description="Most rows one FAQ import takes.")
    analytics_cache_seconds: int = Field(
        60, ge=0, le=86_400, description="How long a dashboard stays cached per organization (0: not cached)."
    )
