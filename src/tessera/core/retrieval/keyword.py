"""Keyword search over the full-text index: FTS5 BM25 on SQLite, tsvector ranking on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.session import is_sqlite

# English function words: FTS5 keeps every token, and a query OR-ing "the" or "of" would match
# nearly every chunk (BM25 gives them little weight, but they cost the scan).
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 64
# SQLite: FTS5's BM25 with the heading column at half weight, and how many of the best matches the
# fast path scores before applying permissions (see search_keyword).
_BM25: sa.ColumnClause[Any] = sa.literal_column("bm25(chunk_fts, 1.0, 0.5)")
FAST_POOL = 400


@dataclass(frozen=True)
class KeywordHit:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    score: float


def query_terms(query: str) -> list[str]:
    seen: dict[str, None] = {}
    for word in WORD.findall(query.lower()):
        if word not in STOPWORDS and len(word) < 64:
            seen.setdefault(word, None)
    terms = list(seen)
    if not terms:  # a query of stopwords only still deserves an answer
        terms = list(dict.fromkeys(w for w in WORD.findall(query.lower()) if len(w) < 64))
    return terms[:MAX_TERMS]


async def search_keyword(
    session: AsyncSession, query: str, *, allowed_documents: sa.Select[Any], limit: int
) -> list[KeywordHit]:
    terms = query_terms(query)
    if not terms:
        return []
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
    return await _bm25_postgres(session, terms, allowed_documents=allowed_documents, limit=limit)


# Okapi BM25 as FTS5 computes it (k1 1.2, b 0.75); a heading occurrence counts half a body one,
# like the column weights given to bm25() on SQLite, so both backends rank alike.
K1 = 1.2
B = 0.75
HEADING_WEIGHT = 0.5


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
            SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', :query))) AS lexeme
        ), allowed AS ({_allowed_sql(allowed_documents)}),
        c AS (
            SELECT f.chunk_id, f.document_id, f.org_id, f.tsv, f.len FROM chunk_fts f
            WHERE f.tsv @@ to_tsquery('english', :tsquery) AND f.document_id IN (SELECT id FROM allowed)
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
    tsquery = " | ".join(term.replace("'", "").replace("\\", "") for term in terms)
    rows = (await session.execute(statement, {"query": " ".join(terms), "tsquery": tsquery, "limit": limit})).all()
    return [KeywordHit(row[0], row[1], float(row[2])) for row in rows]
