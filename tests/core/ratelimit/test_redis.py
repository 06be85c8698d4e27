"""Rate limits kept in Redis are shared by every process of a deployment.

Needs the Redis at 127.0.0.1:6379 (database 15). Without it the tests skip, except under CI, where
they fail. Each test counts under a client IP and users of its own and deletes its keys afterwards,
instead of flushing the database, so parallel runs (`pytest -n`) do not reset each other's counters.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import redis

from tessera.core.ratelimit.limiter import RateLimiter
from tessera.main import create_app
from tessera.settings import RateLimitSettings, Settings
from tests.conftest import test_settings as make_settings
from tests.factories import error_code, register

REDIS_URL = "redis://127.0.0.1:6379/15"
ME = "/api/v1/auth/me"


@pytest.fixture
def client_ip() -> str:
    # From the benchmarking range (RFC 2544): never a real client, and unique to this test.
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def keys_of(client: redis.Redis, marker: str) -> list[bytes]:
    return list(client.scan_iter(match=f"LIMITS*{marker}*"))


@pytest.fixture
def markers(client_ip: str) -> list[str]:
    """Parts of the key names this test counts under; its keys are deleted afterwards."""
    return [f"ip:{client_ip}"]


@pytest.fixture
def redis_db(markers: list[str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield client
    for marker in markers:
        for key in keys_of(client, marker):
            client.delete(key)
    client.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, redis_db: redis.Redis) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        redis_url=REDIS_URL,
        rate_limit={"auth": "3/minute", "default": "3/minute", "anonymous": "3/minute"},
    )


@pytest.fixture
async def two_instances(
    settings: Settings, client_ip: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two app instances on the same database and Redis, like two workers behind a load balancer."""
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
            )
        yield clients[0], clients[1]


async def bad_login(http: httpx.AsyncClient) -> httpx.Response:
    return await http.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password-1"})


async def test_per_ip_limit_is_shared_between_instances(
    two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient], redis_db: redis.Redis, client_ip: str
) -> None:
    first, second = two_instances

    statuses = [(await bad_login(http)).status_code for http in (first, second, first)]
    over = await bad_login(second)

    assert statuses == [401, 401, 401]
    assert over.status_code == 429
    assert error_code(over) == "rate_limited"
    assert over.headers["x-ratelimit-limit"] == "3"
    assert int(over.headers["retry-after"]) >= 1
    assert (await bad_login(first)).status_code == 429
    assert keys_of(redis_db, f"ip:{client_ip}"), "the counters should live in Redis"


async def test_per_user_limit_is_shared_between_instances(
    two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient], markers: list[str]
) -> None:
    first, second = two_instances
    user = await register(first)  # one call to /auth/me
    markers.append(f"user:{user.user_id}")

    statuses = [(await http.get(ME, headers=user.headers)).status_code for http in (second, first)]
    over = await second.get(ME, headers=user.headers)

    assert statuses == [200, 200]
    assert over.status_code == 429
    assert over.json()["error"]["details"]["group"] == "default"


async def test_readiness_checks_redis(two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    response = await two_instances[0].get("/health/ready")

    assert response.status_code == 200, response.text
    assert response.json()["checks"]["redis"]["status"] == "ok"


async def test_info_reports_redis(two_instances: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    response = await two_instances[0].get("/api/v1/info")

    assert response.json()["redis"] is True


async def test_url_without_a_port_reaches_the_default_port(redis_db: redis.Redis, markers: list[str]) -> None:
    key = f"user:portless-{uuid.uuid4()}"
    markers.append(key)
    limiter = RateLimiter(RateLimitSettings(default="2/minute"), "redis://127.0.0.1/15")
    try:
        results = [await limiter.hit("default", key) for _ in range(3)]
        healthy = await limiter.check_storage()
    finally:
        await limiter.close()

    assert [result.allowed for result in results] == [True, True, False]
    assert healthy
