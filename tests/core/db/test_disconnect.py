"""A database connection that dies under the pool is a 503 for one request, then recovers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.factories import error_code, register


async def test_a_killed_connection_is_a_503_then_the_pool_recovers(
    backend: str, client: httpx.AsyncClient, app: Any, database_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has no server that can drop a connection")
    user = await register(client)
    # A read that always goes to the database (/auth/me may be served from the principal cache).
    sessions = "/api/v1/auth/sessions"
    assert (await client.get(sessions, headers=user.headers)).status_code == 200
    # Terminate every pooled connection of the app, as a server restart or fail-over would.
    killer = create_async_engine(database_url)
    async with killer.connect() as connection:
        await connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await killer.dispose()
    lost = await client.get(sessions, headers=user.headers)
    assert lost.status_code == 503, lost.text
    assert error_code(lost) == "database_unavailable"
    assert lost.headers["retry-after"] == "1"
    recovered = await client.get(sessions, headers=user.headers)
    assert recovered.status_code == 200, recovered.text
