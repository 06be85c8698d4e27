"""`/api/v1/chat/ws` through Starlette's test client (the app and its lifespan in the client's own
event loop, on both backends): authentication by the first frame, answers as deltas then a
response, heartbeats, and every malformed frame an error frame or a close code with a reason."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tessera.core.chat import websocket as chat_ws
from tessera.core.documents.pipeline import process_inline
from tessera.main import create_app
from tessera.settings import Settings
from tests.factories import DEFAULT_PASSWORD, SAMPLE_DOCS

URL = "/api/v1/chat/ws"
_emails = itertools.count()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def sign_up(client: TestClient) -> dict[str, str]:
    email = f"ws{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"
    response = client.post("/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD, "name": "W"})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}", "token": response.json()["access_token"]}


def with_documents(client: TestClient) -> dict[str, str]:
    user = sign_up(client)
    headers = {"Authorization": user["Authorization"]}
    collection = client.post("/api/v1/collections", json={"name": "Notes"}, headers=headers).json()["id"]
    for name, content in SAMPLE_DOCS.items():
        response = client.post(
            "/api/v1/documents", data={"collection_id": collection}, files={"files": (name, content)}, headers=headers
        )
        document_id = response.json()["documents"][0]["id"]
        assert client.portal is not None
        assert client.portal.call(process_inline, uuid.UUID(document_id), 1) == "ready"
    return user


def closed(ws: Any) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as raised:
        ws.receive_json()
    return raised.value.code, raised.value.reason


def test_a_question_gets_deltas_then_the_stored_response(client: TestClient) -> None:
    user = with_documents(client)
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": user["token"]})
        ready = ws.receive_json()
        assert ready["type"] == "ready"
        ws.send_json({"type": "message", "content": "What do grey herons eat?"})
        frames = []
        while True:
            frame = ws.receive_json()
            frames.append(frame)
            if frame["type"] in ("response", "error"):
                break
        response = frames[-1]
        assert response["type"] == "response", frames
        assert {f["type"] for f in frames[:-1]} == {"delta"}
        assert "".join(f["text"] for f in frames[:-1]) == response["content"]
        assert "spear fish and frogs" in response["content"]
        assert response["citations"][0]["quote"]
        assert response["timestamp"]

        # The follow-up continues the conversation.
        ws.send_json(
            {"type": "message", "content": "Where do they stand?", "conversation_id": response["conversation_id"]}
        )
        while (frame := ws.receive_json())["type"] != "response":
            assert frame["type"] == "delta"
        assert "shallow water" in frame["content"]

        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    stored = client.get(
        f"/api/v1/conversations/{response['conversation_id']}", headers={"Authorization": user["Authorization"]}
    ).json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant", "user", "assistant"]
    assert stored["messages"][1]["id"] == response["message_id"]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "auth", "token": "not-a-token"}, "token"),
        ({"type": "message", "content": "hi"}, "first message"),
        ({"type": "auth"}, "first message"),
        ({"type": "auth", "token": "x", "org_id": "nope"}, "org_id"),
    ],
)
def test_bad_authentication_closes_with_1008_and_a_reason(
    client: TestClient, frame: dict[str, Any], reason: str
) -> None:
    with client.websocket_connect(URL) as ws:
        ws.send_json(frame)
        code, text = closed(ws)
    assert code == 1008
    assert reason in text.lower()


def test_no_authentication_in_time_closes(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_ws, "AUTH_TIMEOUT", 0.2)
    with client.websocket_connect(URL) as ws:
        code, text = closed(ws)
    assert (code, text) == (1008, "authenticate first")


def test_malformed_frames_get_errors_and_the_connection_stays(client: TestClient) -> None:
    user = sign_up(client)
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": user["token"]})
        assert ws.receive_json()["type"] == "ready"
        ws.send_text("{not json")
        assert ws.receive_json()["code"] == "invalid_frame"
        ws.send_json({"type": "shout"})
        assert ws.receive_json()["code"] == "invalid_frame"
        ws.send_json({"type": "message", "content": ""})
        error = ws.receive_json()
        assert (error["code"], error["details"][0]["field"]) == ("invalid_input", "content")
        ws.send_json({"type": "message", "content": "hi", "conversation_id": str(uuid.uuid4())})
        assert ws.receive_json()["code"] == "conversation_not_found"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_json()["code"] == "invalid_frame"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
        ws.send_text("x" * (chat_ws.MAX_FRAME_CHARS + 1))
        code, _ = closed(ws)
    assert code == 1009


def test_a_viewer_cannot_chat(client: TestClient) -> None:
    owner = sign_up(client)
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    invited = client.post(
        "/api/v1/members/invitations", json={"email": email, "role": "viewer"},
        headers={"Authorization": owner["Authorization"]},
    )  # fmt: skip
    assert invited.status_code == 201, invited.text
    joined = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": DEFAULT_PASSWORD, "name": "V", "invitation_token": invited.json()["token"]},
    )
    assert joined.status_code == 201, joined.text
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": joined.json()["access_token"]})
        code, reason = closed(ws)
    assert code == 1008
    assert "conversations:write" in reason


def test_the_server_sends_heartbeats(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_ws, "HEARTBEAT_SECONDS", 0.05)
    user = sign_up(client)
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": user["token"]})
        assert ws.receive_json()["type"] == "ready"
        assert ws.receive_json() == {"type": "ping"}


def test_a_client_answers_heartbeats_with_pong_and_its_pings_get_pong(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_ws, "HEARTBEAT_SECONDS", 0.05)
    user = sign_up(client)
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": user["token"]})
        assert ws.receive_json()["type"] == "ready"
        for _ in range(3):
            assert ws.receive_json() == {"type": "ping"}
            ws.send_json({"type": "pong"})  # accepted silently, not an `invalid_frame`
        ws.send_json({"type": "ping"})
        while (frame := ws.receive_json()) != {"type": "pong"}:
            assert frame == {"type": "ping"}, frame  # heartbeats only: no error frame for the pongs


def test_a_flagged_message_is_an_error_frame(client: TestClient) -> None:
    user = sign_up(client)
    with client.websocket_connect(URL) as ws:
        ws.send_json({"type": "auth", "token": user["token"]})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "message", "content": "I will kill you all"})
        error = ws.receive_json()
        assert (error["type"], error["code"], error["details"]["categories"]) == (
            "error",
            "content_flagged",
            ["violence"],
        )
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
