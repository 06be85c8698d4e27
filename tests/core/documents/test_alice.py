"""Acceptance: the Alice book in TXT, EPUB and PDF ingests to `ready` through the pipeline, with
chapter headings in the heading paths and page numbers on PDF chunks, and the three extracted
texts agree. Skips where ../shared/data/gutenberg-books is absent (a user's fresh clone)."""

from __future__ import annotations

import difflib
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.documents.parsing import ocr
from tessera.core.documents.pipeline import process_inline
from tests.factories import SignedIn, register

BOOKS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gutenberg-books"
ALICE = {
    "txt": BOOKS / "txt" / "pg11.txt",
    "epub": BOOKS / "epub" / "pg11.epub",
    "pdf": BOOKS / "pdf" / "alices_adventures_in_wonderland.pdf",
}
pytestmark = pytest.mark.skipif(not BOOKS.exists(), reason="../shared/data/gutenberg-books is absent")

# The chapter every edition has, however it numbers it ("CHAPTER II.", "2", …).
CHAPTER_TITLES = ["The Pool of Tears", "A Caucus-Race and a Long Tale", "Advice from a Caterpillar", "Pig and Pepper"]
WORD = re.compile(r"[a-z]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("\u2019", "'"))


def body_between(tokens: list[str], start: list[str], end: list[str]) -> list[str]:
    """The words from the first `start` phrase to the last `end` phrase (drops front and back matter)."""

    def find(phrase: list[str], last: bool = False) -> int:
        positions = [i for i in range(len(tokens) - len(phrase) + 1) if tokens[i : i + len(phrase)] == phrase]
        assert positions, f"{' '.join(phrase)!r} not found"
        return positions[-1] if last else positions[0]

    return tokens[find(start) : find(end, last=True) + len(end)]


async def ingest(client: httpx.AsyncClient, user: SignedIn, collection_id: str, path: Path) -> str:
    response = await client.post(
        "/api/v1/documents",
        data={"collection_id": collection_id},
        files={"files": (path.name, path.read_bytes())},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    document_id = str(response.json()["documents"][0]["id"])
    assert await process_inline(uuid.UUID(document_id), 1) == "ready"
    return document_id


async def chunks_of(client: httpx.AsyncClient, user: SignedIn, document_id: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"/api/v1/documents/{document_id}/chunks", params=params, headers=user.headers)).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items


async def test_alice_in_three_formats(client: httpx.AsyncClient) -> None:
    user = await register(client)
    collection = await client.post("/api/v1/collections", json={"name": "Alice"}, headers=user.headers)
    collection_id = collection.json()["id"]
    texts: dict[str, str] = {}
    for kind, path in ALICE.items():
        document_id = await ingest(client, user, collection_id, path)
        document = (await client.get(f"/api/v1/documents/{document_id}", headers=user.headers)).json()
        assert document["status"] == "ready"
        assert document["doc_type"] == {"txt": "text"}.get(kind, kind)
        assert document["language"] == "en"
        chunks = await chunks_of(client, user, document_id)
        assert len(chunks) > 50

        paths = [" / ".join(str(p) for p in chunk["heading_path"]) for chunk in chunks]  # type: ignore[attr-defined]
        for title in CHAPTER_TITLES:
            assert any(title.lower() in path.lower() for path in paths), (kind, title)
        tears = next(c for c in chunks if "Curiouser and curiouser" in str(c["text"]))
        assert "pool of tears" in " / ".join(tears["heading_path"]).lower(), (kind, tears["heading_path"])  # type: ignore[arg-type]
        if kind == "pdf":
            assert document["page_count"] == 76
            assert all(chunk["page_start"] is not None for chunk in chunks)
            assert all(1 <= int(chunk["page_start"]) <= int(chunk["page_end"]) <= 76 for chunk in chunks)  # type: ignore[call-overload]
        texts[kind] = (await client.get(f"/api/v1/documents/{document_id}/text", headers=user.headers)).text

    # The three texts agree on the story itself (front matter and licences differ by edition).
    bodies = {
        kind: body_between(words(text), ["alice", "was", "beginning", "to", "get"], ["happy", "summer", "days"])
        for kind, text in texts.items()
    }
    for first, second in (("txt", "epub"), ("txt", "pdf"), ("epub", "pdf")):
        matcher = difflib.SequenceMatcher(None, bodies[first], bodies[second], autojunk=False)
        similarity = matcher.ratio()
        print(f"word similarity {first}/{second}: {similarity:.4f}")  # noqa: T201 - reported in BENCHMARKS.md
        assert similarity > 0.98, (first, second, similarity)


def scanned_alice_page() -> bytes:
    """Page 2 of the Alice PDF rendered to a 200 dpi greyscale PNG: a scan with no text layer."""
    import io

    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    document = pdfium.PdfDocument(ALICE["pdf"].read_bytes())
    try:
        image = document[1].render(scale=200 / 72, grayscale=True).to_pil()
    finally:
        document.close()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.skipif(not ocr.tesseract_available(), reason="Tesseract is not installed (Debian: tesseract-ocr)")
async def test_a_scanned_page_is_ocred(client: httpx.AsyncClient) -> None:
    user = await register(client)
    collection = await client.post("/api/v1/collections", json={"name": "Scans"}, headers=user.headers)
    response = await client.post(
        "/api/v1/documents",
        data={"collection_id": collection.json()["id"]},
        files={"files": ("scan.png", scanned_alice_page())},
        headers=user.headers,
    )
    document_id = response.json()["documents"][0]["id"]
    assert await process_inline(uuid.UUID(document_id), 1) == "ready"
    document = (await client.get(f"/api/v1/documents/{document_id}", headers=user.headers)).json()
    assert document["doc_type"] == "png"
    assert document["properties"]["ocr_pages"] == [1]
    text = (await client.get(f"/api/v1/documents/{document_id}/text", headers=user.headers)).text
    recognised = words(text)
    expected = words("Alice was beginning to get very tired of sitting by her sister on the bank")
    assert " ".join(expected) in " ".join(recognised)


async def test_a_scan_without_ocr_ends_needs_ocr(settings: Any, client: httpx.AsyncClient) -> None:
    settings.documents.ocr = False  # as on a machine without Tesseract
    user = await register(client)
    collection = await client.post("/api/v1/collections", json={"name": "Scans"}, headers=user.headers)
    response = await client.post(
        "/api/v1/documents",
        data={"collection_id": collection.json()["id"]},
        files={"files": ("scan.png", scanned_alice_page())},
        headers=user.headers,
    )
    document_id = response.json()["documents"][0]["id"]
    assert await process_inline(uuid.UUID(document_id), 1) == "needs_ocr"
    document = (await client.get(f"/api/v1/documents/{document_id}", headers=user.headers)).json()
    assert document["status"] == "needs_ocr"
    assert document["error"]["code"] == "needs_ocr"
    assert "Tesseract" in document["error"]["message"]
