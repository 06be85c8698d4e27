"""`tessera export` / `tessera import`, run as the real command (a subprocess) against the test's
database and files, on both backends: a collection moves to another organization 1:1 and is
searchable there; a damaged archive is refused with nothing written; another embedding model
re-embeds instead of copying vectors; content the organization holds already is reported."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.session import create_engine
from tessera.core.documents.models import Chunk, Collection, Document, DocumentText
from tessera.core.documents.runtime import blob_store_from_settings
from tessera.core.retrieval.portability import _vector_column
from tessera.core.retrieval.vectors import chunk_vector
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import BACKENDS, TEMPLATE_DB, TEST_SECRET
from tests.conftest import test_settings as make_settings
from tests.factories import DEFAULT_PASSWORD, SignedIn, create_collection, ingest_document, register

DOCS = {
    "herons.md": b"# Birds of the marsh\n\n## Herons\n\nGrey herons stand motionless in shallow water, waiting "
    b"to spear fish and frogs with a quick stab of the beak.\n",
    "oaks.md": b"# Trees\n\n## Oaks\n\nOak trees grow slowly and live for centuries; their acorns feed jays, "
    b"squirrels and wild boar through the winter.\n",
}

ROW_FIELDS = (
    "filename", "doc_type", "media_type", "size_bytes", "status", "user_metadata", "properties", "title", "language",
    "page_count", "chunk_count", "text_chars", "processed_at", "error",
)  # fmt: skip
CHUNK_FIELDS = (
    "ordinal", "text", "start_offset", "end_offset", "page_start", "page_end", "heading_path", "token_count",
)  # fmt: skip


def mail() -> bytes:
    """An e-mail with an attachment: two documents, the attachment a child of the message."""
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "Charles <charles@example.com>"
    message["Subject"] = "Notes on the engine"
    message.set_content("The analytical engine weaves algebraic patterns just as the Jacquard loom weaves flowers.")
    message.add_attachment(
        b"# Appendix\n\nA table of Bernoulli numbers, computed step by step by the engine.\n",
        maintype="text",
        subtype="markdown",
        filename="appendix.md",
    )
    return message.as_bytes()


# Passages longer than this many words are embedded in windows (the fake's words stand for tokens):
# the archive then carries the windows of the longer chunks too.
WINDOW_WORDS = 16


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        embeddings={"provider": "fake", "max_tokens": WINDOW_WORDS},
    )


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


async def tessera(*args: str, settings: Settings, **env: str) -> Result:
    """The `tessera` command on the settings' database and data dir, fake embedder, jobs off."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("TESSERA_")}
    environment.update(
        TESSERA_SECRET_KEY=TEST_SECRET,
        TESSERA_DATA_DIR=str(settings.data_dir),
        TESSERA_DATABASE_URL=settings.resolved_database_url,
        TESSERA_JOBS__ENABLED="false",
        TESSERA_EMBEDDINGS__PROVIDER="fake",
        TESSERA_EMBEDDINGS__MAX_TOKENS=str(WINDOW_WORDS),
        TESSERA_LOG_LEVEL="WARNING",
        COLUMNS="200",
        NO_COLOR="1",
        TERM="dumb",
    )
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tessera.cli", *args,
        env=environment,
        cwd=settings.data_dir.parent,  # away from any developer .env
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


async def collection_contents(settings: Settings, collection_id: str) -> dict[str, dict[str, Any]]:
    """Each document of the collection by sha256: its row, text, chunks with their vectors, file."""
    store = blob_store_from_settings(settings)
    engine = create_engine(settings)
    contents: dict[str, dict[str, Any]] = {}
    try:
        async with AsyncSession(engine) as session:
            rows = (
                await session.execute(sa.select(Document).where(Document.collection_id == uuid.UUID(collection_id)))
            ).scalars()
            for document in rows:
                stored = await session.get(DocumentText, document.id)
                chunks = (
                    await session.execute(
                        sa.select(Chunk).where(Chunk.document_id == document.id).order_by(Chunk.ordinal)
                    )
                ).scalars()
                vectors = await session.execute(
                    sa.select(
                        Chunk.ordinal,
                        chunk_vector.c.model,
                        chunk_vector.c.dim,
                        _vector_column(session),
                        chunk_vector.c.windows,
                    )
                    .select_from(chunk_vector)
                    .join(Chunk, Chunk.id == chunk_vector.c.chunk_id)
                    .where(Chunk.document_id == document.id)
                    .order_by(Chunk.ordinal)
                )
                rows = vectors.all()
                contents[document.sha256] = {
                    "id": document.id,
                    "org_id": document.org_id,
                    "parent_id": document.parent_id,
                    "row": {name: getattr(document, name) for name in ROW_FIELDS},
                    "text": (stored.text, stored.structure) if stored else None,
                    "chunks": [tuple(getattr(chunk, name) for name in CHUNK_FIELDS) for chunk in chunks],
                    "vectors": [
                        (ordinal, model, dim, value if isinstance(value, bytes) else np.asarray(value, "<f4").tobytes())
                        for ordinal, model, dim, value, _ in rows
                    ],
                    "windows": [(ordinal, None if w is None else bytes(w)) for ordinal, *_, w in rows],
                    "file": await store.get_bytes(document.blob_key),
                }
    finally:
        await engine.dispose()
    return contents


async def collections_of(settings: Settings, org_id: str) -> list[str]:
    engine = create_engine(settings)
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(sa.select(Collection.name).where(Collection.org_id == uuid.UUID(org_id)))
            return sorted(rows.scalars())
    finally:
        await engine.dispose()


async def search(client: httpx.AsyncClient, user: SignedIn, collection_id: str, query: str, mode: str) -> list[str]:
    response = await client.post(
        "/api/v1/search", json={"query": query, "mode": mode, "collections": [collection_id]}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return [hit["document_id"] for hit in response.json()["hits"]]


@pytest.fixture
async def exported(client: httpx.AsyncClient, settings: Settings) -> tuple[SignedIn, str, Path]:
    """A collection of four documents (one an e-mail attachment) exported with `tessera export`."""
    owner = await register(client)
    collection_id = await create_collection(
        client, owner, "Nature", metadata_schema={"year": {"type": "integer"}}, chunking={"chunk_size": 128}
    )
    for index, (name, content) in enumerate(DOCS.items()):
        await ingest_document(client, owner, collection_id, name, content, json.dumps({"year": 2020 + index}))
    await ingest_document(client, owner, collection_id, "notes.eml", mail())
    archive = settings.data_dir.parent / "nature.zip"
    result = await tessera("export", "--collection", collection_id, "--output", str(archive), settings=settings)
    assert result.returncode == 0, result.stderr
    assert "Exported 'Nature'" in result.stdout
    assert "4 documents" in result.stdout
    return owner, collection_id, archive


async def test_a_collection_moves_to_another_organization_one_to_one(
    client: httpx.AsyncClient, settings: Settings, exported: tuple[SignedIn, str, Path]
) -> None:
    owner, source_id, archive = exported
    with zipfile.ZipFile(archive) as opened:
        manifest = json.loads(opened.read("manifest.json"))
    assert (manifest["format"], manifest["format_version"]) == ("tessera.collection", 1)
    assert manifest["embedding"] == {"model": "fake:hash-64", "dimension": 64}
    assert manifest["collection"]["metadata_schema"] == {
        "year": {"type": "integer", "required": False, "description": ""}
    }
    assert manifest["counts"]["documents"] == 4
    assert manifest["counts"]["windows"] >= 2  # the longer chunks' windows travel too

    # The target organization holds one of the files already: it is reported, not copied.
    other = await register(client)
    own = await create_collection(client, other, "Mine")
    herons_there = await ingest_document(client, other, own, "h.md", DOCS["herons.md"])

    result = await tessera("import", str(archive), "--org", other.org_id, "--name", "Nature (copy)", settings=settings)
    assert result.returncode == 0, result.stderr
    assert "Imported 3 documents" in result.stdout
    assert f"herons.md is already stored as document {herons_there}" in result.stdout
    assert await collections_of(settings, other.org_id) == ["Mine", "Nature (copy)"]

    collections = (await client.get("/api/v1/collections", headers=other.headers)).json()["items"]
    target_id = next(c["id"] for c in collections if c["name"] == "Nature (copy)")
    assert next(c for c in collections if c["id"] == target_id)["chunking"]["chunk_size"] == 128
    source = await collection_contents(settings, source_id)
    target = await collection_contents(settings, target_id)
    herons = next(sha for sha, item in source.items() if item["row"]["filename"] == "herons.md")
    assert set(target) == set(source) - {herons}
    for sha, copied in target.items():
        original = source[sha]
        assert copied["id"] != original["id"]
        assert str(copied["org_id"]) == other.org_id
        for key in ("row", "text", "chunks", "vectors", "windows", "file"):
            assert copied[key] == original[key], (copied["row"]["filename"], key)
        assert copied["vectors"], copied["row"]["filename"]
    assert any(w is not None for item in target.values() for _, w in item["windows"])
    # The attachment points at the imported message, not at the source's.
    by_name = {item["row"]["filename"]: item for item in target.values()}
    assert by_name["appendix.md"]["parent_id"] == by_name["notes.eml"]["id"]

    oaks = str(by_name["oaks.md"]["id"])
    assert (await search(client, other, target_id, "acorns feed jays", "semantic"))[0] == oaks
    assert (await search(client, other, target_id, "acorns", "keyword")) == [oaks]
    # The source is untouched, and the copy is not visible to its organization.
    assert len(await collection_contents(settings, source_id)) == 4
    assert (await client.get(f"/api/v1/collections/{target_id}", headers=owner.headers)).status_code == 404


async def test_another_embedding_model_reembeds_instead_of_copying_vectors(
    client: httpx.AsyncClient, settings: Settings, exported: tuple[SignedIn, str, Path]
) -> None:
    _, source_id, archive = exported
    other = await register(client)
    result = await tessera(
        "import", str(archive), "--org", other.org_id, settings=settings, TESSERA_EMBEDDINGS__DIMENSION="32"
    )
    assert result.returncode == 0, result.stderr
    assert "Imported 4 documents" in result.stdout
    assert "0 vectors" in result.stdout
    assert "embedded again" in result.stdout

    collections = (await client.get("/api/v1/collections", headers=other.headers)).json()["items"]
    target = await collection_contents(settings, collections[0]["id"])
    source = await collection_contents(settings, source_id)
    for sha, copied in target.items():
        assert copied["chunks"] == source[sha]["chunks"]
        assert copied["text"] == source[sha]["text"]
        assert {(model, dim) for _, model, dim, _ in copied["vectors"]} == (
            {("fake:hash-32", 32)} if copied["chunks"] else set()
        )
        assert [ordinal for ordinal, *_ in copied["vectors"]] == [chunk[0] for chunk in copied["chunks"]]


def rewritten(archive: Path, target: Path, change: dict[str, Any]) -> Path:
    """A copy of `archive` with members replaced (`bytes`) or the manifest edited (`manifest`: dict)."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename in change:
                data = change[info.filename]
            if info.filename == "manifest.json" and "manifest" in change:
                data = json.dumps({**json.loads(data), **change["manifest"]}).encode()
            copy.writestr(info.filename, data)
    return target


async def test_a_damaged_or_unknown_archive_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, settings: Settings, exported: tuple[SignedIn, str, Path]
) -> None:
    _, _, archive = exported
    other = await register(client)
    folder = archive.parent
    with zipfile.ZipFile(archive) as opened:
        chunks = opened.read("chunks.jsonl")
    tampered = rewritten(archive, folder / "tampered.zip", {"chunks.jsonl": chunks.replace(b"herons", b"Herons")})
    future = rewritten(archive, folder / "future.zip", {"manifest": {"format_version": 99}})
    truncated = folder / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])

    results = await asyncio.gather(
        *(
            tessera("import", str(path), "--org", other.org_id, settings=settings)
            for path in (tampered, future, truncated)
        )
    )
    for result in results:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert "chunks.jsonl of the archive does not match its sha256" in results[0].stderr
    assert "Unknown archive format version 99" in results[1].stderr
    assert "not a readable ZIP archive" in results[2].stderr
    assert await collections_of(settings, other.org_id) == []
    blobs = settings.data_dir / "blobs" / uuid.UUID(other.org_id).hex
    assert not blobs.exists()


@pytest.fixture
def postgres_target(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """For the SQLite run only: a fresh PostgreSQL database (sync: the server's set-up runs its own loop)."""
    if backend != "sqlite" or "postgresql" not in BACKENDS:
        yield None
        return
    server = request.getfixturevalue("postgres")
    name = f"t_{uuid.uuid4().hex[:16]}"
    server.psql(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB};")
    yield server.url(name)
    server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


async def test_an_archive_moves_from_sqlite_to_postgresql(
    settings: Settings, exported: tuple[SignedIn, str, Path], postgres_target: str | None
) -> None:
    if postgres_target is None:
        pytest.skip("runs once: from a SQLite source to a PostgreSQL target")
    target_settings = make_settings(
        database_url=postgres_target,
        data_dir=settings.data_dir.parent / "pg-data",
        embeddings={"provider": "fake", "max_tokens": WINDOW_WORDS},
    )
    _, source_id, archive = exported
    made = await tessera(
        "admin", "create-user", "--email", "pg@example.com", "--password", DEFAULT_PASSWORD, settings=target_settings
    )
    assert made.returncode == 0, made.stderr
    result = await tessera("import", str(archive), settings=target_settings)
    assert result.returncode == 0, result.stderr
    application = create_app(target_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as pg:
            user = await register_login(pg)
            collections = (await pg.get("/api/v1/collections", headers=user.headers)).json()["items"]
            target_id = collections[0]["id"]
            target = await collection_contents(target_settings, target_id)
            source = await collection_contents(settings, source_id)
            assert set(target) == set(source)
            for sha, copied in target.items():
                for key in ("row", "text", "chunks", "windows", "file"):
                    assert copied[key] == source[sha][key]
                # pgvector keeps what its text form carries (7 significant digits), not every float32 bit.
                moved = [np.frombuffer(v, "<f4") for *_, v in copied["vectors"]]
                original = [np.frombuffer(v, "<f4") for *_, v in source[sha]["vectors"]]
                assert len(moved) == len(original)
                for a, b in zip(moved, original, strict=True):
                    np.testing.assert_allclose(a, b, atol=1e-6)
            oaks = next(str(item["id"]) for item in target.values() if item["row"]["filename"] == "oaks.md")
            assert (await search(pg, user, target_id, "acorns feed jays", "semantic"))[0] == oaks


async def register_login(client: httpx.AsyncClient) -> SignedIn:
    """Sign in as the user `tessera admin create-user` made."""
    response = await client.post("/api/v1/auth/login", json={"email": "pg@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200, response.text
    tokens = response.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = (await client.get("/api/v1/auth/me", headers=headers)).json()
    return SignedIn("pg@example.com", "", me["user"]["id"], me["org_id"], tokens["access_token"], "")
