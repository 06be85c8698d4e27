"""Engines, sessions and the unit of work.

One transaction per request: `get_session` commits when the endpoint returns and rolls back when
it raises. Services only `add` and `flush`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool

from tessera.core.db.sqlite import loop_friendly_creator
from tessera.settings import Settings

# Execution option that asks SQLite for `BEGIN IMMEDIATE`: the write lock is taken up front, so a
# transaction that reads and then writes cannot fail with SQLITE_BUSY when another writer commits
# in between (WAL snapshots cannot be upgraded). PostgreSQL ignores it.
WRITE_INTENT = "tessera_write_intent"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AFTER_TRANSACTION = "tessera_after_transaction"
AFTER_COMMIT = "tessera_after_commit"

logger = logging.getLogger("tessera.db")
DeferredWork = Callable[[AsyncSession], Awaitable[None]]


def run_after_transaction(session: AsyncSession, work: DeferredWork) -> None:
    """Run `work` in its own transaction once this one has ended, committed or rolled back.

    For facts that must be kept even when the request fails (a failed sign-in, a reused refresh
    token) and bookkeeping that must not hold the request's locks (an API key's last use). On
    SQLite a second writer cannot run while the request holds the write lock, so it waits until then.
    """
    session.info.setdefault(AFTER_TRANSACTION, []).append(work)


def run_after_commit(session: AsyncSession, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once this transaction has committed, and never if it rolls back.

    For effects outside the database that must only follow durable state, such as enqueueing a
    job that will read the rows this transaction writes. A failure is logged, not raised: the
    data is committed, and the caller's recovery (a sweep, a retry) picks the work up.
    """
    session.info.setdefault(AFTER_COMMIT, []).append(work)


async def _run_after_commit(session: AsyncSession) -> None:
    for work in session.info.pop(AFTER_COMMIT, []):
        try:
            await work()
        except Exception:
            logger.exception("work after commit failed")


async def _run_deferred(sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession) -> None:
    pending: list[DeferredWork] = session.info.pop(AFTER_TRANSACTION, [])
    for work in pending:
        try:
            async with unit_of_work(sessionmaker) as side:
                await work(side)
        except Exception:
            logger.exception("deferred database work failed")


async def _end(sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, *, commit: bool) -> None:
    """Commit or roll back, then run the deferred work, also when the COMMIT itself fails."""
    try:
        if commit:
            try:
                await session.commit()
            except BaseException:
                session.info.pop(AFTER_COMMIT, None)
                await session.rollback()
                raise
            await _run_after_commit(session)
        else:
            session.info.pop(AFTER_COMMIT, None)
            await session.rollback()
    finally:
        await _run_deferred(sessionmaker, session)


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The pysqlite recipe from the SQLAlchemy SQLite dialect docs: let SQLAlchemy emit BEGIN
        # itself so SAVEPOINTs and transactional DDL work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_INTENT, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(settings: Settings, url: str | URL | None = None, *, pooled: bool = True) -> AsyncEngine:
    """`pooled=False` opens a connection per session and closes it after: for engines on event
    loops this code does not own (job workers), where pooled connections could not be closed."""
    target = make_url(url or settings.resolved_database_url)
    pool: dict[str, Any] = (
        {"poolclass": NullPool}
        if not pooled
        else {"pool_size": settings.db.pool_size, "max_overflow": settings.db.max_overflow}
    )
    if target.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {}
        if target.database and target.database != ":memory:":
            try:
                Path(target.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                # Start anyway: /health/ready reports the database as failing (503) instead of the
                # process dying before it can say why.
                logger.error("cannot create the SQLite directory: %s", error)
            # Reads, deferred BEGIN and read-only COMMIT skip aiosqlite's thread hop (see sqlite.py).
            kwargs["async_creator"] = loop_friendly_creator(target.database)
        if pooled:
            pool["poolclass"] = AsyncAdaptedQueuePool
        engine = create_async_engine(target, echo=settings.db.echo, **pool, **kwargs)
        _configure_sqlite(engine, settings.db.sqlite_busy_timeout_ms)
        return engine
    return create_async_engine(
        target,
        echo=settings.db.echo,
        **pool,
        # No pre-ping: it costs a round trip on every checkout. A connection found dead is
        # invalidated by SQLAlchemy and its request answered 503 (see core/handlers.py).
        pool_pre_ping=False,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], *, write: bool = True
) -> AsyncIterator[AsyncSession]:
    """A transaction for work outside a request (jobs, CLI): commit on success, roll back on error."""
    async with sessionmaker() as session:
        if write:
            await session.connection(execution_options={WRITE_INTENT: True})
        try:
            yield session
        except BaseException as error:
            # An error that is the request's outcome may keep what was written (e.g. the log of a
            # refused message); any other error rolls everything back.
            await _end(sessionmaker, session, commit=bool(getattr(error, "keep_writes", False)))
            raise
        await _end(sessionmaker, session, commit=True)


class WriteClock:
    """Counts the write requests this process has finished. Caches of database state note the
    count when they read and treat their entry as stale once it has moved on."""

    def __init__(self) -> None:
        self.value = 0

    def tick(self) -> None:
        self.value += 1


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    unsafe = request.method in UNSAFE_METHODS
    try:
        async with unit_of_work(request.app.state.sessionmaker, write=unsafe) as session:
            yield session
    finally:
        clock: WriteClock | None = getattr(request.app.state, "write_clock", None)
        if unsafe and clock is not None:
            clock.tick()


# scope="function": commit runs when the endpoint returns, before the response is built, so a
# failing commit becomes an error response instead of a 200 for work that was lost.
DbSession = Annotated[AsyncSession, Depends(get_session, scope="function")]


def is_sqlite(session: AsyncSession) -> bool:
    """Whether the session talks to SQLite (for the few statements that differ by backend)."""
    return session.bind is None or session.bind.dialect.name == "sqlite"
