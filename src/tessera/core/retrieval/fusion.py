"""Combining keyword and semantic rankings.

* `weighted` (default): each list's scores are min-max normalised over its candidates, then
  `semantic_weight * semantic + (1 - semantic_weight) * keyword`; a chunk missing from one list
  gets 0 there. Keeps how much better the first hit is than the tenth, which RRF throws away.
* `rrf`: reciprocal-rank fusion, `Σ 1 / (k + rank)`; robust when the scores mean little.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Fusion = Literal["weighted", "rrf"]
RRF_K = 60


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


def fuse(
    keyword: Sequence[Scored],
    semantic: Sequence[Scored],
    *,
    method: Fusion = "weighted",
    semantic_weight: float = 0.5,
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
        keyword_norm, semantic_norm = _normalised(keyword), _normalised(semantic)
        for chunk_id, entry in fused.items():
            entry.score = semantic_weight * semantic_norm.get(chunk_id, 0.0) + (1 - semantic_weight) * keyword_norm.get(
                chunk_id, 0.0
            )
    return sorted(fused.values(), key=lambda e: (-e.score, e.chunk_id))
