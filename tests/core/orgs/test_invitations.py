"""Invitations: inviting, joining by registering or accepting, and every way a token stops working."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from tessera.core.auth.models import Invitation, Membership, Role
from tests.factories import DEFAULT_PASSWORD, SignedIn, error_code, register

INVITATIONS = "/api/v1/members/invitations"
ACCEPT = "/api/v1/invitations/accept"
ME = "/api/v1/auth/me"


async def invite(client: httpx.AsyncClient, admin: SignedIn, email: str, role: str = "member") -> dict[str, Any]:
    response = await client.post(INVITATIONS, json={"email": email, "role": role}, headers=admin.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def new_email() -> str:
    return f"invitee-{uuid.uuid4().hex[:8]}@example.com"


async def register_raw(client: httpx.AsyncClient, email: str, **extra: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/register", json={"email": email, "password": DEFAULT_PASSWORD, "name": "Invitee", **extra}
    )


class TestJoinByRegistering:
    async def test_invitee_registers_into_the_org_with_the_invited_role(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        email = new_email()
        invitation = await invite(client, owner, email, role="attorney")
        assert invitation["email"] == email
        assert invitation["role"] == "attorney"
        assert invitation["token"]
        assert datetime.fromisoformat(invitation["expires_at"]) > datetime.now(UTC) + timedelta(days=6)

        invitee = await register(client, email=email, invitation_token=invitation["token"])
        assert invitee.org_id == owner.org_id
        me = (await client.get(ME, headers=invitee.headers)).json()
        assert me["role"] == "attorney"
        # No organization of their own was created.
        assert [m["org_id"] for m in me["memberships"]] == [owner.org_id]

        events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
        joined = next(event for event in events if event["action"] == "member.joined")
        assert joined["actor_id"] == invitee.user_id
        assert joined["details"] == {"role": "attorney", "invitation_id": invitation["id"]}

    async def test_email_is_matched_case_insensitively(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        invitation = await invite(client, owner, "Grace.Hopper@Example.COM")
        assert invitation["email"] == "grace.hopper@example.com"
        response = await register_raw(client, "GRACE.hopper@example.com", invitation_token=invitation["token"])
        assert response.status_code == 201, response.text

    async def test_registering_with_another_email_is_refused(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        invitation = await invite(client, owner, new_email())
        response = await register_raw(client, new_email(), invitation_token=invitation["token"])
        assert response.status_code == 403
        assert error_code(response) == "invitation_email_mismatch"

    async def test_registering_with_an_unknown_token_is_refused(self, client: httpx.AsyncClient) -> None:
        response = await register_raw(client, new_email(), invitation_token="no-such-token")
        assert response.status_code == 404
        assert error_code(response) == "invitation_not_found"

    async def test_a_token_registers_only_once(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        email = new_email()
        invitation = await invite(client, owner, email)
        await register(client, email=email, invitation_token=invitation["token"])
        again = await register_raw(client, email, invitation_token=invitation["token"])
        assert again.status_code == 404
        assert error_code(again) == "invitation_not_found"


class TestAcceptInvitation:
    async def test_existing_user_accepts(self, client: httpx.AsyncClient) -> None:
        owner = await register(client, org_name="Inviting Org")
        user = await register(client)
        invitation = await invite(client, owner, user.email, role="viewer")
        response = await client.post(ACCEPT, json={"token": invitation["token"]}, headers=user.headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "viewer"
        assert response.json()["org"]["id"] == owner.org_id
        assert response.json()["org"]["name"] == "Inviting Org"

        me = (await client.get(ME, headers={**user.headers, "X-Org-Id": owner.org_id})).json()
        assert me["org_id"] == owner.org_id
        assert me["role"] == "viewer"
        assert {m["org_id"] for m in me["memberships"]} == {owner.org_id, user.org_id}
        # Their own organization stays the default.
        assert (await client.get(ME, headers=user.headers)).json()["org_id"] == user.org_id

    async def test_accepting_with_another_users_account_is_refused(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        someone_else = await register(client)
        invitation = await invite(client, owner, new_email())
        response = await client.post(ACCEPT, json={"token": invitation["token"]}, headers=someone_else.headers)
        assert response.status_code == 403
        assert error_code(response) == "invitation_email_mismatch"
        # The invitation is still open for the right person.
        listed = (await client.get(INVITATIONS, headers=owner.headers)).json()["items"]
        assert [item["id"] for item in listed] == [invitation["id"]]

    async def test_used_revoked_unknown_and_expired_tokens_get_404(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        user = await register(client)
        used = await invite(client, owner, user.email)
        assert (await client.post(ACCEPT, json={"token": used["token"]}, headers=user.headers)).status_code == 200

        other = await register(client)
        revoked = await invite(client, owner, other.email)
        assert (await client.delete(f"{INVITATIONS}/{revoked['id']}", headers=owner.headers)).status_code == 204

        third = await register(client)
        expired = await invite(client, owner, third.email)
        async with app.state.sessionmaker() as session:
            await session.execute(
                update(Invitation)
                .where(Invitation.id == uuid.UUID(expired["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
            await session.commit()

        for caller, token in ((user, used["token"]), (other, revoked["token"]), (third, expired["token"]), (user, "x")):
            response = await client.post(ACCEPT, json={"token": token}, headers=caller.headers)
            assert response.status_code == 404, token
            assert error_code(response) == "invitation_not_found"

    async def test_a_new_invitation_replaces_the_open_one(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        user = await register(client)
        first = await invite(client, owner, user.email, role="viewer")
        second = await invite(client, owner, user.email, role="admin")
        listed = (await client.get(INVITATIONS, headers=owner.headers)).json()["items"]
        assert [item["id"] for item in listed] == [second["id"]]
        stale = await client.post(ACCEPT, json={"token": first["token"]}, headers=user.headers)
        assert stale.status_code == 404
        fresh = await client.post(ACCEPT, json={"token": second["token"]}, headers=user.headers)
        assert fresh.json()["role"] == "admin"

    async def test_accepting_when_already_a_member_is_409(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        user = await register(client)
        invitation = await invite(client, owner, user.email)
        # They joined by another route (an administrator on the command line) in the meantime.
        async with app.state.sessionmaker() as session:
            session.add(Membership(org_id=uuid.UUID(owner.org_id), user_id=uuid.UUID(user.user_id), role=Role.member))
            await session.commit()
        response = await client.post(ACCEPT, json={"token": invitation["token"]}, headers=user.headers)
        assert response.status_code == 409
        assert error_code(response) == "already_member"

    async def test_api_key_cannot_accept(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        user = await register(client)
        invitation = await invite(client, owner, user.email)
        key = await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers=user.headers)
        headers = {"X-API-Key": key.json()["key"]}
        response = await client.post(ACCEPT, json={"token": invitation["token"]}, headers=headers)
        assert response.status_code == 403

    async def test_bad_input(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        for body in ({}, {"token": ""}, {"token": "x" * 201}, {"token": "x", "role": "owner"}):
            response = await client.post(ACCEPT, json=body, headers=user.headers)
            assert response.status_code == 422, body
        assert (await client.post(ACCEPT, json={"token": "x"})).status_code == 401


class TestInvite:
    async def test_already_a_member_is_409(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        response = await client.post(INVITATIONS, json={"email": owner.email.upper()}, headers=owner.headers)
        assert response.status_code == 409
        assert error_code(response) == "already_member"

    async def test_only_owners_invite_owners(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        admin_email = new_email()
        admin = await register(
            client, email=admin_email, invitation_token=(await invite(client, owner, admin_email, "admin"))["token"]
        )
        denied = await client.post(INVITATIONS, json={"email": new_email(), "role": "owner"}, headers=admin.headers)
        assert denied.status_code == 403
        assert (await invite(client, admin, new_email(), "admin"))["role"] == "admin"
        owner_email = new_email()
        by_owner = await invite(client, owner, owner_email, "owner")
        co_owner = await register(client, email=owner_email, invitation_token=by_owner["token"])
        assert (await client.get(ME, headers=co_owner.headers)).json()["role"] == "owner"

    async def test_members_cannot_invite_or_see_invitations(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        email = new_email()
        member = await register(client, email=email, invitation_token=(await invite(client, owner, email))["token"])
        assert (await client.post(INVITATIONS, json={"email": new_email()}, headers=member.headers)).status_code == 403
        assert (await client.get(INVITATIONS, headers=member.headers)).status_code == 403

    async def test_bad_input(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        for body in ({}, {"email": "not-an-email"}, {"email": "a@example.com", "role": "boss"}, {"email": 3}):
            response = await client.post(INVITATIONS, json=body, headers=owner.headers)
            assert response.status_code == 422, body
            assert error_code(response) == "validation_error"

    async def test_invitation_defaults_to_member(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        response = await client.post(INVITATIONS, json={"email": new_email()}, headers=owner.headers)
        assert response.json()["role"] == "member"


class TestListAndRevokeInvitations:
    async def test_list_shows_open_invitations_in_pages_without_tokens(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = [await invite(client, owner, new_email()) for _ in range(3)]
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            response = await client.get(INVITATIONS, params=params, headers=owner.headers)
            assert response.status_code == 200
            for item in response.json()["items"]:
                assert "token" not in item
                seen.append(item["id"])
            cursor = response.json()["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(item["id"] for item in created)
        assert len(seen) == 3
        for invitation in created:
            assert invitation["token"] not in response.text

    async def test_revoke(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        invitation = await invite(client, owner, new_email())
        assert (await client.delete(f"{INVITATIONS}/{invitation['id']}", headers=owner.headers)).status_code == 204
        assert (await client.get(INVITATIONS, headers=owner.headers)).json()["items"] == []
        again = await client.delete(f"{INVITATIONS}/{invitation['id']}", headers=owner.headers)
        assert again.status_code == 404
        assert error_code(again) == "invitation_not_found"
        unknown = await client.delete(f"{INVITATIONS}/{uuid.uuid4()}", headers=owner.headers)
        assert unknown.status_code == 404
        malformed = await client.delete(f"{INVITATIONS}/nope", headers=owner.headers)
        assert malformed.status_code == 422
        events = await client.get(
            "/api/v1/audit-events", params={"action": "member.invitation_revoked"}, headers=owner.headers
        )
        assert [event["target_id"] for event in events.json()["items"]] == [invitation["id"]]
