"""PostgreSQL's full-text rows hold Tessera's own stems (Porter, Tessera's stopwords) under the
`simple` configuration, as SQLite's keyword index does, instead of the `english` configuration's
Snowball stems: both backends rank with the same words. Existing rows are rebuilt from the chunks,
and the BM25 statistics (`chunk_fts_term`, `chunk_fts_stats`) recounted.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1_000
LENGTH = "(SELECT coalesce(sum(array_length(u.positions, 1)), 0) FROM unnest(tsv) u)"


def _recount_statistics() -> None:
    op.execute("UPDATE chunk_fts SET len = " + LENGTH)
    op.execute("DELETE FROM chunk_fts_term")
    op.execute(
        "INSERT INTO chunk_fts_term (org_id, lexeme, df) "
        "SELECT f.org_id, u.lexeme, count(*) FROM chunk_fts f, unnest(f.tsv) u GROUP BY f.org_id, u.lexeme"
    )
    op.execute("DELETE FROM chunk_fts_stats")
    op.execute(
        "INSERT INTO chunk_fts_stats (org_id, chunks, total_len) "
        "SELECT org_id, count(*), coalesce(sum(len), 0) FROM chunk_fts GROUP BY org_id"
    )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return
    from tessera.core.retrieval.analysis import analyze

    last = None
    while True:
        page = bind.execute(
            sa.text(
                "SELECT c.id, c.text, (SELECT string_agg(value, ' / ') FROM jsonb_array_elements_text(c.heading_path)) "
                "FROM document_chunk c JOIN chunk_fts f ON f.chunk_id = c.id "
                + ("WHERE c.id > :last " if last is not None else "")
                + "ORDER BY c.id LIMIT :batch"
            ),
            {"last": last, "batch": BATCH} if last is not None else {"batch": BATCH},
        ).all()
        if not page:
            break
        bind.execute(
            sa.text(
                "UPDATE chunk_fts SET tsv = setweight(to_tsvector('simple', :heading), 'A') || "
                "setweight(to_tsvector('simple', :body), 'D') WHERE chunk_id = :chunk_id"
            ),
            [
                {"chunk_id": chunk_id, "heading": " ".join(analyze(heading or "")), "body": " ".join(analyze(body))}
                for chunk_id, body, heading in page
            ],
        )
        last = page[-1][0]
    _recount_statistics()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute(
        "UPDATE chunk_fts f SET tsv = setweight(to_tsvector('english', coalesce(h.heading, '')), 'A') || "
        "setweight(to_tsvector('english', c.text), 'D') "
        "FROM document_chunk c CROSS JOIN LATERAL (SELECT string_agg(value, ' / ') AS heading "
        "FROM jsonb_array_elements_text(c.heading_path)) h WHERE f.chunk_id = c.id"
    )
    _recount_statistics()
