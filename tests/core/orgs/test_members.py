"""Members of an organization: listing, changing roles, removing and leaving."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.factories import SignedIn, add_member, error_code, login, register

MEMBERS = "/api/v1/members"
ME = "/api/v1/auth/me"


async def roles(client: httpx.AsyncClient, caller: SignedIn) -> dict[str, str]:
    response = await client.get(MEMBERS, headers=caller.headers)
    assert response.status_code == 200, response.text
    return {item["user_id"]: item["role"] for item in response.json()["items"]}


class TestListMembers:
    async def test_pages_cover_every_member_once(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        joined = [await add_member(client, owner, role) for role in ("admin", "member", "viewer", "clinician")]
        expected = {owner.user_id, *(member.user_id for member in joined)}

        seen: list[str] = []
        cursor: str | None = None
        sizes: list[int] = []
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await client.get(MEMBERS, params=params, headers=joined[2].headers)
            assert response.status_code == 200, response.text
            page = response.json()
            sizes.append(len(page["items"]))
            seen += [item["user_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sizes == [2, 2, 1]
        assert len(seen) == len(set(seen))
        assert set(seen) == expected

        whole = (await client.get(MEMBERS, params={"limit": 5}, headers=owner.headers)).json()
        assert whole["next_cursor"] is None
        assert [item["user_id"] for item in whole["items"]] == seen
        item = next(item for item in whole["items"] if item["user_id"] == joined[3].user_id)
        assert item["email"] == joined[3].email
        assert item["role"] == "clinician"
        assert item["name"] == "Test User"
        assert item["joined_at"]

    async def test_bad_paging_parameters_are_422(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        for cursor in ("not-a-cursor", "abc", "!!!!", "é", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"):
            response = await client.get(MEMBERS, params={"cursor": cursor}, headers=owner.headers)
            assert response.status_code == 422, cursor
            assert error_code(response) == "invalid_cursor"
        for params in ({"limit": 0}, {"limit": 1000}, {"limit": -1}, {"limit": "ten"}, {"cursor": "A" * 65}):
            response = await client.get(MEMBERS, params=params, headers=owner.headers)
            assert response.status_code == 422, params
            assert error_code(response) == "validation_error"
        assert (await client.get(MEMBERS, params={"limit": 200}, headers=owner.headers)).status_code == 200

    async def test_viewer_may_list_members(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        viewer = await add_member(client, owner, "viewer")
        assert set(await roles(client, viewer)) == {owner.user_id, viewer.user_id}


class TestChangeRole:
    async def test_admin_promotes_a_member_and_it_takes_effect(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        assert (await client.get("/api/v1/audit-events", headers=member.headers)).status_code == 403
        response = await client.patch(f"{MEMBERS}/{member.user_id}", json={"role": "admin"}, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "admin"
        assert response.json()["user_id"] == member.user_id
        assert (await roles(client, owner))[member.user_id] == "admin"
        # The member's existing token carries the new role at once.
        assert (await client.get("/api/v1/audit-events", headers=member.headers)).status_code == 200

    async def test_admin_cannot_grant_or_remove_owner(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        grant = await client.patch(f"{MEMBERS}/{member.user_id}", json={"role": "owner"}, headers=admin.headers)
        assert grant.status_code == 403
        demote = await client.patch(f"{MEMBERS}/{owner.user_id}", json={"role": "member"}, headers=admin.headers)
        assert demote.status_code == 403
        self_promote = await client.patch(f"{MEMBERS}/{admin.user_id}", json={"role": "owner"}, headers=admin.headers)
        assert self_promote.status_code == 403
        assert await roles(client, owner) == {owner.user_id: "owner", admin.user_id: "admin", member.user_id: "member"}

    async def test_owner_can_grant_owner(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        response = await client.patch(f"{MEMBERS}/{member.user_id}", json={"role": "owner"}, headers=owner.headers)
        assert response.status_code == 200
        assert (await roles(client, owner))[member.user_id] == "owner"

    async def test_last_owner_cannot_be_demoted(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        response = await client.patch(f"{MEMBERS}/{owner.user_id}", json={"role": "admin"}, headers=owner.headers)
        assert response.status_code == 409
        assert error_code(response) == "last_owner"
        assert (await roles(client, owner))[owner.user_id] == "owner"

    async def test_one_of_two_owners_can_demote_the_other(self, client: httpx.AsyncClient) -> None:
        first = await register(client)
        second = await add_member(client, first, "owner")
        response = await client.patch(f"{MEMBERS}/{first.user_id}", json={"role": "admin"}, headers=second.headers)
        assert response.status_code == 200
        # Now `second` is the last owner.
        again = await client.patch(f"{MEMBERS}/{second.user_id}", json={"role": "admin"}, headers=second.headers)
        assert again.status_code == 409
        assert error_code(again) == "last_owner"
        # The demoted first owner, now admin, cannot touch the remaining owner.
        blocked = await client.patch(f"{MEMBERS}/{second.user_id}", json={"role": "member"}, headers=first.headers)
        assert blocked.status_code == 403

    async def test_two_owners_demoting_each_other_at_once_leave_one_owner(self, client: httpx.AsyncClient) -> None:
        first = await register(client)
        second = await add_member(client, first, "owner")
        # A few rounds: the interleaving of the two transactions varies from round to round.
        for _ in range(5):
            responses = await asyncio.gather(
                client.patch(f"{MEMBERS}/{second.user_id}", json={"role": "admin"}, headers=first.headers),
                client.patch(f"{MEMBERS}/{first.user_id}", json={"role": "admin"}, headers=second.headers),
            )
            statuses = sorted(response.status_code for response in responses)
            # The loser sees that it is no longer an owner (403) or that the other is the last one (409).
            assert statuses[0] == 200, [response.text for response in responses]
            assert statuses[1] in (403, 409), [response.text for response in responses]
            winner, loser = (first, second) if responses[0].status_code == 200 else (second, first)
            assert await roles(client, winner) == {winner.user_id: "owner", loser.user_id: "admin"}
            promoted = await client.patch(f"{MEMBERS}/{loser.user_id}", json={"role": "owner"}, headers=winner.headers)
            assert promoted.status_code == 200

    async def test_members_and_viewers_cannot_change_roles(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        viewer = await add_member(client, owner, "viewer")
        for caller, target in ((member, viewer), (viewer, member), (member, member)):
            response = await client.patch(f"{MEMBERS}/{target.user_id}", json={"role": "admin"}, headers=caller.headers)
            assert response.status_code == 403

    async def test_bad_input(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        missing = await client.patch(f"{MEMBERS}/{uuid.uuid4()}", json={"role": "admin"}, headers=owner.headers)
        assert missing.status_code == 404
        assert error_code(missing) == "member_not_found"
        malformed = await client.patch(f"{MEMBERS}/not-a-uuid", json={"role": "admin"}, headers=owner.headers)
        assert malformed.status_code == 422
        for body in ({"role": "superuser"}, {}, {"role": "admin", "extra": 1}):
            response = await client.patch(f"{MEMBERS}/{member.user_id}", json=body, headers=owner.headers)
            assert response.status_code == 422, body


class TestRemoveMember:
    async def test_last_owner_cannot_leave_or_be_removed(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        response = await client.delete(f"{MEMBERS}/{owner.user_id}", headers=owner.headers)
        assert response.status_code == 409
        assert error_code(response) == "last_owner"
        assert (await client.get(ME, headers=owner.headers)).json()["role"] == "owner"

    async def test_owner_can_leave_when_another_owner_remains(self, client: httpx.AsyncClient) -> None:
        first = await register(client)
        second = await add_member(client, first, "owner")
        assert (await client.delete(f"{MEMBERS}/{first.user_id}", headers=first.headers)).status_code == 204
        assert await roles(client, second) == {second.user_id: "owner"}

    async def test_member_can_leave_but_not_remove_others(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        member = await add_member(client, owner, "member")
        other = await add_member(client, owner, "viewer")
        denied = await client.delete(f"{MEMBERS}/{other.user_id}", headers=member.headers)
        assert denied.status_code == 403
        left = await client.delete(f"{MEMBERS}/{member.user_id}", headers=member.headers)
        assert left.status_code == 204
        assert set(await roles(client, owner)) == {owner.user_id, other.user_id}
        # Their sign-in for this organization ended with the membership.
        gone = await client.get(ME, headers=member.headers)
        assert gone.status_code == 401
        events = await client.get("/api/v1/audit-events", params={"action": "member.left"}, headers=owner.headers)
        assert [event["target_id"] for event in events.json()["items"]] == [member.user_id]

    async def test_api_key_needs_members_write_even_to_remove_its_creator(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        read_only = (
            await client.post("/api/v1/api-keys", json={"name": "r", "scopes": ["*:read"]}, headers=admin.headers)
        ).json()
        managing = (
            await client.post("/api/v1/api-keys", json={"name": "m", "scopes": ["members:*"]}, headers=admin.headers)
        ).json()
        for key in (read_only, managing):
            assert (await client.get(ME, headers={"X-API-Key": key["key"]})).status_code == 200
        denied = await client.delete(f"{MEMBERS}/{admin.user_id}", headers={"X-API-Key": read_only["key"]})
        assert denied.status_code == 403
        assert denied.json()["error"]["details"] == {"permission": "members:write"}
        assert (
            await client.delete(f"{MEMBERS}/{member.user_id}", headers={"X-API-Key": read_only["key"]})
        ).status_code == 403
        removed = await client.delete(f"{MEMBERS}/{member.user_id}", headers={"X-API-Key": managing["key"]})
        assert removed.status_code == 204
        assert set(await roles(client, owner)) == {owner.user_id, admin.user_id}

    async def test_admin_removes_a_member_but_not_an_owner(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin = await add_member(client, owner, "admin")
        member = await add_member(client, owner, "member")
        assert (await client.delete(f"{MEMBERS}/{owner.user_id}", headers=admin.headers)).status_code == 403
        assert (await client.delete(f"{MEMBERS}/{member.user_id}", headers=admin.headers)).status_code == 204
        again = await client.delete(f"{MEMBERS}/{member.user_id}", headers=admin.headers)
        assert again.status_code == 404
        assert error_code(again) == "member_not_found"
        events = await client.get("/api/v1/audit-events", params={"action": "member.removed"}, headers=owner.headers)
        [event] = events.json()["items"]
        assert event["actor_id"] == admin.user_id
        assert event["target_id"] == member.user_id
        assert event["details"] == {"role": "member"}

    async def test_removed_users_tokens_lose_that_org_only(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        # A user with an organization of their own who also joins owner's.
        user = await register(client)
        invited = await client.post(
            f"{MEMBERS}/invitations", json={"email": user.email, "role": "member"}, headers=owner.headers
        )
        accepted = await client.post(
            "/api/v1/invitations/accept", json={"token": invited.json()["token"]}, headers=user.headers
        )
        assert accepted.status_code == 200, accepted.text
        # A second sign-in, active in the user's own organization.
        other_sign_in = (await login(client, user.email)).json()
        elsewhere = {"Authorization": f"Bearer {other_sign_in['access_token']}"}
        # The first sign-in moves to owner's organization.
        switched = (
            await client.post("/api/v1/auth/switch-org", json={"org_id": owner.org_id}, headers=user.headers)
        ).json()
        in_owners_org = {"Authorization": f"Bearer {switched['access_token']}"}
        via_header = {**elsewhere, "X-Org-Id": owner.org_id}
        assert (await client.get(MEMBERS, headers=in_owners_org)).status_code == 200
        assert (await client.get(MEMBERS, headers=via_header)).status_code == 200

        assert (await client.delete(f"{MEMBERS}/{user.user_id}", headers=owner.headers)).status_code == 204

        # The sign-in that was active in owner's organization has ended.
        assert (await client.get(ME, headers=in_owners_org)).status_code == 401
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": switched["refresh_token"]})
        assert refreshed.status_code == 401
        # The other sign-in can no longer reach owner's organization, but keeps the user's own.
        denied = await client.get(MEMBERS, headers=via_header)
        assert denied.status_code == 404
        assert error_code(denied) == "organization_not_found"
        own = await client.get(ME, headers=elsewhere)
        assert own.status_code == 200
        assert own.json()["org_id"] == user.org_id
        assert [m["org_id"] for m in own.json()["memberships"]] == [user.org_id]
