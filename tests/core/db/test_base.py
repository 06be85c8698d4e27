"""The declarative base: UUIDv7 keys and timezone-aware UTC datetimes, on both backends."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.models import User
from tessera.core.db.base import new_id, utcnow


def unix_ms(value: uuid.UUID) -> int:
    return value.int >> 80


class TestNewId:
    def test_is_a_version_7_rfc_9562_uuid(self) -> None:
        value = new_id()

        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value

    def test_carries_the_creation_time_in_milliseconds(self) -> None:
        before = time.time_ns() // 1_000_000
        value = new_id()
        after = time.time_ns() // 1_000_000

        assert before <= unix_ms(value) <= after

    def test_later_ids_sort_after_earlier_ones(self) -> None:
        first = new_id()
        time.sleep(0.002)
        second = new_id()

        assert first < second
        assert str(first) < str(second)  # the text form sorts the same way

    def test_ids_made_in_a_burst_are_strictly_increasing_and_unique(self) -> None:
        # Many fall in the same millisecond: order must hold there too (keys double as cursors).
        values = [new_id() for _ in range(20_000)]

        assert all(earlier < later for earlier, later in itertools.pairwise(values))
        assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in values)

    def test_ids_are_not_a_plain_counter(self) -> None:
        values = [new_id().int for _ in range(100)]

        steps = {later - earlier for earlier, later in itertools.pairwise(values)}

        assert len(steps) > 90


def make_user(**values: object) -> User:
    email = f"dt-{uuid.uuid4().hex[:12]}@example.com"
    return User(email=email, name="Datetime Probe", password_hash="x", **values)


class TestUTCDateTime:
    async def test_aware_datetime_round_trips_as_utc(self, session: AsyncSession) -> None:
        given = datetime(2031, 5, 6, 7, 8, 9, 123_456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
        user = make_user(locked_until=given)
        session.add(user)
        await session.flush()

        loaded = await session.scalar(select(User.locked_until).where(User.id == user.id))

        assert loaded == given
        assert loaded is not None
        assert loaded.utcoffset() == timedelta(0)
        assert loaded.tzinfo == UTC
        assert loaded.replace(tzinfo=None) == datetime(2031, 5, 6, 1, 38, 9, 123_456)

    async def test_comparisons_work_across_offsets(self, session: AsyncSession) -> None:
        moment = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)
        user = make_user(locked_until=moment)
        session.add(user)
        await session.flush()
        same_moment_elsewhere = moment.astimezone(timezone(timedelta(hours=-8)))

        found = await session.scalar(
            select(User.id).where(User.id == user.id, User.locked_until >= same_moment_elsewhere)
        )

        assert found == user.id

    async def test_server_default_timestamps_load_as_utc(self, session: AsyncSession) -> None:
        user = make_user()
        session.add(user)
        await session.flush()

        created_at = await session.scalar(select(User.created_at).where(User.id == user.id))

        assert created_at is not None
        assert created_at.tzinfo == UTC
        assert abs(created_at - utcnow()) < timedelta(minutes=1)

    async def test_naive_datetime_is_refused_on_write(self, session: AsyncSession) -> None:
        session.add(make_user(locked_until=datetime(2031, 1, 1, 12, 0)))

        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()

    async def test_naive_datetime_is_refused_in_a_query(self, session: AsyncSession) -> None:
        with pytest.raises(StatementError, match="naive datetime"):
            await session.execute(select(User.id).where(User.locked_until < datetime(2031, 1, 1)))

    def test_utcnow_is_aware_utc(self) -> None:
        assert utcnow().tzinfo == UTC
