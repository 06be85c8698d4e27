"""`tessera ingest`: the real command, run in-process on a SQLite data dir of its own.

Local mode processes the files itself. Server mode talks to a real HTTP server (uvicorn in a
thread, on the same database); the job system is off in tests, so a small thread stands in for
the worker and runs the real pipeline on whatever the server queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tessera.cli import app
from tessera.core.documents.models import Chunk, Collection, Document, DocumentStatus, DocumentText
from tessera.core.documents.pipeline import process_inline
from tessera.core.documents.runtime import PipelineContext
from tessera.main import create_app
from tests.conftest import TEST_SECRET
from tests.conftest import test_settings as make_settings
from tests.factories import DEFAULT_PASSWORD

A_TEXT = (
    "Alpha notes.\n\nThe first file talks about the mill of the analytical engine, where the "
    "arithmetic happens, and about the store that keeps numbers until the mill needs them.\n"
)
B_MARKDOWN = (
    "# Beta\n\n## Cards\n\nOperation cards tell the mill what to do; variable cards tell it where "
    "each number lives. Together they make the first programs ever written down.\n"
)
C_TEXT = "Gamma notes.\n\nA file inside a folder, found because the command was asked to recurse.\n"
D_MARKDOWN = "# Delta\n\nA file two folders deep, also found when recursing through the tree.\n"


@dataclass
class Workspace:
    root: Path
    data_dir: Path
    runner: CliRunner
    env: dict[str, str | None]

    def run(self, *args: str) -> Run:
        result = self.runner.invoke(app, list(args), env=self.env, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    def ingest(self, *args: str) -> Run:
        return self.run("ingest", *args)

    @contextlib.contextmanager
    def database(self) -> Iterator[Session]:
        """The data dir's database, to check what the command stored."""
        engine = create_engine(f"sqlite:///{self.data_dir / 'tessera.db'}")
        try:
            with Session(engine) as session:
                yield session
        finally:
            engine.dispose()


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def table(self) -> dict[str, dict[str, str]]:
        """The summary table: file → {status, chunks, document, reason}."""
        rows: dict[str, dict[str, str]] = {}
        for line in self.stdout.splitlines():
            cells = [cell.strip() for cell in line.split("│")[1:-1]]
            if len(cells) == 5 and cells[0] not in ("file", ""):  # "" continues a wrapped row
                rows[cells[0]] = dict(zip(("status", "chunks", "document", "reason"), cells[1:], strict=True))
        return rows


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A data dir with a migrated database and one owner, and files to ingest in the working dir."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)  # relative paths as a user types them; away from any developer .env
    data_dir = tmp_path / "data"
    env: dict[str, str | None] = {key: None for key in os.environ if key.startswith("TESSERA_")}
    env.update(
        TESSERA_SECRET_KEY=TEST_SECRET,
        TESSERA_DATA_DIR=str(data_dir),
        TESSERA_JOBS__ENABLED="false",
        TESSERA_LOG_LEVEL="WARNING",
        COLUMNS="250",
        NO_COLOR="1",
        TERM="dumb",
    )
    space = Workspace(root, data_dir, CliRunner(), env)
    migrated = space.run("migrate")
    assert migrated.exit_code == 0, migrated.output
    created = space.run("admin", "create-user", "--email", "owner@example.com", "--password", DEFAULT_PASSWORD)
    assert created.exit_code == 0, created.output

    (root / "a.txt").write_text(A_TEXT)
    (root / "b.md").write_text(B_MARKDOWN)
    sub = root / "sub"
    (sub / "deeper").mkdir(parents=True)
    (sub / "c.txt").write_text(C_TEXT)
    (sub / "deeper" / "d.md").write_text(D_MARKDOWN)
    (sub / "copy-of-a.txt").write_text(A_TEXT)
    (sub / ".hidden.txt").write_text("Dot files are skipped when walking a folder.\n")
    return space


FIRST_RUN = ("a.txt", "b.md", "sub/", "--collection", "Notes", "--recursive", "-m", "year=2024", "-m", "team=docs")


def test_ingest_files_and_folders_processes_them(workspace: Workspace) -> None:
    result = workspace.ingest(*FIRST_RUN)

    assert result.exit_code == 0, result.output
    assert "duplicate: 1, ready: 4" in result.stdout
    assert "Ingested 5 file(s)" in result.stdout
    table = result.table
    assert list(table) == ["a.txt", "b.md", "sub/c.txt", "sub/copy-of-a.txt", "sub/deeper/d.md"], result.stdout
    assert {name: row["status"] for name, row in table.items()} == {
        "a.txt": "ready",
        "b.md": "ready",
        "sub/c.txt": "ready",
        "sub/copy-of-a.txt": "duplicate",
        "sub/deeper/d.md": "ready",
    }
    assert table["sub/copy-of-a.txt"]["document"] == table["a.txt"]["document"]
    assert table["sub/copy-of-a.txt"]["reason"] == "same content already stored"

    with workspace.database() as db:
        [collection] = db.scalars(select(Collection)).all()
        assert collection.name == "Notes"
        documents = {d.filename: d for d in db.scalars(select(Document))}
        assert set(documents) == {"a.txt", "b.md", "c.txt", "d.md"}
        for document in documents.values():
            assert document.collection_id == collection.id
            assert document.status.value == "ready"
            assert document.user_metadata == {"year": 2024, "team": "docs"}
            chunks = db.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == document.id))
            assert chunks == document.chunk_count >= 1
        assert documents["b.md"].doc_type == "markdown"
        stored = db.get(DocumentText, documents["a.txt"].id)
        assert stored is not None
        assert "analytical engine" in stored.text
        for shown, stored_name in (("a.txt", "a.txt"), ("b.md", "b.md"), ("sub/c.txt", "c.txt")):
            assert table[shown]["document"] == str(documents[stored_name].id)
            assert table[shown]["chunks"] == str(documents[stored_name].chunk_count)


def test_second_run_reports_duplicates_and_stores_nothing_new(workspace: Workspace) -> None:
    assert workspace.ingest(*FIRST_RUN).exit_code == 0

    again = workspace.ingest(*FIRST_RUN)

    assert again.exit_code == 0, again.output
    assert "duplicate: 5" in again.stdout
    assert {row["status"] for row in again.table.values()} == {"duplicate"}
    with workspace.database() as db:
        assert db.scalar(select(func.count()).select_from(Document)) == 4
        assert db.scalar(select(func.count()).select_from(Collection)) == 1


def test_unusable_files_exit_1_with_their_reasons(workspace: Workspace) -> None:
    (workspace.root / "blob.bin").write_bytes(bytes(range(256)) * 8)
    (workspace.root / "empty.txt").write_bytes(b"")

    result = workspace.ingest("a.txt", "blob.bin", "empty.txt", "--collection", "Notes")

    assert result.exit_code == 1, result.output
    assert "ready: 1, rejected: 2" in result.stdout
    table = result.table
    assert table["blob.bin"]["status"] == "rejected"
    assert table["blob.bin"]["reason"].startswith("'blob.bin' is not a supported type")
    assert table["empty.txt"]["status"] == "rejected"
    assert table["empty.txt"]["reason"] == "'empty.txt' is empty"
    assert table["a.txt"]["status"] == "ready"
    # The good file went in all the same.
    with workspace.database() as db:
        assert list(db.scalars(select(Document.filename))) == ["a.txt"]


def test_rerun_of_a_failed_file_is_still_a_failure(workspace: Workspace) -> None:
    (workspace.root / "blank.txt").write_text(" \n\n\t\n")  # accepted as text, but holds none
    first = workspace.ingest("blank.txt", "--collection", "Notes")
    assert first.exit_code == 1, first.output
    assert first.table["blank.txt"]["status"] == "failed"

    again = workspace.ingest("blank.txt", "--collection", "Notes")

    assert again.exit_code == 1, again.output
    assert again.table["blank.txt"]["document"] == first.table["blank.txt"]["document"]


def test_folder_without_recursive_is_refused(workspace: Workspace) -> None:
    result = workspace.ingest("a.txt", "sub", "--collection", "Notes")

    assert result.exit_code == 1
    assert "sub is a folder: pass --recursive" in result.stderr
    assert "Traceback" not in result.output
    with workspace.database() as db:
        # Refused before anything was stored, not even the good file or the collection.
        assert db.scalar(select(func.count()).select_from(Document)) == 0
        assert db.scalar(select(func.count()).select_from(Collection)) == 0


def test_missing_path_is_refused(workspace: Workspace) -> None:
    result = workspace.ingest("a.txt", "nowhere.txt", "--collection", "Notes")

    assert result.exit_code == 1
    assert "nowhere.txt does not exist" in result.stderr


def test_missing_collection_with_no_create_is_refused(workspace: Workspace) -> None:
    result = workspace.ingest("a.txt", "--collection", "Elsewhere", "--no-create")

    assert result.exit_code == 1
    assert "Collection 'Elsewhere' not found" in result.stderr
    with workspace.database() as db:
        assert db.scalar(select(func.count()).select_from(Document)) == 0


def test_malformed_metadata_is_refused(workspace: Workspace) -> None:
    result = workspace.ingest("a.txt", "--collection", "Notes", "-m", "year")

    assert result.exit_code == 1
    assert "--metadata takes key=value, got 'year'" in result.stderr


# ---------------------------------------------------------------------------------------------
# server mode


@dataclass
class Remote:
    url: str
    api_key: str


def _process_queued(database_url: str, stop: threading.Event) -> None:
    """Stands in for `tessera worker`: runs the real pipeline on each queued document."""

    async def main() -> None:
        engine = create_async_engine(database_url)
        try:
            while not stop.is_set():
                async with engine.connect() as connection:
                    queued = (
                        await connection.execute(
                            select(Document.id, Document.generation).where(Document.status == DocumentStatus.queued)
                        )
                    ).all()
                for document_id, generation in queued:
                    await process_inline(document_id, generation)
                await asyncio.sleep(0.05)
        finally:
            await PipelineContext.dispose_current_loop()
            await engine.dispose()

    asyncio.run(main())


@pytest.fixture
def remote(workspace: Workspace, tmp_path: Path) -> Iterator[Remote]:
    database_url = f"sqlite+aiosqlite:///{workspace.data_dir / 'tessera.db'}"
    settings = make_settings(database_url=database_url, data_dir=tmp_path / "server-data")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, lifespan="on"))
    listener = socket.create_server(("127.0.0.1", 0))
    serving = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    serving.start()
    stop = threading.Event()
    worker = threading.Thread(target=_process_queued, args=(database_url, stop), daemon=True)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(200):
                if server.started:
                    break
                threading.Event().wait(0.05)
            signed_in = http.post(
                "/api/v1/auth/login", json={"email": "owner@example.com", "password": DEFAULT_PASSWORD}
            )
            assert signed_in.status_code == 200, signed_in.text
            created = http.post(
                "/api/v1/api-keys",
                json={"name": "ingest", "scopes": ["collections:*", "documents:*"]},
                headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
            )
            assert created.status_code == 201, created.text
        worker.start()
        yield Remote(url, created.json()["key"])
    finally:
        stop.set()
        server.should_exit = True
        serving.join(10)
        if worker.is_alive():
            worker.join(10)
        listener.close()


def test_server_mode_uploads_and_waits_until_processed(workspace: Workspace, remote: Remote) -> None:
    result = workspace.ingest(
        "a.txt", "b.md", "--collection", "Remote", "-m", "year=2024", "--url", remote.url, "--api-key", remote.api_key
    )

    assert result.exit_code == 0, result.output
    assert {name: row["status"] for name, row in result.table.items()} == {"a.txt": "ready", "b.md": "ready"}
    with workspace.database() as db:
        collection = db.scalars(select(Collection).where(Collection.name == "Remote")).one()
        documents = {d.filename: d for d in db.scalars(select(Document))}
        assert set(documents) == {"a.txt", "b.md"}
        for name, document in documents.items():
            assert document.collection_id == collection.id
            assert document.user_metadata == {"year": 2024}
            assert result.table[name]["document"] == str(document.id)
            assert result.table[name]["chunks"] == str(document.chunk_count)
            chunks = db.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == document.id))
            assert chunks == document.chunk_count >= 1


def test_server_mode_reports_refused_files(workspace: Workspace, remote: Remote) -> None:
    (workspace.root / "empty.txt").write_bytes(b"")

    result = workspace.ingest("a.txt", "empty.txt", "--collection", "Remote", "--url", remote.url)

    assert result.exit_code == 2  # no key: a usage error
    assert "--url needs --api-key" in result.stderr

    result = workspace.ingest(
        "a.txt", "empty.txt", "--collection", "Remote", "--url", remote.url, "--api-key", remote.api_key
    )

    assert result.exit_code == 1, result.output
    assert result.table["a.txt"]["status"] == "ready"
    assert result.table["empty.txt"] == {
        "status": "rejected",
        "chunks": "0",
        "document": "-",
        "reason": "'empty.txt' is empty",
    }


def test_server_mode_without_waiting_succeeds_once_uploaded(workspace: Workspace, remote: Remote) -> None:
    result = workspace.ingest(
        "a.txt", "--collection", "Remote", "--url", remote.url, "--api-key", remote.api_key, "--no-wait"
    )

    assert result.exit_code == 0, result.output
    assert result.table["a.txt"]["status"] == "queued"
    assert "queued: 1" in result.stdout
    with workspace.database() as db:
        stored = db.scalars(select(Document)).one()
        assert str(stored.id) == result.table["a.txt"]["document"]
        assert stored.filename == "a.txt"
