"""The ingestion workflow on the real job system: enqueued by the API, run by a DBOS worker, on
both backends; and a worker killed with SIGKILL mid-batch resumes without duplicate chunks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from tessera.core.documents.chunking import ChunkingParams, chunk_document
from tessera.core.documents.models import Chunk, Document
from tessera.core.documents.parsing import registry
from tessera.core.documents.parsing.base import ParseLimits
from tessera.core.jobs import JobRuntime
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, register
from tests.processes import TesseraProcess, tessera_env

WAIT_SECONDS = 90.0


@pytest.fixture
async def jobs_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        jobs={"enabled": True, "embedded_worker": True},
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application
    assert JobRuntime.current() is None


@pytest.fixture
async def jobs_client(jobs_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=jobs_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def wait_for(client: httpx.AsyncClient, user: SignedIn, document_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        body: dict[str, Any] = (await client.get(f"/api/v1/documents/{document_id}", headers=user.headers)).json()
        if body["status"] in ("ready", "failed", "needs_ocr"):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"document {document_id} did not finish: {body}")


async def test_upload_is_processed_by_the_worker(jobs_client: httpx.AsyncClient) -> None:
    user = await register(jobs_client)
    collection = await jobs_client.post("/api/v1/collections", json={"name": "Mail"}, headers=user.headers)
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "Charles <charles@example.com>"
    message["Subject"] = "Notes on the engine"
    message["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    message.set_content("The analytical engine weaves algebraic patterns just as the Jacquard loom weaves flowers.")
    message.add_attachment(
        b"# Appendix\n\nA table of Bernoulli numbers, computed step by step.\n",
        maintype="text",
        subtype="markdown",
        filename="appendix.md",
    )
    response = await jobs_client.post(
        "/api/v1/documents",
        data={"collection_id": collection.json()["id"]},
        files={"files": ("notes.eml", message.as_bytes())},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    document_id = response.json()["documents"][0]["id"]

    body = await wait_for(jobs_client, user, document_id)
    assert body["status"] == "ready", body
    assert body["title"] == "Notes on the engine"
    assert body["chunk_count"] >= 1

    # The attachment became a child document, processed by its own workflow.
    deadline = time.monotonic() + WAIT_SECONDS
    children: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        listed = await jobs_client.get("/api/v1/documents", params={"parent_id": document_id}, headers=user.headers)
        children = listed.json()["items"]
        if children and children[0]["status"] == "ready":
            break
        await asyncio.sleep(0.2)
    assert [c["filename"] for c in children] == ["appendix.md"]
    assert children[0]["status"] == "ready"

    # Deleting the parent takes the attachment with it.
    assert (await jobs_client.delete(f"/api/v1/documents/{document_id}", headers=user.headers)).status_code == 204
    gone = await jobs_client.get(f"/api/v1/documents/{children[0]['id']}", headers=user.headers)
    assert gone.status_code == 404


# ---------------------------------------------------------------------------------------------
# SIGKILL in the middle of a batch


BATCH = 200


def batch_document(index: int) -> bytes:
    """Distinct Markdown documents of a few sections each, so every one makes several chunks."""
    sections = []
    for section in range(4):
        words = " ".join(f"w{index}s{section}x{n}" for n in range(60 + (index * 7 + section * 13) % 90))
        sections.append(f"## Section {section} of document {index}\n\n{words}.\n")
    return (f"# Document {index}\n\n" + "\n".join(sections)).encode()


def expected_chunks(content: bytes, settings: Settings) -> int:
    parsed = registry.parse("markdown", content, ParseLimits())
    params = ChunkingParams(
        chunk_size=settings.documents.chunk_size,
        chunk_overlap=settings.documents.chunk_overlap,
        min_chunk_tokens=min(32, settings.documents.chunk_size // 8),
    )
    return len(chunk_document(parsed, params))


class Server(TesseraProcess):
    """`tessera serve` in its own process (SQLite, embedded worker), as `make run` starts it."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        env = tessera_env(
            TESSERA_DATA_DIR=str(data_dir),
            # One document at a time: the batch takes long enough to be killed in the middle.
            TESSERA_DOCUMENTS__WORKER_CONCURRENCY="1",
            TESSERA_DOCUMENTS__ORG_CONCURRENCY="1",
            TESSERA_EMBEDDINGS__PROVIDER="fake",
        )
        super().__init__(env, log, ready_path="/health/ready")
        self.data_dir = data_dir

    def start(self, timeout: float = 60) -> None:
        self.migrate()
        super().start(timeout)


def statuses(client: httpx.Client, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/documents", params=params, headers=headers).json()
        found.update({item["id"]: item for item in page["items"]})
        cursor = page["next_cursor"]
        if not cursor:
            return found


@pytest.mark.sqlite
def test_killed_worker_resumes_the_batch_without_duplicates(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            registered = client.post(
                "/api/v1/auth/register",
                json={"email": "batch@example.com", "password": "Analytical-Engine-1843", "name": "Batch"},
            )
            assert registered.status_code == 201, registered.text
            headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
            collection_id = client.post("/api/v1/collections", json={"name": "Batch"}, headers=headers).json()["id"]
            contents = {f"doc-{i:03}.md": batch_document(i) for i in range(BATCH)}
            names = list(contents)
            for start in range(0, BATCH, 50):
                response = client.post(
                    "/api/v1/documents",
                    data={"collection_id": collection_id},
                    files=[("files", (name, contents[name])) for name in names[start : start + 50]],
                    headers=headers,
                )
                assert response.status_code == 202, response.text

            # Kill once part of the batch is done and the rest is queued or running.
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                done = sum(1 for d in statuses(client, headers).values() if d["status"] == "ready")
                if done >= 20:
                    break
                time.sleep(0.1)
            server.kill()
        ready_at_kill = done
        assert 0 < ready_at_kill < BATCH, "the kill must land in the middle of the batch"

        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            login = client.post(
                "/api/v1/auth/login", json={"email": "batch@example.com", "password": "Analytical-Engine-1843"}
            )
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                found = statuses(client, headers)
                if len(found) == BATCH and all(d["status"] == "ready" for d in found.values()):
                    break
                time.sleep(0.5)
            assert len(found) == BATCH
            assert {d["status"] for d in found.values()} == {"ready"}, server.log.read_text()[-3000:]
            settings = make_settings(data_dir=server.data_dir)
            for document in found.values():
                expected = expected_chunks(contents[document["filename"]], settings)
                assert document["chunk_count"] == expected, document["filename"]
    finally:
        server.stop()

    # No chunk was written twice: the rows match the counts, document by document.
    async def count_rows() -> tuple[int, int, int, int]:
        from tessera.core.db.session import create_engine, create_sessionmaker

        settings = make_settings(data_dir=server.data_dir)
        engine = create_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                rows = await session.scalar(select(func.count()).select_from(Chunk))
                counted = await session.scalar(select(func.sum(Document.chunk_count)))
                # The indexes agree with the chunks: one text entry and one vector per chunk, no strays.
                texts = await session.scalar(
                    text("SELECT count(*) FROM chunk_fts WHERE chunk_id IN (SELECT id FROM document_chunk)")
                )
                vectors = await session.scalar(
                    text("SELECT count(*) FROM chunk_vector WHERE chunk_id IN (SELECT id FROM document_chunk)")
                )
                all_texts = await session.scalar(text("SELECT count(*) FROM chunk_fts"))
                all_vectors = await session.scalar(text("SELECT count(*) FROM chunk_vector"))
                assert (texts, vectors) == (all_texts, all_vectors)
                return int(rows or 0), int(counted or 0), int(texts or 0), int(vectors or 0)
        finally:
            await engine.dispose()

    rows, counted, texts, vectors = asyncio.run(count_rows())
    assert rows == counted == texts == vectors
