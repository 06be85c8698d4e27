"""keyword change log (SQLite): which documents the full-text index gained or lost, in order

The in-memory BM25 index of each process (core/retrieval/postings.py) follows this log to stay in
step with `chunk_fts` without rescanning it. PostgreSQL ranks in the database and needs no log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # AUTOINCREMENT: a sequence number is never reused, even after the newest entries are pruned.
    op.execute(
        "CREATE TABLE chunk_fts_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "document_id CHAR(32) NOT NULL, op VARCHAR(8) NOT NULL)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunk_fts_log")
