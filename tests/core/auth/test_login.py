from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.sql import Executable

from tessera.core.audit.models import AuditEvent
from tessera.core.auth.models import User
from tessera.core.db.base import utcnow
from tessera.settings import Settings
from tests import conftest
from tests.factories import DEFAULT_PASSWORD, error_code, login, register

THRESHOLD = 3
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
WRONG_PASSWORD = "Difference-Engine-1822"


async def execute(app: FastAPI, statement: Executable) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(statement)
        await session.commit()


async def load_user(app: FastAPI, email: str) -> User:
    async with app.state.sessionmaker() as session:
        user: User = (await session.execute(select(User).where(User.email == email))).scalar_one()
        return user


async def expire_lock(app: FastAPI, email: str) -> None:
    """Let the lock run out without waiting for it (the failure count stays)."""
    await execute(app, update(User).where(User.email == email).values(locked_until=utcnow() - timedelta(seconds=1)))


@asynccontextmanager
async def another_client(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class TestLogin:
    async def test_login_starts_a_new_sign_in_in_one_of_your_organizations(self, client: httpx.AsyncClient) -> None:
        user = await register(client)

        response = await login(client, user.email)

        assert response.status_code == 200, response.text
        tokens = response.json()
        assert tokens["token_type"] == "bearer"
        assert tokens["access_token"] != user.access_token
        assert tokens["refresh_token"] != user.refresh_token
        assert response.headers["Cache-Control"] == "no-store"
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = await client.get("/api/v1/auth/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["user"]["last_login_at"] is not None
        assert me.json()["org_id"] == user.org_id
        sessions = (await client.get("/api/v1/auth/sessions", headers=headers)).json()
        assert len(sessions) == 2
        # An organization can be chosen at sign-in, but only one the user belongs to.
        stranger = await register(client)
        own = await login(client, user.email, org_id=user.org_id)
        foreign = await login(client, user.email, org_id=stranger.org_id)
        assert own.status_code == 200
        assert (foreign.status_code, error_code(foreign)) == (404, "organization_not_found")

    async def test_wrong_password_and_unknown_email_get_the_same_answer(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client, email="ada@example.com")

        wrong_password = await login(client, "ada@example.com", WRONG_PASSWORD)
        unknown_email = await login(client, "nobody@example.com", WRONG_PASSWORD)

        for response in (wrong_password, unknown_email):
            assert response.status_code == 401
            assert error_code(response) == "invalid_credentials"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert wrong_password.json() == unknown_email.json()
        # Both failures are audited although their requests rolled back.
        async with app.state.sessionmaker() as session:
            events = (
                (await session.execute(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")))
                .scalars()
                .all()
            )
        by_reason = {event.details["reason"]: event for event in events}
        assert set(by_reason) == {"bad_password", "unknown_email"}
        bad_password = by_reason["bad_password"]
        assert (bad_password.actor_type, bad_password.actor_label) == ("anonymous", "ada@example.com")
        assert bad_password.target_id == user.user_id
        assert str(bad_password.org_id) == user.org_id
        assert bad_password.ip == "203.0.113.7"
        unknown = by_reason["unknown_email"]
        assert (unknown.actor_label, unknown.target_id, unknown.org_id) == ("nobody@example.com", None, None)
        assert (await load_user(app, "ada@example.com")).failed_login_count == 1

    async def test_login_rejects_malformed_requests_without_counting_them(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client)
        cases: dict[str, dict[str, Any]] = {
            "no password": {"email": user.email},
            "no email": {"password": DEFAULT_PASSWORD},
            "empty password": {"email": user.email, "password": ""},
            "password over 256": {"email": user.email, "password": "x" * 257},
            "password int": {"email": user.email, "password": 12345678901},
            "bad email": {"email": "ada", "password": DEFAULT_PASSWORD},
            "unknown field": {"email": user.email, "password": DEFAULT_PASSWORD, "remember": True},
            "org not a uuid": {"email": user.email, "password": DEFAULT_PASSWORD, "org_id": "acme"},
            "mfa code too long": {"email": user.email, "password": DEFAULT_PASSWORD, "mfa_code": "1" * 33},
        }
        for case, payload in cases.items():
            response = await client.post(LOGIN, json=payload)

            assert response.status_code == 422, f"{case}: {response.text}"
            assert error_code(response) == "validation_error", case
        assert (await load_user(app, user.email)).failed_login_count == 0

    async def test_disabled_account_cannot_sign_in_or_use_its_tokens(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client)
        await execute(app, update(User).where(User.email == user.email).values(is_active=False))

        right = await login(client, user.email)
        wrong = await login(client, user.email, WRONG_PASSWORD)
        me = await client.get("/api/v1/auth/me", headers=user.headers)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})

        assert (right.status_code, error_code(right)) == (401, "account_disabled")
        # Without the right password nothing says the account exists.
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_credentials")
        assert (me.status_code, error_code(me)) == (401, "account_disabled")
        assert (refreshed.status_code, error_code(refreshed)) == (401, "account_disabled")


class TestLockout:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        # A low threshold keeps these tests to a few (deliberately slow) password checks.
        return conftest.test_settings(
            database_url=database_url, data_dir=tmp_path / "data", auth={"lockout_threshold": THRESHOLD}
        )

    async def test_repeated_failures_lock_the_account_even_for_the_right_password(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client)
        for _ in range(THRESHOLD):
            failed = await login(client, user.email, WRONG_PASSWORD)
            assert error_code(failed) == "invalid_credentials"

        locked = await login(client, user.email)

        assert locked.status_code == 429
        assert error_code(locked) == "account_locked"
        assert 1 <= int(locked.headers["Retry-After"]) <= 30  # lockout_base_seconds
        assert "access_token" not in locked.text
        form = await client.post(TOKEN, data={"username": user.email, "password": DEFAULT_PASSWORD})
        assert (form.status_code, error_code(form)) == (429, "account_locked")
        # Attempts while locked are refused before the password is checked, and not counted.
        assert (await load_user(app, user.email)).failed_login_count == THRESHOLD
        # Other accounts are not affected.
        other = await register(client)
        assert (await login(client, other.email)).status_code == 200

    async def test_lock_grows_with_further_failures_and_a_sign_in_clears_it(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client)
        for _ in range(THRESHOLD):
            await login(client, user.email, WRONG_PASSWORD)
        await expire_lock(app, user.email)

        one_more = await login(client, user.email, WRONG_PASSWORD)
        locked = await login(client, user.email)

        assert error_code(one_more) == "invalid_credentials"
        assert error_code(locked) == "account_locked"
        assert 30 < int(locked.headers["Retry-After"]) <= 60
        await expire_lock(app, user.email)
        assert (await login(client, user.email)).status_code == 200
        cleared = await load_user(app, user.email)
        assert (cleared.failed_login_count, cleared.locked_until) == (0, None)

    async def test_successful_login_resets_the_failure_count(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        user = await register(client)
        for _ in range(2):
            for _ in range(THRESHOLD - 1):
                assert (await login(client, user.email, WRONG_PASSWORD)).status_code == 401
            assert (await load_user(app, user.email)).failed_login_count == THRESHOLD - 1

            response = await login(client, user.email)

            assert response.status_code == 200, response.text
            assert (await load_user(app, user.email)).failed_login_count == 0

    async def test_parallel_failures_are_all_counted(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        user = await register(client)

        responses = await asyncio.gather(*(login(client, user.email, WRONG_PASSWORD) for _ in range(6)))

        codes = [error_code(response) for response in responses]
        assert set(codes) <= {"invalid_credentials", "account_locked"}
        assert codes.count("invalid_credentials") >= THRESHOLD
        stored = await load_user(app, user.email)
        assert stored.failed_login_count == codes.count("invalid_credentials")
        assert stored.locked_until is not None
        assert error_code(await login(client, user.email)) == "account_locked"


class TestTokenForm:
    async def test_token_form_signs_in(self, client: httpx.AsyncClient) -> None:
        user = await register(client)

        response = await client.post(
            TOKEN, data={"username": user.email.upper(), "password": DEFAULT_PASSWORD, "grant_type": "password"}
        )

        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "bearer"
        assert response.headers["Cache-Control"] == "no-store"
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"})
        assert me.json()["user"]["email"] == user.email

    async def test_token_form_refuses_bad_requests(self, client: httpx.AsyncClient) -> None:
        user = await register(client)

        wrong = await client.post(TOKEN, data={"username": user.email, "password": WRONG_PASSWORD})
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_credentials")
        for username in ("ada", "a\x00b@example.com", "@", "ada@"):
            response = await client.post(TOKEN, data={"username": username, "password": DEFAULT_PASSWORD})
            assert (response.status_code, error_code(response)) == (422, "invalid_input"), username
        malformed: list[dict[str, Any]] = [
            {"data": {"username": user.email, "password": DEFAULT_PASSWORD, "grant_type": "client_credentials"}},
            {"data": {"username": user.email}},
            {"data": {"password": DEFAULT_PASSWORD}},
            {"json": {"username": user.email, "password": DEFAULT_PASSWORD}},
        ]
        for request in malformed:
            response = await client.post(TOKEN, **request)
            assert (response.status_code, error_code(response)) == (422, "validation_error"), request


class TestRequestLimits:
    async def test_oversize_login_body_is_refused_with_413(self, client: httpx.AsyncClient) -> None:
        padding = b"x" * (1024 * 1024)
        payload = b'{"email": "ada@example.com", "password": "' + padding + b'"}'

        declared = await client.post(LOGIN, content=payload, headers={"Content-Type": "application/json"})

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 64 * 1024):
                yield payload[start : start + 64 * 1024]

        streamed = await client.post(LOGIN, content=chunks(), headers={"Content-Type": "application/json"})

        for response in (declared, streamed):
            assert response.status_code == 413
            assert response.headers["content-type"] == "application/json"
            error = response.json()["error"]
            assert error["code"] == "payload_too_large"
            assert error["message"]
            assert "details" in error
        # Just under the limit is read and validated normally.
        small = await client.post(LOGIN, content=b'{"email": 1}', headers={"Content-Type": "application/json"})
        assert small.status_code == 422

    async def test_sign_in_endpoints_are_rate_limited_per_client_ip(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        for attempt in range(20):  # rate_limit.auth = 20/minute
            response = await client.post(LOGIN, json={}, headers={"X-Forwarded-For": f"198.51.100.{attempt}"})
            assert response.status_code == 422, attempt

        limited = await client.post(LOGIN, json={})
        register_limited = await client.post("/api/v1/auth/register", json={})

        for response in (limited, register_limited):
            assert response.status_code == 429
            assert error_code(response) == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["X-RateLimit-Limit"] == "20"
        async with another_client(app, "198.51.100.77") as other:
            assert (await other.post(LOGIN, json={})).status_code == 422
