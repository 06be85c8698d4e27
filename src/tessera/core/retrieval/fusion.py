"""Combining keyword and semantic rankings.

* `weighted`: each list's scores are min-max normalised over its candidates, then
  `semantic_weight * semantic + (1 - semantic_weight) * keyword`; a chunk missing from one list
  gets 0 there. Keeps how much better the first hit is than the tenth, which RRF throws away.
* `dbsf` (default): distribution-based score fusion: like `weighted`, but each list is scaled from
  mean - 3 sd to mean + 3 sd (standard deviations) of its candidates' scores rather than from its min to its max, so one
  outlying score does not squash the others (Qdrant's DBSF; Haystack's distribution-based join).
* `rrf`: reciprocal-rank fusion, `Σ 1 / (k + rank)`; robust when the scores mean little.

The lists may run deeper than the candidates (`pool`): the candidates are the best `pool` of each
list and the scaling comes from those, but a candidate's score in the other list is read from the
whole of it. A chunk 150th by keywords and 3rd by meaning then keeps its keyword score instead of
counting as absent (the bottom of the scale). Measured (docs/BENCHMARKS.md, "Deeper lists"): pool
100 over lists of 300 against lists of 100, nDCG@10 +0.004 on SciFact and +0.006 on banking77;
scaling from all 300 instead helped SciFact and cost banking77 0.007.
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


def _normalised(hits: Sequence[Scored], pool: int) -> dict[uuid.UUID, float]:
    """Min-max over the first `pool` hits, applied to every hit (deeper ones may fall below 0)."""
    if not hits:
        return {}
    scores = [hit.score for hit in hits[:pool]]
    low, high = min(scores), max(scores)
    span = high - low
    return {hit.chunk_id: max((hit.score - low) / span, 0.0) if span > 0 else 1.0 for hit in hits}


def _distribution_scaled(hits: Sequence[Scored], pool: int) -> dict[uuid.UUID, float]:
    """mean ± 3 sd of the first `pool` hits mapped to 0..1, applied to every hit."""
    if not hits:
        return {}
    scores = [hit.score for hit in hits[:pool]]
    mean = sum(scores) / len(scores)
    spread = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    if spread == 0:
        return {hit.chunk_id: 1.0 for hit in hits}
    low = mean - 3 * spread
    return {hit.chunk_id: max((hit.score - low) / (6 * spread), 0.0) for hit in hits}


def fuse(
    keyword: Sequence[Scored],
    semantic: Sequence[Scored],
    *,
    method: Fusion = DEFAULT_FUSION,
    semantic_weight: float = DEFAULT_SEMANTIC_WEIGHT,
    rrf_k: int = RRF_K,
    pool: int | None = None,
) -> list[Fused]:
    """The best `pool` hits of each list (all of them without `pool`), scored from both lists."""
    depth = pool if pool is not None else max(len(keyword), len(semantic))
    fused: dict[uuid.UUID, Fused] = {}
    for hits in (keyword, semantic):
        for hit in hits[:depth]:
            fused.setdefault(hit.chunk_id, Fused(hit.chunk_id, hit.document_id, 0.0))
    for name, hits in (("keyword", keyword), ("semantic", semantic)):
        for rank, hit in enumerate(hits, start=1):
            entry = fused.get(hit.chunk_id)
            if entry is not None:
                entry.components[name] = {"score": round(hit.score, 6), "rank": rank}
    if method == "rrf":
        for entry in fused.values():
            entry.score = sum(1.0 / (rrf_k + c["rank"]) for c in entry.components.values())
    else:
        scale = _distribution_scaled if method == "dbsf" else _normalised
        keyword_norm, semantic_norm = scale(keyword, depth), scale(semantic, depth)
        for chunk_id, entry in fused.items():
            entry.score = semantic_weight * semantic_norm.get(chunk_id, 0.0) + (1 - semantic_weight) * keyword_norm.get(
                chunk_id, 0.0
            )
    return sorted(fused.values(), key=lambda e: (-e.score, e.chunk_id))
