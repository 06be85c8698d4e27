"""Sign-ins at the same moment all succeed: the password (argon2, ~60 ms of CPU) is verified before
the request's write transaction starts, so on SQLite the write lock is held for a few statements,
not for the hash, and concurrent sign-ins do not end in "database is locked"."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Literal

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import func, select

from tessera.core.auth import passwords
from tessera.core.auth.models import AuthSession
from tessera.settings import Settings
from tests import conftest
from tests.factories import SignedIn, login, register

USERS = 10


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # Registrations and sign-ins from one test client IP: lift the per-IP sign-in limit.
    return conftest.test_settings(
        database_url=database_url, data_dir=tmp_path / "data", rate_limit={"auth": "1000/minute"}
    )


async def test_concurrent_sign_ins_all_succeed(client: httpx.AsyncClient, app: FastAPI) -> None:
    users: list[SignedIn] = [await register(client) for _ in range(USERS)]

    responses = await asyncio.gather(*(login(client, user.email) for user in users))

    assert [response.status_code for response in responses] == [200] * USERS, [r.text for r in responses]
    for user, response in zip(users, responses, strict=True):
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"})
        assert me.json()["user"]["email"] == user.email
    async with app.state.sessionmaker() as session:
        sessions = (await session.execute(select(func.count()).select_from(AuthSession))).scalar_one()
    assert sessions == 2 * USERS  # one from registering, one from signing in


async def test_concurrent_sign_ins_of_one_user_and_failures_beside_them(client: httpx.AsyncClient) -> None:
    user = await register(client)
    others = [await register(client) for _ in range(3)]

    right = [login(client, user.email) for _ in range(5)]
    wrong = [login(client, other.email, "Wrong-Password-1822") for other in others]
    responses = await asyncio.gather(*right, *wrong)

    assert [r.status_code for r in responses] == [200] * 5 + [401] * 3, [r.text for r in responses]


@pytest.mark.sqlite
async def test_the_password_is_checked_while_no_write_lock_is_held(
    backend: str, client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While argon2 verifies, another connection can take SQLite's write lock at once."""
    if backend != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    database = str(app.state.settings.resolved_database_url).split("///", 1)[1]
    user = await register(client)
    probes: list[bool] = []

    class ProbingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            # A side effect not observable otherwise: whether the request holds the write lock now.
            probe = sqlite3.connect(database, timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                probes.append(True)
            except sqlite3.OperationalError:
                probes.append(False)
            finally:
                probe.close()
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", ProbingHasher())
    assert (await login(client, user.email)).status_code == 200
    assert (await login(client, user.email, "Wrong-Password-1822")).status_code == 401
    assert probes == [True, True]
