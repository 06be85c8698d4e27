"""PostgreSQL's keyword index holds Tessera's own stems: a query finds what SQLite's index finds,
and migration 0017 turns rows written with the `english` configuration into exactly what the
indexer writes now (and back)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from tessera.cli import _alembic_config
from tessera.core.db.session import unit_of_work
from tessera.settings import Settings
from tests.conftest import BACKENDS
from tests.factories import SAMPLE_DOCS, create_collection, ingest_document, register

pytestmark = [
    pytest.mark.postgresql,
    pytest.mark.skipif("postgresql" not in BACKENDS, reason="TESSERA_TEST_BACKENDS leaves PostgreSQL out"),
]


@pytest.fixture
def backend() -> str:
    """Only PostgreSQL keeps its keyword index in tsvectors."""
    return "postgresql"


async def keyword_index(app: Any) -> tuple[list[Any], list[Any], list[Any]]:
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        rows = (await session.execute(sa.text("SELECT chunk_id, tsv::text, len FROM chunk_fts ORDER BY 1"))).all()
        terms = (await session.execute(sa.text("SELECT org_id, lexeme, df FROM chunk_fts_term ORDER BY 1, 2"))).all()
        stats = (await session.execute(sa.text("SELECT * FROM chunk_fts_stats ORDER BY 1"))).all()
    return list(rows), list(terms), list(stats)


async def test_the_index_holds_tessera_stems_and_the_migration_rebuilds_it(
    app: Any, client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await register(client)
    collection = await create_collection(client, user, "Nature")
    for name, content in SAMPLE_DOCS.items():
        await ingest_document(client, user, collection, name, content)

    written = await keyword_index(app)
    lexemes = " ".join(row[1] for row in written[0])
    # Porter's stems ("jays" → "jai", where PostgreSQL's Snowball says "jay"), Tessera's stopwords.
    assert "'jai'" in lexemes
    assert "'jay'" not in lexemes
    assert "'the'" not in lexemes
    # "oak's": Porter stems the lone "s" to nothing, which must not reach the tsquery.
    query = {"query": "an oak's trees living for centuries", "mode": "keyword"}
    found = await client.post("/api/v1/search", json=query, headers=user.headers)
    assert found.status_code == 200, found.text
    before = [(hit["chunk_id"], hit["score"]) for hit in found.json()["hits"]]
    assert found.json()["hits"][0]["heading_path"] == ["Trees", "Oaks"]

    config = _alembic_config(settings)
    await asyncio.to_thread(command.downgrade, config, "0016")  # type: ignore[arg-type]
    english = await keyword_index(app)
    assert "'jay'" in " ".join(row[1] for row in english[0])  # the `english` configuration's stems
    assert english != written

    await asyncio.to_thread(command.upgrade, config, "head")  # type: ignore[arg-type]
    assert await keyword_index(app) == written
    again = await client.post("/api/v1/search", json=query, headers=user.headers)
    assert [(hit["chunk_id"], hit["score"]) for hit in again.json()["hits"]] == before
