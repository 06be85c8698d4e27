"""Look for a person in every table of the database, for tests that check an erasure left nothing.

`rows_mentioning` reads every row of every table the database has: the tables of `Base.metadata`
(core and product modules) and those no model describes (full-text and vector indexes, their
bookkeeping). Each value is turned into text (JSON as JSON, bytes as UTF-8, UUIDs in both the
dashed and the 32-digit form SQLite stores) and searched for each needle, case-insensitively.

    leftovers = await rows_mentioning(app.state.engine, [user_id, "ada@example.com", "Ada Lovelace"])
    assert leftovers == []
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from tessera.core.db.models import Base


class Mention(NamedTuple):
    table: str
    column: str
    value: str


Needle = str | uuid.UUID


def _forms(needles: Iterable[Needle]) -> list[str]:
    forms: list[str] = []
    for needle in needles:
        if isinstance(needle, uuid.UUID):
            forms += [str(needle), needle.hex]
        elif needle.strip():
            forms.append(needle.strip().lower())
    return forms


def as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="ignore")
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


@asynccontextmanager
async def _connection(target: AsyncSession | AsyncEngine | str) -> AsyncIterator[AsyncConnection]:
    if isinstance(target, AsyncSession):
        yield await target.connection()
        return
    engine = create_async_engine(target) if isinstance(target, str) else target
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        if isinstance(target, str):
            await engine.dispose()


async def _rows(connection: AsyncConnection, name: str) -> Sequence[Mapping[str, Any]]:
    """Every row as column → value; a table no model describes is read as it is stored."""
    table = Base.metadata.tables.get(name)
    if table is not None:
        return list((await connection.execute(sa.select(table))).mappings())
    quoted = connection.dialect.identifier_preparer.quote(name)
    if connection.dialect.name == "postgresql":
        # A row as one text value: every column type (vector, tsvector) reads as text.
        result = await connection.execute(sa.text(f"SELECT CAST(t AS text) FROM {quoted} AS t"))
        return [{"*": row[0]} for row in result]
    return list((await connection.execute(sa.text(f"SELECT * FROM {quoted}"))).mappings())


async def table_names(target: AsyncSession | AsyncEngine | str) -> list[str]:
    async with _connection(target) as connection:
        names: list[str] = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        return names


async def rows_mentioning(
    target: AsyncSession | AsyncEngine | str,
    needles: Iterable[Needle],
    *,
    only: Callable[[str, Mapping[str, Any]], bool] | None = None,
) -> list[Mention]:
    """Every (table, column, value) of the database whose value contains one of `needles`.

    `target`: a session (reads in its transaction), an engine, or a database URL. `only(table,
    row)` limits the search to the rows it accepts (e.g. one organization's); a table no model
    describes gives PostgreSQL rows as `{"*": the row as text}`.
    """
    forms = _forms(needles)
    assert forms, "give at least one non-blank needle"
    found: list[Mention] = []
    async with _connection(target) as connection:
        names = await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        for name in sorted(names):
            for row in await _rows(connection, name):
                if only is not None and not only(name, row):
                    continue
                for column, value in row.items():
                    if value is None:
                        continue
                    text = as_text(value)
                    if any(form in text.lower() for form in forms):
                        found.append(Mention(name, column, text[:300]))
    return found
