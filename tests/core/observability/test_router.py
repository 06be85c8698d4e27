"""Liveness, readiness, Prometheus metrics and /api/v1/info."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import tessera
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import register


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def aiosqlite_threads_finished(timeout: float = 5.0) -> None:
    """Let aiosqlite worker threads end while this test's event loop still runs.

    aiosqlite 0.22 stops a connection that failed to open without awaiting the stop; its thread then
    reports to the loop, which raises in the thread once the test's loop has closed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        "_connection_worker_thread" in thread.name for thread in threading.enumerate()
    ):
        await asyncio.sleep(0.01)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_total(text: str, **labels: str) -> float:
    key = ("tessera_http_requests_total", tuple(sorted(labels.items())))
    return samples(text).get(key, 0.0)


class TestLiveness:
    async def test_health_is_200(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/health")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestReadiness:
    async def test_ready_when_the_database_answers(self, client: httpx.AsyncClient, backend: str) -> None:
        response = await client.get("/health/ready")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        database = body["checks"]["database"]
        assert database["status"] == "ok"
        assert database["required"] is True
        assert database["detail"] == backend
        assert database["latency_ms"] >= 0
        assert body["checks"]["jobs"]["status"] == "skipped"
        assert "redis" not in body["checks"]

    async def test_503_when_the_sqlite_file_cannot_be_opened(self, tmp_path: Path) -> None:
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("a file where the database directory should be")
        settings = make_settings(database_url=f"sqlite:///{blocker / 'data' / 'tessera.db'}", data_dir=tmp_path)

        async with serve(settings) as http:
            response = await http.get("/health/ready")
        await aiosqlite_threads_finished()

        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "fail"
        assert body["checks"]["database"]["status"] == "fail"
        assert body["checks"]["database"]["detail"]

    async def test_503_when_postgresql_is_unreachable(self, tmp_path: Path) -> None:
        url = f"postgresql://tessera:secret@127.0.0.1:{closed_port()}/tessera"
        settings = make_settings(database_url=url, data_dir=tmp_path)

        async with serve(settings) as http:
            response = await http.get("/health/ready")

        assert response.status_code == 503, response.text
        database = response.json()["checks"]["database"]
        assert database["status"] == "fail"
        assert "secret" not in (database["detail"] or "")

    async def test_503_when_redis_is_unreachable(self, database_url: str, tmp_path: Path) -> None:
        settings = make_settings(
            database_url=database_url, data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{closed_port()}/0"
        )

        async with serve(settings) as http:
            response = await http.get("/health/ready")

        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert checks["database"]["status"] == "ok"
        assert checks["redis"]["status"] == "fail"
        assert checks["redis"]["required"] is True

    async def test_redis_is_not_checked_when_rate_limits_are_off(self, database_url: str, tmp_path: Path) -> None:
        settings = make_settings(
            database_url=database_url,
            data_dir=tmp_path,
            redis_url=f"redis://127.0.0.1:{closed_port()}/0",
            rate_limit={"enabled": False},
        )

        async with serve(settings) as http:
            response = await http.get("/health/ready")

        assert response.status_code == 200, response.text
        assert "redis" not in response.json()["checks"]


class TestMetrics:
    async def test_requests_are_counted_by_route_template(self, client: httpx.AsyncClient) -> None:
        owner = await register(client)
        key_id = str(uuid.uuid4())
        await client.get(f"/api/v1/api-keys/{key_id}", headers=owner.headers)
        await client.get("/no-such-page")

        response = await client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert requests_total(text, method="GET", route="/api/v1/auth/me", status="200") == 1
        assert requests_total(text, method="POST", route="/api/v1/auth/register", status="201") == 1
        assert requests_total(text, method="GET", route="/api/v1/api-keys/{key_id}", status="404") == 1
        assert requests_total(text, method="GET", route="unmatched", status="404") == 1
        assert key_id not in text
        assert "/no-such-page" not in text

    async def test_latency_histogram_and_in_progress_gauge(self, client: httpx.AsyncClient) -> None:
        await client.get("/health")

        found = samples((await client.get("/metrics")).text)

        assert found[("tessera_http_request_duration_seconds_count", (("method", "GET"), ("route", "/health")))] == 1
        # Only the scrape itself is in flight.
        assert found[("tessera_http_requests_in_progress", ())] == 1

    async def test_connection_pool_is_reported(self, client: httpx.AsyncClient, settings: Settings) -> None:
        await client.get("/health/ready")

        found = samples((await client.get("/metrics")).text)

        assert found[("tessera_db_pool_size", ())] == settings.db.pool_size
        assert found[("tessera_db_pool_checked_out", ())] == 0
        assert ("tessera_db_pool_overflow", ()) in found

    async def test_apps_keep_separate_registries(self, client: httpx.AsyncClient, tmp_path: Path) -> None:
        await client.get("/health")
        other_settings = make_settings(database_url=f"sqlite:///{tmp_path / 'other.db'}", data_dir=tmp_path)

        async with serve(other_settings) as other:
            text = (await other.get("/metrics")).text

        assert requests_total(text, method="GET", route="/health", status="200") == 0

    async def test_metrics_can_be_turned_off(self, tmp_path: Path) -> None:
        settings = make_settings(
            database_url=f"sqlite:///{tmp_path / 't.db'}", data_dir=tmp_path, metrics_enabled=False
        )

        async with serve(settings) as http:
            response = await http.get("/metrics")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestInfo:
    async def test_info_names_version_database_and_modules(self, client: httpx.AsyncClient, backend: str) -> None:
        response = await client.get("/api/v1/info")

        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        assert body["name"] == "tessera"
        assert body["version"] == tessera.__version__
        assert re.match(r"^\d+\.\d+\.\d+", body["version"])
        assert body["database"] == backend
        assert body["environment"] == "test"
        assert isinstance(body["modules"], list)
        assert body["redis"] is False
        assert body["jobs"] is False

    async def test_info_needs_no_credentials_and_leaks_no_secrets(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        response = await client.get("/api/v1/info")

        assert response.status_code == 200
        assert settings.signing_key not in response.text
        assert settings.resolved_database_url not in response.text


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics"])
async def test_probes_are_not_rate_limited(path: str, database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url=database_url, data_dir=tmp_path, rate_limit={"anonymous": "1/minute", "default": "1/minute"}
    )

    async with serve(settings) as http:
        statuses = {(await http.get(path)).status_code for _ in range(3)}

    assert statuses == {200}


async def test_ready_fails_when_document_storage_is_unusable(database_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the blob folder should be")
    settings = make_settings(database_url=database_url, data_dir=tmp_path / "data", documents={"storage_dir": blocker})
    async with serve(settings) as http:
        response = await http.get("/health/ready")
    assert response.status_code == 503
    storage = response.json()["checks"]["storage"]
    assert storage["status"] == "fail"
    assert storage["required"] is True
    assert "not writable" in storage["detail"]


async def test_ready_reports_document_storage(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.json()["checks"]["storage"] == {
        **response.json()["checks"]["storage"],
        "status": "ok",
        "detail": "local",
    }
