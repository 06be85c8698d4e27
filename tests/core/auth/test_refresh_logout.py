from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import select, update

from tessera.core.audit.models import AuditEvent
from tessera.core.auth.models import RefreshToken
from tessera.core.db.base import utcnow
from tests.factories import SignedIn, error_code, register

ME = "/api/v1/auth/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
SESSIONS = "/api/v1/auth/sessions"


@dataclass
class Tokens:
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def session_id(self) -> str:
        sid: str = jwt.decode(self.access_token, options={"verify_signature": False})["sid"]
        return sid


def tokens_of(response: httpx.Response) -> Tokens:
    assert response.status_code == 200, response.text
    body = response.json()
    return Tokens(access_token=body["access_token"], refresh_token=body["refresh_token"])


async def sign_in(client: httpx.AsyncClient, user: SignedIn, *, user_agent: str = "pytest") -> Tokens:
    response = await client.post(
        "/api/v1/auth/login", json={"email": user.email, "password": user.password}, headers={"User-Agent": user_agent}
    )
    return tokens_of(response)


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": refresh_token})


async def works(client: httpx.AsyncClient, tokens: Tokens | SignedIn) -> bool:
    response = await client.get(ME, headers=tokens.headers)
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def audit_events(app: FastAPI, action: str) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        rows = await session.execute(select(AuditEvent).where(AuditEvent.action == action))
        return list(rows.scalars())


async def test_sign_in_refresh_and_sign_out(client: httpx.AsyncClient) -> None:
    user = await register(client)
    first = await sign_in(client, user)
    assert (await client.get(ME, headers=first.headers)).json()["user"]["id"] == user.user_id

    response = await refresh(client, first.refresh_token)
    assert response.headers["Cache-Control"] == "no-store"
    rotated = tokens_of(response)

    assert rotated.refresh_token != first.refresh_token
    assert rotated.access_token != first.access_token
    assert rotated.session_id == first.session_id
    me = await client.get(ME, headers=rotated.headers)
    assert me.status_code == 200
    assert me.json()["org_id"] == user.org_id

    logout = await client.post(LOGOUT, headers=rotated.headers)

    assert logout.status_code == 204
    assert logout.content == b""
    for tokens in (rotated, first):
        response = await client.get(ME, headers=tokens.headers)
        assert response.status_code == 401
        assert error_code(response) == "invalid_token"
        assert (await refresh(client, tokens.refresh_token)).status_code == 401
    # The registration's own sign-in is another one, and continues.
    assert await works(client, user)


async def test_a_reused_refresh_token_ends_its_sign_in_and_only_that_one(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client)
    stolen = await sign_in(client, user)
    elsewhere = await sign_in(client, user)
    second = tokens_of(await refresh(client, stolen.refresh_token))
    newest = tokens_of(await refresh(client, second.refresh_token))
    assert await works(client, newest)

    reused = await refresh(client, stolen.refresh_token)

    assert reused.status_code == 401
    assert error_code(reused) == "refresh_token_reused"
    for tokens in (newest, second, stolen):
        assert not await works(client, tokens)
        assert (await refresh(client, tokens.refresh_token)).status_code == 401
    # Other sign-ins of the same user are untouched.
    assert await works(client, elsewhere)
    assert await works(client, user)
    assert await works(client, tokens_of(await refresh(client, elsewhere.refresh_token)))
    listed = {item["id"] for item in (await client.get(SESSIONS, headers=user.headers)).json()}
    assert stolen.session_id not in listed
    assert elsewhere.session_id in listed
    (event,) = await audit_events(app, "auth.refresh_token_reused")
    assert event.target_id == stolen.session_id
    assert str(event.actor_id) == user.user_id


async def test_refresh_refuses_bad_and_expired_tokens(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    unknown: dict[str, Any] = {
        "unknown": {"refresh_token": "not-a-refresh-token"},
        "access token": {"refresh_token": user.access_token[:200]},
        "NUL": {"refresh_token": "\x00"},
    }
    for case, payload in unknown.items():
        response = await client.post(REFRESH, json=payload)
        assert (response.status_code, error_code(response)) == (401, "invalid_token"), case
    malformed: dict[str, Any] = {
        "empty": {"refresh_token": ""},
        "missing": {},
        "too long": {"refresh_token": "x" * 201},
        "not a string": {"refresh_token": 42},
        "unknown field": {"refresh_token": user.refresh_token, "all": True},
    }
    for case, payload in malformed.items():
        response = await client.post(REFRESH, json=payload)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), case
    async with app.state.sessionmaker() as session:
        await session.execute(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()

    expired = await refresh(client, user.refresh_token)

    assert (expired.status_code, error_code(expired)) == (401, "token_expired")


async def test_logout_ends_the_chosen_sign_in_only(client: httpx.AsyncClient) -> None:
    user = await register(client)
    other_device = await sign_in(client, user)
    third_device = await sign_in(client, user)
    stranger = await register(client)

    by_refresh_token = await client.post(
        LOGOUT, headers=user.headers, json={"refresh_token": other_device.refresh_token}
    )
    unknown_token = await client.post(LOGOUT, headers=user.headers, json={"refresh_token": "not-a-refresh-token"})
    strangers_token = await client.post(LOGOUT, headers=user.headers, json={"refresh_token": stranger.refresh_token})

    assert by_refresh_token.status_code == 204
    assert not await works(client, other_device)
    assert (await refresh(client, other_device.refresh_token)).status_code == 401
    assert (unknown_token.status_code, error_code(unknown_token)) == (401, "invalid_token")
    # Nobody can end someone else's sign-in with their refresh token.
    assert strangers_token.status_code == 204
    assert await works(client, stranger)
    assert await works(client, user)
    assert await works(client, third_device)

    current = await client.post(LOGOUT, headers=user.headers, json={})

    assert current.status_code == 204
    assert not await works(client, user)
    assert await works(client, third_device)
    again = await client.post(LOGOUT, headers=user.headers)
    assert (again.status_code, error_code(again)) == (401, "invalid_token")
    anonymous = await client.post(LOGOUT)
    assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated")


async def test_sessions_are_listed_and_logout_everywhere_ends_them_all(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    laptop = await sign_in(client, user, user_agent="Laptop-Browser/1.0")
    phone = await sign_in(client, user, user_agent="Phone-App/2.0")
    stranger = await register(client)

    listed = (await client.get(SESSIONS, headers=laptop.headers)).json()

    assert len(listed) == 3
    assert [item["id"] for item in listed if item["current"]] == [laptop.session_id]
    assert {item["id"] for item in listed} == {laptop.session_id, phone.session_id, str(_sid(user))}
    assert {item["user_agent"] for item in listed} >= {"Laptop-Browser/1.0", "Phone-App/2.0"}
    assert {item["ip"] for item in listed} == {"203.0.113.7"}
    assert all(item["mfa_verified"] is False for item in listed)
    assert listed == sorted(listed, key=lambda item: item["created_at"], reverse=True)
    as_phone = (await client.get(SESSIONS, headers=phone.headers)).json()
    assert [item["id"] for item in as_phone if item["current"]] == [phone.session_id]

    response = await client.post(LOGOUT, headers=phone.headers, json={"all_sessions": True})

    assert response.status_code == 204
    for tokens in (user, laptop, phone):
        assert not await works(client, tokens)
        assert (await refresh(client, tokens.refresh_token)).status_code == 401
    assert await works(client, stranger)
    (event,) = await audit_events(app, "auth.logout")
    assert event.details == {"sessions_ended": 3, "all": True}


def _sid(user: SignedIn) -> uuid.UUID:
    return uuid.UUID(jwt.decode(user.access_token, options={"verify_signature": False})["sid"])
