"""Rate limits through the real API, with in-memory storage: per IP, per user, per API key."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tessera.core.ratelimit.limiter import RateLimiter
from tessera.main import create_app
from tessera.settings import RateLimitSettings, Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, error_code, login, register

ME = "/api/v1/auth/me"
GENEROUS = "1000/minute"


def limited_settings(database_url: str, tmp_path: Path, **rate_limit: Any) -> Settings:
    limits = {"auth": GENEROUS, "default": GENEROUS, "anonymous": GENEROUS, **rate_limit}
    return make_settings(database_url=database_url, data_dir=tmp_path / "data", rate_limit=limits)


@asynccontextmanager
async def client_from(app: FastAPI, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def assert_rate_limited(response: httpx.Response, *, limit: int, group: str, period: int = 60) -> None:
    assert response.status_code == 429, response.text
    assert error_code(response) == "rate_limited"
    assert response.json()["error"]["details"] == {"limit": limit, "group": group}
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= period
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(response.headers["x-ratelimit-reset"]) <= period
    assert response.headers["x-request-id"]


async def bad_login(http: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await http.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong-password-123"}, headers=headers
    )


# The sliding window counter's windows are aligned to the clock: a burst that straddles a window
# boundary would see the older hits weighted down. A day-long window makes that as good as impossible.
STRATEGY_PERIODS = {
    "moving-window": ("minute", 60),
    "fixed-window": ("minute", 60),
    "sliding-window-counter": ("day", 86_400),
}


class TestAuthGroup:
    @pytest.fixture(params=sorted(STRATEGY_PERIODS))
    def strategy(self, request: pytest.FixtureRequest) -> str:
        name: str = request.param
        return name

    @pytest.fixture
    def settings(self, strategy: str, database_url: str, tmp_path: Path) -> Settings:
        unit = STRATEGY_PERIODS[strategy][0]
        return limited_settings(database_url, tmp_path, auth=f"3/{unit}", strategy=strategy)

    async def test_burst_past_the_limit_is_429_per_ip(
        self, client: httpx.AsyncClient, app: FastAPI, strategy: str
    ) -> None:
        responses = [await bad_login(client) for _ in range(4)]

        assert [response.status_code for response in responses[:3]] == [401, 401, 401]
        assert [response.headers["x-ratelimit-remaining"] for response in responses[:3]] == ["2", "1", "0"]
        assert all(response.headers["x-ratelimit-limit"] == "3" for response in responses[:3])
        assert_rate_limited(responses[3], limit=3, group="auth", period=STRATEGY_PERIODS[strategy][1])
        async with client_from(app, "198.51.100.9") as other_ip:
            assert (await bad_login(other_ip)).status_code == 401

    async def test_registration_shares_the_sign_in_budget(self, client: httpx.AsyncClient, strategy: str) -> None:
        await register(client)
        await bad_login(client)
        await bad_login(client)

        assert_rate_limited(await bad_login(client), limit=3, group="auth", period=STRATEGY_PERIODS[strategy][1])


class TestClientAddress:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return limited_settings(database_url, tmp_path, auth="2/minute")

    async def test_forwarded_for_is_ignored_by_default(self, client: httpx.AsyncClient) -> None:
        await bad_login(client, **{"X-Forwarded-For": "192.0.2.1"})
        await bad_login(client, **{"X-Forwarded-For": "192.0.2.2"})

        response = await bad_login(client, **{"X-Forwarded-For": "192.0.2.3"})

        assert_rate_limited(response, limit=2, group="auth")

    async def test_forwarded_for_counts_when_trusted(self, database_url: str, tmp_path: Path) -> None:
        settings = make_settings(
            database_url=database_url, data_dir=tmp_path, rate_limit={"auth": "2/minute", "trust_forwarded_for": True}
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app), client_from(app, "10.0.0.2") as proxy:
            first = [await bad_login(proxy, **{"X-Forwarded-For": "192.0.2.1, 10.0.0.1"}) for _ in range(3)]
            second = await bad_login(proxy, **{"X-Forwarded-For": "192.0.2.2"})

        assert [response.status_code for response in first] == [401, 401, 429]
        assert second.status_code == 401


class TestDefaultGroup:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return limited_settings(database_url, tmp_path, default="3/minute")

    async def test_each_user_has_a_budget_of_their_own(self, client: httpx.AsyncClient) -> None:
        # register() already called /auth/me once for each user.
        ada, grace = await register(client), await register(client)
        statuses = [(await client.get(ME, headers=ada.headers)).status_code for _ in range(2)]

        over = await client.get(ME, headers=ada.headers)

        assert statuses == [200, 200]
        assert_rate_limited(over, limit=3, group="default")
        assert (await client.get(ME, headers=grace.headers)).status_code == 200

    async def test_users_behind_one_ip_do_not_share_a_budget(self, client: httpx.AsyncClient) -> None:
        users = [await register(client) for _ in range(4)]

        statuses = {(await client.get(ME, headers=user.headers)).status_code for user in users}

        assert statuses == {200}

    async def test_an_api_key_has_a_budget_apart_from_its_creator(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)  # 1 call of the owner's budget
        created = await client.post("/api/v1/api-keys", json={"name": "ci", "scopes": ["*"]}, headers=owner.headers)
        assert created.status_code == 201, created.text  # 2 calls
        key_headers = {"X-API-Key": created.json()["key"]}

        by_key = [(await client.get(ME, headers=key_headers)).status_code for _ in range(3)]
        over = await client.get(ME, headers=key_headers)

        assert by_key == [200, 200, 200]
        assert_rate_limited(over, limit=3, group="default")
        assert (await client.get(ME, headers=owner.headers)).status_code == 200  # the owner's 3rd call
        assert_rate_limited(await client.get(ME, headers=owner.headers), limit=3, group="default")

    async def test_api_key_as_bearer_counts_as_the_key(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        created = await client.post("/api/v1/api-keys", json={"name": "ci", "scopes": ["*"]}, headers=owner.headers)
        bearer = {"Authorization": f"Bearer {created.json()['key']}"}
        x_api_key = {"X-API-Key": created.json()["key"]}

        statuses = [(await client.get(ME, headers=headers)).status_code for headers in (bearer, x_api_key, bearer)]

        assert statuses == [200, 200, 200]
        assert_rate_limited(await client.get(ME, headers=x_api_key), limit=3, group="default")

    async def test_sign_in_is_not_blocked_by_an_exhausted_user_budget(self, client: httpx.AsyncClient) -> None:
        user: SignedIn = await register(client)
        for _ in range(3):
            await client.get(ME, headers=user.headers)

        response = await login(client, user.email, user.password)

        assert response.status_code == 200, response.text


class TestAnonymousGroup:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return limited_settings(database_url, tmp_path, anonymous="3/minute")

    async def test_calls_without_credentials_are_limited_per_ip(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        statuses = [(await client.get(ME)).status_code for _ in range(3)]

        over = await client.get(ME)

        assert statuses == [401, 401, 401]
        assert_rate_limited(over, limit=3, group="anonymous")
        async with client_from(app, "198.51.100.10") as other_ip:
            assert (await other_ip.get(ME)).status_code == 401

    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": "Bearer not-a-token"},
            {"X-API-Key": "tsk_not_a_real_key_0123456789abcdef"},
        ],
        ids=["bad-bearer", "bad-api-key"],
    )
    async def test_bad_credentials_are_limited_as_anonymous(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        # Guessing tokens or keys must cost the guesser, not run unlimited lookups.
        statuses = [(await client.get(ME, headers=headers)).status_code for _ in range(3)]

        over = await client.get(ME, headers=headers)

        assert statuses == [401, 401, 401]
        assert_rate_limited(over, limit=3, group="anonymous")

    async def test_signed_in_calls_do_not_use_the_anonymous_budget(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        for _ in range(5):
            assert (await client.get(ME, headers=user.headers)).status_code == 200

        assert (await client.get(ME)).status_code == 401


class TestDisabled:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return make_settings(
            database_url=database_url,
            data_dir=tmp_path / "data",
            rate_limit={"enabled": False, "auth": "1/minute", "default": "1/minute", "anonymous": "1/minute"},
        )

    async def test_nothing_is_limited_and_no_headers_are_sent(self, client: httpx.AsyncClient) -> None:
        logins = [await bad_login(client) for _ in range(4)]
        user = await register(client)
        calls = [await client.get(ME, headers=user.headers) for _ in range(3)]
        anonymous = [await client.get(ME) for _ in range(3)]

        assert {response.status_code for response in logins} == {401}
        assert {response.status_code for response in calls} == {200}
        assert {response.status_code for response in anonymous} == {401}
        assert all("x-ratelimit-limit" not in response.headers for response in logins + calls + anonymous)


async def test_unreachable_redis_is_a_503_not_a_500(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(database_url=database_url, data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{port}/0")
    app = create_app(settings)

    async with app.router.lifespan_context(app), client_from(app, "203.0.113.7") as http:
        response = await bad_login(http)

    assert response.status_code == 503, response.text
    assert error_code(response) == "provider_unavailable"
    assert response.headers["retry-after"]


@pytest.mark.parametrize(
    "redis_url",
    ["redis://cache:6379/0", "redis://:secret@cache/2", "rediss://cache:6380/1", "unix:///run/redis/redis.sock"],
)
async def test_every_accepted_redis_url_builds_a_limiter(redis_url: str) -> None:
    limiter = RateLimiter(RateLimitSettings(), Settings(_env_file=None, redis_url=redis_url).redis_url)  # type: ignore[call-arg]

    await limiter.close()

    assert type(limiter.storage).__name__ == "RedisStorage"


async def test_unknown_group_is_a_programming_error() -> None:
    limiter = RateLimiter(RateLimitSettings(), None)

    with pytest.raises(KeyError, match="no_such_group"):
        await limiter.hit("no_such_group", "ip:1")
