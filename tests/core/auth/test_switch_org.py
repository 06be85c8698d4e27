from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import select

from tessera.core.audit.models import AuditEvent
from tests.factories import error_code, login, register

SWITCH = "/api/v1/auth/switch-org"
ME = "/api/v1/auth/me"


def org_claim(access_token: str) -> str | None:
    org: str | None = jwt.decode(access_token, options={"verify_signature": False})["org"]
    return org


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


async def test_switch_org_moves_the_sign_in_to_another_of_your_organizations(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client, org_name="First Org")
    created = await client.post("/api/v1/orgs", headers=user.headers, json={"name": "Second Org"})
    assert created.status_code == 201, created.text
    second = created.json()["id"]
    memberships = (await client.get(ME, headers=user.headers)).json()["memberships"]
    assert {(item["org_name"], item["role"]) for item in memberships} == {
        ("First Org", "owner"),
        ("Second Org", "owner"),
    }

    response = await client.post(SWITCH, headers=user.headers, json={"org_id": second})

    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    switched = response.json()
    assert org_claim(switched["access_token"]) == second
    me = (await client.get(ME, headers=bearer(switched["access_token"]))).json()
    assert (me["org_id"], me["role"]) == (second, "owner")
    # X-Org-Id picks an organization for one request only.
    one_request = await client.get(ME, headers={**bearer(switched["access_token"]), "X-Org-Id": user.org_id})
    assert one_request.json()["org_id"] == user.org_id
    assert (await client.get(ME, headers=bearer(switched["access_token"]))).json()["org_id"] == second
    # Refreshing keeps the new organization, and the next sign-in starts there.
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": switched["refresh_token"]})
    assert refreshed.status_code == 200
    assert org_claim(refreshed.json()["access_token"]) == second
    assert org_claim((await login(client, user.email)).json()["access_token"]) == second
    async with app.state.sessionmaker() as session:
        events = (await session.execute(select(AuditEvent).where(AuditEvent.action == "auth.org_switched"))).scalars()
        assert [str(event.org_id) for event in events] == [second]
    # The refresh token from before the switch was retired with it.
    stale = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
    assert stale.status_code == 401


async def test_switch_org_refuses_organizations_you_are_not_in(client: httpx.AsyncClient) -> None:
    user = await register(client)
    stranger = await register(client)

    for org_id in (stranger.org_id, str(uuid.uuid4())):
        response = await client.post(SWITCH, headers=user.headers, json={"org_id": org_id})
        assert (response.status_code, error_code(response)) == (404, "organization_not_found"), org_id
    malformed: list[dict[str, Any]] = [{}, {"org_id": "acme"}, {"org_id": 1}, {"org_id": user.org_id, "role": "owner"}]
    for body in malformed:
        response = await client.post(SWITCH, headers=user.headers, json=body)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), body
    anonymous = await client.post(SWITCH, json={"org_id": user.org_id})
    assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated")
    # The sign-in is where it was.
    assert (await client.get(ME, headers=user.headers)).json()["org_id"] == user.org_id
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})).status_code == 200
