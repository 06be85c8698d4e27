"""`tessera export` / `tessera import`: a collection, its files, texts, chunks and vectors in one archive.

The archive is a ZIP file (format 1):

- `documents.jsonl`: one document per line: its id in the source, parent, file name, type, size,
  sha256, status, error, metadata, and what the pipeline learnt (title, language, properties);
- `texts.jsonl`: the extracted text of each document and its block structure;
- `chunks.jsonl`: every chunk: document, ordinal, text, offsets, pages, heading path, tokens, and
  whether `vectors.f32` holds its vector;
- `vectors.f32`: those vectors in chunk order, little-endian float32, `embedding.dimension` each;
- `windows.f16`: for each chunk whose record gives `windows` (a count, above 1: the chunk is
  longer than the embedder's window), its windows' vectors in chunk order, little-endian float16,
  `embedding.dimension` each (optional: archives without it import with no windows);
- `blobs/<sha256>`: the original files, byte for byte;
- `manifest.json`: format and version, the collection's settings and metadata schema, the
  embedding model and dimension, counts, and the sha256 and size of every other member.

Every list is ordered by document id (chunks then by ordinal), so both commands stream: the export
writes page by page from one database snapshot, the import reads the members side by side and
writes in batches, one transaction each. Only vectors of the exporting server's embedding model
travel. An import whose configured model is another one takes the chunks and texts and re-embeds
them (`retrieval.reindex`) instead: vector spaces never mix.

Nothing is written before the whole archive has been checked: the manifest's format and version,
the member list, and the sha256 of every member. Documents whose content (sha256) the target
organization already holds are skipped and reported, as uploads of the same content are.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import tessera
from tessera.core.audit.service import RequestMeta, record_event
from tessera.core.auth.principal import Principal
from tessera.core.db.base import new_id
from tessera.core.db.session import create_engine, create_sessionmaker, is_sqlite, unit_of_work
from tessera.core.documents import pipeline
from tessera.core.documents import service as documents
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.documents.indexing import IndexTarget, indexers
from tessera.core.documents.ingest_cli import _acting_principal
from tessera.core.documents.models import Chunk, Collection, Document, DocumentStatus, DocumentText
from tessera.core.documents.runtime import PipelineContext, blob_store_from_settings
from tessera.core.documents.schemas import CollectionCreate
from tessera.core.documents.storage.base import BlobNotFound, BlobStore
from tessera.core.errors import InvalidInput
from tessera.core.jobs.runtime import JobRuntime
from tessera.core.retrieval import reindex
from tessera.core.retrieval.errors import InvalidArchive
from tessera.core.retrieval.runtime import get_embedder
from tessera.core.retrieval.vectors import PreparedVectors, chunk_vector, decode_windows
from tessera.settings import Settings

FORMAT = "tessera.collection"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})
MANIFEST = "manifest.json"
DOCUMENTS = "documents.jsonl"
TEXTS = "texts.jsonl"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.f32"
WINDOWS = "windows.f16"
BLOBS = "blobs/"
CLI_META = RequestMeta(ip=None, user_agent="tessera-cli", request_id=None)
PAGE_DOCUMENTS = 100
PAGE_TEXTS = 20
IMPORT_BATCH_DOCUMENTS = 100
IMPORT_BATCH_CHUNKS = 2_000
COPY_CHUNK = 1024 * 1024
# Statuses kept as they are; a document caught mid-pipeline in the source is processed again here.
KEPT_STATUSES = frozenset({DocumentStatus.ready, DocumentStatus.failed, DocumentStatus.needs_ocr})


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_default) + "\n").encode()


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# ---------------------------------------------------------------------------------------------
# export


@dataclass
class ExportReport:
    collection_id: uuid.UUID
    collection_name: str
    output: Path
    model: str | None
    dimension: int | None
    counts: dict[str, int]
    bytes: int
    seconds: float


class _MemberWriter:
    """One archive member written in pieces, hashed on the way."""

    def __init__(self, archive: zipfile.ZipFile, name: str, *, compress: bool) -> None:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self.name = name
        self._handle = archive.open(info, "w", force_zip64=True)
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._handle.write(data)
        self._digest.update(data)
        self.size += len(data)

    def close(self) -> dict[str, Any]:
        self._handle.close()
        return {"sha256": self._digest.hexdigest(), "size": self.size}


async def _resolve_collection(session: AsyncSession, reference: str, org: str | None) -> tuple[Principal, Collection]:
    """`reference` is a collection id (its organization is then implied) or a name in `--org`."""
    try:
        collection_id: uuid.UUID | None = uuid.UUID(reference)
    except ValueError:
        collection_id = None
    if collection_id is not None:
        found = await session.get(Collection, collection_id)
        if found is None:
            raise CollectionNotFound(f"No collection with id {reference}")
        principal = await _acting_principal(session, org or str(found.org_id), None)
        if found.org_id != principal.org_id:
            raise CollectionNotFound(f"Collection {reference} is not in organization {org!r}")
        return principal, found
    principal = await _acting_principal(session, org, None)
    named = await session.scalar(
        sa.select(Collection).where(Collection.org_id == principal.org_id, Collection.name == reference)
    )
    if named is None:
        raise CollectionNotFound(f"No collection named {reference!r} in this organization")
    return principal, named


@asynccontextmanager
async def _snapshot(settings: Settings) -> AsyncIterator[AsyncSession]:
    """One read transaction over the whole export, so documents, chunks and vectors agree."""
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name != "sqlite":
                connection = await connection.execution_options(isolation_level="REPEATABLE READ")
            async with AsyncSession(bind=connection, expire_on_commit=False, autoflush=False) as session:
                yield session
    finally:
        await engine.dispose()


async def _document_pages(session: AsyncSession, collection_id: uuid.UUID, size: int) -> AsyncIterator[list[Document]]:
    after: uuid.UUID | None = None
    while True:
        query = sa.select(Document).where(Document.collection_id == collection_id)
        if after is not None:
            query = query.where(Document.id > after)
        page = list((await session.execute(query.order_by(Document.id).limit(size))).scalars())
        if not page:
            return
        yield page
        after = page[-1].id


def _document_record(document: Document) -> dict[str, Any]:
    return {
        "id": document.id,
        "parent_id": document.parent_id,
        "filename": document.filename,
        "source_url": document.source_url,
        "doc_type": document.doc_type,
        "media_type": document.media_type,
        "size_bytes": document.size_bytes,
        "sha256": document.sha256,
        "blob": BLOBS + document.sha256,
        "status": document.status.value,
        "error": document.error,
        "stage_timings": document.stage_timings,
        "metadata": document.user_metadata,
        "properties": document.properties,
        "title": document.title,
        "language": document.language,
        "page_count": document.page_count,
        "chunk_count": document.chunk_count,
        "text_chars": document.text_chars,
        "created_at": document.created_at,
        "processed_at": document.processed_at,
    }


def _vector_column(session: AsyncSession) -> Any:
    # SQLite keeps float32 bytes; pgvector is read as a real[] (exact float32 values).
    return chunk_vector.c.vector if is_sqlite(session) else sa.cast(chunk_vector.c.vector, postgresql.ARRAY(sa.REAL))


async def export_collection(
    settings: Settings, *, collection: str, org: str | None, output: Path, console: Console
) -> ExportReport:
    """Write the collection to `output` (through a temporary file beside it, renamed at the end)."""
    started = time.perf_counter()
    store = blob_store_from_settings(settings)
    model = get_embedder(settings.embeddings).name
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    counts = {"documents": 0, "texts": 0, "chunks": 0, "vectors": 0, "windows": 0, "blobs": 0}
    members: dict[str, Any] = {}
    async with _snapshot(settings) as session:
        principal, found = await _resolve_collection(session, collection, org)
        collection_id = found.id
        total = int(
            await session.scalar(sa.select(sa.func.count()).where(Document.collection_id == collection_id)) or 0
        )
        dimension = await session.scalar(
            sa.select(chunk_vector.c.dim)
            .join(Chunk, Chunk.id == chunk_vector.c.chunk_id)
            .where(Chunk.collection_id == collection_id, chunk_vector.c.model == model)
            .limit(1)
        )
        vector_of_model = sa.exists().where(chunk_vector.c.chunk_id == Chunk.id, chunk_vector.c.model == model)
        window_bytes = (
            sa.select(sa.func.length(chunk_vector.c.windows))
            .where(chunk_vector.c.chunk_id == Chunk.id, chunk_vector.c.model == model)
            .scalar_subquery()
        )
        try:
            with (
                zipfile.ZipFile(partial, "w", allowZip64=True) as archive,
                _progress(console) as progress,
            ):
                member = _MemberWriter(archive, DOCUMENTS, compress=True)
                task = progress.add_task("Documents", total=total)
                async for page in _document_pages(session, collection_id, PAGE_DOCUMENTS):
                    for document in page:
                        member.write(_line(_document_record(document)))
                    counts["documents"] += len(page)
                    progress.advance(task, len(page))
                members[DOCUMENTS] = member.close()

                member = _MemberWriter(archive, TEXTS, compress=True)
                task = progress.add_task("Texts", total=total)
                async for page in _document_pages(session, collection_id, PAGE_TEXTS):
                    texts = await session.execute(
                        sa.select(DocumentText)
                        .where(DocumentText.document_id.in_([d.id for d in page]))
                        .order_by(DocumentText.document_id)
                    )
                    for stored in texts.scalars():
                        member.write(
                            _line(
                                {"document_id": stored.document_id, "text": stored.text, "structure": stored.structure}
                            )
                        )
                        counts["texts"] += 1
                    session.expunge_all()
                    progress.advance(task, len(page))
                members[TEXTS] = member.close()

                member = _MemberWriter(archive, CHUNKS, compress=True)
                task = progress.add_task("Chunks", total=total)
                async for page in _document_pages(session, collection_id, PAGE_DOCUMENTS):
                    rows = await session.execute(
                        sa.select(Chunk, vector_of_model.label("has_vector"), window_bytes.label("window_bytes"))
                        .where(Chunk.document_id.in_([d.id for d in page]))
                        .order_by(Chunk.document_id, Chunk.ordinal)
                    )
                    for chunk, has_vector, windows_size in rows:
                        windows = int(windows_size or 0) // (2 * dimension) if has_vector and dimension else 0
                        member.write(_line(_chunk_record(chunk, bool(has_vector), windows)))
                        counts["windows"] += windows
                        counts["chunks"] += 1
                        counts["vectors"] += bool(has_vector)
                    session.expunge_all()
                    progress.advance(task, len(page))
                members[CHUNKS] = member.close()

                # More passes in the same order and snapshot: the zip format writes one member at a time.
                member = _MemberWriter(archive, VECTORS, compress=False)
                task = progress.add_task("Vectors", total=total)
                async for documents, values in _vector_pages(session, collection_id, model, _vector_column(session)):
                    for value in values:
                        member.write(value if isinstance(value, bytes) else np.asarray(value, "<f4").tobytes())
                    progress.advance(task, documents)
                members[VECTORS] = member.close()

                member = _MemberWriter(archive, WINDOWS, compress=False)
                task = progress.add_task("Windows", total=total)
                windows = chunk_vector.c.windows
                async for documents, values in _vector_pages(
                    session, collection_id, model, windows, windows.is_not(None)
                ):
                    for value in values:
                        member.write(bytes(value))
                    progress.advance(task, documents)
                members[WINDOWS] = member.close()

                task = progress.add_task("Files", total=total)
                written: set[str] = set()
                async for page in _document_pages(session, collection_id, PAGE_DOCUMENTS):
                    for document in page:
                        if document.sha256 not in written:
                            members[BLOBS + document.sha256] = await _copy_blob(archive, store, document)
                            written.add(document.sha256)
                            counts["blobs"] += 1
                    session.expunge_all()
                    progress.advance(task, len(page))

                manifest = {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "tessera_version": tessera.__version__,
                    "exported_at": datetime.now(UTC).isoformat(),
                    "source": {"collection_id": str(collection_id), "org_id": str(found.org_id)},
                    "collection": {
                        "name": found.name,
                        "description": found.description,
                        "metadata_schema": found.metadata_schema,
                        "visibility": found.visibility.value,
                        "shared_roles": found.shared_roles,
                        "chunking": found.chunking,
                    },
                    "embedding": {"model": model, "dimension": dimension} if counts["vectors"] else None,
                    "counts": counts,
                    "members": members,
                }
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
        collection_name = found.name
        org_id = found.org_id
    async with _writer(settings) as session:
        await record_event(
            session, action="collection.exported", org_id=org_id, actor=principal.actor, meta=CLI_META,
            target_type="collection", target_id=collection_id,
            details={"file": output.name, "documents": counts["documents"], "model": model},
        )  # fmt: skip
    return ExportReport(
        collection_id=collection_id,
        collection_name=collection_name,
        output=output,
        model=model if counts["vectors"] else None,
        dimension=dimension,
        counts=counts,
        bytes=output.stat().st_size,
        seconds=time.perf_counter() - started,
    )


async def _vector_pages(
    session: AsyncSession,
    collection_id: uuid.UUID,
    model: str,
    column: Any,
    *conditions: sa.ColumnElement[bool],
) -> AsyncIterator[tuple[int, list[Any]]]:
    """Page by page of the collection's documents: how many documents, and `column` of their
    chunks' rows of `model` (where `conditions` hold) in chunk order."""
    async for page in _document_pages(session, collection_id, PAGE_DOCUMENTS):
        values = await session.execute(
            sa.select(column)
            .select_from(chunk_vector)
            .join(Chunk, Chunk.id == chunk_vector.c.chunk_id)
            .where(Chunk.document_id.in_([d.id for d in page]), chunk_vector.c.model == model, *conditions)
            .order_by(Chunk.document_id, Chunk.ordinal)
        )
        yield len(page), list(values.scalars())
        session.expunge_all()


def _chunk_record(chunk: Chunk, has_vector: bool, windows: int) -> dict[str, Any]:
    return {
        "document_id": chunk.document_id,
        "ordinal": chunk.ordinal,
        "text": chunk.text,
        "start_offset": chunk.start_offset,
        "end_offset": chunk.end_offset,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "heading_path": chunk.heading_path,
        "token_count": chunk.token_count,
        "vector": has_vector,
        "windows": windows,
    }


async def _copy_blob(archive: zipfile.ZipFile, store: BlobStore, document: Document) -> dict[str, Any]:
    member = _MemberWriter(archive, BLOBS + document.sha256, compress=True)
    try:
        async for piece in store.open_stream(document.blob_key):
            member.write(piece)
    except BlobNotFound as error:
        raise InvalidInput(
            f"The original file of document {document.id} ({document.filename}) is missing from the blob store"
        ) from error
    result = member.close()
    if result["sha256"] != document.sha256:
        raise InvalidInput(f"The stored file of document {document.id} ({document.filename}) does not match its sha256")
    return result


@asynccontextmanager
async def _writer(settings: Settings) -> AsyncIterator[AsyncSession]:
    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------------
# import


@dataclass
class Duplicate:
    filename: str
    sha256: str
    existing_document_id: uuid.UUID


@dataclass
class ImportReport:
    collection_id: uuid.UUID
    collection_name: str
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    duplicates: list[Duplicate] = field(default_factory=list)
    reembedding: str | None = None
    """None (every vector came with the archive), `done` (embedded here), or the queued re-index's id."""
    reprocessing: int = 0
    """Documents that were mid-pipeline in the source: processed again from their file here."""
    seconds: float = 0.0


class _ChunkRef(NamedTuple):
    id: uuid.UUID
    text: str
    heading_path: list[str]


@dataclass
class _Entry:
    """One archived document as read, before it is written."""

    record: dict[str, Any]
    texts: list[dict[str, Any]]
    chunks: list[dict[str, Any]]
    vectors: PreparedVectors | None
    """Of the chunks that came with a vector, in order."""


@dataclass
class _Target:
    """Where an import writes, and what it has learnt along the way."""

    org_id: uuid.UUID
    principal: Principal
    report: ImportReport
    store: BlobStore
    sessionmaker: async_sessionmaker[AsyncSession]
    model: str
    dimension: int
    vectors: bool
    new_ids: dict[str, uuid.UUID] = field(default_factory=dict)
    """Source document id → the new document's id."""
    parents: dict[uuid.UUID, str] = field(default_factory=dict)
    """New document id → its parent's id in the source."""
    queued: list[uuid.UUID] = field(default_factory=list)


class _Keyed:
    """A JSON-lines member read in order, handing out the lines of one document at a time."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines = io.TextIOWrapper(stream, encoding="utf-8")
        self._next: dict[str, Any] | None = None
        self._advance()

    def _advance(self) -> None:
        line = self._lines.readline()
        self._next = json.loads(line) if line else None

    @property
    def exhausted(self) -> bool:
        return self._next is None

    def take(self, document_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while self._next is not None and self._next["document_id"] == document_id:
            found.append(self._next)
            self._advance()
        return found


def _open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidArchive(f"{path} is not a readable ZIP archive: {error}") from error


def read_manifest(archive: zipfile.ZipFile) -> dict[str, Any]:
    """The manifest, if it is one of a format version this code reads."""
    try:
        manifest: dict[str, Any] = json.loads(archive.read(MANIFEST))
    except KeyError as error:
        raise InvalidArchive("The archive has no manifest.json: it is not a Tessera collection export") from error
    except (ValueError, zipfile.BadZipFile) as error:
        raise InvalidArchive(f"The archive's manifest.json cannot be read: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidArchive("The archive's manifest is not that of a Tessera collection export")
    version = manifest.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidArchive(
            f"Unknown archive format version {version!r}; this Tessera reads version "
            f"{', '.join(str(v) for v in sorted(SUPPORTED_VERSIONS))}",
            details={"format_version": version},
        )
    for key in ("collection", "counts", "members"):
        if not isinstance(manifest.get(key), dict):
            raise InvalidArchive(f"The archive's manifest lacks `{key}`")
    return manifest


def verify_archive(archive: zipfile.ZipFile, manifest: dict[str, Any], progress: Progress) -> None:
    """Every member the manifest lists is there, nothing else is, and each has its sha256 and size."""
    listed: dict[str, Any] = manifest["members"]
    present = {info.filename for info in archive.infolist() if not info.is_dir()} - {MANIFEST}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed))
    if missing or extra or not {DOCUMENTS, TEXTS, CHUNKS, VECTORS} <= set(listed):
        raise InvalidArchive(
            "The archive's members do not match its manifest", details={"missing": missing[:20], "extra": extra[:20]}
        )
    try:
        task = progress.add_task("Verifying", total=sum(int(entry["size"]) for entry in listed.values()))
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidArchive("The archive's manifest lists members without a size") from error
    for name, entry in listed.items():
        digest = hashlib.sha256()
        size = 0
        try:
            with archive.open(name) as stream:
                while piece := stream.read(COPY_CHUNK):
                    digest.update(piece)
                    size += len(piece)
                    progress.advance(task, len(piece))
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise InvalidArchive(
                f"Member {name} of the archive is damaged: {error}", details={"member": name}
            ) from error
        if digest.hexdigest() != entry.get("sha256") or size != entry.get("size"):
            raise InvalidArchive(f"Member {name} of the archive does not match its sha256", details={"member": name})


def _documents(archive: zipfile.ZipFile) -> Iterator[dict[str, Any]]:
    with archive.open(DOCUMENTS) as stream:
        for line in io.TextIOWrapper(stream, encoding="utf-8"):
            yield json.loads(line)


def _check_documents(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> list[str]:
    """Each document has what an import needs and a file the archive holds; returns their sha256s."""
    hashes: list[str] = []
    members = manifest["members"]
    try:
        for record in _documents(archive):
            DocumentStatus(record["status"])
            missing = [key for key in ("id", "filename", "doc_type", "media_type", "size_bytes") if key not in record]
            if missing:
                raise KeyError(missing[0])
            blob = members.get(record["blob"])
            if blob is None or blob["sha256"] != record["sha256"]:
                raise InvalidArchive(
                    f"The file of document {record['filename']!r} is missing from the archive or does not match it"
                )
            hashes.append(record["sha256"])
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidArchive(f"documents.jsonl holds a record Tessera cannot read: {error!r}") from error
    return hashes


async def _existing(session: AsyncSession, org_id: uuid.UUID, hashes: list[str]) -> dict[str, uuid.UUID]:
    found: dict[str, uuid.UUID] = {}
    for start in range(0, len(hashes), 500):
        rows = await session.execute(
            sa.select(Document.sha256, Document.id).where(
                Document.org_id == org_id, Document.sha256.in_(hashes[start : start + 500])
            )
        )
        found.update({digest: document_id for digest, document_id in rows})
    return found


def _collection_body(source: dict[str, Any], name: str | None) -> CollectionCreate:
    try:
        return CollectionCreate(
            name=name or source.get("name", ""),
            description=source.get("description") or "",
            metadata_schema=source.get("metadata_schema") or {},
            visibility=source.get("visibility") or "org",
            shared_roles=source.get("shared_roles") or [],
            chunking=source.get("chunking") or {},
        )
    except ValueError as error:
        raise InvalidArchive(f"The archive's collection settings are not valid here: {error}") from error


async def import_collection(
    settings: Settings, archive_path: Path, *, org: str | None, name: str | None, console: Console
) -> ImportReport:
    """Create a collection from an archive in the target organization, with new ids throughout.

    Raises `InvalidArchive` (nothing written) for an archive that is damaged, of an unknown format
    version, or not an export; `InvalidInput` when the collection's name is taken.
    """
    started = time.perf_counter()
    PipelineContext.configure(settings, pooled=True)
    try:
        with _open_archive(archive_path) as archive, _progress(console) as progress:
            report = await _import(settings, archive, org=org, name=name, progress=progress)
    finally:
        await PipelineContext.dispose_current_loop()
    report.seconds = time.perf_counter() - started
    return report


async def _import(
    settings: Settings, archive: zipfile.ZipFile, *, org: str | None, name: str | None, progress: Progress
) -> ImportReport:
    sessionmaker = PipelineContext.sessionmaker()
    store = PipelineContext.store()
    embedder = get_embedder(settings.embeddings)
    manifest = read_manifest(archive)
    verify_archive(archive, manifest, progress)
    hashes = _check_documents(archive, manifest)
    embedding = manifest.get("embedding") or {}
    body = _collection_body(manifest["collection"], name)
    async with unit_of_work(sessionmaker, write=False) as session:
        principal = await _acting_principal(session, org, None)
        assert principal.org_id is not None
        taken = await session.scalar(
            sa.select(Collection.id).where(Collection.org_id == principal.org_id, Collection.name == body.name)
        )
        if taken is not None:
            raise InvalidInput(f"A collection named {body.name!r} already exists here; pick another with --name")
        existing = await _existing(session, principal.org_id, hashes)

    async with unit_of_work(sessionmaker) as session:
        created = await documents.create_collection(session, principal, body, meta=CLI_META)
    target = _Target(
        org_id=principal.org_id,
        principal=principal,
        report=ImportReport(collection_id=created.id, collection_name=created.name),
        store=store,
        sessionmaker=sessionmaker,
        model=embedder.name,
        dimension=int(embedding.get("dimension") or 0),
        # Vectors of another model (or size) are left behind: the chunks are embedded again here.
        vectors=embedding.get("model") == embedder.name and embedding.get("dimension") == embedder.dimension,
    )
    try:
        await _write_documents(archive, manifest, target, existing, progress)
        await _link_parents_and_record(target, manifest)
    except BaseException:
        # Nothing half imported stays: the new collection goes, with whatever reached the database.
        async with unit_of_work(sessionmaker) as session:
            await documents.delete_collection(session, principal, created.id, force=True, store=store, meta=CLI_META)
        raise
    await _embed_and_process(settings, target, progress)
    return target.report


async def _write_documents(
    archive: zipfile.ZipFile,
    manifest: dict[str, Any],
    target: _Target,
    existing: dict[str, uuid.UUID],
    progress: Progress,
) -> None:
    task = progress.add_task("Importing", total=int(manifest["counts"].get("documents", 0)))
    row_bytes = target.dimension * 4
    window_bytes = target.dimension * 2
    with (
        archive.open(TEXTS) as texts_stream,
        archive.open(CHUNKS) as chunks_stream,
        archive.open(VECTORS) as raw,
        archive.open(WINDOWS) if WINDOWS in manifest["members"] else io.BytesIO() as raw_windows,
    ):
        texts = _Keyed(texts_stream)
        chunks = _Keyed(chunks_stream)
        batch: list[_Entry] = []
        batch_chunks = 0
        try:
            for record in _documents(archive):
                own_chunks = chunks.take(record["id"])
                with_vectors = [chunk for chunk in own_chunks if chunk["vector"]]
                vectors = raw.read(len(with_vectors) * row_bytes) if with_vectors else b""
                if len(vectors) != len(with_vectors) * row_bytes:
                    raise InvalidArchive("vectors.f32 is shorter than the chunks that say they have a vector")
                windows: list[Any] = []
                for chunk in with_vectors:
                    count = int(chunk.get("windows") or 0)
                    data = raw_windows.read(count * window_bytes) if count > 1 else b""
                    if len(data) != (count * window_bytes if count > 1 else 0):
                        raise InvalidArchive("windows.f16 is shorter than the chunks that say they have windows")
                    windows.append(decode_windows(data, target.dimension) if data else None)
                prepared = (
                    PreparedVectors(
                        target.model,
                        np.frombuffer(vectors, dtype="<f4").reshape(len(with_vectors), target.dimension),
                        windows,
                    )
                    if with_vectors and target.vectors
                    else None
                )
                entry = _Entry(record, texts.take(record["id"]), own_chunks, prepared)
                duplicate = existing.get(record["sha256"])
                if duplicate is not None:
                    # One document per content in an organization, as for uploads: report, do not copy.
                    target.report.duplicates.append(Duplicate(record["filename"], record["sha256"], duplicate))
                    progress.advance(task)
                    continue
                batch.append(entry)
                batch_chunks += len(own_chunks)
                if len(batch) >= IMPORT_BATCH_DOCUMENTS or batch_chunks >= IMPORT_BATCH_CHUNKS:
                    await _write_batch(archive, target, batch)
                    progress.advance(task, len(batch))
                    batch, batch_chunks = [], 0
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidArchive(f"The archive holds a record Tessera cannot read: {error!r}") from error
        if batch:
            await _write_batch(archive, target, batch)
            progress.advance(task, len(batch))
        if not (texts.exhausted and chunks.exhausted and not raw.read(1) and not raw_windows.read(1)):
            raise InvalidArchive("Texts, chunks or vectors of the archive do not follow its documents' order")


async def _put_blob(archive: zipfile.ZipFile, store: BlobStore, member: str, key: str) -> bool:
    """Copy one file into the store unless it is there already; True when it was written."""
    if await store.exists(key):
        return False
    handle, temporary = tempfile.mkstemp(prefix="tessera-import-")
    try:
        with os.fdopen(handle, "wb") as copy, archive.open(member) as source:
            shutil.copyfileobj(source, copy, COPY_CHUNK)
        await store.put_file(key, Path(temporary))
    finally:
        Path(temporary).unlink(missing_ok=True)
    return True


def _new_document(target: _Target, record: dict[str, Any], *, kept: bool, chunk_count: int) -> Document:
    return Document(
        id=new_id(),
        org_id=target.org_id,
        collection_id=target.report.collection_id,
        created_by=target.principal.user_id,
        filename=record["filename"],
        source_url=record.get("source_url"),
        doc_type=record["doc_type"],
        media_type=record["media_type"],
        size_bytes=int(record["size_bytes"]),
        sha256=record["sha256"],
        blob_key=pipeline.blob_key(target.org_id, record["sha256"]),
        status=DocumentStatus(record["status"]) if kept else DocumentStatus.queued,
        progress=1.0 if kept else 0.0,
        error=record.get("error") if kept else None,
        stage_timings=(record.get("stage_timings") or {}) if kept else {},
        user_metadata=record.get("metadata") or {},
        properties=record.get("properties") or {},
        title=record.get("title"),
        language=record.get("language"),
        page_count=record.get("page_count"),
        chunk_count=chunk_count,
        text_chars=int(record.get("text_chars") or 0) if kept else 0,
        processed_at=_when(record.get("processed_at")) if kept else None,
    )


async def _write_batch(archive: zipfile.ZipFile, target: _Target, batch: list[_Entry]) -> None:
    """Files first, then rows, text, chunks and index entries of the batch in one transaction."""
    written: list[str] = []
    for entry in batch:
        key = pipeline.blob_key(target.org_id, entry.record["sha256"])
        if await _put_blob(archive, target.store, entry.record["blob"], key):
            written.append(key)
    async with unit_of_work(target.sessionmaker) as session:
        if written:
            documents._drop_files_if_rolled_back(session, target.store, target.org_id, written)
        indexed: list[tuple[Document, list[_ChunkRef], list[_ChunkRef], PreparedVectors | None]] = []
        chunk_rows: list[dict[str, Any]] = []
        for entry in batch:
            kept = DocumentStatus(entry.record["status"]) in KEPT_STATUSES
            document = _new_document(target, entry.record, kept=kept, chunk_count=len(entry.chunks) if kept else 0)
            session.add(document)
            target.new_ids[entry.record["id"]] = document.id
            if entry.record.get("parent_id"):
                target.parents[document.id] = entry.record["parent_id"]
            target.report.documents += 1
            if not kept:
                target.queued.append(document.id)
                continue
            for stored in entry.texts[:1]:
                session.add(
                    DocumentText(
                        document_id=document.id,
                        org_id=target.org_id,
                        text=stored["text"],
                        structure=stored.get("structure") or [],
                        generation=1,
                    )
                )
            refs = [_ChunkRef(new_id(), chunk["text"], list(chunk["heading_path"])) for chunk in entry.chunks]
            embedded = [ref for ref, chunk in zip(refs, entry.chunks, strict=True) if chunk["vector"]]
            indexed.append((document, refs, embedded, entry.vectors))
            chunk_rows.extend(
                {
                    "id": ref.id,
                    "org_id": target.org_id,
                    "collection_id": target.report.collection_id,
                    "document_id": document.id,
                    "ordinal": int(chunk["ordinal"]),
                    "text": chunk["text"],
                    "start_offset": int(chunk["start_offset"]),
                    "end_offset": int(chunk["end_offset"]),
                    "page_start": chunk.get("page_start"),
                    "page_end": chunk.get("page_end"),
                    "heading_path": ref.heading_path,
                    "token_count": int(chunk["token_count"]),
                }
                for ref, chunk in zip(refs, entry.chunks, strict=True)
            )
        await session.flush()
        if chunk_rows:
            await session.execute(sa.insert(Chunk), chunk_rows)
        for document, refs, embedded, vectors in indexed:
            index_target = IndexTarget(document.id, target.org_id)
            for indexer in indexers():
                if indexer.name == "vectors":
                    # Missing vectors (another model, or none in the archive) are embedded afterwards.
                    if vectors is None:
                        continue
                    await indexer.index_document(session, index_target, embedded, vectors)
                    target.report.vectors += len(embedded)
                else:
                    prepared = await indexer.prepare(index_target, refs)
                    await indexer.index_document(session, index_target, refs, prepared)
            target.report.chunks += len(refs)


async def _link_parents_and_record(target: _Target, manifest: dict[str, Any]) -> None:
    """Attachments point at their imported parent (none when the parent was a duplicate)."""
    async with unit_of_work(target.sessionmaker) as session:
        for child, old_parent in target.parents.items():
            parent = target.new_ids.get(old_parent)
            if parent is not None:
                await session.execute(sa.update(Document).where(Document.id == child).values(parent_id=parent))
        report = target.report
        await record_event(
            session, action="collection.imported", org_id=target.org_id, actor=target.principal.actor,
            meta=CLI_META, target_type="collection", target_id=report.collection_id,
            details={
                "source_collection_id": (manifest.get("source") or {}).get("collection_id"),
                "documents": report.documents, "chunks": report.chunks, "vectors": report.vectors,
                "duplicates": len(report.duplicates),
            },
        )  # fmt: skip


async def _embed_and_process(settings: Settings, target: _Target, progress: Progress) -> None:
    """Embed what came without vectors of this server's model, and run the pipeline on documents
    that were mid-way in the source: queued on the job system, or here when it is off."""
    report = target.report
    async with unit_of_work(target.sessionmaker, write=False) as session:
        total, done = await reindex.progress_counts(session, report.collection_id, target.model)
    missing = total - done
    if not missing and not target.queued:
        return
    report.reprocessing = len(target.queued)
    if settings.jobs.enabled:
        jobs = await JobRuntime.start_async(settings, run_worker=False)
        try:
            if missing:
                report.reembedding = await reindex.enqueue_reindex(
                    jobs, report.collection_id, target.model, "vectors", False, run=f"import-{new_id().hex}"
                )
            for document_id in target.queued:
                await pipeline.enqueue_ingest(jobs, document_id, target.org_id, 1)
        finally:
            await jobs.shutdown_async()
        return
    if missing:
        task = progress.add_task("Embedding", total=missing)
        await reindex.run_inline(
            report.collection_id, target.model, "vectors", False, progress=lambda n: progress.advance(task, n)
        )
        report.reembedding = "done"
    for document_id in target.queued:
        await pipeline.process_inline(document_id, 1)
