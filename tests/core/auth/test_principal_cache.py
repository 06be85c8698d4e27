"""The in-process principal cache: fast for repeated calls, never stale after a write in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tessera.core.auth.models import AuthSession, Organization
from tessera.core.db.base import utcnow
from tessera.main import create_app
from tests.conftest import count_statements
from tests.conftest import test_settings as make_settings
from tests.factories import error_code, register

ME = "/api/v1/auth/me"


async def _client_for(settings: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


@pytest.fixture
async def short_ttl(database_url: str, tmp_path: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    settings = make_settings(database_url=database_url, data_dir=tmp_path, auth={"principal_cache_seconds": 0.3})
    async for pair in _client_for(settings):
        yield pair


async def _revoke_out_of_band(app: Any) -> None:
    """Revoke every sign-in directly in the database, as another API process would."""
    async with app.state.sessionmaker() as session:
        await session.execute(update(AuthSession).values(revoked_at=utcnow()))
        await session.commit()


async def test_repeated_calls_skip_the_database(client: httpx.AsyncClient, app: Any) -> None:
    user = await register(client)
    assert (await client.get(ME, headers=user.headers)).status_code == 200
    await _revoke_out_of_band(app)
    # Served from the cache: the out-of-band change is not seen yet...
    assert (await client.get(ME, headers=user.headers)).status_code == 200


async def test_a_write_through_this_process_invalidates_at_once(client: httpx.AsyncClient) -> None:
    user = await register(client)
    assert (await client.get(ME, headers=user.headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=user.headers)).status_code == 204
    response = await client.get(ME, headers=user.headers)
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


async def test_changes_from_another_process_apply_within_the_ttl(
    short_ttl: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = short_ttl
    user = await register(client)
    assert (await client.get(ME, headers=user.headers)).status_code == 200
    await _revoke_out_of_band(app)
    await asyncio.sleep(0.4)  # past the 0.3 s TTL
    assert (await client.get(ME, headers=user.headers)).status_code == 401


async def test_ttl_zero_turns_the_cache_off(database_url: str, tmp_path: Any) -> None:
    settings = make_settings(database_url=database_url, data_dir=tmp_path, auth={"principal_cache_seconds": 0})
    async for app, client in _client_for(settings):
        user = await register(client)
        assert (await client.get(ME, headers=user.headers)).status_code == 200
        await _revoke_out_of_band(app)
        assert (await client.get(ME, headers=user.headers)).status_code == 401


async def test_me_is_served_without_a_query_once_cached(client: httpx.AsyncClient, app: Any) -> None:
    user = await register(client)
    first = await client.get(ME, headers=user.headers)
    statements = count_statements(app.state.engine)
    second = await client.get(ME, headers=user.headers)
    assert second.json() == first.json()
    assert statements == []


async def test_memberships_on_me_follow_a_write_through_this_process(client: httpx.AsyncClient) -> None:
    user = await register(client, org_name="Before")
    assert [m["org_name"] for m in (await client.get(ME, headers=user.headers)).json()["memberships"]] == ["Before"]
    renamed = await client.patch("/api/v1/orgs/current", json={"name": "After"}, headers=user.headers)
    assert renamed.status_code == 200, renamed.text
    assert [m["org_name"] for m in (await client.get(ME, headers=user.headers)).json()["memberships"]] == ["After"]


async def test_memberships_on_me_are_read_again_after_the_ttl(short_ttl: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = short_ttl
    user = await register(client, org_name="Before")
    assert (await client.get(ME, headers=user.headers)).json()["memberships"][0]["org_name"] == "Before"
    async with app.state.sessionmaker() as session:  # another process renames the organization
        await session.execute(update(Organization).values(name="Elsewhere"))
        await session.commit()
    await asyncio.sleep(0.4)
    assert (await client.get(ME, headers=user.headers)).json()["memberships"][0]["org_name"] == "Elsewhere"


async def test_an_api_key_sees_only_its_organization_even_from_the_cache(client: httpx.AsyncClient) -> None:
    user = await register(client, org_name="First")
    second = await client.post("/api/v1/orgs", json={"name": "Second"}, headers=user.headers)
    assert second.status_code == 201, second.text
    key = await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers=user.headers)
    # No write after this: the user's two memberships are now cached...
    assert len((await client.get(ME, headers=user.headers)).json()["memberships"]) == 2
    # ...and the key, acting for the same user, still sees only its own organization.
    memberships = (await client.get(ME, headers={"X-API-Key": key.json()["key"]})).json()["memberships"]
    assert [m["org_id"] for m in memberships] == [user.org_id]
