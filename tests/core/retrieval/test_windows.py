"""Long chunks scored by their best window as well as their averaged vector, on both backends.

The fake embedder stands in for the model's window with `max_tokens` words: a chunk longer than
that is embedded in windows, and `chunk_vector.windows` keeps them. Every score is checked against
the formula computed here from the stored rows."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from tessera.core.embeddings.fake import FakeEmbedder
from tessera.core.retrieval.portability import _vector_column
from tessera.core.retrieval.vectors import chunk_vector, decode_windows
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, create_collection, ingest_document, register

WINDOW_WORDS = 16
QUERY = "volcanic basalt lava eruption"
# One chunk of three 16-word windows; only the last is about the query.
LONG = (
    "Grey herons wade through the shallow marsh at dawn and spear fish with a sudden stab. "
    "Reed warblers sing from tall stems while otters hunt eels along muddy banks of the river. "
    "Then volcanic basalt and lava from an eruption reached the valley and cooled into rock."
)
# A short chunk about the query throughout, but less closely than the long chunk's last window.
SHORT = "Volcanic basalt and lava: a field guide to the eruption sites of Iceland."


def windowed_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Windows of `WINDOW_WORDS` words, and each test document one chunk."""
    return make_settings(
        database_url=database_url,
        data_dir=data_dir,
        embeddings={"provider": "fake", "max_tokens": WINDOW_WORDS},
        documents={"chunk_size": 200, "chunk_overlap": 0},
        **overrides,
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return windowed_settings(database_url, tmp_path / "data")


async def semantic(client: httpx.AsyncClient, user: SignedIn, collection: str) -> list[tuple[str, float]]:
    response = await client.post(
        "/api/v1/search",
        json={"query": QUERY, "mode": "semantic", "collections": [collection], "limit": 10},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    return [(hit["document_id"], hit["score"]) for hit in response.json()["hits"]]


async def stored(app: object, document_id: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The averaged vector and the windows `chunk_vector` holds for the document's one chunk."""
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        rows = (
            await session.execute(
                sa.select(_vector_column(session), chunk_vector.c.windows, chunk_vector.c.dim).where(
                    chunk_vector.c.document_id == uuid.UUID(document_id)
                )
            )
        ).all()
    assert len(rows) == 1
    vector, windows, dim = rows[0]
    averaged = np.frombuffer(vector, "<f4") if isinstance(vector, bytes) else np.asarray(vector, np.float32)
    return averaged, None if windows is None else decode_windows(bytes(windows), dim)


async def test_a_long_chunk_scores_by_its_best_window_as_well(
    client: httpx.AsyncClient, app: object, settings: Settings
) -> None:
    user = await register(client)
    collection = await create_collection(client, user, "Notes")
    long_id = await ingest_document(client, user, collection, "marsh.md", LONG.encode())
    short_id = await ingest_document(client, user, collection, "tiles.md", SHORT.encode())

    averaged, windows = await stored(app, long_id)
    assert windows is not None
    assert windows.shape == (3, 64)
    short_vector, short_windows = await stored(app, short_id)
    assert short_windows is None  # one window: nothing more is kept
    query = FakeEmbedder(64).embed_sync([QUERY])[0]
    by_average = float(averaged @ query)
    best_window = float(np.max(windows @ query))
    short_score = float(short_vector @ query)
    weight = settings.retrieval.window_weight
    assert weight == 0.5
    # Averaged alone, the long chunk would rank below the short one; its last window lifts it.
    assert by_average < short_score < (1 - weight) * by_average + weight * best_window

    hits = await semantic(client, user, collection)
    assert [document for document, _ in hits] == [long_id, short_id]
    assert hits[0][1] == pytest.approx((1 - weight) * by_average + weight * best_window, abs=2e-3)
    assert hits[1][1] == pytest.approx(short_score, abs=1e-5)


async def test_window_weight_zero_ranks_by_the_averaged_vectors(database_url: str, tmp_path: Path) -> None:
    from tessera.main import create_app

    settings = windowed_settings(database_url, tmp_path / "data", retrieval={"window_weight": 0})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            user = await register(client)
            collection = await create_collection(client, user, "Notes")
            long_id = await ingest_document(client, user, collection, "marsh.md", LONG.encode())
            short_id = await ingest_document(client, user, collection, "tiles.md", SHORT.encode())
            averaged, windows = await stored(application, long_id)
            assert windows is not None  # still stored: the setting only changes the scoring
            hits = await semantic(client, user, collection)
    query = FakeEmbedder(64).embed_sync([QUERY])[0]
    assert [document for document, _ in hits] == [short_id, long_id]
    assert hits[1][1] == pytest.approx(float(averaged @ query), abs=1e-5)


async def test_another_organizations_windows_never_score(
    client: httpx.AsyncClient, app: object, settings: Settings
) -> None:
    owner = await register(client)
    other = await register(client)
    mine = await create_collection(client, owner, "Mine")
    theirs = await create_collection(client, other, "Theirs")
    await ingest_document(client, owner, mine, "marsh.md", LONG.encode())
    await ingest_document(client, other, theirs, "marsh.md", LONG.encode())

    hits = await semantic(client, other, theirs)
    assert len(hits) == 1
    response = await client.post(
        "/api/v1/search", json={"query": QUERY, "mode": "semantic", "collections": [mine]}, headers=other.headers
    )
    assert response.status_code == 404
