"""Keyword search: Okapi BM25 on both backends.

SQLite: the in-memory index of `postings.py`, or FTS5's `bm25()` while that index loads (and when
`retrieval.keyword_index` is `fts5`). PostgreSQL: BM25 computed in SQL from the tsvector table and
per-organization statistics (`chunk_fts_term`, `chunk_fts_stats`), with the same parameters and the
same words: the tsvectors hold Tessera's stems (`analysis.analyze`) under the `simple` configuration.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.session import is_sqlite
from tessera.core.retrieval.analysis import query_stems, query_terms
from tessera.core.retrieval.postings import HEADING_WEIGHT, K1, B, search_postings
from tessera.core.retrieval.runtime import retrieval_settings
from tessera.core.retrieval.scope import sqlite_scope

# SQLite: FTS5's BM25 with the heading column at half weight, and how many of the best matches the
# fast path scores before applying permissions (see search_keyword).
_BM25: sa.ColumnClause[Any] = sa.literal_column("bm25(chunk_fts, 1.0, 0.5)")
FAST_POOL = 400


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    score: float


async def search_keyword(
    session: AsyncSession,
    query: str,
    *,
    org_id: uuid.UUID,
    allowed_documents: sa.Select[Any],
    limit: int,
    collections: Sequence[uuid.UUID] | None = None,
) -> list[KeywordHit]:
    """The best `limit` chunks by BM25 among the allowed documents of one organization.

    `collections`, when given, says that `allowed_documents` is exactly the ready documents of
    those collections (no metadata filter), which lets SQLite's in-memory index mask by collection.
    """
    terms = query_terms(query)
    if not terms:
        return []
    if is_sqlite(session) and retrieval_settings().keyword_index == "memory":
        in_memory = await search_postings(
            session,
            org_id,
            query_stems(query),
            lambda: sqlite_scope(session, org_id, allowed_documents, collections),
            limit,
        )
        if in_memory is not None:
            return [KeywordHit(uuid.UUID(chunk), uuid.UUID(document), score) for chunk, document, score in in_memory]
    if is_sqlite(session):
        match = " OR ".join('"' + term.replace('"', "") + '"' for term in terms)
        allowed = sa.select(allowed_documents.subquery().c.id)
        # Fast path: the best `pool` matches by score alone (FTS5 then reads no column but the
        # score), then the permission filter on those few. Exact whenever `limit` of them are
        # allowed, or the pool held every match; otherwise the filtered query below decides.
        pool = max(4 * limit, FAST_POOL)
        best = (
            await session.execute(
                sa.select(sa.literal_column("rowid"), _BM25.label("score"))
                .select_from(sa.table("chunk_fts"))
                .where(sa.literal_column("chunk_fts").op("MATCH")(match))
                .order_by(sa.literal_column("score"))
                .limit(pool)
            )
        ).all()
        scores = {int(row[0]): float(row[1]) for row in best}
        fts = sa.table("chunk_fts", sa.column("rowid"), sa.column("chunk_id"), sa.column("document_id"))
        found = (
            await session.execute(
                sa.select(fts.c.rowid, fts.c.chunk_id, fts.c.document_id).where(
                    fts.c.rowid.in_(list(scores)), fts.c.document_id.in_(allowed)
                )
            )
        ).all()
        ranked = sorted(found, key=lambda row: (scores[int(row[0])], row[0]))[:limit]
        rows: list[Any] = [(row[1], row[2], scores[int(row[0])]) for row in ranked]
        if len(rows) < limit and len(best) == pool:
            rows = list(
                await session.execute(
                    sa.select(sa.column("chunk_id"), sa.column("document_id"), _BM25.label("score"))
                    .select_from(sa.table("chunk_fts"))
                    .where(
                        sa.literal_column("chunk_fts").op("MATCH")(match),
                        sa.column("document_id").in_(allowed),
                    )
                    .order_by(sa.literal_column("score"))
                    .limit(limit)
                )
            )
        # bm25() is lower-is-better; flip it so every score in Tessera is higher-is-better.
        return [KeywordHit(uuid.UUID(row[0]), uuid.UUID(row[1]), -float(row[2])) for row in rows]
    # The stems the index holds (see documents/indexing.py), not PostgreSQL's own; never empty (a
    # tsquery cannot hold an empty lexeme).
    stemmed = query_stems(query)
    if not stemmed:
        return []
    return await _bm25_postgres(session, stemmed, allowed_documents=allowed_documents, limit=limit)


def _allowed_sql(allowed_documents: sa.Select[Any]) -> str:
    """The allowed-documents subquery as PostgreSQL text; values are rendered as escaped literals."""
    compiled = allowed_documents.compile(
        dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


async def _bm25_postgres(
    session: AsyncSession, terms: list[str], *, allowed_documents: sa.Select[Any], limit: int
) -> list[KeywordHit]:
    statement = sa.text(
        f"""
        WITH q AS (
            SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('simple', :query))) AS lexeme
        ), allowed AS ({_allowed_sql(allowed_documents)}),
        c AS (
            SELECT f.chunk_id, f.document_id, f.org_id, f.tsv, f.len FROM chunk_fts f
            WHERE f.tsv @@ to_tsquery('simple', :tsquery)
              AND f.document_id IN (SELECT id FROM allowed)
        ),
        s AS (
            SELECT org_id, chunks::float8 AS n, greatest(total_len::float8 / greatest(chunks, 1), 1.0) AS avglen
            FROM chunk_fts_stats WHERE org_id IN (SELECT DISTINCT org_id FROM c)
        ),
        tf AS (
            SELECT c.chunk_id, c.document_id, c.org_id, c.len, u.lexeme,
                   (SELECT sum(CASE w WHEN 'A' THEN {HEADING_WEIGHT} ELSE 1.0 END) FROM unnest(u.weights) w) AS tf
            FROM c CROSS JOIN LATERAL unnest(c.tsv) u
            WHERE u.lexeme IN (SELECT lexeme FROM q)
        )
        SELECT tf.chunk_id, tf.document_id,
               sum(ln(1 + (s.n - t.df + 0.5) / (t.df + 0.5))
                   * tf.tf * {K1 + 1} / (tf.tf + {K1} * (1 - {B} + {B} * tf.len / s.avglen))) AS score
        FROM tf
        JOIN s ON s.org_id = tf.org_id
        JOIN chunk_fts_term t ON t.org_id = tf.org_id AND t.lexeme = tf.lexeme
        GROUP BY tf.chunk_id, tf.document_id
        ORDER BY score DESC, tf.chunk_id
        LIMIT :limit
        """
    )
    # A plain parameter, so the planner sees the terms (and picks the GIN index) as for any query.
    tsquery = " | ".join("'" + term.replace("'", "").replace("\\", "") + "'" for term in terms)
    rows = (await session.execute(statement, {"query": " ".join(terms), "tsquery": tsquery, "limit": limit})).all()
    return [KeywordHit(row[0], row[1], float(row[2])) for row in rows]
