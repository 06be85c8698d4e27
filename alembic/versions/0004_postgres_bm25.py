"""BM25 statistics for PostgreSQL's full-text index: chunk lengths, document frequencies per term

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite's FTS5 keeps these itself (bm25()); PostgreSQL's ts_rank_cd has no IDF, so Tessera keeps
    # the statistics BM25 needs, per organization, in the transaction that indexes a document.
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("ALTER TABLE chunk_fts ADD COLUMN org_id uuid")
    op.execute("ALTER TABLE chunk_fts ADD COLUMN len integer NOT NULL DEFAULT 0")
    op.execute(
        "CREATE TABLE chunk_fts_term (org_id uuid NOT NULL, lexeme text NOT NULL, df integer NOT NULL, "
        "PRIMARY KEY (org_id, lexeme))"
    )
    op.execute(
        "CREATE TABLE chunk_fts_stats (org_id uuid PRIMARY KEY, chunks bigint NOT NULL, total_len bigint NOT NULL)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TABLE IF EXISTS chunk_fts_stats")
    op.execute("DROP TABLE IF EXISTS chunk_fts_term")
    op.execute("ALTER TABLE chunk_fts DROP COLUMN len")
    op.execute("ALTER TABLE chunk_fts DROP COLUMN org_id")
