"""The SQLite HNSW index above `hnsw_threshold` rows: it answers as the exact search does, never
returns a deleted chunk, survives a restart, distrusts a damaged or outdated saved copy, keeps
every scope, and searches stay exact while it is not ready.

Each result is checked against an exact search computed here from the `chunk_vector` table."""

from __future__ import annotations

import json
import random
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from tessera.core.retrieval import vectors
from tessera.core.retrieval.filters import allowed_documents
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.vectors import VectorIndexStatus, search_vectors, vector_index_status
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, add_member, create_collection, ingest_document, login, register

pytestmark = pytest.mark.sqlite

THRESHOLD = 50
LIMIT = 5
WORDS = [f"{a}{b}" for a in ("tal", "mor", "ven", "sil", "dra", "pek", "lun", "qua", "bri", "zof") for b in "aeiou"]


@pytest.fixture
def backend() -> str:
    """The index is SQLite's own (PostgreSQL has pgvector's)."""
    return "sqlite"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return index_settings(database_url, tmp_path / "data")


def index_settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=data_dir,
        # ef above the row count: on a graph this small the index must find exactly the exact top.
        retrieval={"hnsw_threshold": THRESHOLD, "hnsw_ef_search": 256},
        documents={"chunk_size": 32, "chunk_overlap": 0},
    )


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Every test starts as a new process would, and leaves no index work behind."""
    vectors.wait_for_vector_indexes()
    vectors._matrices.clear()
    yield
    assert vectors.wait_for_vector_indexes(timeout=60)
    vectors._matrices.clear()


def paper(number: int, paragraphs: int = 4) -> bytes:
    """A markdown document of made-up words (about 8 chunks at 32 tokens), its own by `number`."""
    rng = random.Random(number)
    lines = [f"# Paper {number}"]
    for part in range(paragraphs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(8)).capitalize() + "." for _ in range(4)]
        lines += ["", f"## Part {part}", "", " ".join(sentences)]
    return "\n".join(lines).encode()


def text_of(number: int) -> str:
    return paper(number).decode().split("## Part 1")[0]


class Library:
    """A signed-in user's collections and documents, and searches checked against the exact ones."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, user: SignedIn) -> None:
        self.app = app
        self.client = client
        self.user = user
        self.org_id = uuid.UUID(user.org_id)
        self.settings: Settings = app.state.settings
        self.embedder = get_embedder(self.settings.embeddings)
        self.documents: dict[int, str] = {}

    async def add(self, collection_id: str, numbers: range | list[int], metadata: str = "{}") -> None:
        for number in numbers:
            self.documents[number] = await ingest_document(
                self.client, self.user, collection_id, f"paper-{number}.md", paper(number), metadata
            )

    async def delete(self, number: int) -> None:
        document_id = self.documents.pop(number)
        response = await self.client.delete(f"/api/v1/documents/{document_id}", headers=self.user.headers)
        assert response.status_code == 204, response.text

    async def search(
        self, text: str, collections: list[str], *, filters: dict[str, Any] | None = None, limit: int = LIMIT
    ) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The product's vector search and the exact answer, as (chunk id, score) lists."""
        query = (await self.embedder.embed([text], kind="query"))[0]
        collection_ids = [uuid.UUID(c) for c in collections]
        allowed = allowed_documents(self.org_id, collection_ids, filters)
        async with self.app.state.sessionmaker() as session:
            hits = await search_vectors(
                session, org_id=self.org_id, model=self.embedder.name, query=query, allowed_documents=allowed,
                limit=limit, collections=None if filters else collection_ids,
            )  # fmt: skip
            allowed_ids = {row[0].hex for row in await session.execute(allowed)}
            rows = (
                await session.execute(
                    sa.text("SELECT chunk_id, document_id, vector FROM chunk_vector WHERE org_id = :o AND model = :m"),
                    {"o": self.org_id.hex, "m": self.embedder.name},
                )
            ).all()
        kept = [(chunk, np.frombuffer(blob, dtype="<f4")) for chunk, document, blob in rows if document in allowed_ids]
        scores = [float(vector @ query) for _, vector in kept]
        exact = sorted(((uuid.UUID(chunk).hex, score) for (chunk, _), score in zip(kept, scores, strict=True)),
                       key=lambda pair: -pair[1])[:limit]  # fmt: skip
        return [(hit.chunk_id.hex, hit.score) for hit in hits], exact

    async def check(self, text: str, collections: list[str], **options: Any) -> list[str]:
        """Search and assert the answer is the exact one; returns the chunk ids found."""
        found, exact = await self.search(text, collections, **options)
        assert [chunk for chunk, _ in found] == [chunk for chunk, _ in exact]
        assert [round(score, 4) for _, score in found] == [round(score, 4) for _, score in exact]
        return [chunk for chunk, _ in found]

    def status(self) -> VectorIndexStatus:
        session = self.app.state.sessionmaker()
        status = vector_index_status(session, self.org_id, self.embedder.name)
        assert status is not None
        return status

    def index_files(self) -> tuple[Path, Path]:
        files = sorted((self.settings.data_dir / "vector-index").glob(f"{self.org_id.hex}-*"))
        assert [f.suffix for f in files] == [".json", ".usearch"], files
        return files[1], files[0]

    async def chunks_of(self, number: int) -> set[str]:
        async with self.app.state.sessionmaker() as session:
            rows = await session.execute(
                sa.text("SELECT chunk_id FROM chunk_vector WHERE document_id = :d"),
                {"d": uuid.UUID(self.documents[number]).hex},
            )
            return {uuid.UUID(row[0]).hex for row in rows}


def ready(library: Library) -> VectorIndexStatus:
    assert vectors.wait_for_vector_indexes(timeout=60)
    return library.status()


@pytest.fixture
async def library(app: FastAPI, client: httpx.AsyncClient) -> Library:
    return Library(app, client, await register(client))


async def test_index_answers_as_the_exact_search_once_built(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    assert vector_index_status(library.app.state.sessionmaker(), library.org_id, library.embedder.name) is None

    # The first search above the threshold starts the build and does not wait for it.
    await library.check(text_of(3), [collection])
    first = library.status()
    assert first.rows > THRESHOLD
    assert (first.exact_searches, first.approximate_searches) == (1, 0)

    status = ready(library)
    assert (status.ready, status.source, status.builds) == (True, "built", 1)
    assert status.indexed_rows == status.rows
    for number in range(8):
        await library.check(text_of(number), [collection])
        await library.check(text_of(number), [collection], filters={"doc_type": "markdown"})
    assert library.status().approximate_searches == 16
    index, sidecar = library.index_files()
    assert index.stat().st_size > 0
    assert json.loads(sidecar.read_text())["count"] == status.rows


async def test_rows_written_after_the_build_are_found_at_once(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    await library.check(text_of(0), [collection])
    indexed = ready(library).indexed_rows

    await library.add(collection, [8, 9])
    found = await library.check(text_of(9), [collection])

    assert set(found) & await library.chunks_of(9)
    status = library.status()
    assert status.ready
    assert status.indexed_rows == indexed < status.rows  # scored exactly, not yet indexed
    assert status.approximate_searches == 1


async def test_deleted_chunks_never_come_back_and_many_deletes_rebuild(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(10))
    await library.check(text_of(0), [collection])
    assert ready(library).builds == 1

    gone = await library.chunks_of(4)
    await library.delete(4)
    assert not set(await library.check(text_of(4), [collection])) & gone  # at once: exact until re-checked
    status = ready(library)
    assert (status.ready, status.builds) == (True, 1)  # a few dead keys are skipped, not rebuilt
    assert not set(await library.check(text_of(4), [collection])) & gone
    assert library.status().approximate_searches >= 1

    for number in (5, 6):
        gone |= await library.chunks_of(number)
        await library.delete(number)
    await library.check(text_of(5), [collection])
    status = ready(library)
    assert (status.ready, status.builds) == (True, 2)  # over a fifth of the keys dead: built again
    for number in (4, 5, 6, 7):
        assert not set(await library.check(text_of(number), [collection])) & gone


async def test_a_restart_loads_the_saved_index_and_adds_what_was_written_since(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    await library.check(text_of(0), [collection])
    saved = ready(library).rows

    vectors._matrices.clear()  # the process restarts ...
    await library.add(collection, [8, 9])  # ... after rows were written that the saved index lacks
    await library.check(text_of(8), [collection])

    status = ready(library)
    assert (status.ready, status.source, status.builds) == (True, "loaded", 0)
    assert status.indexed_rows == status.rows > saved
    assert set(await library.check(text_of(9), [collection])) & await library.chunks_of(9)
    assert json.loads(library.index_files()[1].read_text())["count"] == status.rows


def damage_sidecar_json(index: Path, sidecar: Path) -> None:
    sidecar.write_text("{not json")


def damage_sidecar_model(index: Path, sidecar: Path) -> None:
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "model": "another-model"}))


def damage_sidecar_missing(index: Path, sidecar: Path) -> None:
    sidecar.unlink()


def damage_index_truncated(index: Path, sidecar: Path) -> None:
    index.write_bytes(index.read_bytes()[: index.stat().st_size // 2])


def damage_index_bytes(index: Path, sidecar: Path) -> None:
    data = bytearray(index.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    index.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [damage_sidecar_json, damage_sidecar_model, damage_sidecar_missing, damage_index_truncated, damage_index_bytes],
)
async def test_a_damaged_or_mismatched_saved_index_is_rebuilt(library: Library, damage: Any) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    await library.check(text_of(0), [collection])
    ready(library)

    vectors._matrices.clear()
    damage(*library.index_files())
    await library.check(text_of(1), [collection])

    status = ready(library)
    assert (status.ready, status.source, status.builds) == (True, "built", 1)
    for number in range(8):
        await library.check(text_of(number), [collection])


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http


async def test_a_saved_index_newer_than_a_restored_database_is_not_trusted(
    library: Library, settings: Settings, tmp_path: Path
) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(10))
    backup = tmp_path / "backup.db"
    source = sqlite3.connect(settings.resolved_database_url.removeprefix("sqlite+aiosqlite:///"))
    with sqlite3.connect(backup) as target:
        source.backup(target)
    source.close()
    await library.add(collection, [10, 11])  # rows the backup lacks ...
    await library.check(text_of(0), [collection])
    ready(library)  # ... in the saved index
    stale = await library.chunks_of(10) | await library.chunks_of(11)

    # The database is restored from the backup, the data dir (and its saved index) is not.
    vectors._matrices.clear()
    restored = index_settings(f"sqlite+aiosqlite:///{backup}", settings.data_dir)
    async with serving(restored) as (app, client):
        token = (await login(client, library.user.email)).json()["access_token"]
        library = Library(app, client, library.user)
        library.user.access_token = token
        library.documents = {}
        await library.add(collection, [20, 21])  # new rows take the rowids the lost ones had
        await library.check(text_of(20), [collection])
        status = ready(library)
        # The saved vectors of those rowids were replaced (too few to rebuild for).
        assert (status.ready, status.source) == (True, "loaded")
        assert status.indexed_rows == status.rows
        for number in [*range(10), 20, 21, 10, 11]:
            assert not set(await library.check(text_of(number), [collection])) & stale


async def test_scopes_hold_with_the_index(library: Library, client: httpx.AsyncClient) -> None:
    owner = library.user
    member = await add_member(client, owner, "member")
    shared = await create_collection(client, owner, "Shared")
    private = await create_collection(client, owner, "Private", visibility="private")
    await library.add(shared, range(8), '{"year": 2020}')
    await library.add(private, range(100, 106))
    private_chunks = set().union(*[await library.chunks_of(n) for n in range(100, 106)])
    shared_chunks = set().union(*[await library.chunks_of(n) for n in range(8)])
    other = Library(library.app, client, await register(client))
    other_collection = await create_collection(client, other.user, "Elsewhere")
    await other.add(other_collection, range(200, 208))
    await library.check(text_of(100), [shared, private])
    ready(library)

    for number in range(100, 106):
        # The owner's own search of one collection, the member's, another organization's user's.
        assert not set(await library.check(text_of(number), [shared])) & private_chunks
        assert not set(await library.check(text_of(number), [shared], filters={"year": 2020})) & private_chunks
        assert set(await library.check(text_of(number), [private])) <= private_chunks
        for user in (member, other.user):
            for mode in ("semantic", "hybrid"):
                response = await client.post(
                    "/api/v1/search", json={"query": text_of(number), "mode": mode, "limit": 20}, headers=user.headers
                )
                assert response.status_code == 200, response.text
                found = {uuid.UUID(hit["chunk_id"]).hex for hit in response.json()["hits"]}
                assert found, "the search found nothing at all"
                assert not found & private_chunks
                if user is other.user:
                    assert not found & shared_chunks
    assert library.status().approximate_searches > 0


async def test_a_busy_index_leaves_the_search_exact(library: Library) -> None:
    collection = await create_collection(library.client, library.user, "Papers")
    await library.add(collection, range(8))
    await library.check(text_of(0), [collection])
    before = ready(library)

    matrix = vectors._matrices.find((str(library.app.state.engine.url), library.org_id.hex, library.embedder.name))
    assert matrix is not None
    with matrix.ann.lock:  # what index work in the background does while it changes the index
        await library.check(text_of(2), [collection])
    after = library.status()

    assert after.exact_searches == before.exact_searches + 1
    assert after.approximate_searches == before.approximate_searches
