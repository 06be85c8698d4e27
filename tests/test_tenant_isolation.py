"""One organization can never see or touch another's rows: ids from elsewhere are 404, never 403,
and lists hold only the caller's organization."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.factories import SignedIn, error_code, register


@dataclass
class Tenant:
    owner: SignedIn
    member: SignedIn
    key: dict[str, Any]
    invitation: dict[str, Any]


async def populated_tenant(client: httpx.AsyncClient, name: str) -> Tenant:
    owner = await register(client, org_name=name)
    email = f"{name.lower()}-member-{uuid.uuid4().hex[:6]}@example.com"
    invited = await client.post("/api/v1/members/invitations", json={"email": email}, headers=owner.headers)
    member = await register(client, email=email, invitation_token=invited.json()["token"])
    key = await client.post("/api/v1/api-keys", json={"name": f"{name} key", "scopes": ["*"]}, headers=owner.headers)
    open_invitation = await client.post(
        "/api/v1/members/invitations", json={"email": f"{name.lower()}-pending@example.com"}, headers=owner.headers
    )
    assert key.status_code == open_invitation.status_code == 201
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key.json()["key"]})).status_code == 200
    return Tenant(owner=owner, member=member, key=key.json(), invitation=open_invitation.json())


@pytest.fixture
async def tenants(client: httpx.AsyncClient) -> tuple[Tenant, Tenant]:
    return await populated_tenant(client, "Alpha"), await populated_tenant(client, "Beta")


def as_key(tenant: Tenant) -> dict[str, str]:
    return {"X-API-Key": tenant.key["key"]}


async def test_another_orgs_ids_are_404(client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    attempts = [
        ("GET", f"/api/v1/api-keys/{alpha.key['id']}", None, "api_key_not_found"),
        ("DELETE", f"/api/v1/api-keys/{alpha.key['id']}", None, "api_key_not_found"),
        ("PATCH", f"/api/v1/members/{alpha.member.user_id}", {"role": "viewer"}, "member_not_found"),
        ("PATCH", f"/api/v1/members/{alpha.owner.user_id}", {"role": "viewer"}, "member_not_found"),
        ("DELETE", f"/api/v1/members/{alpha.member.user_id}", None, "member_not_found"),
        ("DELETE", f"/api/v1/members/invitations/{alpha.invitation['id']}", None, "invitation_not_found"),
    ]
    for caller in (beta.owner.headers, as_key(beta)):
        for method, path, body, code in attempts:
            response = await client.request(method, path, json=body, headers=caller)
            assert response.status_code == 404, (method, path, response.text)
            assert error_code(response) == code
            assert alpha.key["prefix"] not in response.text
            assert alpha.member.email not in response.text

    # Nothing in Alpha changed.
    assert (await client.get("/api/v1/auth/me", headers=as_key(alpha))).status_code == 200
    members = (await client.get("/api/v1/members", headers=alpha.owner.headers)).json()["items"]
    assert {item["user_id"]: item["role"] for item in members} == {
        alpha.owner.user_id: "owner",
        alpha.member.user_id: "member",
    }
    invitations = (await client.get("/api/v1/members/invitations", headers=alpha.owner.headers)).json()["items"]
    assert [item["id"] for item in invitations] == [alpha.invitation["id"]]


@pytest.mark.parametrize(
    "path", ["/api/v1/orgs/current", "/api/v1/members", "/api/v1/api-keys", "/api/v1/audit-events", "/api/v1/auth/me"]
)
async def test_x_org_id_of_another_org_is_404(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant], path: str
) -> None:
    alpha, beta = tenants
    for caller in (beta.owner.headers, beta.member.headers, as_key(beta)):
        response = await client.get(path, headers={**caller, "X-Org-Id": alpha.owner.org_id})
        assert response.status_code == 404, response.text
        assert error_code(response) == "organization_not_found"
    unknown = await client.get(path, headers={**beta.owner.headers, "X-Org-Id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    malformed = await client.get(path, headers={**beta.owner.headers, "X-Org-Id": "alpha"})
    assert malformed.status_code == 422


async def test_switching_to_another_org_is_404(client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    response = await client.post(
        "/api/v1/auth/switch-org", json={"org_id": alpha.owner.org_id}, headers=beta.owner.headers
    )
    assert response.status_code == 404
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": beta.owner.email, "password": beta.owner.password, "org_id": alpha.owner.org_id},
    )
    assert login.status_code == 404


async def test_lists_hold_only_the_callers_org(client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    for mine, other in ((alpha, beta), (beta, alpha)):
        foreign = {
            other.owner.user_id,
            other.member.user_id,
            other.key["id"],
            other.invitation["id"],
            other.owner.org_id,
            other.owner.email,
            other.member.email,
            other.invitation["email"],
        }
        for caller in (mine.owner.headers, as_key(mine)):
            responses = {
                "members": await client.get("/api/v1/members", headers=caller),
                "keys": await client.get("/api/v1/api-keys", params={"include_revoked": "true"}, headers=caller),
                "events": await client.get("/api/v1/audit-events", params={"limit": 200}, headers=caller),
                "invitations": await client.get("/api/v1/members/invitations", headers=caller),
                "orgs": await client.get("/api/v1/orgs", headers=mine.owner.headers),
            }
            for name, response in responses.items():
                assert response.status_code == 200, (name, response.text)
                for value in foreign:
                    assert value not in response.text, (name, value)
            assert {item["user_id"] for item in responses["members"].json()["items"]} == {
                mine.owner.user_id,
                mine.member.user_id,
            }
            assert [item["id"] for item in responses["keys"].json()["items"]] == [mine.key["id"]]
            assert [item["id"] for item in responses["invitations"].json()["items"]] == [mine.invitation["id"]]
            assert responses["events"].json()["items"]
            assert {event["actor_label"] for event in responses["events"].json()["items"]} <= {
                mine.owner.email,
                mine.member.email,
            }
            verified = await client.get("/api/v1/audit-events/verify", headers=caller)
            assert verified.json()["events"] == len(responses["events"].json()["items"])


async def test_audit_filters_cannot_reach_another_org(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    alpha, beta = tenants
    for params in (
        {"actor_id": alpha.owner.user_id},
        {"target_id": alpha.key["id"]},
        {"target_type": "api_key", "target_id": alpha.key["id"]},
        {"action": "api_key.created", "actor_id": alpha.owner.user_id},
    ):
        response = await client.get("/api/v1/audit-events", params=params, headers=beta.owner.headers)
        assert response.json()["items"] == [], params


async def test_an_invitation_token_joins_only_its_own_org(
    client: httpx.AsyncClient, tenants: tuple[Tenant, Tenant]
) -> None:
    alpha, beta = tenants
    invited = await client.post(
        "/api/v1/members/invitations", json={"email": beta.member.email, "role": "admin"}, headers=alpha.owner.headers
    )
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": invited.json()["token"]}, headers=beta.member.headers
    )
    assert accepted.status_code == 200
    assert accepted.json()["org"]["id"] == alpha.owner.org_id
    # Being admin in Alpha gives nothing in Beta.
    in_beta = await client.get("/api/v1/audit-events", headers=beta.member.headers)
    assert in_beta.status_code == 403
    in_alpha = await client.get("/api/v1/audit-events", headers={**beta.member.headers, "X-Org-Id": alpha.owner.org_id})
    assert in_alpha.status_code == 200
