"""Which documents a search may return: the caller's visible collections, narrowed by filters.

Filters are a JSON object. Keys are metadata fields, or the document fields `doc_type`,
`language`, `created_at`, `collection_id`. A value is an equality, or an object of operators:
`{"year": {"gte": 2020, "lt": 2025}}`, `{"team": {"in": ["red", "blue"]}}`, `{"published": {"gte":
"2024-01-01"}}` (ISO dates compare as text). Every condition must hold.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Select, and_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from tessera.core.documents.models import Document, DocumentStatus
from tessera.core.documents.schemas import FIELD_NAME
from tessera.core.errors import InvalidInput

OPERATORS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte"}
DOCUMENT_FIELDS = {"doc_type", "language", "created_at", "collection_id"}


class InvalidFilter(InvalidInput):
    """A search filter is malformed."""

    code = "invalid_filter"


def _compare(column: Any, operator: str, value: Any) -> ColumnElement[bool]:
    if operator == "in" or operator == "nin":
        if not isinstance(value, list) or not value or len(value) > 1_000:
            raise InvalidFilter(f"'{operator}' takes a non-empty list (at most 1,000 values)")
        condition: ColumnElement[bool] = column.in_(value)
        return ~condition if operator == "nin" else condition
    if isinstance(value, list | dict):
        raise InvalidFilter(f"'{operator}' takes a single value")
    compared: ColumnElement[bool] = {
        "eq": column.__eq__,
        "ne": column.__ne__,
        "gt": column.__gt__,
        "gte": column.__ge__,
        "lt": column.__lt__,
        "lte": column.__le__,
    }[operator](value)
    return compared


class JsonNumber(ColumnElement[float]):
    """A metadata field as a number, NULL where the stored value is not a number.

    A plain cast would fail the whole query on PostgreSQL for one document whose field holds text.
    """

    inherit_cache = True
    type = Float()

    def __init__(self, key: str) -> None:
        self.key = key


@compiles(JsonNumber, "postgresql")
def _json_number_postgresql(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    column = compiler.process(Document.user_metadata.expression, **kw)
    return (
        f"CASE WHEN jsonb_typeof({column} -> '{element.key}') = 'number' "
        f"THEN ({column} ->> '{element.key}')::float8 END"
    )


@compiles(JsonNumber)
def _json_number_sqlite(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    column = compiler.process(Document.user_metadata.expression, **kw)
    path = f"'$.\"{element.key}\"'"
    return f"CASE WHEN json_type({column}, {path}) IN ('integer', 'real') THEN json_extract({column}, {path}) END"


def _metadata_column(name: str, sample: Any) -> Any:
    if not re.fullmatch(FIELD_NAME, name):
        raise InvalidFilter(f"'{name}' is not a metadata field name (letters, digits and _, at most 64)")
    element = Document.user_metadata[name]
    if isinstance(sample, bool):
        return element.as_boolean()
    if isinstance(sample, int | float):
        return JsonNumber(name)
    return element.as_string()


def _document_column(name: str, sample: Any) -> tuple[Any, Any]:
    if name == "created_at":
        try:
            return Document.created_at, datetime.fromisoformat(str(sample))
        except ValueError as error:
            raise InvalidFilter("created_at compares with ISO 8601 date-times") from error
    if name == "collection_id":
        try:
            return Document.collection_id, uuid.UUID(str(sample))
        except ValueError as error:
            raise InvalidFilter("collection_id compares with collection ids") from error
    return getattr(Document, name), sample


def filter_conditions(filters: dict[str, Any] | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for name, spec in (filters or {}).items():
        if not isinstance(name, str) or not name or len(name) > 64:
            raise InvalidFilter("filter keys are field names of at most 64 characters")
        ops = spec if isinstance(spec, dict) else {"eq": spec}
        if not ops:
            raise InvalidFilter(f"filter on '{name}' is empty")
        for operator, value in ops.items():
            if operator not in OPERATORS:
                raise InvalidFilter(f"unknown operator '{operator}'; use one of {', '.join(sorted(OPERATORS))}")
            if value is None:
                raise InvalidFilter(f"filter on '{name}' compares with null")
            sample = value[0] if isinstance(value, list) and value else value
            if name in DOCUMENT_FIELDS:
                column, _ = _document_column(name, sample)
                if isinstance(value, list):
                    value = [_document_column(name, v)[1] for v in value]
                else:
                    value = _document_column(name, value)[1]
            else:
                column = _metadata_column(name, sample)
                if isinstance(sample, int | float) and not isinstance(sample, bool):
                    value = [float(v) for v in value] if isinstance(value, list) else float(value)
            conditions.append(_compare(column, operator, value))
    return conditions


def allowed_documents(
    org_id: uuid.UUID, collection_ids: Sequence[uuid.UUID], filters: dict[str, Any] | None
) -> Select[Any]:
    """Ids of the ready documents a search may return (permissions and filters applied)."""
    return select(Document.id).where(
        and_(
            Document.org_id == org_id,
            Document.collection_id.in_(list(collection_ids)),
            Document.status == DocumentStatus.ready,
            *filter_conditions(filters),
        )
    )
