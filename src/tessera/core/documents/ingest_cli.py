"""`tessera ingest`: files into a collection, against the local data dir or a running server.

Local mode runs the same pipeline steps in this process (no server or worker needed) and acts
as a member of the organization (`--user`, default its first owner). Server mode uploads with an
API key and follows each document until it is ready or failed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select

from tessera.core.audit.service import RequestMeta
from tessera.core.auth.models import Membership, Organization, Role, User
from tessera.core.auth.principal import Principal, user_snapshot
from tessera.core.db.session import create_engine, create_sessionmaker, unit_of_work
from tessera.core.documents import pipeline, service
from tessera.core.documents.errors import CollectionNotFound
from tessera.core.documents.models import Collection, Document
from tessera.core.documents.runtime import PipelineContext
from tessera.core.documents.schemas import CollectionCreate
from tessera.core.errors import AppError, InvalidInput
from tessera.settings import Settings

CLI_META = RequestMeta(ip=None, user_agent="tessera-cli", request_id=None)
TERMINAL = {"ready", "failed", "needs_ocr"}
FAILED = {"rejected", "failed", "needs_ocr"}
STILL_PROCESSING = "still processing when the wait ended"


@dataclass
class Outcome:
    path: str
    status: str
    document_id: str | None = None
    chunks: int = 0
    reason: str = ""
    duplicate: bool = False


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[Outcome]:
        """Rejected, failed, without text (needs_ocr), or still unfinished when a wait ran out.
        Without waiting, an accepted upload still being processed is not a failure."""
        return [o for o in self.outcomes if o.status in FAILED or o.reason == STILL_PROCESSING]


def collect_paths(paths: Sequence[Path], *, recursive: bool) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            if not recursive:
                raise InvalidInput(f"{path} is a folder: pass --recursive to ingest what it holds")
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            found.append(path)
        else:
            raise InvalidInput(f"{path} does not exist")
    return found


def parse_metadata_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """`k=v` pairs; values that read as JSON (numbers, true/false, lists) keep their type."""
    import json

    metadata: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--metadata takes key=value, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        metadata[key.strip()] = value
    return metadata


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
        console=console,
        transient=False,
    )


def print_report(console: Console, report: Report) -> None:
    table = Table(title=f"Ingested {len(report.outcomes)} file(s) in {report.seconds:.1f} s")
    for column in ("file", "status", "chunks", "document", "reason"):
        table.add_column(column)
    for outcome in report.outcomes:
        style = "green" if outcome.status in ("ready", "duplicate") else "red"
        table.add_row(
            outcome.path,
            f"[{style}]{outcome.status}[/{style}]",
            str(outcome.chunks),
            outcome.document_id or "-",
            outcome.reason,
        )
    console.print(table)
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    console.print(", ".join(f"{status}: {count}" for status, count in sorted(counts.items())))


# ---------------------------------------------------------------------------------------------
# local


async def _acting_principal(session: Any, org: str | None, user_email: str | None) -> Principal:
    orgs = list((await session.execute(select(Organization).order_by(Organization.created_at))).scalars())
    if not orgs:
        raise InvalidInput("No organization exists yet: create a user first (`tessera admin create-user`)")
    if org is None:
        if len(orgs) > 1:
            names = ", ".join(f"{o.name} ({o.slug})" for o in orgs[:10])
            raise InvalidInput(f"Several organizations exist; pick one with --org: {names}")
        organization = orgs[0]
    else:
        matches = [o for o in orgs if org in (o.name, o.slug, str(o.id))]
        if not matches:
            raise InvalidInput(f"No organization named {org!r}")
        organization = matches[0]
    query = (
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == organization.id)
    )
    who = User.email == user_email.lower() if user_email else Membership.role == Role.owner
    query = query.where(who)
    row = (await session.execute(query.order_by(Membership.created_at).limit(1))).first()
    if row is None:
        raise InvalidInput(f"{user_email or 'An owner'} is not a member of {organization.name!r}")
    user, role = row
    snapshot = user_snapshot(user)
    return Principal(user=snapshot, org_id=organization.id, role=role, method="jwt")


async def _collection_for(session: Any, principal: Principal, name: str, create: bool) -> Collection:
    existing = await session.scalar(
        select(Collection).where(Collection.org_id == principal.org_id, Collection.name == name)
    )
    if existing is not None:
        if not service.can_see(principal, existing):
            raise CollectionNotFound(f"Collection {name!r} not found")
        return existing  # type: ignore[no-any-return]
    if not create:
        raise CollectionNotFound(f"Collection {name!r} not found (drop --no-create to create it)")
    return await service.create_collection(session, principal, CollectionCreate(name=name), meta=CLI_META)


async def ingest_local(
    settings: Settings,
    files: Sequence[Path],
    *,
    collection: str,
    metadata: dict[str, Any],
    org: str | None,
    user: str | None,
    create: bool,
    console: Console,
) -> Report:
    PipelineContext.configure(settings, pooled=True)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    store = PipelineContext.store()
    report = Report()
    started = time.perf_counter()
    try:
        async with unit_of_work(sessionmaker) as session:
            principal = await _acting_principal(session, org, user)
            collection_id = (await _collection_for(session, principal, collection, create)).id
        with _progress(console) as progress:
            task = progress.add_task("Ingesting", total=len(files), current="")
            for path in files:
                progress.update(task, current=path.name)
                report.outcomes.append(
                    await _ingest_one(sessionmaker, store, settings, principal, collection_id, path, metadata)
                )
                progress.advance(task)
    finally:
        await PipelineContext.dispose_current_loop()
        await engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


async def _ingest_one(
    sessionmaker: Any,
    store: Any,
    settings: Settings,
    principal: Principal,
    collection_id: uuid.UUID,
    path: Path,
    metadata: dict[str, Any],
) -> Outcome:
    shown = str(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        return Outcome(shown, "failed", reason=f"cannot read: {error.strerror}")
    try:

        async def read() -> bytes:
            return await asyncio.to_thread(handle.read, service.READ_CHUNK)

        staged = await service.stage_stream(
            read,
            filename=service.clean_filename(path.name),
            staging_dir=settings.data_dir / "tmp",
            max_bytes=settings.documents.max_file_bytes,
        )
    except AppError as error:
        return Outcome(shown, "rejected", reason=error.message)
    finally:
        handle.close()
    try:
        async with unit_of_work(sessionmaker) as session:
            added = (
                await service.add_documents(
                    session,
                    principal,
                    collection_id=collection_id,
                    staged=[staged],
                    metadata=metadata,
                    store=store,
                    jobs=None,
                    meta=CLI_META,
                )
            )[0]
            document_id, generation = added.document.id, added.document.generation
            duplicate, chunk_count = added.duplicate, added.document.chunk_count
            existing_status, existing_error = added.document.status.value, added.document.error
    except AppError as error:
        return Outcome(shown, "rejected", reason=error.message)
    finally:
        service.discard([staged])
    if duplicate:
        if existing_status in FAILED:
            # Already stored and failed: a retrying script must not read this as success.
            reason = (existing_error or {}).get("message", "")
            return Outcome(
                shown,
                existing_status,
                str(document_id),
                chunk_count,
                f"already stored, {existing_status}: {reason}",
                True,
            )
        return Outcome(shown, "duplicate", str(document_id), chunk_count, "same content already stored", True)
    await pipeline.process_inline(document_id, generation)
    async with unit_of_work(sessionmaker, write=False) as session:
        document = await session.get(Document, document_id)
        assert document is not None
        reason = (document.error or {}).get("message", "")
        return Outcome(shown, document.status.value, str(document_id), document.chunk_count, reason or "", False)


# ---------------------------------------------------------------------------------------------
# server


def ingest_remote(
    base_url: str,
    api_key: str,
    files: Sequence[Path],
    *,
    collection: str,
    metadata: dict[str, Any],
    create: bool,
    wait: bool,
    console: Console,
    timeout: float = 3600.0,
) -> Report:
    import json

    report = Report()
    started = time.perf_counter()
    headers = {"X-API-Key": api_key}
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=120.0) as client:
        collection_id = _remote_collection(client, collection, create)
        pending: dict[str, Outcome] = {}
        with _progress(console) as progress:
            task = progress.add_task("Uploading", total=len(files), current="")
            for path in files:
                progress.update(task, current=path.name)
                with path.open("rb") as handle:
                    response = client.post(
                        "/api/v1/documents",
                        data={"collection_id": collection_id, "metadata": json.dumps(metadata)},
                        files={"files": (path.name, handle)},
                    )
                if response.status_code != 202:
                    report.outcomes.append(Outcome(str(path), "rejected", reason=_error_message(response)))
                else:
                    item = response.json()["documents"][0]
                    outcome = Outcome(str(path), item["status"], item["id"], item["chunk_count"])
                    if item["duplicate"] and item["status"] in FAILED:
                        outcome.duplicate = True
                        reason = (item.get("error") or {}).get("message", "")
                        outcome.reason = f"already stored, {item['status']}: {reason}"
                    elif item["duplicate"]:
                        outcome.status, outcome.duplicate, outcome.reason = "duplicate", True, "same content stored"
                    else:
                        pending[item["id"]] = outcome
                    report.outcomes.append(outcome)
                progress.advance(task)
            if wait and pending:
                follow = progress.add_task("Processing", total=len(pending), current="")
                deadline = time.monotonic() + timeout
                while pending and time.monotonic() < deadline:
                    for document_id in list(pending):
                        body = client.get(f"/api/v1/documents/{document_id}").json()
                        if body["status"] in TERMINAL:
                            outcome = pending.pop(document_id)
                            outcome.status, outcome.chunks = body["status"], body["chunk_count"]
                            outcome.reason = (body.get("error") or {}).get("message", "")
                            progress.advance(follow)
                    if pending:
                        time.sleep(0.5)
                for outcome in pending.values():
                    outcome.reason = STILL_PROCESSING
    report.seconds = time.perf_counter() - started
    return report


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _remote_collection(client: httpx.Client, name: str, create: bool) -> str:
    found = client.get("/api/v1/collections", params={"name": name, "limit": 200})
    if found.status_code != 200:
        raise InvalidInput(f"Listing collections failed: {_error_message(found)}")
    for item in found.json()["items"]:
        if item["name"] == name:
            return str(item["id"])
    if not create:
        raise InvalidInput(f"Collection {name!r} not found (drop --no-create to create it)")
    created = client.post("/api/v1/collections", json={"name": name})
    if created.status_code != 201:
        raise InvalidInput(f"Creating the collection failed: {_error_message(created)}")
    return str(created.json()["id"])
