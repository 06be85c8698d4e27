"""`/api/v1/collections/{id}/evaluations` on both backends: metrics on the user's judged queries
checked by hand, runs stored and listed over time, bad judgments refused, tenants and private
collections kept apart, deletion; and one run through the real job system."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from tessera.core.db.session import unit_of_work
from tessera.core.retrieval.jobs import run_inline
from tessera.core.retrieval.models import EvaluationStatus, RetrievalEvaluation
from tests.conftest import test_settings as make_settings
from tests.factories import (
    SAMPLE_DOCS,
    SignedIn,
    add_member,
    create_collection,
    error_code,
    ingest_document,
    register,
)

DOCS = SAMPLE_DOCS

METRICS = ("ndcg_at_10", "recall_at_10", "recall_at_100", "mrr_at_10")


@pytest.fixture
async def library(client: httpx.AsyncClient) -> tuple[SignedIn, str, dict[str, str]]:
    user = await register(client)
    collection_id = await create_collection(client, user, "Nature")
    ids = {name: await ingest_document(client, user, collection_id, name, content) for name, content in DOCS.items()}
    return user, collection_id, ids


def url(collection_id: str, evaluation_id: str | None = None) -> str:
    base = f"/api/v1/collections/{collection_id}/evaluations"
    return f"{base}/{evaluation_id}" if evaluation_id else base


async def evaluate(client: httpx.AsyncClient, user: SignedIn, collection_id: str, **body: Any) -> dict[str, Any]:
    """Start an evaluation and return it once finished (the test app runs it inline, before answering)."""
    response = await client.post(url(collection_id), json=body, headers=user.headers)
    assert response.status_code == 202, response.text
    started: dict[str, Any] = response.json()
    assert started["status"] == "queued"
    assert response.headers["location"] == url(collection_id, started["id"])
    done = await client.get(response.headers["location"], headers=user.headers)
    assert done.status_code == 200, done.text
    finished: dict[str, Any] = done.json()
    return finished


class TestMetrics:
    async def test_keyword_figures_match_a_hand_computation(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        body = {
            "name": "baseline",
            "queries": [
                # Only the heron document has these words: rank 1 → every metric 1.0.
                {"query": "herons spear fish", "relevant": {ids["herons.md"]: 2}},
                # Two relevant documents, one found at rank 1 and one without the word.
                {"id": "acorns", "query": "acorns", "relevant": [ids["oaks.md"], ids["engines.md"]]},
                # The relevant document does not hold the words: keyword search cannot find it.
                {"query": "jays and squirrels", "relevant": {ids["engines.md"]: 1}},
            ],
            "modes": ["keyword"],
        }

        evaluation = await evaluate(client, user, collection_id, **body)

        assert evaluation["status"] == "completed", evaluation["error"]
        # acorns: DCG = 1/log2(2); ideal = 1/log2(2) + 1/log2(3).
        acorns_ndcg = 1 / (1 + 1 / math.log2(3))
        assert acorns_ndcg == pytest.approx(0.61315, abs=1e-5)
        expected_per_query = {
            "1": {"ndcg_at_10": 1.0, "recall_at_10": 1.0, "recall_at_100": 1.0, "mrr_at_10": 1.0},
            "acorns": {"ndcg_at_10": acorns_ndcg, "recall_at_10": 0.5, "recall_at_100": 0.5, "mrr_at_10": 1.0},
            "3": {"ndcg_at_10": 0.0, "recall_at_10": 0.0, "recall_at_100": 0.0, "mrr_at_10": 0.0},
        }
        queries = {q["id"]: q for q in evaluation["queries"]}
        assert list(queries) == ["1", "acorns", "3"]
        for query_id, expected in expected_per_query.items():
            result = queries[query_id]["results"]["keyword"]
            for name, value in expected.items():
                assert result[name] == pytest.approx(value, abs=1e-5), (query_id, name)
            assert result["latency_ms"] > 0
        assert queries["1"]["results"]["keyword"]["relevant"] == [
            {"document_id": ids["herons.md"], "grade": 2, "rank": 1}
        ]
        assert {(r["document_id"], r["rank"]) for r in queries["acorns"]["results"]["keyword"]["relevant"]} == {
            (ids["oaks.md"], 1),
            (ids["engines.md"], None),
        }
        assert queries["acorns"]["relevant"] == {ids["oaks.md"]: 1, ids["engines.md"]: 1}
        assert queries["3"]["results"]["keyword"]["top"] == [ids["oaks.md"]]  # what came instead

        means = evaluation["metrics"]["keyword"]
        assert means["ndcg_at_10"] == pytest.approx((1 + acorns_ndcg + 0) / 3, abs=1e-5)
        assert means["recall_at_10"] == pytest.approx(0.5, abs=1e-5)
        assert means["mrr_at_10"] == pytest.approx(2 / 3, abs=1e-5)
        assert means["queries"] == 3
        assert 0 < means["latency_p50_ms"] <= means["latency_p95_ms"]

    async def test_every_mode_is_run_and_the_run_is_described(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        body = {
            "queries": [
                {"query": "herons waiting in shallow water", "relevant": [ids["herons.md"]]},
                {"query": "boiling water and pistons", "relevant": {ids["engines.md"]: 3, ids["herons.md"]: 1}},
            ],
            "fusion": "rrf",
            "semantic_weight": 0.3,
        }

        evaluation = await evaluate(client, user, collection_id, **body)

        assert evaluation["status"] == "completed", evaluation["error"]
        assert evaluation["modes"] == ["keyword", "semantic", "hybrid"]
        assert set(evaluation["metrics"]) == {"keyword", "semantic", "hybrid"}
        assert evaluation["embedding_model"].startswith("fake:hash-")
        assert (evaluation["fusion"], evaluation["semantic_weight"]) == ("rrf", 0.3)
        assert evaluation["document_count"] == 3
        assert evaluation["chunk_count"] >= 3
        assert evaluation["query_count"] == 2
        assert evaluation["created_by"] == user.user_id
        assert evaluation["created_at"] <= evaluation["started_at"] <= evaluation["completed_at"]
        assert evaluation["error"] is None
        # Semantic search ranks every chunk: with three documents each judged one has a rank.
        for query in evaluation["queries"]:
            assert set(query["results"]) == {"keyword", "semantic", "hybrid"}
            assert all(r["rank"] is not None for r in query["results"]["semantic"]["relevant"])
            assert query["results"]["semantic"]["recall_at_100"] == 1.0
        assert evaluation["metrics"]["semantic"]["recall_at_100"] == 1.0
        assert evaluation["metrics"]["keyword"]["ndcg_at_10"] > 0.5

    async def test_keyword_only_runs_record_no_embedding_model(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library

        evaluation = await evaluate(
            client, user, collection_id, queries=[{"query": "acorns", "relevant": [ids["oaks.md"]]}], modes=["keyword"]
        )

        assert evaluation["embedding_model"] is None
        assert list(evaluation["metrics"]) == ["keyword"]


async def test_runs_are_stored_and_listed_newest_first(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, collection_id, ids = library
    queries = [{"query": "acorns", "relevant": [ids["oaks.md"]]}]
    first = await evaluate(client, user, collection_id, name="before", queries=queries, modes=["keyword"])
    second = await evaluate(client, user, collection_id, name="after", queries=queries, modes=["keyword", "hybrid"])

    listed = await client.get(url(collection_id), headers=user.headers)

    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [item["id"] for item in items] == [second["id"], first["id"]]
    assert [item["name"] for item in items] == ["after", "before"]
    assert items[1]["metrics"]["keyword"]["ndcg_at_10"] == 1.0  # headline figures, ready to chart
    assert set(items[0]["metrics"]) == {"keyword", "hybrid"}
    assert "queries" not in items[0]
    page = await client.get(url(collection_id), params={"limit": 1}, headers=user.headers)
    assert [item["id"] for item in page.json()["items"]] == [second["id"]]
    rest = await client.get(url(collection_id), params={"limit": 1, "cursor": page.json()["next_cursor"]},
                            headers=user.headers)  # fmt: skip
    assert [item["id"] for item in rest.json()["items"]] == [first["id"]]
    assert rest.json()["next_cursor"] is None


class TestJudgmentsAreChecked:
    async def test_ids_that_are_not_documents_of_the_collection_are_listed_in_a_422(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        elsewhere = await create_collection(client, user, "Elsewhere")
        outside = await ingest_document(client, user, elsewhere, "tides.md", b"# Tides\n\nThe moon pulls the sea.\n")
        stranger = str(uuid.uuid4())
        body = {
            "queries": [
                {"query": "herons", "relevant": {ids["herons.md"]: 1, stranger: 1}},
                {"query": "tides", "relevant": [outside, "not-a-uuid"]},
            ]
        }

        response = await client.post(url(collection_id), json=body, headers=user.headers)

        assert response.status_code == 422, response.text
        assert error_code(response) == "unknown_judged_documents"
        details = response.json()["error"]["details"]
        assert details["unknown_document_ids"] == sorted([stranger, outside, "not-a-uuid"])
        assert details["count"] == 3
        assert (await client.get(url(collection_id), headers=user.headers)).json()["items"] == []

    async def test_document_ids_in_another_spelling_are_the_same_document(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        shouted = ids["herons.md"].upper()

        evaluation = await evaluate(
            client, user, collection_id, queries=[{"query": "herons", "relevant": [shouted]}], modes=["keyword"]
        )

        assert evaluation["queries"][0]["relevant"] == {ids["herons.md"]: 1}
        assert evaluation["metrics"]["keyword"]["mrr_at_10"] == 1.0

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ({"queries": []}, "no queries"),
            ({}, "no queries field"),
            ({"queries": [{"query": "q", "relevant": ["{doc}"]}] * 1001}, "more than 1,000 queries"),
            ({"queries": [{"query": "   ", "relevant": ["{doc}"]}]}, "blank query"),
            ({"queries": [{"query": "q", "relevant": []}]}, "no relevant document"),
            ({"queries": [{"query": "q", "relevant": {"{doc}": 0}}]}, "grade below 1"),
            ({"queries": [{"query": "q", "relevant": {"{doc}": 1.5}}]}, "grade not an integer"),
            ({"queries": [{"id": "a", "query": "q", "relevant": ["{doc}"]}] * 2}, "repeated query ids"),
            ({"queries": [{"query": "q", "relevant": ["{doc}"]}], "modes": []}, "no modes"),
            ({"queries": [{"query": "q", "relevant": ["{doc}"]}], "modes": ["fuzzy"]}, "unknown mode"),
            ({"queries": [{"query": "q\x00", "relevant": ["{doc}"]}]}, "NUL in the query"),
        ],
    )
    async def test_malformed_requests_are_422(
        self,
        client: httpx.AsyncClient,
        library: tuple[SignedIn, str, dict[str, str]],
        body: dict[str, Any],
        reason: str,
    ) -> None:
        user, collection_id, ids = library
        text = httpx.Request("POST", "/", json=body).content.decode().replace("{doc}", ids["herons.md"])

        response = await client.post(
            url(collection_id), content=text, headers={**user.headers, "content-type": "application/json"}
        )

        assert response.status_code == 422, (reason, response.text)
        assert error_code(response) == "validation_error", reason


class TestVisibility:
    async def test_another_organization_gets_404_for_the_collection_and_the_evaluation(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        evaluation = await evaluate(
            client, user, collection_id, queries=[{"query": "acorns", "relevant": [ids["oaks.md"]]}], modes=["keyword"]
        )
        intruder = await register(client)
        own = await create_collection(client, intruder, "Mine")
        body = {"queries": [{"query": "acorns", "relevant": [ids["oaks.md"]]}]}

        attempts = [
            ("POST", url(collection_id), body, "collection_not_found"),
            ("GET", url(collection_id), None, "collection_not_found"),
            ("GET", url(collection_id, evaluation["id"]), None, "collection_not_found"),
            ("DELETE", url(collection_id, evaluation["id"]), None, "collection_not_found"),
            # The evaluation's id under a collection the intruder does see.
            ("GET", url(own, evaluation["id"]), None, "evaluation_not_found"),
            ("DELETE", url(own, evaluation["id"]), None, "evaluation_not_found"),
            # The owner's document ids in the intruder's collection are unknown there.
            ("POST", url(own), body, "unknown_judged_documents"),
        ]
        for method, path, payload, code in attempts:
            response = await client.request(method, path, json=payload, headers=intruder.headers)
            assert response.status_code == (422 if code == "unknown_judged_documents" else 404), (method, path)
            assert error_code(response) == code, (method, path)
        still = await client.get(url(collection_id, evaluation["id"]), headers=user.headers)
        assert still.status_code == 200

    async def test_a_private_collection_of_another_member_is_404(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        private = await create_collection(client, owner, "Diary", visibility="private")
        document_id = await ingest_document(client, owner, private, "diary.md", b"# Diary\n\nA quiet day.\n")
        evaluation = await evaluate(
            client, owner, private, queries=[{"query": "quiet day", "relevant": [document_id]}], modes=["keyword"]
        )
        member = await add_member(client, owner, "member")
        body = {"queries": [{"query": "quiet day", "relevant": [document_id]}]}

        for method, path, payload in [
            ("POST", url(private), body),
            ("GET", url(private), None),
            ("GET", url(private, evaluation["id"]), None),
            ("DELETE", url(private, evaluation["id"]), None),
        ]:
            response = await client.request(method, path, json=payload, headers=member.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert error_code(response) == "collection_not_found"

    async def test_viewers_read_evaluations_but_cannot_start_them(
        self, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
    ) -> None:
        user, collection_id, ids = library
        body = {"queries": [{"query": "acorns", "relevant": [ids["oaks.md"]]}], "modes": ["keyword"]}
        evaluation = await evaluate(client, user, collection_id, **body)
        viewer = await add_member(client, user, "viewer")

        refused = await client.post(url(collection_id), json=body, headers=viewer.headers)
        listed = await client.get(url(collection_id), headers=viewer.headers)
        read = await client.get(url(collection_id, evaluation["id"]), headers=viewer.headers)

        assert refused.status_code == 403
        assert refused.json()["error"]["details"] == {"permission": "evaluations:write"}
        assert [item["id"] for item in listed.json()["items"]] == [evaluation["id"]]
        assert read.status_code == 200


async def test_delete_removes_the_evaluation_and_is_audited(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, collection_id, ids = library
    body = {"queries": [{"query": "acorns", "relevant": [ids["oaks.md"]]}], "modes": ["keyword"]}
    kept = await evaluate(client, user, collection_id, **body)
    gone = await evaluate(client, user, collection_id, **body)

    response = await client.delete(url(collection_id, gone["id"]), headers=user.headers)

    assert response.status_code == 204, response.text
    again = await client.get(url(collection_id, gone["id"]), headers=user.headers)
    assert again.status_code == 404
    assert error_code(again) == "evaluation_not_found"
    listed = await client.get(url(collection_id), headers=user.headers)
    assert [item["id"] for item in listed.json()["items"]] == [kept["id"]]
    events = await client.get("/api/v1/audit-events", params={"target_id": gone["id"]}, headers=user.headers)
    assert sorted(e["action"] for e in events.json()["items"]) == ["evaluation.created", "evaluation.deleted"]


async def test_a_run_fails_when_its_creator_has_left(
    app: FastAPI, client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    owner, collection_id, ids = library
    member = await add_member(client, owner, "member")
    body = {"queries": [{"query": "acorns", "relevant": [ids["oaks.md"]]}], "modes": ["keyword"]}
    evaluation = await evaluate(client, member, collection_id, **body)
    assert evaluation["status"] == "completed"
    removed = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    # The same run again, as a worker would pick it up: it searches as its creator, who is gone.
    async with unit_of_work(app.state.sessionmaker) as session:
        await session.execute(
            update(RetrievalEvaluation)
            .where(RetrievalEvaluation.id == uuid.UUID(evaluation["id"]))
            .values(status=EvaluationStatus.queued)
        )

    assert await run_inline(uuid.UUID(evaluation["id"])) == "failed"

    failed = (await client.get(url(collection_id, evaluation["id"]), headers=owner.headers)).json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "evaluation_creator_gone"


# ---------------------------------------------------------------------------------------------
# on the job system

WAIT_SECONDS = 90.0


@pytest.fixture
async def jobs_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    from tessera.main import create_app

    settings = make_settings(
        database_url=database_url, data_dir=tmp_path / "data", jobs={"enabled": True, "embedded_worker": True}
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def wait_until(client: httpx.AsyncClient, user: SignedIn, path: str, done: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await client.get(path, headers=user.headers)).json()
        if body["status"] in done:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} did not finish: {body}")


async def test_the_worker_runs_the_evaluation(jobs_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=jobs_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        user = await register(client)
        collection_id = await create_collection(client, user, "Nature")
        uploaded = await client.post(
            "/api/v1/documents",
            data={"collection_id": collection_id},
            files={"files": ("herons.md", DOCS["herons.md"])},
            headers=user.headers,
        )
        document_id = uploaded.json()["documents"][0]["id"]
        assert (await wait_until(client, user, f"/api/v1/documents/{document_id}", {"ready", "failed"}))[
            "status"
        ] == "ready"

        started = await client.post(
            url(collection_id),
            json={"queries": [{"query": "herons spear fish", "relevant": [document_id]}], "modes": ["keyword"]},
            headers=user.headers,
        )
        assert started.status_code == 202, started.text
        evaluation = await wait_until(
            client, user, url(collection_id, started.json()["id"]), {"completed", "failed"}
        )  # fmt: skip

    assert evaluation["status"] == "completed", evaluation["error"]
    assert evaluation["metrics"]["keyword"]["ndcg_at_10"] == 1.0
    assert evaluation["queries"][0]["results"]["keyword"]["relevant"][0]["rank"] == 1
