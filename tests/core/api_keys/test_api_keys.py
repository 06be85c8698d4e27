"""API keys through the HTTP API: creation, use, scopes, revocation, expiry and visibility."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update

from tessera.core.auth.models import ApiKey, Membership
from tests.factories import SignedIn, add_member, error_code, register

KEYS = "/api/v1/api-keys"
ME = "/api/v1/auth/me"


async def create_key(client: httpx.AsyncClient, owner: SignedIn, scopes: list[str], **extra: Any) -> dict[str, Any]:
    response = await client.post(KEYS, json={"name": "CI", "scopes": scopes, **extra}, headers=owner.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


class TestCreateApiKey:
    async def test_create_returns_the_key_once(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read", "api_keys:read", "documents:read"])
        key = created["key"]
        assert key.startswith(created["prefix"] + "_")
        assert created["scopes"] == ["api_keys:read", "documents:read"]
        assert created["created_by_id"] == owner.user_id
        assert created["last_used_at"] is None
        assert created["revoked_at"] is None

        one = await client.get(f"{KEYS}/{created['id']}", headers=owner.headers)
        listing = await client.get(KEYS, headers=owner.headers)
        assert one.status_code == 200
        assert listing.status_code == 200
        assert "key" not in one.json()
        assert [item["id"] for item in listing.json()["items"]] == [created["id"]]
        for response in (one, listing):
            assert key not in response.text
            assert key.split("_", 2)[2] not in response.text

    async def test_only_a_hash_of_the_key_is_stored(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read"])
        async with app.state.sessionmaker() as session:
            row = (
                await session.execute(select(*ApiKey.__table__.c).where(ApiKey.id == uuid.UUID(created["id"])))
            ).one()
        stored = [str(value) for value in row]
        secret = created["key"].split("_", 2)[2]
        assert not any(secret in value for value in stored)
        assert row.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()

    async def test_viewer_cannot_create_or_list_keys(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        viewer = await add_member(client, owner, "viewer")
        created = await client.post(KEYS, json={"name": "x", "scopes": ["documents:read"]}, headers=viewer.headers)
        assert created.status_code == 403
        assert error_code(created) == "permission_denied"
        listed = await client.get(KEYS, headers=viewer.headers)
        assert listed.status_code == 403

    async def test_scopes_beyond_the_role_are_refused(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        response = await client.post(
            KEYS,
            json={"name": "x", "scopes": ["documents:read", "audit:read", "members:write"]},
            headers=member.headers,
        )
        assert response.status_code == 422
        assert error_code(response) == "invalid_scope"
        assert response.json()["error"]["details"] == {"beyond_role": ["audit:read", "members:write"]}
        # Wildcards are allowed: what they grant is cut down to the role when the key is used.
        await create_key(client, member, ["*:read"])

    async def test_invalid_scope_strings_are_refused(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        for scope in ("documents", "Documents:read", "documents:read:all", "", "documents:", ":read", "*:*:*", "a b:c"):
            response = await client.post(KEYS, json={"name": "x", "scopes": [scope]}, headers=owner.headers)
            assert response.status_code == 422, scope
            assert error_code(response) == "invalid_scope", scope
        assert (await client.get(KEYS, headers=owner.headers)).json()["items"] == []

    async def test_bad_input_is_422(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"scopes": ["documents:read"]}, "name"),
            ({"name": "", "scopes": ["documents:read"]}, "name"),
            ({"name": "x"}, "scopes"),
            ({"name": "x", "scopes": "documents:read"}, "scopes"),
            ({"name": "x", "scopes": []}, "scopes"),
            ({"name": "x", "scopes": [f"r{i}:read" for i in range(51)]}, "scopes"),
            ({"name": "x", "scopes": ["documents:read"], "owner": "me"}, "owner"),
            ({"name": "x", "scopes": ["documents:read"], "expires_at": "soon"}, "expires_at"),
            # A naive expiry cannot be compared with UTC.
            ({"name": "x", "scopes": ["documents:read"], "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ]
        for body, field in cases:
            response = await client.post(KEYS, json=body, headers=owner.headers)
            assert response.status_code == 422, (body, response.text)
            assert error_code(response) == "validation_error"
            assert field in response.json()["error"]["message"], body
        assert (await client.get(KEYS, headers=owner.headers)).json()["items"] == []

    async def test_fifty_scopes_are_accepted(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, [f"r{i}:read" for i in range(50)])
        assert len(created["scopes"]) == 50

    async def test_expiry_in_the_past_is_refused(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        response = await client.post(
            KEYS, json={"name": "x", "scopes": ["documents:read"], "expires_at": past}, headers=owner.headers
        )
        assert response.status_code == 422
        assert error_code(response) == "invalid_input"


class TestUseApiKey:
    async def test_key_authenticates_as_header_and_as_bearer(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read", "api_keys:read"])
        for headers in (key_header(created["key"]), {"Authorization": f"Bearer {created['key']}"}):
            me = await client.get(ME, headers=headers)
            assert me.status_code == 200, me.text
            body = me.json()
            assert body["auth_method"] == "api_key"
            assert body["scopes"] == ["api_keys:read", "documents:read"]
            assert body["user"]["id"] == owner.user_id
            assert body["org_id"] == owner.org_id
            assert body["role"] == "owner"

    async def test_last_use_is_recorded(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read"])
        before = datetime.now(UTC)
        assert (await client.get(ME, headers=key_header(created["key"]))).status_code == 200
        after = datetime.now(UTC)
        one = (await client.get(f"{KEYS}/{created['id']}", headers=owner.headers)).json()
        assert one["last_used_at"] is not None
        assert before - timedelta(seconds=1) <= datetime.fromisoformat(one["last_used_at"]) <= after

    async def test_last_use_is_recorded_when_the_request_fails(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read"])
        denied = await client.get("/api/v1/members", headers=key_header(created["key"]))
        assert denied.status_code == 403
        one = (await client.get(f"{KEYS}/{created['id']}", headers=owner.headers)).json()
        assert one["last_used_at"] is not None

    async def test_unknown_or_malformed_keys_get_401(self, client: httpx.AsyncClient) -> None:
        for key in ("tsk_nothing", "tsk_0123456789ab_wrong", "tsk_0123456789ab_", "not-a-key"):
            response = await client.get(ME, headers=key_header(key))
            assert response.status_code == 401, key
            assert error_code(response) == "invalid_token"

    async def test_a_changed_secret_with_a_real_prefix_gets_401(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read"])
        forged = created["prefix"] + "_" + "A" * 43
        response = await client.get(ME, headers=key_header(forged))
        assert response.status_code == 401
        assert error_code(response) == "invalid_token"


class TestScopes:
    async def test_read_only_key_lists_keys_but_cannot_create_them(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["api_keys:read"])
        headers = key_header(created["key"])
        listing = await client.get(KEYS, headers=headers)
        assert listing.status_code == 200
        assert [item["id"] for item in listing.json()["items"]] == [created["id"]]
        denied = await client.post(KEYS, json={"name": "y", "scopes": ["documents:read"]}, headers=headers)
        assert denied.status_code == 403
        assert denied.json()["error"]["details"] == {"permission": "api_keys:write"}
        members = await client.get("/api/v1/members", headers=headers)
        assert members.status_code == 403

    async def test_wildcard_read_scope(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["*:read"])
        headers = key_header(created["key"])
        for path in ("/api/v1/members", "/api/v1/orgs/current", KEYS, "/api/v1/audit-events"):
            assert (await client.get(path, headers=headers)).status_code == 200, path
        assert (await client.patch("/api/v1/orgs/current", json={"name": "New"}, headers=headers)).status_code == 403
        invite = await client.post("/api/v1/members/invitations", json={"email": "x@example.com"}, headers=headers)
        assert invite.status_code == 403
        assert (await client.delete(f"{KEYS}/{created['id']}", headers=headers)).status_code == 403

    async def test_resource_wildcard_scope(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["org:*"])
        headers = key_header(created["key"])
        renamed = await client.patch("/api/v1/orgs/current", json={"name": "Renamed by key"}, headers=headers)
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "Renamed by key"
        assert (await client.get("/api/v1/members", headers=headers)).status_code == 403

    async def test_a_key_cannot_create_keys_even_with_every_scope(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["*"])
        response = await client.post(
            KEYS, json={"name": "child", "scopes": ["documents:read"]}, headers=key_header(created["key"])
        )
        assert response.status_code == 403
        assert error_code(response) == "permission_denied"

    async def test_scope_is_cut_down_to_the_creators_current_role(self, client: httpx.AsyncClient) -> None:
        first = await register(client)
        second = await add_member(client, first, "owner")
        created = await create_key(client, first, ["audit:read", "api_keys:read"])
        headers = key_header(created["key"])
        assert (await client.get("/api/v1/audit-events", headers=headers)).status_code == 200
        demoted = await client.patch(
            f"/api/v1/members/{first.user_id}", json={"role": "viewer"}, headers=second.headers
        )
        assert demoted.status_code == 200, demoted.text
        # The scope still names these permissions, but a viewer holds neither.
        assert (await client.get("/api/v1/audit-events", headers=headers)).status_code == 403
        assert (await client.get(KEYS, headers=headers)).status_code == 403
        me = await client.get(ME, headers=headers)
        assert me.status_code == 200
        assert me.json()["role"] == "viewer"


class TestRevokeApiKey:
    async def test_revoked_key_gets_401_and_revoking_twice_is_204(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await create_key(client, owner, ["documents:read"])
        assert (await client.get(ME, headers=key_header(created["key"]))).status_code == 200
        first = await client.delete(f"{KEYS}/{created['id']}", headers=owner.headers)
        assert first.status_code == 204
        rejected = await client.get(ME, headers=key_header(created["key"]))
        assert rejected.status_code == 401
        assert error_code(rejected) == "invalid_token"
        second = await client.delete(f"{KEYS}/{created['id']}", headers=owner.headers)
        assert second.status_code == 204

        one = (await client.get(f"{KEYS}/{created['id']}", headers=owner.headers)).json()
        assert one["revoked_at"] is not None
        active = (await client.get(KEYS, headers=owner.headers)).json()["items"]
        everything = (await client.get(KEYS, params={"include_revoked": "true"}, headers=owner.headers)).json()["items"]
        assert active == []
        assert [item["id"] for item in everything] == [created["id"]]

    async def test_unknown_or_malformed_id(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        missing = uuid.uuid4()
        for method in ("GET", "DELETE"):
            not_found = await client.request(method, f"{KEYS}/{missing}", headers=owner.headers)
            assert not_found.status_code == 404
            assert error_code(not_found) == "api_key_not_found"
            malformed = await client.request(method, f"{KEYS}/not-a-uuid", headers=owner.headers)
            assert malformed.status_code == 422
            assert error_code(malformed) == "validation_error"

    async def test_key_stops_when_its_creator_leaves_the_org(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        created = await create_key(client, member, ["documents:read"])
        assert (await client.get(ME, headers=key_header(created["key"]))).status_code == 200
        removed = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
        assert removed.status_code == 204
        rejected = await client.get(ME, headers=key_header(created["key"]))
        assert rejected.status_code == 401
        everything = (await client.get(KEYS, params={"include_revoked": "true"}, headers=owner.headers)).json()
        assert everything["items"][0]["revoked_at"] is not None

    async def test_key_without_a_membership_behind_it_gets_401(self, client: httpx.AsyncClient, app: Any) -> None:
        # Even if the key row were left active, a creator without a membership cannot act through it.
        owner = await register(client)
        member = await add_member(client, owner, "member")
        created = await create_key(client, member, ["documents:read"])
        async with app.state.sessionmaker() as session:
            await session.execute(
                delete(Membership).where(
                    Membership.user_id == uuid.UUID(member.user_id), Membership.org_id == uuid.UUID(owner.org_id)
                )
            )
            await session.commit()
        rejected = await client.get(ME, headers=key_header(created["key"]))
        assert rejected.status_code == 401
        assert error_code(rejected) == "invalid_token"


class TestExpiry:
    async def test_expired_key_gets_token_expired(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        soon = datetime.now(UTC) + timedelta(hours=1)
        created = await create_key(client, owner, ["documents:read"], expires_at=soon.isoformat())
        assert datetime.fromisoformat(created["expires_at"]) == soon
        assert (await client.get(ME, headers=key_header(created["key"]))).status_code == 200
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == uuid.UUID(created["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()
        # A change made outside the app's requests: let its principal cache know, as its TTL would.
        app.state.write_clock.tick()
        rejected = await client.get(ME, headers=key_header(created["key"]))
        assert rejected.status_code == 401
        assert error_code(rejected) == "token_expired"


class TestVisibility:
    async def test_members_see_their_own_keys_and_admins_see_all(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        owners_key = await create_key(client, owner, ["documents:read"])
        members_key = await create_key(client, member, ["documents:read"])

        def ids(response: httpx.Response) -> set[str]:
            return {item["id"] for item in response.json()["items"]}

        assert ids(await client.get(KEYS, headers=member.headers)) == {members_key["id"]}
        assert ids(await client.get(KEYS, headers=admin.headers)) == {owners_key["id"], members_key["id"]}
        assert ids(await client.get(KEYS, headers=owner.headers)) == {owners_key["id"], members_key["id"]}

        hidden = await client.get(f"{KEYS}/{owners_key['id']}", headers=member.headers)
        assert hidden.status_code == 404
        not_theirs = await client.delete(f"{KEYS}/{owners_key['id']}", headers=member.headers)
        assert not_theirs.status_code == 404
        assert (await client.get(ME, headers=key_header(owners_key["key"]))).status_code == 200
        # An admin may revoke anyone's key.
        assert (await client.delete(f"{KEYS}/{members_key['id']}", headers=admin.headers)).status_code == 204
        assert (await client.get(ME, headers=key_header(members_key["key"]))).status_code == 401

    async def test_key_listing_pages(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = [(await create_key(client, owner, ["documents:read"]))["id"] for _ in range(5)]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get(KEYS, params=params, headers=owner.headers)).json()
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert sorted(seen) == sorted(created)
        assert len(set(seen)) == len(seen)


class TestKeySeesOneOrganization:
    async def test_me_and_orgs_list_only_the_keys_organization(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        second = await client.post("/api/v1/orgs", json={"name": "Second"}, headers=owner.headers)
        assert second.status_code == 201
        created = await create_key(client, owner, ["*:read"])
        me = await client.get(ME, headers=key_header(created["key"]))
        assert [m["org_id"] for m in me.json()["memberships"]] == [owner.org_id]
        orgs = await client.get("/api/v1/orgs", headers=key_header(created["key"]))
        assert [org["id"] for org in orgs.json()] == [owner.org_id]
        # Signed in as the user, both organizations are listed.
        mine = await client.get(ME, headers=owner.headers)
        assert {m["org_id"] for m in mine.json()["memberships"]} == {owner.org_id, second.json()["id"]}
