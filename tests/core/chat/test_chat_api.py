"""Conversations and `POST /api/v1/chat/send` over HTTP on both backends: answers stored with
their citations, follow-ups searched with the earlier question, feedback, rename/tag/archive,
search and paging, deletion, and every other user's conversations are a 404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import (
    SAMPLE_DOCS,
    SignedIn,
    add_member,
    create_collection,
    error_code,
    ingest_document,
    ingest_samples,
    register,
)


async def send(client: httpx.AsyncClient, user: SignedIn, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/chat/send", json=body, headers=user.headers)


@pytest.fixture
async def library(client: httpx.AsyncClient) -> tuple[SignedIn, str, dict[str, str]]:
    user = await register(client)
    collection_id = await create_collection(client, user, "Field notes")
    return user, collection_id, await ingest_samples(client, user, collection_id)


async def test_a_conversation_keeps_questions_answers_and_citations(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, collection_id, ids = library
    first = await send(client, user, content="What do grey herons eat?")
    assert first.status_code == 200, first.text
    reply = first.json()
    assert reply["grounded"] is True
    assert "spear fish and frogs" in reply["content"]
    assert reply["citations"][0]["document_id"] == ids["herons.md"]
    assert reply["search_query"] == "What do grey herons eat?"

    # A follow-up leaning on the first question is searched together with it.
    second = (await send(client, user, content="Where do they stand?", conversation_id=reply["conversation_id"])).json()
    assert second["conversation_id"] == reply["conversation_id"]
    assert second["search_query"] == "What do grey herons eat? Where do they stand?"
    assert "shallow water" in second["content"]

    detail = (await client.get(f"/api/v1/conversations/{reply['conversation_id']}", headers=user.headers)).json()
    assert detail["title"] == "What do grey herons eat?"
    assert detail["message_count"] == 4
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant", "user", "assistant"]
    answer = detail["messages"][1]
    assert answer["id"] == reply["message_id"]
    assert detail["messages"][0]["id"] == reply["user_message_id"]
    assert answer["citations"][0]["quote"] == reply["citations"][0]["quote"]
    assert answer["model"] == "extractive:v1"
    assert answer["usage"]["input_tokens"] > 0
    assert answer["latency_ms"] > 0
    assert detail["messages"][3]["search_query"] == "What do grey herons eat? Where do they stand?"

    # A conversation limited to a collection: the other collection's documents are never sources.
    other = await create_collection(client, user, "Machines only")
    await ingest_document(client, user, other, "engines2.md", SAMPLE_DOCS["engines.md"] + b"\nRevised.\n")
    limited = (await send(client, user, content="What do grey herons eat?", collections=[other])).json()
    assert limited["grounded"] is False
    assert limited["citations"] == []
    del collection_id


async def test_feedback_on_answers(client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]) -> None:
    user, _, _ = library
    reply = (await send(client, user, content="How long do oak trees live?")).json()
    base = f"/api/v1/conversations/{reply['conversation_id']}/messages"
    rated = await client.post(
        f"{base}/{reply['message_id']}/feedback", json={"rating": "down", "comment": "too short"}, headers=user.headers
    )
    assert rated.status_code == 200, rated.text
    assert (rated.json()["feedback"], rated.json()["feedback_comment"]) == ("down", "too short")
    again = await client.post(f"{base}/{reply['message_id']}/feedback", json={"rating": "up"}, headers=user.headers)
    assert (again.json()["feedback"], again.json()["feedback_comment"]) == ("up", None)

    own = await client.post(f"{base}/{reply['user_message_id']}/feedback", json={"rating": "up"}, headers=user.headers)
    assert own.status_code == 422
    missing = await client.post(
        f"{base}/{reply['conversation_id']}/feedback", json={"rating": "up"}, headers=user.headers
    )
    assert missing.status_code == 404
    assert error_code(missing) == "message_not_found"
    bad = await client.post(f"{base}/{reply['message_id']}/feedback", json={"rating": "meh"}, headers=user.headers)
    assert bad.status_code == 422


async def test_rename_tag_archive_search_page_and_delete(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, _, _ = library
    ids = []
    for question in ("What do grey herons eat?", "How long do oak trees live?", "How does a steam engine work?"):
        ids.append((await send(client, user, content=question)).json()["conversation_id"])
    created = await client.post(
        "/api/v1/conversations", json={"title": "Empty one", "tags": ["a"]}, headers=user.headers
    )
    assert created.status_code == 201
    assert created.headers["Location"].endswith(created.json()["id"])

    patched = await client.patch(
        f"/api/v1/conversations/{ids[0]}", json={"title": "Birds", "tags": ["nature", "nature", " birds "]},
        headers=user.headers,
    )  # fmt: skip
    assert patched.status_code == 200
    assert (patched.json()["title"], patched.json()["tags"]) == ("Birds", ["nature", "birds"])
    assert (await client.patch(f"/api/v1/conversations/{ids[1]}", json={}, headers=user.headers)).status_code == 422
    archived = await client.patch(f"/api/v1/conversations/{ids[1]}", json={"archived": True}, headers=user.headers)
    assert archived.json()["archived"] is True

    async def listed(**params: Any) -> list[str]:
        response = await client.get("/api/v1/conversations", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert await listed() == [created.json()["id"], ids[2], ids[0]]  # newest first, archived hidden
    assert await listed(archived="true") == [ids[1]]
    assert len(await listed(archived="all")) == 4
    assert await listed(q="STEAM") == [ids[2]]  # message text, case-insensitive
    assert await listed(q="birds") == [ids[0]]  # title
    assert await listed(tag="nature") == [ids[0]]
    first_page = (await client.get("/api/v1/conversations", params={"limit": 2}, headers=user.headers)).json()
    second_page = await listed(limit=2, cursor=first_page["next_cursor"])
    assert [c["id"] for c in first_page["items"]] + second_page == await listed()

    assert (await client.delete(f"/api/v1/conversations/{ids[2]}", headers=user.headers)).status_code == 204
    assert (await client.get(f"/api/v1/conversations/{ids[2]}", headers=user.headers)).status_code == 404
    gone = await send(client, user, content="More?", conversation_id=ids[2])
    assert gone.status_code == 404
    assert error_code(gone) == "conversation_not_found"


async def test_conversations_are_their_owner_alone(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, _, _ = library
    reply = (await send(client, user, content="What do grey herons eat?")).json()
    url = f"/api/v1/conversations/{reply['conversation_id']}"
    colleague = await add_member(client, user, "member")
    stranger = await register(client)
    for other in (colleague, stranger):
        assert (await client.get(url, headers=other.headers)).status_code == 404
        assert (await client.patch(url, json={"title": "x"}, headers=other.headers)).status_code == 404
        assert (await client.delete(url, headers=other.headers)).status_code == 404
        response = await send(client, other, content="And then?", conversation_id=reply["conversation_id"])
        assert response.status_code == 404
        feedback = await client.post(
            f"{url}/messages/{reply['message_id']}/feedback", json={"rating": "up"}, headers=other.headers
        )
        assert feedback.status_code == 404
        listed = (await client.get("/api/v1/conversations", headers=other.headers)).json()["items"]
        assert reply["conversation_id"] not in [c["id"] for c in listed]
    assert (await client.get(url, headers=user.headers)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"content": ""}, 422),
        ({"content": "   "}, 422),
        ({"content": "x" * 4_001}, 422),
        ({"content": "hi", "style": "essay"}, 422),
        ({"content": "hi", "extra": True}, 422),
        ({"content": "hi", "conversation_id": "not-a-uuid"}, 422),
    ],
)
async def test_bad_messages_are_a_clear_4xx(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]], body: dict[str, Any], status: int
) -> None:
    user, _, _ = library
    response = await send(client, user, **body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"]


async def test_collections_only_start_a_conversation_and_viewers_cannot_chat(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, collection_id, _ = library
    reply = (await send(client, user, content="What do grey herons eat?")).json()
    response = await send(
        client, user, content="More?", conversation_id=reply["conversation_id"], collections=[collection_id]
    )
    assert response.status_code == 422
    viewer = await add_member(client, user, "viewer")
    assert (await send(client, viewer, content="What do grey herons eat?")).status_code == 403
    assert (await client.get("/api/v1/conversations", headers=viewer.headers)).status_code == 200
