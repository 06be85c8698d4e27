"""Helpers that create users and organizations through the real API, and rows through services."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_PASSWORD = "Analytical-Engine-1843"
_counter = itertools.count(1)


@dataclass
class SignedIn:
    email: str
    password: str
    user_id: str
    org_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str = "Test User",
    **extra: Any,
) -> SignedIn:
    """Register through the API (a new user owning a new organization) and return their tokens."""
    email = email or f"user{next(_counter)}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name, **extra}
    )
    assert response.status_code == 201, response.text
    tokens = response.json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    return SignedIn(
        email=email,
        password=password,
        user_id=body["user"]["id"],
        org_id=body["org_id"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


async def add_member(client: httpx.AsyncClient, admin: SignedIn, role: str) -> SignedIn:
    """A new user who joins `admin`'s organization with `role` through an invitation."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    invited = await client.post(
        "/api/v1/members/invitations", json={"email": email, "role": role}, headers=admin.headers
    )
    assert invited.status_code == 201, invited.text
    return await register(client, email=email, invitation_token=invited.json()["token"])


async def login(
    client: httpx.AsyncClient, email: str, password: str = DEFAULT_PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password, **extra})


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code
