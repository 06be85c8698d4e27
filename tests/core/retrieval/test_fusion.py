"""Fusion of keyword and semantic rankings: each method's scores, computed by hand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tessera.core.retrieval.fusion import RRF_K, fuse

DOC = uuid.uuid4()
A, B, C, D = (uuid.UUID(int=i) for i in range(1, 5))


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    score: float
    document_id: uuid.UUID = DOC


KEYWORD = [Hit(A, 12.0), Hit(B, 6.0), Hit(C, 3.0)]
SEMANTIC = [Hit(B, 0.9), Hit(D, 0.7), Hit(A, 0.5)]


def scores(method: str, weight: float = 0.5) -> dict[uuid.UUID, float]:
    return {f.chunk_id: f.score for f in fuse(KEYWORD, SEMANTIC, method=method, semantic_weight=weight)}  # type: ignore[arg-type]


def test_weighted_min_max_scales_each_list_and_mixes_by_weight() -> None:
    got = scores("weighted", 0.5)
    # keyword: A 1, B 1/3, C 0; semantic: B 1, D 0.5, A 0
    assert got[A] == pytest.approx(0.5 * 1.0)
    assert got[B] == pytest.approx(0.5 * (1 / 3) + 0.5 * 1.0)
    assert got[C] == pytest.approx(0.0)
    assert got[D] == pytest.approx(0.5 * 0.5)


def test_dbsf_scales_from_mean_minus_three_sigma() -> None:
    got = scores("dbsf", 0.4)

    def scaled(values: list[float], value: float) -> float:
        mean = sum(values) / len(values)
        sigma = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return (value - (mean - 3 * sigma)) / (6 * sigma)

    keyword, semantic = [12.0, 6.0, 3.0], [0.9, 0.7, 0.5]
    assert got[A] == pytest.approx(0.6 * scaled(keyword, 12.0) + 0.4 * scaled(semantic, 0.5))
    assert got[C] == pytest.approx(0.6 * scaled(keyword, 3.0))
    assert got[D] == pytest.approx(0.4 * scaled(semantic, 0.7))
    # an outlier squashes min-max but not dbsf: C keeps a share of the keyword score
    assert got[C] > 0


def test_rrf_adds_reciprocal_ranks() -> None:
    got = scores("rrf")
    assert got[A] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 3))
    assert got[B] == pytest.approx(1 / (RRF_K + 2) + 1 / (RRF_K + 1))
    assert got[D] == pytest.approx(1 / (RRF_K + 2))


def test_fused_hits_are_ordered_and_carry_both_components() -> None:
    fused = fuse(KEYWORD, SEMANTIC, method="dbsf", semantic_weight=0.5)
    assert [f.score for f in fused] == sorted((f.score for f in fused), reverse=True)
    by_id = {f.chunk_id: f for f in fused}
    assert by_id[A].components == {"keyword": {"score": 12.0, "rank": 1}, "semantic": {"score": 0.5, "rank": 3}}
    assert set(by_id[D].components) == {"semantic"}


def test_one_empty_list_ranks_by_the_other() -> None:
    for method in ("weighted", "dbsf", "rrf"):
        fused = fuse(KEYWORD, [], method=method)  # type: ignore[arg-type]
        assert [f.chunk_id for f in fused] == [A, B, C]


def test_a_pool_limits_the_candidates_but_not_where_their_scores_come_from() -> None:
    # Lists three deep, candidates the best two of each: C (keyword's third) is no candidate, but
    # A, semantic's third, keeps its semantic score, scaled by the first two semantic scores.
    fused = fuse(KEYWORD, SEMANTIC, method="weighted", semantic_weight=0.5, pool=2)
    got = {f.chunk_id: f.score for f in fused}
    assert set(got) == {A, B, D}
    # keyword over A, B: A 1, B 0; semantic over B, D: B 1, D 0, A below the pool's minimum: 0
    assert got[A] == pytest.approx(0.5)
    assert got[B] == pytest.approx(0.5)
    assert got[D] == pytest.approx(0.0)
    assert {f.chunk_id: f for f in fused}[A].components["semantic"] == {"score": 0.5, "rank": 3}


def test_dbsf_reads_a_deeper_score_for_a_candidate_of_the_other_list() -> None:
    keyword = [Hit(A, 10.0), Hit(B, 9.0), Hit(C, 2.0)]
    semantic = [Hit(C, 0.9), Hit(D, 0.8), Hit(A, 0.79)]
    pooled = {f.chunk_id: f.score for f in fuse(keyword, semantic, method="dbsf", pool=2)}
    shallow = {f.chunk_id: f.score for f in fuse(keyword[:2], semantic[:2], method="dbsf")}
    # A is 3rd by meaning: with the deeper list it is not scored as absent from it
    assert pooled[A] > shallow[A]
    assert pooled[B] == pytest.approx(shallow[B])
