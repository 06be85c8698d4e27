"""The job runtime on real SQLite and PostgreSQL system databases, with a real worker process.

`database_url` (tests/conftest.py) gives each test a fresh database on each backend. On
PostgreSQL DBOS keeps its tables in that same database, as in production; on SQLite they go to
`<data_dir>/dbos.sqlite`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tessera.core.jobs import DEFAULT_QUEUE, PING_WORKFLOW, JobRuntime, system_database_url, worker_enabled
from tessera.settings import Settings

RESULT_TIMEOUT = 60.0
# Several queue polls (one a second): long enough for a worker in this process to have
# picked the workflow up, had there been one.
IDLE_WAIT = 3.0

WORKER_SCRIPT = (
    "from tessera.core.jobs import run_worker_forever\n"
    "from tessera.settings import Settings\n"
    "run_worker_forever(Settings(_env_file=None), grace_seconds=0)\n"
)


def make_settings(**values: Any) -> Settings:
    # `_env_file=None`: a developer's .env must not leak into tests.
    return Settings(**{"_env_file": None, "log_level": "WARNING", **values})


@pytest.fixture
async def jobs_env(database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """The environment of a `tessera` process on a fresh database of each backend.

    Shuts down whatever runtime the test leaves running before `database_url` drops the
    database, so DBOS is never left launched.
    """
    yield {"TESSERA_DATABASE_URL": database_url, "TESSERA_DATA_DIR": str(tmp_path / "data")}
    current = JobRuntime.current()
    if current is not None:
        await current.shutdown_async()


@pytest.fixture
async def stop_runtime() -> AsyncIterator[None]:
    yield
    current = JobRuntime.current()
    if current is not None:
        await current.shutdown_async()


def settings_for(env: dict[str, str]) -> Settings:
    return make_settings(database_url=env["TESSERA_DATABASE_URL"], data_dir=Path(env["TESSERA_DATA_DIR"]))


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


async def test_worker_runs_an_enqueued_workflow(jobs_env: dict[str, str]) -> None:
    runtime = await JobRuntime.start_async(settings_for(jobs_env), run_worker=True)

    workflow_id = await runtime.enqueue(PING_WORKFLOW, "hello", queue=DEFAULT_QUEUE)

    assert await runtime.result(workflow_id, timeout=RESULT_TIMEOUT) == "hello"
    assert await runtime.status(workflow_id) == "SUCCESS"
    depth = await runtime.queue_depth()
    assert depth[DEFAULT_QUEUE] >= 0
    assert await runtime.check() == (True, "ok (worker)")
    await runtime.shutdown_async()
    assert JobRuntime.current() is None


async def test_client_only_enqueues_and_a_worker_process_runs_it(jobs_env: dict[str, str], tmp_path: Path) -> None:
    runtime = await JobRuntime.start_async(settings_for(jobs_env), run_worker=False)

    workflow_id = await runtime.enqueue(PING_WORKFLOW, "queued", workflow_id=f"ping-{uuid.uuid4().hex}")
    await asyncio.sleep(IDLE_WAIT)

    assert await runtime.status(workflow_id) == "ENQUEUED"
    assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 1
    assert await runtime.check() == (True, "ok (client)")

    log = tmp_path / "worker.log"
    worker = start_worker_process(jobs_env, log)
    try:
        assert await runtime.result(workflow_id, timeout=RESULT_TIMEOUT) == "queued"
        assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 0
    finally:
        returncode = stop_worker_process(worker)
    output = log.read_text()
    assert returncode == 0, output
    assert f"worker started, queues: {DEFAULT_QUEUE}" in output
    assert "worker stopped" in output


async def test_enqueueing_the_same_workflow_id_twice_keeps_one_workflow(jobs_env: dict[str, str]) -> None:
    runtime = await JobRuntime.start_async(settings_for(jobs_env), run_worker=False)
    workflow_id = f"ping-{uuid.uuid4().hex}"

    first = await runtime.enqueue(PING_WORKFLOW, "a", workflow_id=workflow_id)
    second = await runtime.enqueue(PING_WORKFLOW, "a", workflow_id=workflow_id)

    assert first == second == workflow_id
    assert (await runtime.queue_depth())[DEFAULT_QUEUE] == 1


@pytest.mark.usefixtures("stop_runtime")
async def test_start_returns_the_running_runtime_and_refuses_another_role(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path)
    runtime = await JobRuntime.start_async(settings, run_worker=True)

    assert await JobRuntime.start_async(settings, run_worker=True) is runtime
    with pytest.raises(RuntimeError, match="already runs as worker"):
        await JobRuntime.start_async(settings, run_worker=False)


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
