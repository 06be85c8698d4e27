from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tessera.core.audit.models import AuditEvent
from tessera.core.auth.models import Membership, Role, User
from tessera.main import create_app
from tessera.settings import Settings
from tests import conftest
from tests.factories import DEFAULT_PASSWORD, error_code, login, register

REGISTER = "/api/v1/auth/register"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # These tests send more than the 20 sign-up requests a minute one IP may make by default.
    return conftest.test_settings(
        database_url=database_url, data_dir=tmp_path / "data", rate_limit={"auth": "1000/minute"}
    )


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its own settings, run with its lifespan like the `app` fixture."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


def body(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"email": "ada@example.com", "password": DEFAULT_PASSWORD, "name": "Ada Lovelace"}
    values.update(overrides)
    return values


def without(field: str) -> dict[str, Any]:
    values = body()
    del values[field]
    return values


async def user_count(app: FastAPI) -> int:
    async with app.state.sessionmaker() as session:
        count: int = (await session.execute(select(func.count()).select_from(User))).scalar_one()
        return count


async def test_register_signs_in_the_owner_of_a_new_organization(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.post(REGISTER, json=body())

    assert response.status_code == 201, response.text
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    data = me.json()
    assert data["user"]["email"] == "ada@example.com"
    assert data["user"]["name"] == "Ada Lovelace"
    assert data["user"]["mfa_enabled"] is False
    assert (data["role"], data["auth_method"], data["scopes"]) == ("owner", "jwt", None)
    assert data["memberships"] == [
        {"org_id": data["org_id"], "org_name": "Ada Lovelace's organization", "role": "owner"}
    ]
    # The password is stored as an argon2id hash and appears in no response.
    async with app.state.sessionmaker() as session:
        user = (await session.execute(select(User))).scalar_one()
        membership = (await session.execute(select(Membership))).scalar_one()
        actions = set((await session.execute(select(AuditEvent.action))).scalars())
    assert user.password_hash.startswith("$argon2id$")
    for text in (response.text, me.text):
        assert DEFAULT_PASSWORD not in text
        assert "argon2" not in text
    assert (membership.user_id, membership.role) == (user.id, Role.owner)
    assert str(membership.org_id) == data["org_id"]
    assert {"org.created", "user.registered"} <= actions
    # The organization can be named at sign-up.
    named = await register(client, org_name="  Analytical Engines Ltd  ")
    me = await client.get("/api/v1/auth/me", headers=named.headers)
    assert me.json()["memberships"][0]["org_name"] == "Analytical Engines Ltd"


async def test_register_rejects_malformed_requests(client: httpx.AsyncClient, app: FastAPI) -> None:
    cases: dict[str, dict[str, Any]] = {
        "empty": {},
        "no email": without("email"),
        "no password": without("password"),
        "no name": without("name"),
        "email int": body(email=12345),
        "email list": body(email=["ada@example.com"]),
        "email null": body(email=None),
        "password int": body(password=1234567890123),
        "password object": body(password={"value": DEFAULT_PASSWORD}),
        "password empty": body(password=""),
        "password over 256": body(password="Ab1-" * 65),
        "name bool": body(name=True),
        "name blank": body(name="   "),
        "name over 200": body(name="x" * 201),
        "name with NUL": body(name="Ada\x00Lovelace"),
        "name with escape": body(name="Ada\x1b[31mLovelace"),
        "org name with NUL": body(org_name="Org\x00"),
        "org name int": body(org_name=7),
        "unknown field": body(is_superuser=True),
        "bad email": body(email="not-an-email"),
        "email without domain": body(email="ada@"),
        "email without local part": body(email="@example.com"),
        "email with two @": body(email="ada@@example.com"),
        "email with a space": body(email="ada lovelace@example.com"),
        "email with NUL": body(email="a\x00b@example.com"),
        "email empty": body(email=""),
    }
    for case, payload in cases.items():
        response = await client.post(REGISTER, json=payload)

        assert response.status_code == 422, f"{case}: {response.text}"
        assert error_code(response) == "validation_error", case
        error = response.json()["error"]
        assert error["message"], case
        assert isinstance(error["details"], list), case
    missing = await client.post(REGISTER, json={})
    locs = [item["loc"] for item in missing.json()["error"]["details"]]
    assert ["body", "email"] in locs
    assert ["body", "password"] in locs
    assert ["body", "name"] in locs
    malformed = await client.post(
        REGISTER, content=b'{"email": "ada@example.com",', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert error_code(malformed) == "validation_error"
    assert await user_count(app) == 0


async def test_register_rejects_weak_passwords(client: httpx.AsyncClient, app: FastAPI) -> None:
    cases = {
        "short1!": "at least 10 characters",
        "password123": "too common",
        "PassWord123": "too common",
        "aaaaaaaaaaaaaaaa": "too simple",
        "abababababab": "too simple",
        "lovelace-ada-1843": "e-mail name",
        "x-Ada Lovelace-x": "your name",
    }
    for password, problem in cases.items():
        response = await client.post(REGISTER, json=body(email="lovelace@example.com", password=password))

        assert response.status_code == 422, password
        assert error_code(response) == "weak_password", password
        problems = response.json()["error"]["details"]["problems"]
        assert any(problem in item for item in problems), (password, problems)
    assert await user_count(app) == 0


async def test_register_refuses_a_taken_email_whatever_its_case(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client, email="Ada.Lovelace@Example.COM")

    for email in ("ada.lovelace@example.com", "ADA.LOVELACE@EXAMPLE.COM", " ada.lovelace@example.com "):
        again = await client.post(REGISTER, json=body(email=email, name="Someone Else"))

        assert again.status_code == 409, email
        assert error_code(again) == "email_taken"
    # Stored lower-cased, and found by sign-in whatever the case.
    me = await client.get("/api/v1/auth/me", headers=user.headers)
    assert me.json()["user"]["email"] == "ada.lovelace@example.com"
    assert (await login(client, "ADA.lovelace@EXAMPLE.com")).status_code == 200
    assert await user_count(app) == 1


async def test_concurrent_registrations_with_one_email_create_one_account(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    responses = await asyncio.gather(*(client.post(REGISTER, json=body(email="race@example.com")) for _ in range(3)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201, 409, 409], [response.text for response in responses]
    assert {error_code(response) for response in responses if response.status_code == 409} == {"email_taken"}
    assert await user_count(app) == 1


async def test_register_is_refused_when_registration_is_turned_off(database_url: str, tmp_path: Path) -> None:
    settings = conftest.test_settings(
        database_url=database_url, data_dir=tmp_path / "data", auth={"allow_registration": False}
    )
    async with serve(settings) as (app, http):
        response = await http.post(REGISTER, json=body())

        assert response.status_code == 403
        assert error_code(response) == "registration_closed"
        assert response.json()["error"]["message"]
        assert await user_count(app) == 0
        assert (await login(http, "ada@example.com")).status_code == 401
