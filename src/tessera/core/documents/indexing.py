"""The hand-off from ingestion to search: an `Indexer` receives a document's chunks.

The pipeline's last stage calls every registered indexer inside the same transaction that marks
the document ready, so an index never holds chunks of a document that is not ready, and a retried
stage replaces what an earlier attempt wrote. The full-text indexer here is the default; the
retrieval work adds vector indexes as further indexers.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.session import is_sqlite


@dataclass(frozen=True)
class IndexTarget:
    document_id: uuid.UUID
    org_id: uuid.UUID


class Indexer(Protocol):
    name: str

    async def prepare(self, target: IndexTarget, chunks: Sequence[Any]) -> Any:
        """Slow work outside any transaction (embedding); its result goes to `index_document`."""
        ...

    async def index_document(
        self, session: AsyncSession, target: IndexTarget, chunks: Sequence[Any], prepared: Any
    ) -> None:
        """Replace whatever this index holds for the document with `chunks` (`id`, `text`,
        `heading_path` each), in the caller's transaction."""
        ...

    async def remove_documents(self, session: AsyncSession, document_ids: Sequence[uuid.UUID]) -> None: ...

    async def update_metadata(self, session: AsyncSession, document_id: uuid.UUID, metadata: dict[str, Any]) -> None:
        """The document's metadata changed: refresh what the index keeps of it (for filters)."""
        ...


@dataclass(frozen=True)
class TextHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    score: float


def _heading(chunk: Any) -> str:
    return " / ".join(chunk.heading_path)


class FullTextIndexer:
    """SQLite FTS5 (BM25) or a PostgreSQL tsvector table with a GIN index."""

    name = "full_text"

    async def prepare(self, target: IndexTarget, chunks: Sequence[Any]) -> None:
        return None

    async def index_document(
        self, session: AsyncSession, target: IndexTarget, chunks: Sequence[Any], prepared: Any
    ) -> None:
        document_id = target.document_id
        await self.remove_documents(session, [document_id])
        if not chunks:
            return
        if is_sqlite(session):
            rows = [
                {"text": c.text, "heading": _heading(c), "chunk_id": c.id.hex, "document_id": document_id.hex}
                for c in chunks
            ]
            await session.execute(
                text(
                    "INSERT INTO chunk_fts (text, heading, chunk_id, document_id) "
                    "VALUES (:text, :heading, :chunk_id, :document_id)"
                ),
                rows,
            )
            return
        # Headings weigh more than body text (A vs D) so a hit in a chapter title ranks higher.
        await session.execute(
            text(
                "INSERT INTO chunk_fts (chunk_id, document_id, tsv) "
                "SELECT c.id, c.document_id, "
                "setweight(to_tsvector('english', coalesce(h.heading, '')), 'A') || "
                "setweight(to_tsvector('english', c.text), 'D') "
                "FROM document_chunk c "
                "CROSS JOIN LATERAL (SELECT string_agg(value, ' / ') AS heading "
                "FROM jsonb_array_elements_text(c.heading_path)) h "
                "WHERE c.document_id = :document_id"
            ),
            {"document_id": document_id},
        )

    async def update_metadata(self, session: AsyncSession, document_id: uuid.UUID, metadata: dict[str, Any]) -> None:
        # Full-text entries hold no metadata: filters join the document row.
        return None

    async def remove_documents(self, session: AsyncSession, document_ids: Sequence[uuid.UUID]) -> None:
        if not document_ids:
            return
        if is_sqlite(session):
            for document_id in document_ids:
                await session.execute(
                    text("DELETE FROM chunk_fts WHERE document_id = :document_id"), {"document_id": document_id.hex}
                )
            return
        await session.execute(text("DELETE FROM chunk_fts WHERE document_id = ANY(:ids)"), {"ids": list(document_ids)})

    async def search(
        self, session: AsyncSession, query: str, *, document_ids: Sequence[uuid.UUID] | None = None, limit: int = 10
    ) -> list[TextHit]:
        """Best chunks for a plain-words query (used by tests and the CLI until the search API lands)."""
        words = [w for w in "".join(ch if ch.isalnum() else " " for ch in query).split() if w]
        if not words:
            return []
        if is_sqlite(session):
            match = " OR ".join(f'"{w}"' for w in words)
            result = await session.execute(
                text(
                    "SELECT chunk_id, document_id, bm25(chunk_fts, 1.0, 2.0) AS score FROM chunk_fts "
                    "WHERE chunk_fts MATCH :match ORDER BY score LIMIT :limit"
                ),
                {"match": match, "limit": limit * 4 if document_ids else limit},
            )
            hits = [TextHit(uuid.UUID(row[0]), uuid.UUID(row[1]), -float(row[2])) for row in result]
        else:
            result = await session.execute(
                text(
                    "SELECT chunk_id, document_id, ts_rank_cd(tsv, q) AS score "
                    "FROM chunk_fts, websearch_to_tsquery('english', :query) q "
                    "WHERE tsv @@ q ORDER BY score DESC LIMIT :limit"
                ),
                {"query": " or ".join(words), "limit": limit * 4 if document_ids else limit},
            )
            hits = [TextHit(row[0], row[1], float(row[2])) for row in result]
        if document_ids is not None:
            allowed = set(document_ids)
            hits = [hit for hit in hits if hit.document_id in allowed]
        return hits[:limit]


INDEXERS: list[Indexer] = [FullTextIndexer()]
# Areas that add indexers (vectors), imported on first use so this module imports none of them.
INDEXER_MODULES: tuple[str, ...] = ("tessera.core.retrieval.vectors",)
_loaded = False


def indexers() -> list[Indexer]:
    """Every registered indexer, the modules that register them imported on the first call."""
    global _loaded
    if not _loaded:
        for name in INDEXER_MODULES:
            importlib.import_module(name)
        _loaded = True
    return INDEXERS


def register_indexer(indexer: Indexer) -> None:
    if all(existing.name != indexer.name for existing in INDEXERS):
        INDEXERS.append(indexer)
