"""Which in-memory rows a SQLite search may return: the caller's documents, as a boolean mask.

Both in-memory indexes (the vector matrix and the keyword postings) keep, per row, a code for its
document and for its document's collection. Without metadata filters a scope is collections less
the few documents of them that are not ready, so a query never lists every allowed document.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.documents.models import Document, DocumentStatus


class RowCodes(Protocol):
    """Per row: its document's code and its collection's code, and the code of each name."""

    @property
    def doc_codes(self) -> np.ndarray[Any, np.dtype[np.int32]]: ...
    @property
    def doc_index(self) -> dict[str, int]: ...
    @property
    def collection_codes(self) -> np.ndarray[Any, np.dtype[np.int32]]: ...
    @property
    def collection_index(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Scope:
    """Which rows a search may return: a set of documents, or collections less some documents."""

    documents: set[str] | None = None
    collections: Sequence[str] = ()
    excluded: set[str] = field(default_factory=set)


def scope_mask(rows: RowCodes, scope: Scope) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    """True for the rows in scope; None when no row is."""
    if scope.documents is not None:
        codes = [rows.doc_index[d] for d in scope.documents if d in rows.doc_index]
        return np.isin(rows.doc_codes, np.asarray(codes, np.int32)) if codes else None
    collections = [rows.collection_index[c] for c in scope.collections if c in rows.collection_index]
    if not collections:
        return None
    mask = np.isin(rows.collection_codes, np.asarray(collections, np.int32))
    excluded = [rows.doc_index[d] for d in scope.excluded if d in rows.doc_index]
    if excluded:
        mask &= ~np.isin(rows.doc_codes, np.asarray(excluded, np.int32))
    return mask


async def sqlite_scope(
    session: AsyncSession, org_id: uuid.UUID, allowed_documents: sa.Select[Any], collections: Sequence[uuid.UUID] | None
) -> Scope:
    """`collections`, when given, says that `allowed_documents` is exactly the ready documents of
    those collections (no metadata filter); otherwise the allowed documents are listed."""
    if collections is None:
        return Scope(documents={row[0].hex for row in await session.execute(allowed_documents)})
    if not collections:
        return Scope(collections=())
    names = [c.hex for c in collections]
    # Not-ready documents are few (being processed, failed): list those rather than the ready ones.
    not_ready = await session.execute(
        sa.select(Document.id).where(
            Document.org_id == org_id, Document.status != DocumentStatus.ready, Document.collection_id.in_(collections)
        )
    )
    return Scope(collections=names, excluded={row[0].hex for row in not_ready})
