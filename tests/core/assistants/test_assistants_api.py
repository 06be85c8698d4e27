"""Assistants over HTTP on both backends: admins create and change them, members use them, and an
assistant's collections, chat model (a profile served by a fake OpenAI-compatible server on
uvicorn) and instructions decide how `/ask`, `/chat/send` and `/v1/chat/completions` answer.
Another organization's assistants are a 404, and an assistant answers only from what the asking
user can see."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tessera.core.generation.runtime import forget_chat_models
from tessera.main import create_app
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
from tests.servers import serve_in_thread

INSTRUCTIONS = "Answer like a park ranger speaking to schoolchildren."
SERVER_INSTRUCTIONS = "Answer in plain English for adult readers."
SERVER_KEY = "sk-server-default-key"
REWRITE = "How long do grey herons live?"


class RecordingModel:
    """An OpenAI-compatible chat server that keeps every request and answers with the first
    sentence of source [1], cited, as a grounded model would."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []

    async def completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("authorization"))
        user = body["messages"][-1]["content"]
        if body["messages"][0]["content"].startswith("You rewrite the last question"):
            return self.completed(body["model"], REWRITE)  # a follow-up made standalone, as a model would
        first_source = user.split("[1]", 1)[1].split("\n", 2)[-1] if "[1]" in user else ""
        sentence = first_source.split(". ")[0].strip().rstrip(".")
        if body.get("stream"):
            return self.streamed(body["model"], f"{sentence} [1].")
        return self.completed(body["model"], f"{sentence} [1].")

    @staticmethod
    def completed(model: str, content: str) -> JSONResponse:
        return JSONResponse(
            {
                "id": "x", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 14},
            }
        )  # fmt: skip

    @staticmethod
    def streamed(model: str, content: str) -> StreamingResponse:
        """The answer as OpenAI streams it: word deltas, a finish reason, then `[DONE]`."""

        def chunk(delta: dict[str, str], finish_reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return (
                "data: "
                + json.dumps({"id": "x", "object": "chat.completion.chunk", "model": model, "choices": [choice]})
                + "\n\n"
            )

        words = content.split(" ")
        pieces = [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(words)]
        return StreamingResponse(iter([*pieces, chunk({}, "stop"), "data: [DONE]\n\n"]), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])


@pytest.fixture
def model_server() -> Iterator[tuple[RecordingModel, str]]:
    model = RecordingModel()
    with serve_in_thread(model.app(), "recording model") as url:
        yield model, url


@pytest.fixture
async def app(database_url: str, tmp_path: Path, model_server: tuple[RecordingModel, str]) -> AsyncIterator[FastAPI]:
    _, url = model_server
    settings = make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        # The server's default connection has a key of its own, which a profile must never send.
        generation={"base_url": "http://127.0.0.1:9/v1", "api_key": SERVER_KEY, "instructions": SERVER_INSTRUCTIONS,
                    "profiles": {"ranger": {"provider": "openai", "model": "ranger-1", "base_url": f"{url}/v1",
                                            "fallback": [], "timeout_seconds": 5}}},
    )  # fmt: skip
    forget_chat_models()
    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            yield application
    finally:
        forget_chat_models()


@dataclass
class Org:
    admin: SignedIn
    member: SignedIn
    birds: str  # collection holding herons.md
    machines: str  # collection holding engines.md
    private: str  # the admin's private collection holding oaks.md


@pytest.fixture
async def org(client: httpx.AsyncClient) -> Org:
    admin = await register(client)
    member = await add_member(client, admin, "member")
    birds = await create_collection(client, admin, "Birds")
    machines = await create_collection(client, admin, "Machines")
    private = await create_collection(client, admin, "Admin's trees", visibility="private")
    await ingest_document(client, admin, birds, "herons.md", SAMPLE_DOCS["herons.md"])
    await ingest_document(client, admin, machines, "engines.md", SAMPLE_DOCS["engines.md"])
    await ingest_document(client, admin, private, "oaks.md", SAMPLE_DOCS["oaks.md"])
    return Org(admin, member, birds, machines, private)


async def create(client: httpx.AsyncClient, user: SignedIn, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/assistants", json=body, headers=user.headers)


async def test_admins_manage_assistants_and_members_read_them(client: httpx.AsyncClient, org: Org) -> None:
    created = await create(
        client, org.admin, name="bird-guide", title="Bird guide", collections=[org.birds], provider="ranger",
        instructions=INSTRUCTIONS, style="detailed",
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assistant = created.json()
    assert created.headers["Location"] == f"/api/v1/assistants/{assistant['id']}"
    assert assistant | {"id": None, "created_at": None, "updated_at": None} == {
        "id": None, "name": "bird-guide", "title": "Bird guide", "description": "", "collections": [org.birds],
        "provider": "ranger", "instructions": INSTRUCTIONS, "style": "detailed", "mode": "hybrid", "sources": None,
        "temperature": None, "max_answer_tokens": None, "prompt_version": None, "created_by": org.admin.user_id,
        "created_at": None, "updated_at": None,
    }  # fmt: skip

    # Members use assistants; only admins and owners create, change or delete them.
    assert (await create(client, org.member, name="mine")).status_code == 403
    listed = (await client.get("/api/v1/assistants", headers=org.member.headers)).json()
    assert [a["name"] for a in listed["items"]] == ["bird-guide"]
    one = await client.get(f"/api/v1/assistants/{assistant['id']}", headers=org.member.headers)
    assert one.json()["instructions"] == INSTRUCTIONS
    path = f"/api/v1/assistants/{assistant['id']}"
    assert (await client.patch(path, json={"title": "x"}, headers=org.member.headers)).status_code == 403
    assert (await client.delete(path, headers=org.member.headers)).status_code == 403

    providers = (await client.get("/api/v1/assistants/providers", headers=org.member.headers)).json()
    assert providers == [
        {"name": "extractive", "provider": "extractive", "model": None, "default": True},
        {"name": "ranger", "provider": "openai", "model": "ranger-1", "default": False},
    ]

    # Change: fields left out stay, null resets to the server's default.
    changed = await client.patch(
        path, json={"provider": None, "sources": 3, "description": "Herons and friends"}, headers=org.admin.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() | {"updated_at": None} == assistant | {
        "provider": None, "sources": 3, "description": "Herons and friends", "updated_at": None,
    }  # fmt: skip
    searched = (await client.get("/api/v1/assistants", params={"q": "BIRD"}, headers=org.admin.headers)).json()
    assert len(searched["items"]) == 1
    assert (await client.get("/api/v1/assistants", params={"q": "zzz"}, headers=org.admin.headers)).json()[
        "items"
    ] == []

    assert (await client.delete(path, headers=org.admin.headers)).status_code == 204
    gone = await client.get(path, headers=org.admin.headers)
    assert gone.status_code == 404
    assert error_code(gone) == "assistant_not_found"
    audit = (await client.get("/api/v1/audit-events", params={"limit": 100}, headers=org.admin.headers)).json()
    actions = [e["action"] for e in audit["items"]]
    assert {"assistant.created", "assistant.updated", "assistant.deleted"} <= set(actions)


async def test_invalid_assistants_are_refused(client: httpx.AsyncClient, org: Org) -> None:
    assert (await create(client, org.admin, name="support")).status_code == 201
    stranger = await register(client)
    foreign = await create_collection(client, stranger, "Theirs")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "support"}, 409, "assistant_name_taken"),
        ({"name": "tessera"}, 422, "validation_error"),  # a built-in model name of /v1
        ({"name": "Support Bot"}, 422, "validation_error"),
        ({"name": "collection:x"}, 422, "validation_error"),
        ({"name": "a" * 64}, 422, "validation_error"),
        ({"name": "x", "provider": "gpt-9"}, 422, "invalid_input"),
        ({"name": "x", "prompt_version": "v999"}, 422, "invalid_input"),
        ({"name": "x", "style": "poetic"}, 422, "validation_error"),
        ({"name": "x", "sources": 0}, 422, "validation_error"),
        ({"name": "x", "instructions": "a" * 4_001}, 422, "validation_error"),
        ({"name": "x", "instructions": "nul\x00byte"}, 422, "validation_error"),
        ({"name": "x", "collections": [foreign]}, 404, "collection_not_found"),
        ({"name": "x", "collections": [str(uuid.uuid4())]}, 404, "collection_not_found"),
        ({"name": "x", "unknown": 1}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = await create(client, org.admin, **body)
        assert (response.status_code, error_code(response)) == (status, code), (body, response.text)
    unknown = await create(client, org.admin, name="x", provider="gpt-9")
    assert unknown.json()["error"]["details"]["choices"] == ["extractive", "ranger"]

    second = (await create(client, org.admin, name="second")).json()
    path = f"/api/v1/assistants/{second['id']}"
    renamed = await client.patch(path, json={"name": "support"}, headers=org.admin.headers)
    assert (renamed.status_code, error_code(renamed)) == (409, "assistant_name_taken")
    assert (await client.patch(path, json={"style": None}, headers=org.admin.headers)).status_code == 422
    assert (await client.get(path, headers=org.admin.headers)).json()["name"] == "second"  # nothing half-changed


async def test_another_organizations_assistants_are_404(client: httpx.AsyncClient, org: Org) -> None:
    theirs = (await create(client, org.admin, name="bird-guide", collections=[org.birds])).json()
    other = await register(client)
    path = f"/api/v1/assistants/{theirs['id']}"
    for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
        response = await client.request(method, path, json=body, headers=other.headers)
        assert (response.status_code, error_code(response)) == (404, "assistant_not_found"), method
    assert (await client.get("/api/v1/assistants", headers=other.headers)).json()["items"] == []
    asked = await client.post(
        "/api/v1/ask", json={"question": "What do herons eat?", "assistant_id": theirs["id"]}, headers=other.headers
    )
    assert (asked.status_code, error_code(asked)) == (404, "assistant_not_found")
    sent = await client.post(
        "/api/v1/chat/send", json={"content": "Herons?", "assistant_id": theirs["id"]}, headers=other.headers
    )
    assert (sent.status_code, error_code(sent)) == (404, "assistant_not_found")
    # The same name is free in another organization.
    assert (await create(client, other, name="bird-guide")).status_code == 201


async def test_ask_answers_as_the_assistant(
    client: httpx.AsyncClient, org: Org, model_server: tuple[RecordingModel, str]
) -> None:
    model, _ = model_server
    guide = (
        await create(
            client, org.admin, name="bird-guide", collections=[org.birds], provider="ranger",
            instructions=INSTRUCTIONS, temperature=0.7,
        )
    ).json()  # fmt: skip
    response = await client.post(
        "/api/v1/ask",
        json={"question": "What does a steam engine turn into motion?", "assistant_id": guide["id"]},
        headers=org.member.headers,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    # Only the assistant's collection was searched: no source about engines reached the model.
    sent = model.requests[-1]
    assert sent["model"] == "ranger-1"
    assert sent["temperature"] == 0.7
    sources = sent["messages"][-1]["content"].split("</sources>")[0]
    assert "pistons" not in sources
    assert "Grey herons" in sources
    system = sent["messages"][0]
    assert system["role"] == "system"
    assert system["content"].endswith(INSTRUCTIONS)  # after the grounding rules, which it cannot override
    assert system["content"].index("sources are data") < system["content"].index(INSTRUCTIONS)
    assert answer["model"] == "openai:ranger-1"
    assert answer["prompt"] == "answer.v2"
    assert {c["document_title"] or c["filename"] for c in answer["citations"]} <= {"Birds of the marsh", "herons.md"}

    # The caller may narrow the assistant's collections, never widen them.
    outside = await client.post(
        "/api/v1/ask",
        json={"question": "Steam?", "assistant_id": guide["id"], "collections": [org.machines]},
        headers=org.member.headers,
    )
    assert (outside.status_code, error_code(outside)) == (422, "invalid_input")

    # Without an assistant, the server's default model (extractive) answers from everything visible.
    plain = (
        await client.post(
            "/api/v1/ask", json={"question": "What does a steam engine turn into motion?"}, headers=org.member.headers
        )
    ).json()
    assert plain["model"] == "extractive:v1"
    assert "pistons" in plain["answer"] or "motion" in plain["answer"]
    assert len(model.requests) == 1

    # Streaming answers as the assistant too.
    streamed = await client.post(
        "/api/v1/ask",
        json={"question": "How do herons hunt?", "assistant_id": guide["id"], "stream": True},
        headers=org.member.headers,
    )
    assert streamed.status_code == 200
    assert '"model": "openai:ranger-1"' in streamed.text or '"model":"openai:ranger-1"' in streamed.text
    assert len(model.requests) == 2


async def test_an_assistant_answers_only_from_what_the_asking_user_can_see(client: httpx.AsyncClient, org: Org) -> None:
    trees = (await create(client, org.admin, name="trees", collections=[org.private])).json()
    mixed = (await create(client, org.admin, name="mixed", collections=[org.private, org.birds])).json()
    # The admin sees the private collection; the member does not, so to them `trees` does not exist.
    admin_answer = await client.post(
        "/api/v1/ask", json={"question": "What do acorns feed?", "assistant_id": trees["id"]}, headers=org.admin.headers
    )
    assert admin_answer.status_code == 200
    assert "jays" in admin_answer.json()["answer"]
    hidden = await client.post(
        "/api/v1/ask",
        json={"question": "What do acorns feed?", "assistant_id": trees["id"]},
        headers=org.member.headers,
    )
    assert (hidden.status_code, error_code(hidden)) == (404, "assistant_not_found")
    partial = await client.post(
        "/api/v1/ask",
        json={"question": "What do acorns feed?", "assistant_id": mixed["id"]},
        headers=org.member.headers,
    )
    assert partial.status_code == 200
    assert "jays" not in partial.json()["answer"]
    assert all(c["filename"] != "oaks.md" for c in partial.json()["citations"])

    key = await client.post(
        "/api/v1/api-keys", json={"name": "member key", "scopes": ["documents:read"]}, headers=org.member.headers
    )
    bearer = {"Authorization": f"Bearer {key.json()['key']}"}
    models = [m["id"] for m in (await client.get("/v1/models", headers=bearer)).json()["data"]]
    assert "mixed" in models
    assert "trees" not in models
    completion = await client.post(
        "/v1/chat/completions", json={"model": "trees", "messages": [{"role": "user", "content": "Acorns?"}]},
        headers=bearer,
    )  # fmt: skip
    assert (completion.status_code, error_code(completion)) == (404, "model_not_found")


async def test_chat_and_the_openai_api_answer_as_the_assistant(
    client: httpx.AsyncClient, org: Org, model_server: tuple[RecordingModel, str]
) -> None:
    model, _ = model_server
    guide = (
        await create(
            client, org.admin, name="bird-guide", collections=[org.birds], provider="ranger", instructions=INSTRUCTIONS
        )
    ).json()
    first = await client.post(
        "/api/v1/chat/send", json={"content": "How do herons hunt?", "assistant_id": guide["id"]},
        headers=org.member.headers,
    )  # fmt: skip
    assert first.status_code == 200, first.text
    reply = first.json()
    assert reply["model"] == "openai:ranger-1"
    conversation = f"/api/v1/conversations/{reply['conversation_id']}"
    assert (await client.get(conversation, headers=org.member.headers)).json()["assistant_id"] == guide["id"]

    # The conversation keeps its assistant; it is not switched mid-way.
    follow_up = await client.post(
        "/api/v1/chat/send", json={"content": "What do they eat?", "conversation_id": reply["conversation_id"]},
        headers=org.member.headers,
    )  # fmt: skip
    assert follow_up.json()["model"] == "openai:ranger-1"
    assert [m["role"] for m in model.requests[-1]["messages"]] == ["system", "user", "assistant", "user"]
    switch = await client.post(
        "/api/v1/chat/send",
        json={"content": "Hi", "conversation_id": reply["conversation_id"], "assistant_id": guide["id"]},
        headers=org.member.headers,
    )
    assert (switch.status_code, error_code(switch)) == (422, "invalid_input")

    # An explicit conversation can be started with an assistant too.
    started = await client.post("/api/v1/conversations", json={"assistant_id": guide["id"]}, headers=org.member.headers)
    assert started.json()["assistant_id"] == guide["id"]
    bogus = await client.post(
        "/api/v1/conversations", json={"assistant_id": str(uuid.uuid4())}, headers=org.member.headers
    )
    assert (bogus.status_code, error_code(bogus)) == (404, "assistant_not_found")

    # The OpenAI-compatible API: the assistant's name is a model.
    key = await client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["documents:read"]}, headers=org.member.headers
    )
    bearer = {"Authorization": f"Bearer {key.json()['key']}"}
    listed = {m["id"]: m for m in (await client.get("/v1/models", headers=bearer)).json()["data"]}
    assert listed["bird-guide"]["owned_by"] == "organization"
    completion = await client.post(
        "/v1/chat/completions",
        json={"model": "bird-guide", "messages": [{"role": "user", "content": "How do herons hunt?"}]},
        headers=bearer,
    )
    assert completion.status_code == 200, completion.text
    assert completion.json()["model"] == "bird-guide"
    assert completion.json()["answered_by"] == "openai:ranger-1"
    assert model.requests[-1]["messages"][0]["content"].endswith(INSTRUCTIONS)

    # Deleting the assistant leaves its conversations, which go on with the server's defaults.
    assert (await client.delete(f"/api/v1/assistants/{guide['id']}", headers=org.admin.headers)).status_code == 204
    after = await client.post(
        "/api/v1/chat/send", json={"content": "How do herons hunt?", "conversation_id": reply["conversation_id"]},
        headers=org.member.headers,
    )  # fmt: skip
    assert after.status_code == 200
    assert after.json()["model"] == "extractive:v1"
    assert (await client.get(conversation, headers=org.member.headers)).json()["assistant_id"] is None


async def test_assistants_are_listed_newest_first_and_paged(client: httpx.AsyncClient, org: Org) -> None:
    names = ["first", "second", "third"]
    for name in names:
        assert (await create(client, org.admin, name=name)).status_code == 201
    listed = (await client.get("/api/v1/assistants", headers=org.member.headers)).json()
    assert [a["name"] for a in listed["items"]] == ["third", "second", "first"]
    assert listed["next_cursor"] is None
    page = (await client.get("/api/v1/assistants", params={"limit": 2}, headers=org.member.headers)).json()
    assert [a["name"] for a in page["items"]] == ["third", "second"]
    rest = (
        await client.get(
            "/api/v1/assistants", params={"limit": 2, "cursor": page["next_cursor"]}, headers=org.member.headers
        )
    ).json()
    assert [a["name"] for a in rest["items"]] == ["first"]
    assert rest["next_cursor"] is None


async def test_a_profile_never_sends_the_servers_api_key(
    client: httpx.AsyncClient, org: Org, model_server: tuple[RecordingModel, str]
) -> None:
    model, _ = model_server
    guide = (await create(client, org.admin, name="bird-guide", collections=[org.birds], provider="ranger")).json()
    asked = await client.post(
        "/api/v1/ask", json={"question": "How do herons hunt?", "assistant_id": guide["id"]}, headers=org.member.headers
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["model"] == "openai:ranger-1"
    # The profile sets no api_key: nothing is sent, certainly not the server's default key.
    assert model.authorizations == [None]


@pytest.mark.parametrize("blank", ["", "   \n\t "])
async def test_blank_instructions_inherit_the_servers(
    client: httpx.AsyncClient, org: Org, model_server: tuple[RecordingModel, str], blank: str
) -> None:
    model, _ = model_server
    created = await create(client, org.admin, name="bird-guide", collections=[org.birds], provider="ranger",
                           instructions=blank)  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["instructions"] == ""
    guide = created.json()
    question = {"question": "How do herons hunt?", "assistant_id": guide["id"]}
    assert (await client.post("/api/v1/ask", json=question, headers=org.member.headers)).status_code == 200
    assert model.requests[-1]["messages"][0]["content"].endswith(SERVER_INSTRUCTIONS)

    # Its own instructions replace the server's; blank ones (or null) restore them.
    path = f"/api/v1/assistants/{guide['id']}"
    assert (await client.patch(path, json={"instructions": INSTRUCTIONS}, headers=org.admin.headers)).status_code == 200
    await client.post("/api/v1/ask", json=question, headers=org.member.headers)
    system = model.requests[-1]["messages"][0]["content"]
    assert system.endswith(INSTRUCTIONS)
    assert SERVER_INSTRUCTIONS not in system
    for reset in (blank, None):
        changed = await client.patch(path, json={"instructions": reset}, headers=org.admin.headers)
        assert changed.json()["instructions"] == ""
        await client.post("/api/v1/ask", json=question, headers=org.member.headers)
        assert model.requests[-1]["messages"][0]["content"].endswith(SERVER_INSTRUCTIONS)


def first_source(request: dict[str, Any]) -> str:
    """Source [1] of an answer request: the passage retrieval ranked first."""
    sources = request["messages"][-1]["content"].split("</sources>")[0]
    return sources.split("[1]", 1)[1].split("[2]", 1)[0]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_follow_up_on_v1_is_searched_with_the_models_standalone_rewrite(
    client: httpx.AsyncClient, org: Org, model_server: tuple[RecordingModel, str], stream: bool
) -> None:
    model, _ = model_server
    assert (await create(client, org.admin, name="guide", provider="ranger")).status_code == 201
    key = await client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["documents:read"]}, headers=org.member.headers
    )
    bearer = {"Authorization": f"Bearer {key.json()['key']}"}
    messages = [
        {"role": "user", "content": "What do grey herons eat?"},
        {"role": "assistant", "content": "Grey herons spear fish and frogs [1]."},
        {"role": "user", "content": "And how long do they live?"},
    ]
    response = await client.post(
        "/v1/chat/completions", json={"model": "guide", "messages": messages, "stream": stream}, headers=bearer
    )
    assert response.status_code == 200, response.text
    rewrite, answer = model.requests
    assert rewrite["messages"][-1]["content"].endswith("Last question: And how long do they live?")
    assert "Grey herons" in first_source(answer)  # searched with the rewrite: the heron passage ranks first
    assert answer["messages"][-1]["content"].rstrip().endswith("And how long do they live?")  # asked as asked
    if stream:
        last = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")][-1]
        assert last["search_query"] == REWRITE
    else:
        assert response.json()["search_query"] == REWRITE
        assert response.json()["usage"]["prompt_tokens"] == 2 * 120  # the rewrite's tokens are counted
