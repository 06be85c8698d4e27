"""chunk vectors keep the vectors of a long chunk's windows (float16), for max-window scoring

Existing rows get NULL: they are scored by their averaged vector alone until they are embedded
again (`POST /api/v1/collections/{id}/reindex` with `"force": true`).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 13:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    column = "BLOB" if op.get_bind().dialect.name == "sqlite" else "bytea"
    op.execute(f"ALTER TABLE chunk_vector ADD COLUMN windows {column}")


def downgrade() -> None:
    op.execute("ALTER TABLE chunk_vector DROP COLUMN windows")
