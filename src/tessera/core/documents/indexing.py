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
from tessera.core.retrieval.analysis import analyze


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
            await _log_change(session, document_id, "add")
            return
        # Headings are weighted A and body text D, so ranking can tell a hit in a title apart. The
        # lexemes are Tessera's own stems (`analysis.analyze`: Porter, Tessera's stopwords), as in
        # SQLite's index, taken as they are by the `simple` configuration: both backends rank with
        # the same words (PostgreSQL's `english` Snowball stems cost 0.004 nDCG@10 on SciFact).
        await session.execute(
            text(
                "INSERT INTO chunk_fts (chunk_id, document_id, org_id, tsv, len) "
                "SELECT :chunk_id, :document_id, :org_id, tsv, "
                "(SELECT coalesce(sum(array_length(u.positions, 1)), 0) FROM unnest(tsv) u) "
                "FROM (SELECT setweight(to_tsvector('simple', :heading), 'A') || "
                "setweight(to_tsvector('simple', :body), 'D') AS tsv) made"
            ),
            [
                {
                    "chunk_id": c.id,
                    "document_id": document_id,
                    "org_id": target.org_id,
                    "heading": " ".join(analyze(_heading(c))),
                    "body": " ".join(analyze(c.text)),
                }
                for c in chunks
            ],
        )
        # BM25 statistics (see retrieval/keyword.py): document frequency per lexeme, chunk count and
        # total length per organization. Lexemes in order, so concurrent indexers lock rows alike.
        await session.execute(
            text(
                "INSERT INTO chunk_fts_term (org_id, lexeme, df) "
                "SELECT :org_id, u.lexeme, count(*) FROM chunk_fts f, unnest(f.tsv) u "
                "WHERE f.document_id = :document_id GROUP BY u.lexeme ORDER BY u.lexeme "
                "ON CONFLICT (org_id, lexeme) DO UPDATE SET df = chunk_fts_term.df + excluded.df"
            ),
            {"document_id": document_id, "org_id": target.org_id},
        )
        await session.execute(
            text(
                "INSERT INTO chunk_fts_stats (org_id, chunks, total_len) "
                "SELECT :org_id, count(*), coalesce(sum(len), 0) FROM chunk_fts WHERE document_id = :document_id "
                "ON CONFLICT (org_id) DO UPDATE SET chunks = chunk_fts_stats.chunks + excluded.chunks, "
                "total_len = chunk_fts_stats.total_len + excluded.total_len"
            ),
            {"document_id": document_id, "org_id": target.org_id},
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
                await _log_change(session, document_id, "remove")
            return
        ids = {"ids": list(document_ids)}
        await session.execute(
            text(
                "UPDATE chunk_fts_term t SET df = t.df - d.n FROM ("
                "SELECT f.org_id, u.lexeme, count(*) AS n FROM chunk_fts f, unnest(f.tsv) u "
                "WHERE f.document_id = ANY(:ids) GROUP BY f.org_id, u.lexeme ORDER BY u.lexeme) d "
                "WHERE t.org_id = d.org_id AND t.lexeme = d.lexeme"
            ),
            ids,
        )
        await session.execute(
            text(
                "UPDATE chunk_fts_stats s SET chunks = s.chunks - d.n, total_len = s.total_len - d.l FROM ("
                "SELECT org_id, count(*) AS n, coalesce(sum(len), 0) AS l FROM chunk_fts "
                "WHERE document_id = ANY(:ids) GROUP BY org_id) d WHERE s.org_id = d.org_id"
            ),
            ids,
        )
        await session.execute(text("DELETE FROM chunk_fts WHERE document_id = ANY(:ids)"), ids)


# The change log keeps this many entries; a process whose in-memory index is further behind
# reloads it whole (core/retrieval/postings.py).
CHANGE_LOG_KEEP = 100_000
_PRUNE_EVERY = 1_024


async def _log_change(session: AsyncSession, document_id: uuid.UUID, op: str) -> None:
    """SQLite: record that the full-text rows of a document were added (or replaced) or removed,
    in the same transaction, so in-memory keyword indexes can follow without rescanning FTS5."""
    seq = await session.scalar(
        text("INSERT INTO chunk_fts_log (document_id, op) VALUES (:document_id, :op) RETURNING seq"),
        {"document_id": document_id.hex, "op": op},
    )
    if seq is not None and int(seq) % _PRUNE_EVERY == 0:
        await session.execute(
            text("DELETE FROM chunk_fts_log WHERE seq <= :oldest"), {"oldest": int(seq) - CHANGE_LOG_KEEP}
        )


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
