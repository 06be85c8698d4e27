"""Units of work, deferred side transactions, and the isolation the `session` fixture promises."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tessera.core.auth.models import Organization
from tessera.core.db.session import create_engine, create_sessionmaker, run_after_transaction, unit_of_work
from tests.conftest import test_settings as make_settings

LEAK_PROBE_SLUG = "leak-probe"


def organization(slug: str | None = None, **values: object) -> Organization:
    return Organization(name="Probe", slug=slug or f"probe-{uuid.uuid4().hex[:12]}", **values)


async def slugs(sessionmaker: async_sessionmaker[AsyncSession], *wanted: str) -> set[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(Organization.slug).where(Organization.slug.in_(wanted)))
        return set(rows)


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a database of this test's own, where commits are real."""
    engine = create_engine(make_settings(), database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


class TestSessionFixture:
    """Run in either order, the two `leak` tests fail if the first one's commit survived it."""

    async def _commit_probe(self, session: AsyncSession) -> None:
        assert await session.scalar(select(Organization).where(Organization.slug == LEAK_PROBE_SLUG)) is None
        session.add(organization(LEAK_PROBE_SLUG))
        await session.commit()

    async def test_committed_row_does_not_leak_into_the_next_test(self, session: AsyncSession) -> None:
        await self._commit_probe(session)

    async def test_committed_row_does_not_leak_from_the_previous_test(self, session: AsyncSession) -> None:
        await self._commit_probe(session)

    async def test_commit_in_a_test_is_invisible_to_other_connections(
        self, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        probe = organization()
        session.add(probe)
        await session.commit()

        async with engine.connect() as other:
            seen = (await other.execute(select(Organization.id).where(Organization.id == probe.id))).first()

        assert seen is None
        # Still there for the test itself, after its "commit".
        assert await session.get(Organization, probe.id) is not None


class TestUnitOfWork:
    async def test_commits_on_success(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        async with unit_of_work(sessionmaker) as session:
            session.add(organization("kept"))

        assert await slugs(sessionmaker, "kept") == {"kept"}

    async def test_rolls_back_on_error(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        async def failing_use_case() -> None:
            async with unit_of_work(sessionmaker) as session:
                session.add(organization("discarded"))
                await session.flush()
                raise LookupError("the use case failed")

        with pytest.raises(LookupError):
            await failing_use_case()

        assert await slugs(sessionmaker, "discarded") == set()


class TestRunAfterTransaction:
    async def test_runs_after_commit_and_sees_the_committed_work(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        seen_by_deferred: list[set[str]] = []

        async def deferred(side: AsyncSession) -> None:
            # A new transaction: it can only see "main" if that was already committed.
            seen_by_deferred.append(set(await side.scalars(select(Organization.slug))))
            side.add(organization("deferred"))

        async with unit_of_work(sessionmaker) as session:
            session.add(organization("main"))
            run_after_transaction(session, deferred)
            assert seen_by_deferred == []  # not yet

        assert "main" in seen_by_deferred[0]
        assert await slugs(sessionmaker, "main", "deferred") == {"main", "deferred"}

    async def test_runs_after_rollback_and_keeps_its_own_work(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def record_failure(side: AsyncSession) -> None:
            side.add(organization("failure-recorded"))

        async def refused_sign_in() -> None:
            async with unit_of_work(sessionmaker) as session:
                session.add(organization("rolled-back"))
                await session.flush()
                run_after_transaction(session, record_failure)
                raise PermissionError("sign-in refused")

        with pytest.raises(PermissionError):
            await refused_sign_in()

        assert await slugs(sessionmaker, "rolled-back", "failure-recorded") == {"failure-recorded"}

    async def test_runs_after_a_failing_commit(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        async with unit_of_work(sessionmaker) as session:
            existing = organization("existing")
            session.add(existing)

        async def record(side: AsyncSession) -> None:
            side.add(organization("recorded-anyway"))

        async def clashing_insert() -> None:
            async with unit_of_work(sessionmaker) as session:
                # Not flushed: the duplicate key fails at COMMIT.
                session.add(organization("lost"))
                session.add(organization("duplicate", id=existing.id))
                run_after_transaction(session, record)

        with pytest.raises(IntegrityError):
            await clashing_insert()

        assert await slugs(sessionmaker, "lost", "duplicate", "recorded-anyway") == {"recorded-anyway"}

    async def test_runs_in_order_and_a_failing_one_does_not_stop_the_rest(
        self, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
    ) -> None:
        order: list[str] = []

        async def first(side: AsyncSession) -> None:
            order.append("first")
            side.add(organization("first"))

        async def broken(side: AsyncSession) -> None:
            order.append("broken")
            side.add(organization("broken"))
            await side.flush()
            raise RuntimeError("bookkeeping failed")

        async def last(side: AsyncSession) -> None:
            order.append("last")
            side.add(organization("last"))

        with caplog.at_level(logging.ERROR, logger="tessera.db"):
            async with unit_of_work(sessionmaker) as session:
                for work in (first, broken, last):
                    run_after_transaction(session, work)

        assert order == ["first", "broken", "last"]
        assert await slugs(sessionmaker, "first", "broken", "last") == {"first", "last"}
        assert "deferred database work failed" in caplog.text

    async def test_runs_once(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        calls: list[int] = []

        async def count(side: AsyncSession) -> None:
            calls.append(1)

        async with unit_of_work(sessionmaker) as session:
            run_after_transaction(session, count)

        async with unit_of_work(sessionmaker):
            pass

        assert calls == [1]


class TestSqliteWriteIntent:
    @pytest.mark.sqlite
    async def test_write_unit_takes_the_write_lock_at_begin(self, sqlite_template: Path, tmp_path: Path) -> None:
        # BEGIN IMMEDIATE: a second writer is refused when it begins, not later at its first write,
        # so a transaction that reads and then writes cannot fail half-way with SQLITE_BUSY.
        target = tmp_path / "lock.db"
        target.write_bytes(sqlite_template.read_bytes())
        engine = create_engine(make_settings(db={"sqlite_busy_timeout_ms": 0}), f"sqlite+aiosqlite:///{target}")
        sessionmaker = create_sessionmaker(engine)
        try:
            async with unit_of_work(sessionmaker) as first:
                await first.scalar(select(Organization.id).limit(1))
                with pytest.raises(OperationalError, match="database is locked"):
                    async with unit_of_work(sessionmaker):
                        pass
                # A reader is not blocked (WAL).
                async with unit_of_work(sessionmaker, write=False) as reader:
                    await reader.scalar(select(Organization.id).limit(1))
        finally:
            await engine.dispose()
