"""Combining keyword and semantic rankings.

* `weighted`: each list's scores are min-max normalised over its candidates, then
  `semantic_weight * semantic + (1 - semantic_weight) * keyword`; a chunk missing from one list
  gets 0 there. Keeps how much better the first hit is than the tenth, which RRF throws away.
* `dbsf` (default): distribution-based score fusion: like `weighted`, but each list is scaled from
  mean - 3 sd to mean + 3 sd (standard deviations) of its candidates' scores rather than from its min to its max, so one
  outlying score does not squash the others (Qdrant's DBSF; Haystack's distribution-based join).
* `rrf`: reciprocal-rank fusion, `Σ 1 / (k + rank)`; robust when the scores mean little.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Fusion = Literal["weighted", "dbsf", "rrf"]
RRF_K = 60
# Chosen by bench/fusion.py on SciFact, SQuAD and banking77 (docs/BENCHMARKS.md, "Fusion defaults").
DEFAULT_FUSION: Fusion = "dbsf"
DEFAULT_SEMANTIC_WEIGHT = 0.5


class Scored(Protocol):
    @property
    def chunk_id(self) -> uuid.UUID: ...

    @property
    def document_id(self) -> uuid.UUID: ...

    @property
    def score(self) -> float: ...


@dataclass
class Fused:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    score: float
    components: dict[str, dict[str, float]] = field(default_factory=dict)


def _normalised(hits: Sequence[Scored]) -> dict[uuid.UUID, float]:
    if not hits:
        return {}
    scores = [hit.score for hit in hits]
    low, high = min(scores), max(scores)
    span = high - low
    return {hit.chunk_id: (hit.score - low) / span if span > 0 else 1.0 for hit in hits}


def _distribution_scaled(hits: Sequence[Scored]) -> dict[uuid.UUID, float]:
    if not hits:
        return {}
    scores = [hit.score for hit in hits]
    mean = sum(scores) / len(scores)
    spread = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    if spread == 0:
        return {hit.chunk_id: 1.0 for hit in hits}
    low = mean - 3 * spread
    return {hit.chunk_id: (hit.score - low) / (6 * spread) for hit in hits}


def fuse(
    keyword: Sequence[Scored],
    semantic: Sequence[Scored],
    *,
    method: Fusion = DEFAULT_FUSION,
    semantic_weight: float = DEFAULT_SEMANTIC_WEIGHT,
    rrf_k: int = RRF_K,
) -> list[Fused]:
    fused: dict[uuid.UUID, Fused] = {}
    for name, hits in (("keyword", keyword), ("semantic", semantic)):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.chunk_id, Fused(hit.chunk_id, hit.document_id, 0.0))
            entry.components[name] = {"score": round(hit.score, 6), "rank": rank}
    if method == "rrf":
        for entry in fused.values():
            entry.score = sum(1.0 / (rrf_k + c["rank"]) for c in entry.components.values())
    else:
        scale = _distribution_scaled if method == "dbsf" else _normalised
        keyword_norm, semantic_norm = scale(keyword), scale(semantic)
        for chunk_id, entry in fused.items():
            entry.score = semantic_weight * semantic_norm.get(chunk_id, 0.0) + (1 - semantic_weight) * keyword_norm.get(
                chunk_id, 0.0
            )
    return sorted(fused.values(), key=lambda e: (-e.score, e.chunk_id))
