"""Cursor pagination: `?limit=50&cursor=<opaque>`; responses carry `next_cursor` (null on the last page).

Primary keys are UUIDv7, ordered by creation time, so the key itself is a stable cursor: rows
inserted while a client pages never shift what it has already seen.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tessera.core.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null when this is the last.")


class PageParams(BaseModel):
    limit: int
    after: uuid.UUID | None


def encode_cursor(key: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(key.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError) as error:
        raise InvalidCursor("The cursor is not valid; start again without it") from error


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
    cursor: Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page.")] = None,
) -> PageParams:
    return PageParams(limit=limit, after=decode_cursor(cursor) if cursor else None)


PageParamsDep = Annotated[PageParams, Depends(page_params)]


async def paginate(
    session: AsyncSession, query: Select[Any], *, key: InstrumentedAttribute[uuid.UUID], params: PageParams
) -> tuple[Sequence[Any], str | None]:
    """Newest first. Returns the rows of this page and the cursor of the next one."""
    if params.after is not None:
        query = query.where(key < params.after)
    rows = (await session.execute(query.order_by(key.desc()).limit(params.limit + 1))).scalars().all()
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        return rows, encode_cursor(getattr(rows[-1], key.key))
    return rows, None
