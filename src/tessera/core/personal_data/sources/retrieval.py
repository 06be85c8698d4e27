"""Retrieval evaluations the user ran (the organization's measurements: kept, unlinked from them)."""

from __future__ import annotations

from tessera.core.personal_data.sources.common import AuthoredRows
from tessera.core.retrieval.models import RetrievalEvaluation


class RetrievalEvaluationsSource(AuthoredRows):
    def __init__(self) -> None:
        super().__init__(
            "retrieval_evaluations",
            RetrievalEvaluation.created_by,
            RetrievalEvaluation.org_id,
            ("id", "org_id", "collection_id", "name", "status", "created_at"),
        )
