"""Collections and documents through the HTTP API, on both backends: upload, deduplication, bad
input, processing, reading, metadata, reprocess, delete, visibility and tenant isolation."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from tessera.core.documents.models import Chunk, Document
from tessera.core.documents.pipeline import process_inline
from tessera.core.documents.router import content_disposition
from tessera.core.retrieval.filters import allowed_documents
from tessera.core.retrieval.keyword import search_keyword
from tests.factories import SignedIn, add_member, create_collection, error_code, ingest_document, register

MARKDOWN = b"""# Field guide

Some opening words about the guide and why it exists, long enough to be a paragraph.

## Birds

Robins sing at dawn. Wrens are small and loud. Herons wait in shallow water for fish.

## Trees

Oaks grow slowly and live for centuries; their acorns feed jays and squirrels.
"""


async def upload(
    client: httpx.AsyncClient,
    user: SignedIn,
    collection_id: str,
    *files: tuple[str, bytes],
    metadata: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    data = {"collection_id": collection_id}
    if metadata is not None:
        data["metadata"] = metadata
    return await client.post(
        "/api/v1/documents",
        data=data,
        files=[("files", (name, content)) for name, content in files],
        headers={**user.headers, **(headers or {})},
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> SignedIn:
    return await register(client)


# ---------------------------------------------------------------------------------------------
# collections


async def test_collection_crud(client: httpx.AsyncClient, owner: SignedIn) -> None:
    created = await client.post(
        "/api/v1/collections",
        json={
            "name": "Patents",
            "description": "Prior art",
            "metadata_schema": {"year": {"type": "integer", "required": True}},
            "chunking": {"chunk_size": 128, "chunk_overlap": 16},
        },
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["owner_id"] == owner.user_id
    assert body["chunking"]["chunk_size"] == 128
    assert body["chunking"]["chunk_overlap"] == 16
    collection_id = body["id"]

    duplicate = await client.post("/api/v1/collections", json={"name": "Patents"}, headers=owner.headers)
    assert duplicate.status_code == 409
    assert error_code(duplicate) == "collection_name_taken"

    renamed = await client.patch(
        f"/api/v1/collections/{collection_id}",
        json={"name": "Prior art", "visibility": "private"},
        headers=owner.headers,
    )
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Prior art"
    assert renamed.json()["visibility"] == "private"

    listed = await client.get("/api/v1/collections", params={"name": "prior"}, headers=owner.headers)
    assert [item["id"] for item in listed.json()["items"]] == [collection_id]

    assert (await client.delete(f"/api/v1/collections/{collection_id}", headers=owner.headers)).status_code == 204
    assert (await client.get(f"/api/v1/collections/{collection_id}", headers=owner.headers)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "ok", "visibility": "public"},
        {"name": "ok", "chunking": {"chunk_size": 64, "chunk_overlap": 64}},
        {"name": "ok", "chunking": {"chunk_size": 2}},
        {"name": "ok", "metadata_schema": {"bad name": {"type": "string"}}},
        {"name": "ok", "metadata_schema": {"year": {"type": "decimal"}}},
        {"name": "ok", "shared_roles": ["emperor"]},
        {"name": "ok", "unknown": 1},
    ],
)
async def test_collection_bad_input_is_422(client: httpx.AsyncClient, owner: SignedIn, body: dict[str, Any]) -> None:
    response = await client.post("/api/v1/collections", json=body, headers=owner.headers)
    assert response.status_code == 422, response.text


async def test_sharing_with_a_non_member_is_refused(client: httpx.AsyncClient, owner: SignedIn) -> None:
    response = await client.post(
        "/api/v1/collections",
        json={"name": "Shared", "visibility": "shared", "shared_user_ids": [str(uuid.uuid4())]},
        headers=owner.headers,
    )
    assert response.status_code == 422


async def test_collection_with_documents_needs_force(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    document_id = await ingest_document(client, owner, collection_id, "guide.md", MARKDOWN)

    refused = await client.delete(f"/api/v1/collections/{collection_id}", headers=owner.headers)
    assert refused.status_code == 409
    assert error_code(refused) == "collection_not_empty"

    forced = await client.delete(f"/api/v1/collections/{collection_id}?force=true", headers=owner.headers)
    assert forced.status_code == 204
    assert (await client.get(f"/api/v1/documents/{document_id}", headers=owner.headers)).status_code == 404


# ---------------------------------------------------------------------------------------------
# upload and processing


async def test_upload_process_and_read(client: httpx.AsyncClient, owner: SignedIn, app: FastAPI) -> None:
    collection_id = await create_collection(client, owner)
    response = await upload(client, owner, collection_id, ("guide.md", MARKDOWN), metadata='{"year": 2024}')
    assert response.status_code == 202, response.text
    item = response.json()["documents"][0]
    assert item["status"] == "queued"
    assert item["duplicate"] is False
    assert item["doc_type"] == "markdown"
    assert item["metadata"] == {"year": 2024}
    assert item["status_url"] == f"/api/v1/documents/{item['id']}"
    assert response.headers["location"] == item["status_url"]

    assert await process_inline(uuid.UUID(item["id"]), 1) == "ready"
    document = (await client.get(item["status_url"], headers=owner.headers)).json()
    assert document["status"] == "ready"
    assert document["progress"] == 1.0
    assert document["chunk_count"] >= 1
    assert set(document["stage_timings"]) >= {"parsing", "chunking", "indexing"}
    assert document["title"] == "Field guide"
    assert document["language"] == "en"
    assert document["properties"]["summary"].startswith("Some opening words")

    full_text = (await client.get(f"/api/v1/documents/{item['id']}/text", headers=owner.headers)).text
    chunks = (await client.get(f"/api/v1/documents/{item['id']}/chunks", headers=owner.headers)).json()["items"]
    assert [c["ordinal"] for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert full_text[chunk["start_offset"] : chunk["end_offset"]] == chunk["text"]
    birds = next(c for c in chunks if "Robins" in c["text"])
    assert birds["heading_path"][-1] == "Birds"
    assert "Field guide" in birds["heading_path"]

    sliced = await client.get(
        f"/api/v1/documents/{item['id']}/text",
        params={"start": birds["start_offset"], "end": birds["end_offset"]},
        headers=owner.headers,
    )
    assert sliced.text == birds["text"]

    # The full-text index holds the chunks.
    allowed = allowed_documents(uuid.UUID(owner.org_id), [uuid.UUID(collection_id)], None)
    async with app.state.sessionmaker() as session:
        hits = await search_keyword(
            session, "herons shallow water", org_id=uuid.UUID(owner.org_id), allowed_documents=allowed, limit=10
        )
    assert hits
    assert str(hits[0].document_id) == item["id"]


async def test_file_download_has_safe_headers(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    name = "naïve report; x=1.md"
    response = await upload(client, owner, collection_id, (name, MARKDOWN))
    document_id = response.json()["documents"][0]["id"]

    download = await client.get(f"/api/v1/documents/{document_id}/file", headers=owner.headers)
    assert download.status_code == 200
    assert download.content == MARKDOWN
    assert download.headers["content-type"].startswith("text/markdown")
    disposition = download.headers["content-disposition"]
    assert (
        disposition
        == "attachment; filename=\"na_ve report; x=1.md\"; filename*=UTF-8''na%C3%AFve%20report%3B%20x%3D1.md"
    )
    assert download.headers["x-content-type-options"] == "nosniff"


def test_content_disposition_cannot_be_broken_out_of() -> None:
    header = content_disposition('a"b\\c\r\nSet-Cookie: x.pdf')
    fallback = header.split(";")[1]
    assert fallback == ' filename="a_b_c__Set-Cookie: x.pdf"'
    assert "\r" not in header
    assert "\n" not in header


async def test_same_content_twice_is_one_document(client: httpx.AsyncClient, owner: SignedIn, app: FastAPI) -> None:
    collection_id = await create_collection(client, owner)
    first = await upload(client, owner, collection_id, ("a.md", MARKDOWN))
    second = await upload(client, owner, collection_id, ("copy.md", MARKDOWN), ("b.txt", b"another text entirely"))
    assert second.status_code == 202
    items = second.json()["documents"]
    assert items[0]["id"] == first.json()["documents"][0]["id"]
    assert items[0]["duplicate"] is True
    assert items[1]["duplicate"] is False
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Document)) == 2


async def test_several_files_in_one_request(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    response = await upload(
        client, owner, collection_id, ("one.txt", b"first file body"), ("two.txt", b"second file body")
    )
    assert response.status_code == 202
    assert [d["filename"] for d in response.json()["documents"]] == ["one.txt", "two.txt"]
    assert "location" not in response.headers


async def test_idempotency_key_replays_and_refuses_reuse(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    key = {"Idempotency-Key": "upload-0001"}
    first = await upload(client, owner, collection_id, ("a.txt", b"alpha"), headers=key)
    again = await upload(client, owner, collection_id, ("a.txt", b"alpha"), headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"

    other = await upload(client, owner, collection_id, ("b.txt", b"beta"), headers=key)
    assert other.status_code == 409
    assert error_code(other) == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([("empty.txt", b"")], 422, "empty_file"),
        ([("blob.bin", bytes(range(256)) * 40)], 415, "unsupported_document_type"),
        ([("archive.zip", b"PK\x05\x06" + b"\x00" * 18)], 415, "unsupported_document_type"),
        ([("../../etc/passwd", b"text")], 422, "invalid_filename"),
        ([("ok.txt", b"fine"), ("empty.txt", b"")], 422, "empty_file"),
    ],
)
async def test_bad_files_are_refused_and_nothing_is_kept(
    client: httpx.AsyncClient,
    owner: SignedIn,
    app: FastAPI,
    files: list[tuple[str, bytes]],
    status: int,
    code: str,
) -> None:
    collection_id = await create_collection(client, owner)
    response = await upload(client, owner, collection_id, *files)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Document)) == 0
    staging = app.state.settings.data_dir / "tmp"
    assert not staging.exists() or not any(staging.iterdir())


async def test_control_characters_in_a_file_name_are_refused(client: httpx.AsyncClient, owner: SignedIn) -> None:
    # Built by hand: httpx would percent-encode the control character.
    collection_id = await create_collection(client, owner)
    boundary = "tessera-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="collection_id"\r\n\r\n{collection_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="bad\x07name.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\ntext\r\n--{boundary}--\r\n"
    ).encode()
    response = await client.post(
        "/api/v1/documents",
        content=body,
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_filename"


async def test_unsupported_type_lists_what_is_accepted(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    response = await upload(client, owner, collection_id, ("x.bin", b"\x00\x01\x02\x03" * 100))
    assert response.status_code == 415
    assert "application/pdf" in response.json()["error"]["details"]["accepted"]


async def test_file_over_the_limit_is_413(settings: Any, client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    limit = settings.documents.max_file_bytes
    settings.documents.max_file_bytes = 1_000
    try:
        response = await upload(client, owner, collection_id, ("big.txt", b"a" * 5_000))
    finally:
        settings.documents.max_file_bytes = limit
    assert response.status_code == 413
    assert error_code(response) == "file_too_large"


async def test_request_over_the_upload_limit_is_413_before_reading(client: httpx.AsyncClient, owner: SignedIn) -> None:
    response = await client.post(
        "/api/v1/documents",
        content=b"x" * 10,
        headers={**owner.headers, "Content-Length": str(10**12), "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 413


async def test_metadata_is_checked_against_the_schema(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(
        client,
        owner,
        metadata_schema={"year": {"type": "integer", "required": True}, "published": {"type": "date"}},
    )
    cases = [
        (None, "invalid_metadata"),
        ('{"year": "2024"}', "invalid_metadata"),
        ('{"year": 2024, "published": "yesterday"}', "invalid_metadata"),
        ("[1, 2]", "invalid_metadata"),
        ("{not json", "invalid_metadata"),
    ]
    for metadata, code in cases:
        response = await upload(client, owner, collection_id, ("a.txt", b"some text"), metadata=metadata)
        assert response.status_code == 422, (metadata, response.text)
        assert error_code(response) == code
    ok = await upload(
        client, owner, collection_id, ("a.txt", b"some text"), metadata='{"year": 2024, "published": "2024-05-01"}'
    )
    assert ok.status_code == 202


async def test_upload_to_unknown_collection_is_404(client: httpx.AsyncClient, owner: SignedIn) -> None:
    response = await upload(client, owner, str(uuid.uuid4()), ("a.txt", b"text"))
    assert response.status_code == 404
    assert error_code(response) == "collection_not_found"


async def test_corrupt_file_ends_failed_with_stage_and_reason(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document>" + "text " * 2000)
    truncated = buffer.getvalue()[:-200]
    response = await upload(client, owner, collection_id, ("broken.docx", truncated))
    assert response.status_code == 202, response.text
    document_id = response.json()["documents"][0]["id"]
    assert await process_inline(uuid.UUID(document_id), 1) == "failed"
    document = (await client.get(f"/api/v1/documents/{document_id}", headers=owner.headers)).json()
    assert document["status"] == "failed"
    assert document["error"]["stage"] == "parsing"
    assert document["error"]["message"]


# ---------------------------------------------------------------------------------------------
# listing, metadata, reprocess, delete


async def test_list_filters(client: httpx.AsyncClient, owner: SignedIn) -> None:
    guides = await create_collection(client, owner, "Guides")
    notes = await create_collection(client, owner, "Notes")
    md = await ingest_document(client, owner, guides, "guide.md", MARKDOWN)
    response = await upload(client, owner, notes, ("n.txt", b"a note"), metadata='{"team": "red", "year": 2023}')
    queued = response.json()["documents"][0]["id"]

    async def ids(**params: Any) -> list[str]:
        listed = await client.get("/api/v1/documents", params=params, headers=owner.headers)
        assert listed.status_code == 200, listed.text
        return [item["id"] for item in listed.json()["items"]]

    assert await ids() == [queued, md]
    assert await ids(collection_id=guides) == [md]
    assert await ids(status="ready") == [md]
    assert await ids(status=["queued", "ready"]) == [queued, md]
    assert await ids(type="text") == [queued]
    assert await ids(metadata='{"team": "red"}') == [queued]
    assert await ids(metadata='{"year": 2023}') == [queued]
    assert await ids(metadata='{"team": "blue"}') == []
    assert await ids(q="GUIDE") == [md]
    assert await ids(created_after="2000-01-01T00:00:00Z") == [queued, md]
    assert await ids(created_before="2000-01-01T00:00:00Z") == []
    first_page = await client.get("/api/v1/documents", params={"limit": 1}, headers=owner.headers)
    cursor = first_page.json()["next_cursor"]
    assert await ids(limit=1, cursor=cursor) == [md]
    assert (await client.get("/api/v1/documents?status=lost", headers=owner.headers)).status_code == 422


async def test_patch_metadata_merges(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner, metadata_schema={"year": {"type": "integer"}})
    response = await upload(client, owner, collection_id, ("a.txt", b"text"), metadata='{"year": 2020, "draft": true}')
    document_id = response.json()["documents"][0]["id"]

    patched = await client.patch(
        f"/api/v1/documents/{document_id}", json={"metadata": {"year": 2021, "draft": None}}, headers=owner.headers
    )
    assert patched.status_code == 200
    assert patched.json()["metadata"] == {"year": 2021}
    wrong = await client.patch(
        f"/api/v1/documents/{document_id}", json={"metadata": {"year": "soon"}}, headers=owner.headers
    )
    assert wrong.status_code == 422


async def test_reprocess_rechunks_with_new_parameters(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    long_text = ("The quick brown fox jumps over the lazy dog near the river bank. " * 200).encode()
    document_id = await ingest_document(client, owner, collection_id, "long.txt", long_text)
    before = (await client.get(f"/api/v1/documents/{document_id}", headers=owner.headers)).json()["chunk_count"]

    await client.patch(
        f"/api/v1/collections/{collection_id}",
        json={"chunking": {"chunk_size": 64, "chunk_overlap": 8}},
        headers=owner.headers,
    )
    response = await client.post(f"/api/v1/documents/{document_id}/reprocess", headers=owner.headers)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    # The superseded run (generation 1) stops without writing; the new one finishes.
    assert await process_inline(uuid.UUID(document_id), 1) == "stopped"
    assert await process_inline(uuid.UUID(document_id), 2) == "ready"
    after = (await client.get(f"/api/v1/documents/{document_id}", headers=owner.headers)).json()
    assert after["chunk_count"] > before
    chunks = (await client.get(f"/api/v1/documents/{document_id}/chunks?limit=200", headers=owner.headers)).json()
    assert max(c["token_count"] for c in chunks["items"]) <= 64


async def test_delete_removes_everything(client: httpx.AsyncClient, owner: SignedIn, app: FastAPI) -> None:
    collection_id = await create_collection(client, owner)
    document_id = await ingest_document(client, owner, collection_id, "guide.md", MARKDOWN)
    async with app.state.sessionmaker() as session:
        document = await session.get(Document, uuid.UUID(document_id))
        assert document is not None
        blob = Path(app.state.settings.blob_dir) / document.blob_key
    assert blob.exists()

    assert (await client.delete(f"/api/v1/documents/{document_id}", headers=owner.headers)).status_code == 204
    assert (await client.get(f"/api/v1/documents/{document_id}", headers=owner.headers)).status_code == 404
    assert not blob.exists()
    async with app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Chunk)) == 0
        # No full-text entry is left at all, so no keyword search can find the document.
        assert (await session.execute(text("SELECT count(*) FROM chunk_fts"))).scalar() == 0
    # The same content can come back afterwards.
    again = await upload(client, owner, collection_id, ("guide.md", MARKDOWN))
    assert again.json()["documents"][0]["duplicate"] is False


async def test_events_and_text_before_parsing(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    response = await upload(client, owner, collection_id, ("a.txt", b"text"))
    document_id = response.json()["documents"][0]["id"]
    early = await client.get(f"/api/v1/documents/{document_id}/text", headers=owner.headers)
    assert early.status_code == 409


# ---------------------------------------------------------------------------------------------
# permissions, visibility, tenants


async def test_viewer_reads_but_cannot_upload(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    document_id = await ingest_document(client, owner, collection_id, "guide.md", MARKDOWN)
    viewer = await add_member(client, owner, "viewer")
    assert (await client.get(f"/api/v1/documents/{document_id}", headers=viewer.headers)).status_code == 200
    refused = await upload(client, viewer, collection_id, ("a.txt", b"text"))
    assert refused.status_code == 403
    assert (await client.delete(f"/api/v1/documents/{document_id}", headers=viewer.headers)).status_code == 403


async def test_private_and_shared_collections(client: httpx.AsyncClient, owner: SignedIn) -> None:
    member = await add_member(client, owner, "member")
    other = await add_member(client, owner, "member")
    private = await create_collection(client, member, "Mine", visibility="private")
    shared = await create_collection(client, member, "Ours", visibility="shared", shared_user_ids=[other.user_id])
    by_role = await create_collection(client, member, "Viewers", visibility="shared", shared_roles=["viewer"])
    secret = await ingest_document(client, member, private, "guide.md", MARKDOWN)

    async def visible(user: SignedIn) -> set[str]:
        listed = await client.get("/api/v1/collections", headers=user.headers)
        return {item["id"] for item in listed.json()["items"]}

    assert {private, shared, by_role} <= await visible(member)
    assert {private, shared, by_role} <= await visible(owner)  # admins see everything
    assert shared in await visible(other)
    assert private not in await visible(other)
    assert by_role not in await visible(other)
    viewer = await add_member(client, owner, "viewer")
    assert by_role in await visible(viewer)

    for path in (
        f"/api/v1/collections/{private}",
        f"/api/v1/documents/{secret}",
        f"/api/v1/documents/{secret}/text",
        f"/api/v1/documents/{secret}/chunks",
        f"/api/v1/documents/{secret}/file",
        f"/api/v1/documents/{secret}/events",
    ):
        assert (await client.get(path, headers=other.headers)).status_code == 404, path
    listed = await client.get("/api/v1/documents", headers=other.headers)
    assert secret not in {item["id"] for item in listed.json()["items"]}
    assert (await upload(client, other, private, ("x.txt", b"x"))).status_code == 404
    assert (await client.delete(f"/api/v1/documents/{secret}", headers=other.headers)).status_code == 404
    # Only the owner or an admin may change the collection.
    changed = await client.patch(f"/api/v1/collections/{shared}", json={"name": "Renamed"}, headers=other.headers)
    assert changed.status_code == 403
    # Uploading content that already sits in a collection the caller cannot see reveals nothing about it.
    hidden = await upload(client, other, shared, ("copy.md", MARKDOWN))
    assert hidden.status_code == 422
    assert secret not in hidden.text


async def test_other_organization_gets_404_everywhere(client: httpx.AsyncClient, owner: SignedIn) -> None:
    collection_id = await create_collection(client, owner)
    document_id = await ingest_document(client, owner, collection_id, "guide.md", MARKDOWN)
    stranger = await register(client)
    headers = stranger.headers
    for method, path, kwargs in [
        ("GET", f"/api/v1/collections/{collection_id}", {}),
        ("PATCH", f"/api/v1/collections/{collection_id}", {"json": {"name": "mine"}}),
        ("DELETE", f"/api/v1/collections/{collection_id}", {}),
        ("GET", f"/api/v1/documents/{document_id}", {}),
        ("GET", f"/api/v1/documents/{document_id}/text", {}),
        ("GET", f"/api/v1/documents/{document_id}/chunks", {}),
        ("GET", f"/api/v1/documents/{document_id}/file", {}),
        ("GET", f"/api/v1/documents/{document_id}/events", {}),
        ("PATCH", f"/api/v1/documents/{document_id}", {"json": {"metadata": {"a": 1}}}),
        ("POST", f"/api/v1/documents/{document_id}/reprocess", {}),
        ("DELETE", f"/api/v1/documents/{document_id}", {}),
        ("GET", f"/api/v1/documents?collection_id={collection_id}", {}),
    ]:
        response = await client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert (await upload(client, stranger, collection_id, ("a.txt", b"a"))).status_code == 404
    assert (await client.get("/api/v1/documents", headers=headers)).json()["items"] == []
    assert (await client.get("/api/v1/collections", headers=headers)).json()["items"] == []
    # The same bytes in another organization are a separate document, not a duplicate.
    theirs = await create_collection(client, stranger)
    copy = await upload(client, stranger, theirs, ("guide.md", MARKDOWN))
    assert copy.json()["documents"][0]["duplicate"] is False
    assert copy.json()["documents"][0]["id"] != document_id
