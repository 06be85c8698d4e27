"""`GET /documents/{id}/events`: the Server-Sent Events stream that follows a document's processing.

httpx's ASGI transport hands the body over only once the app has finished, so the stream is read
through a small ASGI wrapper that records each body chunk the moment the app sends it: that is
what tells a test the stream is open and when to change the document underneath it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tessera.core.documents.pipeline import process_inline
from tests.factories import SignedIn, error_code, register

TEXT = (
    "Tessera keeps documents in collections.\n\n"
    "Each uploaded file is parsed into text, cut into overlapping chunks and indexed, and the "
    "stream of events reports every stage while it happens so a client can draw a progress bar.\n"
)
STREAM_DEADLINE = 15.0  # seconds; a stream that never ends fails the test instead of hanging it
PIPELINE_ORDER = ["queued", "parsing", "chunking", "indexing", "ready"]


@dataclass
class Recorder:
    """Wraps the app; `chunks` holds the response body pieces in the order the app sent them."""

    app: Any
    chunks: list[bytes] = field(default_factory=list)
    first_chunk: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        async def recording_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                self.chunks.append(message["body"])
                self.first_chunk.set()
            await send(message)

        await self.app(scope, receive, recording_send)


@pytest.fixture
async def recorder(app: Any) -> AsyncIterator[tuple[Recorder, httpx.AsyncClient]]:
    recording = Recorder(app)
    transport = httpx.ASGITransport(app=recording, client=("203.0.113.8", 50001))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield recording, http


def parse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for block in body.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, block
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def upload(client: httpx.AsyncClient, user: SignedIn, name: str = "notes.txt", content: str = TEXT) -> str:
    created = await client.post(
        "/api/v1/collections", json={"name": f"Events {uuid.uuid4().hex[:6]}"}, headers=user.headers
    )
    assert created.status_code == 201, created.text
    response = await client.post(
        "/api/v1/documents",
        data={"collection_id": created.json()["id"]},
        files={"files": (name, content.encode())},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    document_id: str = response.json()["documents"][0]["id"]
    return document_id


async def read_events(client: httpx.AsyncClient, user: SignedIn, document_id: str) -> httpx.Response:
    async with asyncio.timeout(STREAM_DEADLINE):
        return await client.get(f"/api/v1/documents/{document_id}/events", headers=user.headers)


async def test_ready_document_gives_progress_then_done_and_ends(client: httpx.AsyncClient) -> None:
    user = await register(client)
    document_id = await upload(client, user)
    assert await process_inline(uuid.UUID(document_id), 1) == "ready"

    async with (
        asyncio.timeout(STREAM_DEADLINE),
        client.stream("GET", f"/api/v1/documents/{document_id}/events", headers=user.headers) as response,
    ):
        body = (await response.aread()).decode()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    events = parse_events(body)
    assert [name for name, _ in events] == ["progress", "done"]
    progress, done = events[0][1], events[1][1]
    assert progress == done
    assert done["id"] == document_id
    assert done["status"] == "ready"
    assert done["progress"] == 1.0
    assert done["error"] is None
    assert done["chunk_count"] >= 1
    assert set(done["stage_timings"]) >= {"parsing", "chunking", "indexing"}
    document = (await client.get(f"/api/v1/documents/{document_id}", headers=user.headers)).json()
    assert done["chunk_count"] == document["chunk_count"]


async def test_queued_document_is_followed_until_ready(
    client: httpx.AsyncClient, recorder: tuple[Recorder, httpx.AsyncClient]
) -> None:
    recording, streaming = recorder
    user = await register(client)
    document_id = await upload(client, user)
    reading = asyncio.create_task(read_events(streaming, user, document_id))

    async with asyncio.timeout(STREAM_DEADLINE):
        await recording.first_chunk.wait()
    sent_before_processing = len(recording.chunks)
    outcome = await process_inline(uuid.UUID(document_id), 1)
    response = await reading

    assert outcome == "ready"
    assert response.status_code == 200
    before = parse_events(b"".join(recording.chunks[:sent_before_processing]).decode())
    assert before == [("progress", before[0][1])]
    assert before[0][1]["status"] == "queued"
    assert before[0][1]["progress"] == 0.0
    assert before[0][1]["chunk_count"] == 0

    events = parse_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done"
    assert set(names[:-1]) == {"progress"}
    assert len(names) >= 3  # queued, at least the final state, done
    statuses = [data["status"] for _, data in events[:-1]]
    # Each change is reported once, in pipeline order (polling may skip the short stages).
    assert statuses == sorted(set(statuses), key=PIPELINE_ORDER.index)
    assert statuses[0] == "queued"
    assert statuses[-1] == "ready"
    progresses = [data["progress"] for _, data in events[:-1]]
    assert progresses == sorted(progresses)
    assert events[-1][1] == events[-2][1]
    assert events[-1][1]["progress"] == 1.0
    assert events[-1][1]["chunk_count"] >= 1


async def test_failed_document_ends_with_done_and_the_error(client: httpx.AsyncClient) -> None:
    user = await register(client)
    document_id = await upload(client, user, "blank.txt", " \n\n \t\n")
    assert await process_inline(uuid.UUID(document_id), 1) == "failed"

    response = await read_events(client, user, document_id)

    events = parse_events(response.text)
    assert [name for name, _ in events] == ["progress", "done"]
    assert events[-1][1]["status"] == "failed"
    assert events[-1][1]["error"] == {"stage": "parsing", "code": "no_text", "message": "No text could be extracted."}


async def test_document_deleted_while_followed_ends_with_deleted(
    client: httpx.AsyncClient, recorder: tuple[Recorder, httpx.AsyncClient]
) -> None:
    recording, streaming = recorder
    user = await register(client)
    document_id = await upload(client, user)
    reading = asyncio.create_task(read_events(streaming, user, document_id))
    async with asyncio.timeout(STREAM_DEADLINE):
        await recording.first_chunk.wait()

    deleted = await client.delete(f"/api/v1/documents/{document_id}", headers=user.headers)
    response = await reading

    assert deleted.status_code == 204
    events = parse_events(response.text)
    assert [name for name, _ in events] == ["progress", "deleted"]
    assert events[0][1]["status"] == "queued"
    assert events[1][1] == {"id": document_id}


async def test_another_organizations_document_is_404(client: httpx.AsyncClient) -> None:
    owner, stranger = await register(client), await register(client)
    document_id = await upload(client, owner)

    response = await read_events(client, stranger, document_id)

    assert response.status_code == 404
    assert error_code(response) == "document_not_found"
    assert response.headers["content-type"].startswith("application/json")


async def test_unknown_document_is_404(client: httpx.AsyncClient) -> None:
    user = await register(client)

    response = await read_events(client, user, str(uuid.uuid4()))

    assert response.status_code == 404
    assert error_code(response) == "document_not_found"
