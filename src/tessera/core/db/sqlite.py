"""An aiosqlite connection that runs non-blocking SQLite calls on the event loop itself.

aiosqlite sends every call (cursor, execute, fetch, close, commit) to a worker thread and back:
two thread switches, ~40 µs uncontended and milliseconds under load on a small VM, for calls that
take about 1 µs. In WAL mode reads never wait for a lock, so reads, cursor bookkeeping, deferred
BEGIN, savepoints, rollbacks and the commit of a transaction that wrote nothing run inline.
Anything that may wait on SQLite's write lock (BEGIN IMMEDIATE, INSERT/UPDATE/DELETE, DDL, the
commit of a write, PRAGMA, connection close) still goes to the worker thread, so the event loop is
never held while another writer has the lock. See docs/BENCHMARKS.md for the measured effect.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

_INLINE_STATEMENTS = ("SELECT", "BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK", "WITH", "EXPLAIN")
_CURSOR_CALLS = frozenset({"cursor", "fetchone", "fetchmany", "fetchall", "close"})


def _first_word(sql: str) -> str:
    return sql.lstrip(" \n\t(").split(None, 1)[0].upper() if sql.strip() else ""


class LoopFriendlyConnection(aiosqlite.Connection):
    """aiosqlite.Connection that skips the thread round trip for calls that cannot block."""

    _changes_at_begin: int = 0

    def _runs_inline(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
        name = getattr(fn, "__name__", "")
        owner = getattr(fn, "__self__", None)
        if isinstance(owner, sqlite3.Cursor) and name in _CURSOR_CALLS:
            return True
        connection: sqlite3.Connection | None = self._connection
        if connection is None:
            return False
        if name == "execute" and args and isinstance(args[0], str):
            sql = args[0].upper()
            word = _first_word(sql)
            if word == "BEGIN":
                return "IMMEDIATE" not in sql and "EXCLUSIVE" not in sql
            # A WITH may end in INSERT/UPDATE/DELETE; only pure reads are inline.
            if word == "WITH":
                return not any(verb in sql for verb in ("INSERT", "UPDATE", "DELETE"))
            return word in _INLINE_STATEMENTS
        if owner is connection and name in ("rollback", "cursor"):
            return True
        if owner is connection and name == "commit":
            # Committing a transaction that changed nothing takes no lock and writes nothing.
            return bool(owner.total_changes == self._changes_at_begin)
        return False

    def _note_transaction_boundary(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        connection: sqlite3.Connection | None = self._connection
        if connection is None:
            return
        name = getattr(fn, "__name__", "")
        begins = name == "execute" and bool(args) and isinstance(args[0], str) and _first_word(args[0]) == "BEGIN"
        if begins or name in ("commit", "rollback"):
            self._changes_at_begin = connection.total_changes

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._running and self._connection is not None and self._runs_inline(fn, args):
            result = fn(*args, **kwargs)
        else:
            result = await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
        self._note_transaction_boundary(fn, args)
        return result


def loop_friendly_creator(database: str | Path) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine` on a SQLite file."""

    def connector() -> sqlite3.Connection:
        # Used from the loop thread and the worker thread, never at the same time.
        return sqlite3.connect(str(database), check_same_thread=False, isolation_level=None)

    async def create() -> aiosqlite.Connection:
        connection = LoopFriendlyConnection(connector, 64)
        connection._thread.daemon = True
        try:
            return await connection
        except BaseException:
            # aiosqlite stops its worker thread on a failed open but does not wait for it; left
            # running it can report into an event loop that has closed meanwhile.
            await asyncio.to_thread(connection._thread.join, 5)
            raise

    return create
