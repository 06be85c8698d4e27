"""Live chat events reach the user's other connections: another socket of the same app, a socket
after `POST /chat/send`, and — with Redis — a socket served by another API process (a second app
instance that shares only the database and Redis with the first). Nobody else receives them.

The Redis tests need Redis at 127.0.0.1:6379; without it they skip, except under CI, where they fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from tessera.main import create_app
from tessera.settings import Settings
from tests.core.chat.test_chat_websocket import URL, sign_up, with_documents

REDIS_URL = "redis://127.0.0.1:6379/15"
Frames = list[dict[str, Any]]


def connect(client: TestClient, token: str) -> Any:
    ws = client.websocket_connect(URL)
    socket = ws.__enter__()
    socket.send_json({"type": "auth", "token": token})
    assert socket.receive_json()["type"] == "ready"
    return ws, socket


def ask(socket: Any, content: str, **extra: Any) -> Frames:
    """Send a question; the frames up to its response."""
    socket.send_json({"type": "message", "content": content, **extra})
    frames: Frames = []
    while not frames or frames[-1]["type"] not in ("response", "error"):
        frame = socket.receive_json()
        if frame["type"] != "ping":
            frames.append(frame)
    return frames


def collect(socket: Any, done: Callable[[Frames], bool], *, attempts: int = 50) -> Frames:
    """Frames that arrive until `done` holds, reading up to a pong each time (never blocking for ever)."""
    frames: Frames = []
    for _ in range(attempts):
        socket.send_json({"type": "ping"})
        while (frame := socket.receive_json())["type"] != "pong":
            if frame["type"] != "ping":
                frames.append(frame)
        if done(frames):
            return frames
        time.sleep(0.1)
    return frames


def has_response(frames: Frames) -> bool:
    return any(f["type"] == "response" for f in frames)


def assert_mirrors(mirrored: Frames, own: Frames, question: str) -> None:
    assert all(f["mirror"] is True for f in mirrored)
    assert mirrored[0]["type"] == "user_message"
    assert mirrored[0]["content"] == question
    response = own[-1]
    assert mirrored[0]["conversation_id"] == response["conversation_id"]
    assert mirrored[0]["message_id"] == response["user_message_id"]
    deltas = [f for f in mirrored if f["type"] == "delta"]
    assert "".join(d["text"] for d in deltas) == response["content"]
    assert {d["conversation_id"] for d in deltas} == {response["conversation_id"]}
    assert mirrored[-1] == response | {"mirror": True}


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_users_other_sockets_mirror_the_conversation(client: TestClient) -> None:
    user = with_documents(client)
    stranger = sign_up(client)
    first, asking = connect(client, user["token"])
    second, watching = connect(client, user["token"])
    third, other = connect(client, stranger["token"])
    try:
        own = ask(asking, "What do grey herons eat?")
        assert own[-1]["type"] == "response"
        assert {f["type"] for f in own[:-1]} == {"delta"}
        assert all("mirror" not in f for f in own)  # a socket is not sent its own events twice
        assert all(f["conversation_id"] == own[-1]["conversation_id"] for f in own)
        mirrored = collect(watching, has_response)
        assert_mirrors(mirrored, own, "What do grey herons eat?")
        assert collect(other, has_response, attempts=3) == []  # another user's sockets hear nothing
        assert collect(asking, has_response, attempts=2) == []
    finally:
        for ws in (first, second, third):
            ws.__exit__(None, None, None)


def test_answers_sent_over_http_reach_the_users_sockets(client: TestClient) -> None:
    user = with_documents(client)
    headers = {"Authorization": user["Authorization"]}
    ws, socket = connect(client, user["token"])
    try:
        reply = client.post("/api/v1/chat/send", json={"content": "How long do oak trees live?"}, headers=headers)
        assert reply.status_code == 200
        frames = collect(socket, has_response)
        assert [f["type"] for f in frames] == ["user_message", "response"]
        assert frames[0]["content"] == "How long do oak trees live?"
        assert frames[1]["message_id"] == reply.json()["message_id"]
        assert frames[1]["content"] == reply.json()["content"]

        streamed = client.post(
            "/api/v1/chat/send",
            json={
                "content": "What does a steam engine turn?",
                "stream": True,
                "conversation_id": frames[1]["conversation_id"],
            },
            headers=headers,
        )
        assert streamed.status_code == 200
        mirrored = collect(socket, has_response)
        assert mirrored[0]["type"] == "user_message"
        assert {f["type"] for f in mirrored[1:-1]} == {"delta"}
        assert mirrored[-1]["type"] == "response"
        assert mirrored[-1]["conversation_id"] == frames[1]["conversation_id"]
    finally:
        ws.__exit__(None, None, None)


def in_two_organizations(client: TestClient) -> tuple[dict[str, str], str, str]:
    """A user with documents in their first organization, who also owns a second one."""
    user = with_documents(client)
    headers = {"Authorization": user["Authorization"]}
    first = client.get("/api/v1/auth/me", headers=headers).json()["org_id"]
    created = client.post("/api/v1/orgs", json={"name": "Second"}, headers=headers)
    assert created.status_code == 201, created.text
    return user, first, created.json()["id"]


def connect_to(client: TestClient, token: str, org_id: str) -> Any:
    ws = client.websocket_connect(URL)
    socket = ws.__enter__()
    socket.send_json({"type": "auth", "token": token, "org_id": org_id})
    ready = socket.receive_json()
    assert (ready["type"], ready["org_id"]) == ("ready", org_id)
    return ws, socket


def assert_scoped_by_organization(one: TestClient, two: TestClient) -> None:
    """A user in two organizations: a turn reaches their sockets of the organization it was asked
    in (on either app), never their sockets of the other one."""
    user, first, second = in_two_organizations(one)
    a, asking = connect_to(one, user["token"], first)
    b, same_org = connect_to(two, user["token"], first)
    c, other_org = connect_to(one, user["token"], second)
    d, other_org_elsewhere = connect_to(two, user["token"], second)
    try:
        own = ask(asking, "What do grey herons eat?")
        assert own[-1]["type"] == "response"
        assert_mirrors(collect(same_org, has_response), own, "What do grey herons eat?")
        assert collect(other_org, has_response, attempts=3) == []
        assert collect(other_org_elsewhere, has_response, attempts=3) == []

        # Over HTTP in the second organization: only that organization's sockets hear it.
        headers = {"Authorization": user["Authorization"], "X-Org-Id": second}
        reply = one.post("/api/v1/chat/send", json={"content": "Anything about herons?"}, headers=headers)
        assert reply.status_code == 200, reply.text
        for socket in (other_org, other_org_elsewhere):
            frames = collect(socket, has_response)
            assert frames[-1]["message_id"] == reply.json()["message_id"]
        assert collect(asking, has_response, attempts=3) == []
        assert collect(same_org, has_response, attempts=3) == []
    finally:
        for ws in (a, b, c, d):
            ws.__exit__(None, None, None)


def test_a_user_in_two_organizations_sees_only_the_turns_of_the_one_a_socket_is_in(client: TestClient) -> None:
    assert_scoped_by_organization(client, client)


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


def test_events_fan_out_across_api_processes_through_redis(settings: Settings, redis_url: str) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url})
    # Two app instances: separate engines, limiters and event hubs, like two API processes.
    with TestClient(create_app(shared)) as one, TestClient(create_app(shared)) as two:
        user = with_documents(one)
        stranger = sign_up(two)
        first, asking = connect(one, user["token"])
        second, watching = connect(two, user["token"])
        third, local = connect(one, user["token"])
        fourth, other = connect(two, stranger["token"])
        try:
            own = ask(asking, "What do grey herons eat?")
            assert own[-1]["type"] == "response"
            assert_mirrors(collect(watching, has_response), own, "What do grey herons eat?")
            assert_mirrors(collect(local, has_response), own, "What do grey herons eat?")
            assert collect(other, has_response, attempts=3) == []

            # And back: a question on the second process reaches the first one's sockets.
            back = ask(watching, "How long do oak trees live?")
            assert back[-1]["type"] == "response"
            assert_mirrors(collect(asking, has_response), back, "How long do oak trees live?")
        finally:
            for ws in (first, second, third, fourth):
                ws.__exit__(None, None, None)


def test_through_redis_events_stay_within_their_organization(settings: Settings, redis_url: str) -> None:
    shared = settings.model_copy(update={"redis_url": redis_url})
    with TestClient(create_app(shared)) as one, TestClient(create_app(shared)) as two:
        assert_scoped_by_organization(one, two)
