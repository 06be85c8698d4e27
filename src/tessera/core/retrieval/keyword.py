"""Keyword search over the full-text index: FTS5 BM25 on SQLite, tsvector ranking on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
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
        allowed = allowed_documents.subquery()
        statement: Any = (
            sa.select(
                sa.column("chunk_id"),
                sa.column("document_id"),
                sa.literal_column("bm25(chunk_fts, 1.0, 0.5)").label("score"),
            )
            .select_from(sa.table("chunk_fts"))
            .where(
                sa.literal_column("chunk_fts").op("MATCH")(match),
                sa.column("document_id").in_(sa.select(allowed.c.id)),
            )
            .order_by(sa.literal_column("score"))
            .limit(limit)
        )
        rows = (await session.execute(statement)).all()
        # bm25() is lower-is-better; flip it so every score in Tessera is higher-is-better.
        return [KeywordHit(uuid.UUID(row[0]), uuid.UUID(row[1]), -float(row[2])) for row in rows]
    tsquery = sa.func.to_tsquery("english", " | ".join(t.replace("'", "") for t in terms))
    fts = sa.table("chunk_fts", sa.column("chunk_id", sa.Uuid()), sa.column("document_id", sa.Uuid()), sa.column("tsv"))
    rank = sa.func.ts_rank_cd(fts.c.tsv, tsquery, 1).label("score")
    ranked: sa.Select[Any] = (
        sa.select(fts.c.chunk_id, fts.c.document_id, rank)
        .where(fts.c.tsv.op("@@")(tsquery), fts.c.document_id.in_(allowed_documents.scalar_subquery()))
        .order_by(rank.desc())
        .limit(limit)
    )
    rows = (await session.execute(ranked)).all()
    return [KeywordHit(row[0], row[1], float(row[2])) for row in rows]
