"""`tessera eval retrieval`: the metrics against hand-computed values, and a tiny BEIR dataset run
end to end (ingest through `process_many`, search in every mode) with the fake embedder on SQLite."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.core.retrieval.eval_cli import SUMMARY_KEYS, eval_app
from tessera.core.retrieval.evaluation import (
    NotBeirDataset,
    evaluate_retrieval,
    load_beir,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reciprocal_rank_at_k,
    score_rankings,
)

FAKE = {"embeddings": {"provider": "fake"}}

CORPUS = [
    ("d1", "Herons", "Grey herons stand motionless in shallow water, waiting to spear fish with the beak."),
    ("d2", "Oaks", "Oak trees grow slowly and live for centuries; their acorns feed jays and squirrels."),
    ("d3", "Airships", "The zeppelin was a rigid airship, its hydrogen cells held inside a fabric-covered frame."),
    ("d4", "Steam", "A steam engine turns the pressure of boiling water into motion through pistons and valves."),
    ("d5", "Bread", "Sourdough bread rises with wild yeast and lactic bacteria kept alive in a starter."),
    ("d6", "Tides", "Tides follow the moon: twice a day the sea floods the shallow sands of the coast and falls back."),
    ("d7", "Glaciers", "Glaciers carve valleys as the ice creeps downhill, grinding rock into fine flour."),
    ("d8", "Bees", "Honey bees dance to tell their sisters where the flowers are and how far to fly."),
]
QUERIES = [
    ("q1", "zeppelin"),
    ("q2", "which birds spear fish in shallow water"),
    ("q3", "how do bees tell where flowers are"),
    ("q4", "a query without judgments"),
]
QRELS = [("q1", "d3", 1), ("q2", "d1", 2), ("q2", "d6", 1), ("q3", "d8", 1)]


def write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as corpus:
        for doc_id, title, text in CORPUS:
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as queries:
        for query_id, text in QUERIES:
            queries.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in QRELS)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny-beir")


class TestMetrics:
    def test_ndcg_uses_graded_gains_and_log2_discounts(self) -> None:
        relevance = {"a": 2, "b": 1, "c": 0}

        # DCG = 0/log2(2) + 1/log2(3) + 2/log2(4); ideal = 2/log2(2) + 1/log2(3)
        expected = (1 / math.log2(3) + 1.0) / (2.0 + 1 / math.log2(3))
        assert ndcg_at_k(["x", "b", "a"], relevance, 10) == pytest.approx(expected)
        assert expected == pytest.approx(0.61991, abs=1e-5)
        assert ndcg_at_k(["a", "b"], relevance, 10) == pytest.approx(1.0)
        assert ndcg_at_k(["b", "a"], relevance, 1) == pytest.approx(0.5)  # 1 / 2 at the cut-off
        assert ndcg_at_k(["x", "y"], relevance, 10) == 0.0

    def test_recall_counts_relevant_documents_within_the_cut_off(self) -> None:
        relevance = {"a": 2, "b": 1, "c": 0}

        assert recall_at_k(["x", "b", "a"], relevance, 2) == pytest.approx(0.5)
        assert recall_at_k(["x", "b", "a"], relevance, 3) == pytest.approx(1.0)
        assert recall_at_k(["c"], relevance, 10) == 0.0  # judged, but not relevant

    def test_reciprocal_rank_is_the_first_document_scored_above_zero(self) -> None:
        relevance = {"a": 1, "c": 0}

        assert reciprocal_rank_at_k(["x", "c", "a"], relevance, 10) == pytest.approx(1 / 3)
        assert reciprocal_rank_at_k(["x", "c", "a"], relevance, 2) == 0.0

    def test_means_skip_queries_without_qrels(self) -> None:
        qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
        rankings = {"q1": ["a"], "q2": ["x", "b"], "q3": ["zzz"]}

        scores = score_rankings(rankings, qrels)

        assert scores["mrr@10"] == pytest.approx((1 + 1 / 2) / 2)
        assert scores["recall@10"] == pytest.approx(1.0)
        assert scores["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)

    def test_a_document_with_the_query_id_is_not_ranked(self) -> None:
        scores = score_rankings({"q1": ["q1", "a"]}, {"q1": {"a": 1}})

        assert scores["mrr@10"] == pytest.approx(1.0)

    def test_percentile_interpolates(self) -> None:
        assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
        assert percentile([10.0], 95) == 10.0


class TestLoadBeir:
    def test_keeps_the_queries_of_the_split(self, beir: Path) -> None:
        dataset = load_beir(beir, "test")

        assert len(dataset.corpus) == 8
        assert list(dataset.queries) == ["q1", "q2", "q3"]
        assert dataset.qrels["q2"] == {"d1": 2, "d6": 1}

    def test_rejects_a_folder_that_is_not_beir(self, tmp_path: Path) -> None:
        (tmp_path / "corpus.jsonl").write_text("{}\n")

        with pytest.raises(NotBeirDataset, match=r"queries\.jsonl"):
            load_beir(tmp_path, "test")


async def test_evaluates_every_mode_over_one_ingest(beir: Path) -> None:
    seen: set[str] = set()

    result = await evaluate_retrieval(
        beir,
        split="test",
        modes=["keyword", "semantic", "hybrid"],
        backend="sqlite",
        settings_overrides=FAKE,
        progress=lambda stage, done, total: seen.add(stage),
    )

    assert set(result["modes"]) == {"keyword", "semantic", "hybrid"}
    assert result["mode"] == "keyword"
    assert (result["documents"], result["documents_not_ready"], result["queries"]) == (8, 0, 3)
    assert result["dataset"] == "tiny-beir"
    assert result["chunks"] >= 8
    assert result["embedding_model"] is None
    assert result["modes"]["semantic"]["embedding_model"].startswith("fake")
    for figures in result["modes"].values():
        for key in ("ndcg@10", "recall@10", "recall@100", "mrr@10"):
            assert 0.0 <= figures[key] <= 1.0
        assert figures["latency_p95_ms"] >= figures["latency_p50_ms"] > 0
    # Every relevant document shares words with its query, and the corpus is 8 documents.
    assert result["modes"]["keyword"]["recall@100"] == 1.0
    assert {"storing", "processing", "queries:keyword", "queries:semantic", "queries:hybrid"} <= seen


async def test_keyword_ranks_the_document_with_a_rare_word_first(beir: Path) -> None:
    result = await evaluate_retrieval(
        beir, split="test", modes=["keyword"], backend="sqlite", settings_overrides=FAKE, limit_queries=1
    )

    assert result["queries"] == 1
    assert result["ndcg@10"] == 1.0
    assert result["mrr@10"] == 1.0


def run_cli(*args: str) -> tuple[int, str, str]:
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("TESSERA_")}
    env.update(TESSERA_EMBEDDINGS__PROVIDER="fake", COLUMNS="200", NO_COLOR="1", TERM="dumb")
    result = CliRunner().invoke(eval_app, ["retrieval", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_cli_prints_one_json_object_on_the_last_line(beir: Path) -> None:
    code, stdout, stderr = run_cli("--dataset", str(beir), "--mode", "keyword", "--mode", "hybrid", "--json")

    assert code == 0, stderr
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert set(SUMMARY_KEYS) <= set(figures)
    assert figures["mode"] == "keyword"
    assert set(figures["modes"]) == {"keyword", "hybrid"}
    assert set(SUMMARY_KEYS) <= set(figures["modes"]["hybrid"])


def test_cli_rejects_a_folder_that_is_not_beir(tmp_path: Path) -> None:
    code, _stdout, stderr = run_cli("--dataset", str(tmp_path), "--json")

    assert code == 2
    assert "not a BEIR dataset" in stderr
