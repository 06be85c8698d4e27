"""Streaming answers as server-sent events over HTTP (`/chat/send` and `/ask` with `stream: true`):
event order, verified deltas that add up to the stored answer, errors before the stream as status
codes, errors during it as `error` events, and a cancelled stream stores no answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tessera.core.chat import service as chat_service
from tessera.core.chat.schemas import ChatSend
from tessera.core.db.session import unit_of_work
from tessera.core.documents.ingest_cli import _acting_principal
from tessera.core.generation.fake import FakeChatModel
from tessera.core.retrieval.runtime import get_embedder
from tests.factories import SAMPLE_DOCS, SignedIn, create_collection, ingest_document, register


def parse(stream: str) -> list[tuple[str, Any]]:
    events = []
    for block in stream.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
async def library(client: httpx.AsyncClient) -> tuple[SignedIn, str]:
    user = await register(client)
    collection_id = await create_collection(client, user, "Field notes")
    for name, content in SAMPLE_DOCS.items():
        await ingest_document(client, user, collection_id, name, content)
    return user, collection_id


async def test_chat_send_streams_verified_deltas_then_citations_and_done(
    client: httpx.AsyncClient, library: tuple[SignedIn, str]
) -> None:
    user, _ = library
    async with client.stream(
        "POST", "/api/v1/chat/send", json={"content": "What do grey herons eat?", "stream": True}, headers=user.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse((await response.aread()).decode())
    names = [name for name, _ in events]
    assert names[-2:] == ["citations", "done"]
    assert set(names[:-2]) == {"delta"}
    done = events[-1][1]
    assert "".join(data["text"] for name, data in events if name == "delta") == done["content"]
    assert "spear fish and frogs" in done["content"]
    assert events[-2][1]["citations"] == done["citations"]

    stored = (await client.get(f"/api/v1/conversations/{done['conversation_id']}", headers=user.headers)).json()
    assert [m["id"] for m in stored["messages"]] == [done["user_message_id"], done["message_id"]]
    assert stored["messages"][1]["content"] == done["content"]


async def test_ask_streams_too_and_not_found_is_one_delta(
    client: httpx.AsyncClient, library: tuple[SignedIn, str]
) -> None:
    user, _ = library
    response = await client.post(
        "/api/v1/ask", json={"question": "What is the capital city of Peru?", "stream": True}, headers=user.headers
    )
    events = parse(response.text)
    assert [name for name, _ in events] == ["sources", "delta", "citations", "done"]
    assert events[1][1]["text"] == events[3][1]["answer"]
    assert events[3][1]["grounded"] is False


async def test_errors_before_the_stream_are_status_codes(
    client: httpx.AsyncClient, library: tuple[SignedIn, str]
) -> None:
    user, collection_id = library
    stranger = await register(client)
    first = (
        await client.post("/api/v1/chat/send", json={"content": "What do grey herons eat?"}, headers=user.headers)
    ).json()
    for who, body, status in [
        (stranger, {"content": "hi", "stream": True, "conversation_id": first["conversation_id"]}, 404),
        (user, {"content": "hi", "stream": True, "conversation_id": first["conversation_id"],
                "collections": [collection_id]}, 422),
        (user, {"content": "", "stream": True}, 422),
    ]:  # fmt: skip
        response = await client.post("/api/v1/chat/send", json=body, headers=who.headers)
        assert response.status_code == status, response.text
        assert not response.headers["content-type"].startswith("text/event-stream")


async def test_a_provider_failure_mid_stream_is_an_error_event(
    client: httpx.AsyncClient, app: FastAPI, library: tuple[SignedIn, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _ = library
    broken = FakeChatModel(name="fake:down", unavailable=100)
    monkeypatch.setattr("tessera.core.assistants.service.get_chat_model", lambda settings, generation=None: broken)
    response = await client.post(
        "/api/v1/chat/send", json={"content": "What do grey herons eat?", "stream": True}, headers=user.headers
    )
    assert response.status_code == 200
    events = parse(response.text)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["code"] == "provider_unavailable"


async def test_a_cancelled_stream_stores_the_question_but_no_answer(
    app: FastAPI, library: tuple[SignedIn, str]
) -> None:
    user, _ = library
    async with unit_of_work(app.state.sessionmaker) as session:
        principal = await _acting_principal(session, user.org_id, None)
    chat = FakeChatModel(["Grey herons stand motionless in shallow water [1]. They wait to spear fish and frogs [1]."])
    settings = app.state.settings.generation
    stream = chat_service.stream_send(
        app.state.sessionmaker, principal, ChatSend(content="How do herons hunt?"), settings=settings,
        embedder=get_embedder(app.state.settings.embeddings), chat=chat,
    )  # fmt: skip
    started = await stream.__anext__()
    assert isinstance(started, chat_service.Turn)  # the question is stored before the answer starts
    first = await stream.__anext__()
    assert isinstance(first, str)
    await stream.aclose()  # the client went away
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        rows, _ = await chat_service.list_conversations(
            session, principal, params=chat_service.PageParams(limit=10, after=None)
        )
        messages = await chat_service.messages_of(session, rows[0])
    assert [m.role.value for m in messages] == ["user"]
    assert rows[0].message_count == 1


async def test_ask_streams_its_sources_before_the_answer(
    client: httpx.AsyncClient, library: tuple[SignedIn, str]
) -> None:
    user, _ = library
    response = await client.post(
        "/api/v1/ask", json={"question": "What do grey herons eat?", "stream": True}, headers=user.headers
    )
    events = parse(response.text)
    assert events[0][0] == "sources"
    sources = events[0][1]["sources"]
    assert [s["number"] for s in sources] == list(range(1, len(sources) + 1))
    done = events[-1][1]
    assert "spear fish and frogs" in done["answer"]
    assert {c["chunk_id"] for c in done["citations"]} <= {s["chunk_id"] for s in sources}
