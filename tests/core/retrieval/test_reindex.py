"""Re-indexing a collection (`/collections/{id}/reindex`) after the embedding model changed, on both
backends: inline when jobs are off, through the DBOS workflow when a worker runs, and queued on
start-up when the server finds vectors of another model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tessera.core.db.session import create_engine
from tessera.core.jobs import JobRuntime
from tessera.main import create_app
from tessera.settings import Settings
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

OLD_MODEL = "fake:hash-64"
NEW_MODEL = "fake:hash-32"
WAIT_SECONDS = 90.0


def switched(settings: Settings, **overrides: Any) -> Settings:
    """The same database and files, another embedding model (`fake:hash-32`)."""
    values: dict[str, Any] = {
        "database_url": settings.database_url,
        "data_dir": settings.data_dir,
        "embeddings": {"provider": "fake", "dimension": 32},
    }
    values.update(overrides)
    return make_settings(**values)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    assert JobRuntime.current() is None


async def vector_rows(settings: Settings) -> dict[str, Any]:
    """What `chunk_vector` holds, against the chunks."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            by_model = dict(
                (await connection.execute(text("SELECT model, count(*) FROM chunk_vector GROUP BY model"))).all()
            )
            dims = {row[0] for row in await connection.execute(text("SELECT DISTINCT dim FROM chunk_vector"))}
            chunks = await connection.scalar(text("SELECT count(*) FROM document_chunk"))
            per_chunk = await connection.scalar(
                text("SELECT max(n) FROM (SELECT count(*) AS n FROM chunk_vector GROUP BY chunk_id) t")
            )
            missing = await connection.scalar(
                text(
                    "SELECT count(*) FROM document_chunk c WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunk_vector v WHERE v.chunk_id = c.id AND v.model = :model)"
                ),
                {"model": NEW_MODEL},
            )
    finally:
        await engine.dispose()
    return {"by_model": by_model, "dims": dims, "chunks": chunks, "per_chunk": per_chunk, "missing_new": missing}


async def semantic_hits(client: httpx.AsyncClient, user: SignedIn, query: str) -> list[dict[str, Any]]:
    response = await client.post("/api/v1/search", json={"query": query, "mode": "semantic"}, headers=user.headers)
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


@pytest.fixture
async def library(client: httpx.AsyncClient) -> tuple[SignedIn, str, dict[str, str]]:
    """Three ready documents embedded with `fake:hash-64` (the test settings' model)."""
    user = await register(client)
    collection_id = await create_collection(client, user, "Nature")
    ids = {name: await ingest_document(client, user, collection_id, name, content) for name, content in DOCS.items()}
    return user, collection_id, ids


async def test_reindex_after_a_model_change_replaces_every_vector(
    library: tuple[SignedIn, str, dict[str, str]], settings: Settings
) -> None:
    user, collection_id, ids = library
    before = await vector_rows(settings)
    assert set(before["by_model"]) == {OLD_MODEL}

    async with serve(switched(settings)) as client:
        progress = await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)
        assert progress.status_code == 200, progress.text
        assert progress.json() == {
            "job_id": None,
            "status": "incomplete",
            "collection_id": collection_id,
            "model": NEW_MODEL,
            "documents_total": 3,
            "documents_done": 0,
        }
        # Vectors of the old model are never compared with queries of the new one.
        assert await semantic_hits(client, user, "herons waiting in shallow water") == []

        started = await client.post(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)
        assert started.status_code == 202, started.text
        assert started.json()["status"] == "queued"
        assert started.json()["model"] == NEW_MODEL
        assert started.json()["documents_total"] == 3

        # Jobs are off here: the run happened right after the request committed.
        done = (await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)).json()
        assert (done["status"], done["documents_total"], done["documents_done"]) == ("complete", 3, 3)
        after = await vector_rows(settings)
        assert after["by_model"] == {NEW_MODEL: before["chunks"]}
        assert after["dims"] == {32}
        assert (after["per_chunk"], after["missing_new"]) == (1, 0)
        hits = await semantic_hits(client, user, "herons waiting in shallow water")
        assert hits[0]["document_id"] == ids["herons.md"]

        # Forced, every document is embedded again; still one vector per chunk.
        forced = await client.post(
            f"/api/v1/collections/{collection_id}/reindex", json={"scope": "all", "force": True}, headers=user.headers
        )
        assert forced.status_code == 202, forced.text
        again = await vector_rows(settings)
        assert again["by_model"] == {NEW_MODEL: before["chunks"]}
        assert again["per_chunk"] == 1
        keyword = await client.post("/api/v1/search", json={"query": "acorns", "mode": "keyword"}, headers=user.headers)
        assert [hit["document_id"] for hit in keyword.json()["hits"]] == [ids["oaks.md"]]


async def test_text_scope_keeps_vectors_and_rebuilds_full_text(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]], settings: Settings
) -> None:
    user, collection_id, ids = library
    response = await client.post(
        f"/api/v1/collections/{collection_id}/reindex", json={"scope": "text"}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    rows = await vector_rows(settings)
    assert rows["by_model"] == {OLD_MODEL: rows["chunks"]}
    hits = (
        await client.post("/api/v1/search", json={"query": "flywheel", "mode": "keyword"}, headers=user.headers)
    ).json()["hits"]
    assert [hit["document_id"] for hit in hits] == [ids["engines.md"]]


async def test_another_organization_gets_404_and_members_who_do_not_manage_get_403(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    owner, collection_id, _ = library
    stranger = await register(client)
    for method in ("GET", "POST"):
        response = await client.request(
            method, f"/api/v1/collections/{collection_id}/reindex", headers=stranger.headers
        )
        assert response.status_code == 404, response.text
        assert error_code(response) == "collection_not_found"
    member = await add_member(client, owner, "member")
    refused = await client.post(f"/api/v1/collections/{collection_id}/reindex", headers=member.headers)
    assert refused.status_code == 403
    assert error_code(refused) == "not_collection_manager"
    # Reading the progress only needs to see the collection.
    assert (await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=member.headers)).status_code == 200


async def test_a_second_reindex_while_one_is_queued_is_409(
    library: tuple[SignedIn, str, dict[str, str]], settings: Settings
) -> None:
    user, collection_id, _ = library
    # Jobs on but no worker in this process: the first run stays queued, deterministically. The
    # model stays the same, so start-up queues nothing of its own.
    client_only = switched(settings, jobs={"enabled": True, "embedded_worker": False}, embeddings={"provider": "fake"})
    async with serve(client_only) as client:
        first = await client.post(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)
        assert first.status_code == 202, first.text
        job_id = first.json()["job_id"]
        assert job_id.startswith(f"retrieval.reindex:{collection_id}:{OLD_MODEL}:")

        second = await client.post(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)
        assert second.status_code == 409, second.text
        assert error_code(second) == "reindex_in_progress"
        assert second.json()["error"]["details"] == {"job_id": job_id}

        progress = (await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)).json()
        assert (progress["job_id"], progress["status"], progress["documents_done"]) == (job_id, "queued", 3)


async def wait_complete(client: httpx.AsyncClient, user: SignedIn, collection_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"the re-index did not finish: {body}")


async def test_a_changed_model_is_reembedded_by_the_worker_on_start(
    library: tuple[SignedIn, str, dict[str, str]], settings: Settings, tmp_path: Path
) -> None:
    user, collection_id, ids = library
    worker = switched(settings, jobs={"enabled": True, "embedded_worker": True})
    async with serve(worker) as client:
        body = await wait_complete(client, user, collection_id)
        assert body["status"] == "complete", body
        assert body["job_id"].startswith(f"retrieval.reindex:{collection_id}:{NEW_MODEL}:auto-")
        assert (body["documents_total"], body["documents_done"]) == (3, 3)
        hits = await semantic_hits(client, user, "oak trees and their acorns")
        assert hits[0]["document_id"] == ids["oaks.md"]
    rows = await vector_rows(settings)
    assert set(rows["by_model"]) == {NEW_MODEL}
    assert (rows["per_chunk"], rows["missing_new"]) == (1, 0)

    # A restart with nothing left to do queues nothing: the latest run is still that one.
    async with serve(worker) as client:
        again = (await client.get(f"/api/v1/collections/{collection_id}/reindex", headers=user.headers)).json()
        assert (again["job_id"], again["status"]) == (body["job_id"], "complete")
