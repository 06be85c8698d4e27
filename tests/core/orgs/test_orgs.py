"""Organizations: listing, creating, reading and renaming the active one."""

from __future__ import annotations

import httpx

from tests.factories import add_member, error_code, register

ORGS = "/api/v1/orgs"


class TestCreateOrg:
    async def test_creator_owns_the_new_org_and_can_switch_to_it(self, client: httpx.AsyncClient) -> None:
        user = await register(client, org_name="Acme Hearing")
        created = await client.post(ORGS, json={"name": "  Second Org  "}, headers=user.headers)
        assert created.status_code == 201, created.text
        org = created.json()
        assert org["name"] == "Second Org"
        assert org["slug"].startswith("second-org-")

        listed = await client.get(ORGS, headers=user.headers)
        assert sorted(item["name"] for item in listed.json()) == ["Acme Hearing", "Second Org"]
        # The token still points at the first organization until the caller switches.
        current = await client.get(f"{ORGS}/current", headers=user.headers)
        assert current.json()["id"] == user.org_id
        switched = await client.get(f"{ORGS}/current", headers={**user.headers, "X-Org-Id": org["id"]})
        assert switched.status_code == 200
        assert switched.json()["id"] == org["id"]
        me = await client.get("/api/v1/auth/me", headers={**user.headers, "X-Org-Id": org["id"]})
        assert me.json()["role"] == "owner"

    async def test_slugs_are_unique_for_equal_names(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        first = await client.post(ORGS, json={"name": "Same"}, headers=user.headers)
        second = await client.post(ORGS, json={"name": "Same"}, headers=user.headers)
        assert first.json()["slug"] != second.json()["slug"]

    async def test_bad_input(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        for body in ({}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": "ok", "slug": "mine"}):
            response = await client.post(ORGS, json=body, headers=user.headers)
            assert response.status_code == 422, body
            assert error_code(response) == "validation_error"

    async def test_api_key_cannot_create_an_org(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        key = (await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers=user.headers)).json()
        response = await client.post(ORGS, json={"name": "By key"}, headers={"X-API-Key": key["key"]})
        assert response.status_code == 403

    async def test_api_key_sees_only_its_own_org(self, client: httpx.AsyncClient) -> None:
        user = await register(client, org_name="Keyed")
        await client.post(ORGS, json={"name": "Private"}, headers=user.headers)
        key = (
            await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["org:read"]}, headers=user.headers)
        ).json()
        listed = await client.get(ORGS, headers={"X-API-Key": key["key"]})
        assert listed.status_code == 200
        assert [org["id"] for org in listed.json()] == [user.org_id]
        assert "Private" not in listed.text
        assert len((await client.get(ORGS, headers=user.headers)).json()) == 2

    async def test_anonymous_gets_401(self, client: httpx.AsyncClient) -> None:
        assert (await client.get(ORGS)).status_code == 401
        assert (await client.post(ORGS, json={"name": "x"})).status_code == 401


class TestRenameOrg:
    async def test_owner_and_admin_rename_but_member_cannot(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        renamed = await client.patch(f"{ORGS}/current", json={"name": "By Owner"}, headers=owner.headers)
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "By Owner"
        by_admin = await client.patch(f"{ORGS}/current", json={"name": "By Admin"}, headers=admin.headers)
        assert by_admin.status_code == 200
        denied = await client.patch(f"{ORGS}/current", json={"name": "By Member"}, headers=member.headers)
        assert denied.status_code == 403
        current = await client.get(f"{ORGS}/current", headers=member.headers)
        assert current.json()["name"] == "By Admin"

    async def test_rename_is_audited(self, client: httpx.AsyncClient) -> None:
        owner = await register(client, org_name="Before")
        await client.patch(f"{ORGS}/current", json={"name": "After"}, headers=owner.headers)
        events = await client.get("/api/v1/audit-events", params={"action": "org.renamed"}, headers=owner.headers)
        [event] = events.json()["items"]
        assert event["details"] == {"from": "Before", "to": "After"}
        assert event["target_id"] == owner.org_id
