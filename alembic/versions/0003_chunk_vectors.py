"""chunk vectors: embeddings of chunks, one row per chunk and model

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Backend-specific, like chunk_fts (see core/retrieval/vectors.py). Not a model.
    if op.get_bind().dialect.name == "sqlite":
        # float32 little-endian bytes, searched in process (numpy) from an in-memory copy. No
        # cascades: rows leave only through the indexer, which counts deletes for those copies.
        op.execute(
            "CREATE TABLE chunk_vector ("
            "chunk_id CHAR(32) NOT NULL PRIMARY KEY, "
            "document_id CHAR(32) NOT NULL, "
            "org_id CHAR(32) NOT NULL, model VARCHAR(200) NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL)"
        )
        op.execute("CREATE INDEX ix_chunk_vector_org_model ON chunk_vector (org_id, model)")
        op.execute("CREATE INDEX ix_chunk_vector_document_id ON chunk_vector (document_id)")
        # Bumped by every delete, so in-memory copies know to reload rather than only append.
        op.execute(
            "CREATE TABLE chunk_vector_epoch (org_id CHAR(32) NOT NULL, model VARCHAR(200) NOT NULL, "
            "deletes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (org_id, model))"
        )
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        "CREATE TABLE chunk_vector ("
        "chunk_id uuid PRIMARY KEY REFERENCES document_chunk (id) ON DELETE CASCADE, "
        "document_id uuid NOT NULL REFERENCES document (id) ON DELETE CASCADE, "
        "org_id uuid NOT NULL, model varchar(200) NOT NULL, dim integer NOT NULL, vector vector NOT NULL)"
    )
    op.execute("CREATE INDEX ix_chunk_vector_org_model ON chunk_vector (org_id, model)")
    op.execute("CREATE INDEX ix_chunk_vector_document_id ON chunk_vector (document_id)")
    # HNSW indexes are per model and dimension (partial expression indexes), made on first use.


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunk_vector_epoch")
    op.execute("DROP TABLE IF EXISTS chunk_vector")
