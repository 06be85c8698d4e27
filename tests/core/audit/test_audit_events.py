"""The audit trail through the API: what gets written, who may read it, filters and paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from tests.factories import DEFAULT_PASSWORD, SignedIn, add_member, error_code, login, register

EVENTS = "/api/v1/audit-events"
KEYS = "/api/v1/api-keys"
CLIENT_IP = "203.0.113.7"  # the `client` fixture's address
AGENT = "tessera-tests/1.0"


async def all_events(client: httpx.AsyncClient, caller: SignedIn, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(EVENTS, params={"limit": 200, **params}, headers=caller.headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def only(events: list[dict[str, Any]], action: str, target_id: str | None = None) -> dict[str, Any]:
    matching = [e for e in events if e["action"] == action and target_id in (None, e["target_id"])]
    assert len(matching) == 1, [event["action"] for event in events]
    return matching[0]


class TestEventsAreWritten:
    async def test_register_and_login(self, client: httpx.AsyncClient) -> None:
        email = f"ada-{uuid.uuid4().hex[:6]}@example.com"
        registered = await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": DEFAULT_PASSWORD, "name": "Ada"},
            headers={"User-Agent": AGENT},
        )
        assert registered.status_code == 201
        signed_in = await client.post(
            "/api/v1/auth/login",
            json={"email": email, "password": DEFAULT_PASSWORD},
            headers={"User-Agent": AGENT, "X-Request-Id": "login-req-1"},
        )
        assert signed_in.status_code == 200
        assert signed_in.headers["x-request-id"] == "login-req-1"
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        me = (await client.get("/api/v1/auth/me", headers=headers)).json()
        events = (await client.get(EVENTS, headers=headers)).json()["items"]
        assert [event["action"] for event in events] == ["auth.login", "user.registered", "org.created"]
        assert [event["seq"] for event in events] == [3, 2, 1]

        for event in events:
            assert event["actor_type"] == "user"
            assert event["actor_id"] == me["user"]["id"]
            assert event["actor_label"] == email
            assert event["ip"] == CLIENT_IP
            assert event["user_agent"] == AGENT
        registered_event = only(events, "user.registered")
        assert registered_event["request_id"] == registered.headers["x-request-id"]
        assert registered_event["target_type"] == "user"
        assert registered_event["target_id"] == me["user"]["id"]
        assert registered_event["details"] == {"email": email}
        assert only(events, "org.created")["request_id"] == registered.headers["x-request-id"]
        assert only(events, "org.created")["target_id"] == me["org_id"]
        login_event = only(events, "auth.login")
        assert login_event["request_id"] == "login-req-1"
        assert login_event["details"]["mfa"] is False

    async def test_key_member_and_role_events(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        headers = {**owner.headers, "User-Agent": AGENT}

        created = await client.post(KEYS, json={"name": "CI", "scopes": ["api_keys:*"]}, headers=headers)
        key = created.json()
        invited = await client.post(
            "/api/v1/members/invitations", json={"email": "new@example.com", "role": "viewer"}, headers=headers
        )
        member = await add_member(client, owner, "member")
        changed = await client.patch(f"/api/v1/members/{member.user_id}", json={"role": "admin"}, headers=headers)
        # Revoked by the key itself: the actor is the key, labelled with its creator.
        key_headers = {"X-API-Key": key["key"], "User-Agent": AGENT}
        assert (await client.get("/api/v1/auth/me", headers=key_headers)).status_code == 200
        revoked = await client.delete(f"{KEYS}/{key['id']}", headers=key_headers)
        assert revoked.status_code == 204

        events = await all_events(client, owner)
        expected = {
            "api_key.created": (created, "api_key", key["id"], {"name": "CI", "scopes": ["api_keys:*"]}),
            "member.invited": (
                invited,
                "invitation",
                invited.json()["id"],
                {"email": "new@example.com", "role": "viewer"},
            ),
            "member.role_changed": (changed, "user", member.user_id, {"from": "member", "to": "admin"}),
            "api_key.revoked": (revoked, "api_key", key["id"], {"name": "CI"}),
        }
        for action, (response, target_type, target_id, details) in expected.items():
            event = only(events, action, target_id)
            assert event["request_id"] == response.headers["x-request-id"], action
            assert event["ip"] == CLIENT_IP
            assert event["user_agent"] == AGENT
            assert event["target_type"] == target_type
            assert event["target_id"] == target_id
            assert details.items() <= event["details"].items(), action
            assert event["actor_label"] == owner.email
        for action in ("api_key.created", "member.invited", "member.role_changed"):
            assert only(events, action, expected[action][2])["actor_type"] == "user"
            assert only(events, action, expected[action][2])["actor_id"] == owner.user_id
        assert only(events, "api_key.revoked")["actor_type"] == "api_key"
        assert only(events, "api_key.revoked")["actor_id"] == key["id"]
        assert only(events, "api_key.created")["details"]["prefix"] == key["prefix"]

    async def test_failed_sign_in_is_recorded_despite_the_rollback(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        failed = await login(client, owner.email, "Wrong-password-1234")
        assert failed.status_code == 401
        event = only(await all_events(client, owner), "auth.login_failed")
        assert event["actor_type"] == "anonymous"
        assert event["actor_id"] == owner.user_id
        assert event["details"] == {"reason": "bad_password"}
        assert event["request_id"] == failed.headers["x-request-id"]
        verified = (await client.get(f"{EVENTS}/verify", headers=owner.headers)).json()
        assert verified["ok"] is True


class TestWhoMayRead:
    async def test_admins_and_owners_only(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        viewer = await add_member(client, owner, "viewer")
        clinician = await add_member(client, owner, "clinician")
        for caller in (owner, admin):
            assert (await client.get(EVENTS, headers=caller.headers)).status_code == 200
            assert (await client.get(f"{EVENTS}/verify", headers=caller.headers)).status_code == 200
        for caller in (member, viewer, clinician):
            for path in (EVENTS, f"{EVENTS}/verify"):
                response = await client.get(path, headers=caller.headers)
                assert response.status_code == 403, (caller.email, path)
                assert error_code(response) == "permission_denied"
        assert (await client.get(EVENTS)).status_code == 401


class TestFilters:
    async def _setup(self, client: httpx.AsyncClient) -> tuple[SignedIn, SignedIn, dict[str, Any]]:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        assert (await login(client, owner.email)).status_code == 200
        key = (await client.post(KEYS, json={"name": "k", "scopes": ["documents:read"]}, headers=owner.headers)).json()
        assert (await client.delete(f"{KEYS}/{key['id']}", headers=owner.headers)).status_code == 204
        return owner, member, key

    async def test_action_exact_and_prefix(self, client: httpx.AsyncClient) -> None:
        owner, _, _ = await self._setup(client)
        exact = await all_events(client, owner, action="auth.login")
        assert [event["action"] for event in exact] == ["auth.login"]
        prefix = await all_events(client, owner, action="api_key.")
        assert [event["action"] for event in prefix] == ["api_key.revoked", "api_key.created"]
        members = await all_events(client, owner, action="member.")
        assert {event["action"] for event in members} == {"member.invited", "member.joined"}
        # Without the trailing dot the value is an exact action, and LIKE wildcards are literal.
        assert await all_events(client, owner, action="api_key") == []
        assert await all_events(client, owner, action="%.") == []
        assert await all_events(client, owner, action="api_%.") == []

    async def test_actor_and_target(self, client: httpx.AsyncClient) -> None:
        owner, member, key = await self._setup(client)
        by_member = await all_events(client, owner, actor_id=member.user_id)
        assert {event["action"] for event in by_member} == {"member.joined", "user.registered"}
        on_key = await all_events(client, owner, target_type="api_key", target_id=key["id"])
        assert [event["action"] for event in on_key] == ["api_key.revoked", "api_key.created"]
        on_member = await all_events(client, owner, target_type="user", target_id=member.user_id)
        assert {event["action"] for event in on_member} == {"member.joined", "user.registered"}
        combined = await all_events(client, owner, action="auth.", actor_id=member.user_id)
        assert combined == []
        assert await all_events(client, owner, actor_id=str(uuid.uuid4())) == []
        bad = await client.get(EVENTS, params={"actor_id": "nope"}, headers=owner.headers)
        assert bad.status_code == 422

    async def test_time_range(self, client: httpx.AsyncClient) -> None:
        owner, _, _ = await self._setup(client)
        events = await all_events(client, owner)
        middle = events[len(events) // 2]
        at = datetime.fromisoformat(middle["created_at"])
        since = await all_events(client, owner, since=at.isoformat())
        until = await all_events(client, owner, until=at.isoformat())
        assert middle["id"] in {event["id"] for event in since}
        assert middle["id"] not in {event["id"] for event in until}
        assert len(since) + len(until) == len(events)
        assert all(datetime.fromisoformat(event["created_at"]) >= at for event in since)
        # The same instant written with another offset selects the same events.
        shifted = at.astimezone(timezone(timedelta(hours=2)))
        assert await all_events(client, owner, since=shifted.isoformat()) == since
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        assert await all_events(client, owner, since=future) == []
        assert len(await all_events(client, owner, until=future)) == len(events)

    @pytest.mark.parametrize("param", ["since", "until"])
    async def test_naive_datetimes_are_refused(self, client: httpx.AsyncClient, param: str) -> None:
        owner = await register(client)
        response = await client.get(EVENTS, params={param: "2026-01-01T00:00:00"}, headers=owner.headers)
        assert response.status_code == 422
        assert error_code(response) == "invalid_input"
        garbage = await client.get(EVENTS, params={param: "yesterday"}, headers=owner.headers)
        assert garbage.status_code == 422
        assert error_code(garbage) == "validation_error"


class TestPaging:
    async def test_pages_cover_every_event_once_newest_first(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        for i in range(5):
            assert (
                await client.patch("/api/v1/orgs/current", json={"name": f"Name {i}"}, headers=owner.headers)
            ).status_code == 200
        everything = await all_events(client, owner)
        assert len(everything) == 7
        assert [event["seq"] for event in everything] == list(range(7, 0, -1))

        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(EVENTS, params=params, headers=owner.headers)).json()
            seen += [event["id"] for event in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [event["id"] for event in everything]

        filtered_first = (
            await client.get(EVENTS, params={"limit": 2, "action": "org.renamed"}, headers=owner.headers)
        ).json()
        filtered_next = (
            await client.get(
                EVENTS,
                params={"limit": 10, "action": "org.renamed", "cursor": filtered_first["next_cursor"]},
                headers=owner.headers,
            )
        ).json()
        names = [event["details"]["to"] for event in filtered_first["items"] + filtered_next["items"]]
        assert names == [f"Name {i}" for i in range(4, -1, -1)]

    async def test_bad_cursor(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        response = await client.get(EVENTS, params={"cursor": "%%%"}, headers=owner.headers)
        assert response.status_code == 422
        assert error_code(response) == "invalid_cursor"
