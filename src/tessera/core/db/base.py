"""Declarative base shared by every table: naming convention, UUID keys, UTC timestamps."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, MetaData, TypeDecorator, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# One explicit convention so Alembic autogenerate and both backends agree on constraint names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_RANDOM_BITS = 74  # rand_a (12 bits) and rand_b (62 bits) of RFC 9562, counted as one number
_id_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): random, but ordered by creation time, so keys index and page well.

    Ids made in the same millisecond count on from the previous one by a random step (RFC 9562
    section 6.2, monotonic random), so every id this process makes sorts after the ones before it.
    """
    global _last_ms, _last_random
    unix_ms = time.time_ns() // 1_000_000
    with _id_lock:
        if unix_ms > _last_ms:
            random_part = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
        else:
            # Same millisecond, or the clock went back: stay after the last id.
            unix_ms = _last_ms
            random_part = _last_random + 1 + int.from_bytes(os.urandom(4), "big")
            if random_part >> _RANDOM_BITS:
                unix_ms += 1
                random_part = int.from_bytes(os.urandom(10), "big") >> (80 - _RANDOM_BITS)
        _last_ms, _last_random = unix_ms, random_part
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (random_part >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= random_part & ((1 << 62) - 1)  # rand_b
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset, so add it back on load)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        uuid.UUID: Uuid(as_uuid=True),
        datetime: UTCDateTime(),
        dict[str, Any]: JsonType,
        list[str]: JsonType,
        list[dict[str, Any]]: JsonType,
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=func.now())


# Tables made by migrations but not described by models: full-text indexes whose form differs by
# backend (an FTS5 virtual table and its shadow tables on SQLite, a tsvector table on PostgreSQL).
UNMANAGED_TABLE_PREFIXES = ("chunk_fts", "chunk_vector")


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Alembic `include_name` hook: leave the unmanaged tables out of model comparisons."""
    return not (type_ == "table" and name is not None and name.startswith(UNMANAGED_TABLE_PREFIXES))
