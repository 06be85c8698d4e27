"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tessera.cli import _alembic_config
from tessera.core.db.base import include_name
from tessera.models import Base
from tests.conftest import test_settings as make_settings


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": False,
            "target_metadata": Base.metadata,
            "include_name": include_name,
        },
    )
    differences: list[Any] = compare_metadata(context, Base.metadata)
    return differences


async def test_migrated_schema_matches_the_models(engine: AsyncEngine) -> None:
    # `engine` points at a copy of the template that `alembic upgrade head` built.
    assert {"user_account", "organization", "audit_event"} <= set(Base.metadata.tables)
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)

    assert differences == [], "run `alembic revision --autogenerate`; the models and migrations differ"


async def test_migrations_are_at_head(engine: AsyncEngine) -> None:
    script = ScriptDirectory.from_config(_alembic_config(make_settings()))  # type: ignore[arg-type]

    async with engine.connect() as connection:
        current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_heads())

    heads = script.get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}; merge them"
    assert set(current) == set(heads)
