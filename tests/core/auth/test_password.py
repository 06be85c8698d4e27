from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from tessera.core.audit.models import AuditEvent
from tessera.core.auth.models import User
from tests.factories import DEFAULT_PASSWORD, error_code, login, register

PASSWORD = "/api/v1/auth/password"
NEW_PASSWORD = "Jacquard-Loom-Punched-1804"


async def stored_hash(app: FastAPI, email: str) -> str:
    async with app.state.sessionmaker() as session:
        password_hash: str = (await session.execute(select(User.password_hash).where(User.email == email))).scalar_one()
        return password_hash


async def test_password_change_refuses_a_wrong_current_or_a_weak_new_password(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await register(client, email="babbage@example.com", name="Charles Babbage")
    before = await stored_hash(app, user.email)

    wrong_current = await client.post(
        PASSWORD, headers=user.headers, json={"current_password": "Not-My-Password-1", "new_password": NEW_PASSWORD}
    )

    assert (wrong_current.status_code, error_code(wrong_current)) == (401, "invalid_credentials")
    # The policy itself is tested in test_passwords.py; here: it applies, with the user's own e-mail and name.
    weak = {"e-mail name": "my-babbage-engine", "name": "i-am-charles babbage"}
    for case, new_password in weak.items():
        response = await client.post(
            PASSWORD, headers=user.headers, json={"current_password": DEFAULT_PASSWORD, "new_password": new_password}
        )
        assert (response.status_code, error_code(response)) == (422, "weak_password"), case
        assert response.json()["error"]["details"]["problems"], case
    malformed: list[dict[str, Any]] = [
        {"current_password": DEFAULT_PASSWORD},
        {"new_password": NEW_PASSWORD},
        {"current_password": DEFAULT_PASSWORD, "new_password": "x" * 257},
        {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "logout_others": False},
    ]
    for body in malformed:
        response = await client.post(PASSWORD, headers=user.headers, json=body)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), body
    anonymous = await client.post(PASSWORD, json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD})
    assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated")
    # Nothing changed, and the sign-in is still good.
    assert await stored_hash(app, user.email) == before
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200


async def test_password_change_ends_every_other_sign_in(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    laptop = (await login(client, user.email)).json()
    phone = (await login(client, user.email)).json()
    stranger = await register(client)
    before = await stored_hash(app, user.email)

    response = await client.post(
        PASSWORD, headers=user.headers, json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD}
    )

    assert response.status_code == 204, response.text
    for other in (laptop, phone):
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other['access_token']}"})
        assert (me.status_code, error_code(me)) == (401, "invalid_token")
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
        assert refreshed.status_code == 401
    # The sign-in that changed it continues, refresh included.
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})).status_code == 200
    assert (await client.get("/api/v1/auth/me", headers=stranger.headers)).status_code == 200
    old = await login(client, user.email)
    assert (old.status_code, error_code(old)) == (401, "invalid_credentials")
    assert (await login(client, user.email, NEW_PASSWORD)).status_code == 200
    after = await stored_hash(app, user.email)
    assert after != before
    assert after.startswith("$argon2id$")
    async with app.state.sessionmaker() as session:
        events = (
            await session.execute(select(AuditEvent).where(AuditEvent.action == "auth.password_changed"))
        ).scalars()
        assert [event.target_id for event in events] == [user.user_id]
