"""Small helpers the core's sources share."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Delete, Select, Update, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tessera.core.db.base import Base

REDACTED = "[erased]"
Statement = TypeVar("Statement", Select[Any], Update, Delete)


def in_org(statement: Statement, column: InstrumentedAttribute[Any], org_id: uuid.UUID | None) -> Statement:
    """The statement limited to one organization's rows, or left as it is for every organization."""
    return statement if org_id is None else statement.where(column == org_id)


def fields(row: Base, *names: str) -> dict[str, Any]:
    """The named attributes of a row, for an export."""
    return {name: getattr(row, name) for name in names}


def affected(result: Any) -> int:
    """Rows an UPDATE or DELETE statement matched."""
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def scrub(value: Any, needles: Iterable[str], exact: Iterable[str] = ()) -> Any:
    """`value` (JSON) with "[erased]" for every string that contains one of `needles` or equals one of
    `exact` (both lower case, compared case-insensitively)."""
    needles, exact = tuple(needles), frozenset(exact)
    if isinstance(value, str):
        lowered = value.lower()
        return REDACTED if lowered in exact or any(needle in lowered for needle in needles) else value
    if isinstance(value, dict):
        return {key: scrub(item, needles, exact) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, needles, exact) for item in value]
    return value


class AuthoredRows:
    """Rows the user created for the organization (an assistant, an evaluation): they belong to
    the organization and stay; the export lists them, the erase unlinks the author."""

    def __init__(
        self,
        name: str,
        author: InstrumentedAttribute[uuid.UUID | None],
        org: InstrumentedAttribute[uuid.UUID],
        exported: tuple[str, ...],
    ) -> None:
        self.name = name
        self.author = author
        self.org = org
        self.exported = exported

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        model = self.author.class_
        rows = await session.execute(select(model).where(self.author == user_id).order_by(model.created_at))
        return [fields(row, *self.exported) for row in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        statement = in_org(update(self.author.class_).where(self.author == user_id), self.org, org_id)
        return affected(await session.execute(statement.values({self.author: None})))
