"""`POST /api/v1/search` and `/documents/{id}/similar` on both backends: modes, hits, filters,
paging, and that permissions and filters hold in every mode (no leak through semantic search)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tessera.core.documents.pipeline import process_inline
from tests.factories import (
    SAMPLE_DOCS,
    SignedIn,
    add_member,
    create_collection,
    error_code,
    ingest_document,
    register,
)

DOCS = SAMPLE_DOCS

MODES = ["keyword", "semantic", "hybrid"]


async def search(client: httpx.AsyncClient, user: SignedIn, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/search", json=body, headers=user.headers)


@pytest.fixture
async def library(client: httpx.AsyncClient) -> tuple[SignedIn, str, dict[str, str]]:
    user = await register(client)
    collection_id = await create_collection(client, user, "Nature")
    ids = {}
    for index, (name, content) in enumerate(DOCS.items()):
        ids[name] = await ingest_document(client, user, collection_id, name, content, f'{{"year": {2020 + index}}}')
    return user, collection_id, ids


@pytest.mark.parametrize("mode", MODES)
async def test_each_mode_finds_the_matching_chunk(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]], mode: str
) -> None:
    user, collection_id, ids = library
    response = await search(client, user, query="herons waiting in shallow water", mode=mode)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == mode
    top = body["hits"][0]
    assert top["document_id"] == ids["herons.md"]
    assert top["collection_id"] == collection_id
    assert top["heading_path"] == ["Birds of the marsh", "Herons"]
    assert "<mark>" in top["snippet"]
    assert top["text"].startswith("Grey herons") or "Grey herons" in top["text"]
    expected = {"keyword"} if mode == "keyword" else {"semantic"} if mode == "semantic" else {"keyword", "semantic"}
    assert set(top["components"]) == expected
    assert (body["embedding_model"] is None) == (mode == "keyword")


async def test_hit_offsets_point_into_the_document_text(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, _, _ = library
    hit = (await search(client, user, query="acorns", mode="keyword")).json()["hits"][0]
    text = (await client.get(f"/api/v1/documents/{hit['document_id']}/text", headers=user.headers)).text
    assert text[hit["start_offset"] : hit["end_offset"]] == hit["text"]


@pytest.mark.parametrize("mode", MODES)
async def test_filters_apply_inside_the_query(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]], mode: str
) -> None:
    user, _, ids = library
    query = "water"  # in the heron and the steam engine documents
    every = {h["document_id"] for h in (await search(client, user, query=query, mode=mode, limit=50)).json()["hits"]}
    assert ids["herons.md"] in every
    filtered = await search(client, user, query=query, mode=mode, filters={"year": {"gte": 2022}}, limit=50)
    assert filtered.status_code == 200, filtered.text
    assert {h["document_id"] for h in filtered.json()["hits"]} <= {ids["engines.md"]}
    by_type = await search(client, user, query=query, mode=mode, filters={"doc_type": "pdf"})
    assert by_type.json()["hits"] == []
    listed = await search(client, user, query=query, mode=mode, filters={"year": {"in": [2020]}}, limit=50)
    assert {h["document_id"] for h in listed.json()["hits"]} <= {ids["herons.md"]}


@pytest.mark.parametrize(
    "filters",
    [{"year": {"between": 1}}, {"year": {"in": []}}, {"year": None}, {"created_at": {"gte": "yesterday"}}, {"": 1}],
)
async def test_bad_filters_are_422(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]], filters: dict[str, Any]
) -> None:
    user, _, _ = library
    response = await search(client, user, query="water", filters=filters)
    assert response.status_code == 422, response.text


async def test_paging_with_a_cursor(client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]) -> None:
    user, _, _ = library
    first = (await search(client, user, query="water trees engine herons", mode="hybrid", limit=1)).json()
    assert len(first["hits"]) == 1
    assert first["next_cursor"]
    second = (
        await search(
            client, user, query="water trees engine herons", mode="hybrid", limit=1, cursor=first["next_cursor"]
        )
    ).json()
    assert second["hits"][0]["chunk_id"] != first["hits"][0]["chunk_id"]
    bad = await search(client, user, query="water", cursor="!!!")
    assert bad.status_code == 422


@pytest.mark.parametrize("mode", MODES)
async def test_no_leak_across_collections_or_organizations(client: httpx.AsyncClient, mode: str) -> None:
    owner = await register(client)
    member = await add_member(client, owner, "member")
    private = await create_collection(client, owner, "Secret", visibility="private")
    secret = await ingest_document(client, owner, private, "herons.md", DOCS["herons.md"])
    stranger = await register(client)
    theirs = await create_collection(client, stranger, "Theirs")
    await ingest_document(client, stranger, theirs, "oaks.md", DOCS["oaks.md"])

    for user in (member, stranger):
        hits = (await search(client, user, query="grey herons shallow water fish", mode=mode, limit=50)).json()["hits"]
        assert secret not in {h["document_id"] for h in hits}
    # Naming a collection one cannot see is a 404, not an empty result that confirms it exists.
    refused = await search(client, member, query="herons", mode=mode, collections=[private])
    assert refused.status_code == 404
    assert error_code(refused) == "collection_not_found"
    assert (await search(client, stranger, query="herons", mode=mode, collections=[private])).status_code == 404
    # The owner finds it.
    hits = (await search(client, owner, query="grey herons", mode=mode)).json()["hits"]
    assert hits[0]["document_id"] == secret


async def test_deleted_documents_leave_every_index(client: httpx.AsyncClient) -> None:
    user = await register(client)
    collection_id = await create_collection(client, user, "C")
    document_id = await ingest_document(client, user, collection_id, "herons.md", DOCS["herons.md"])
    for mode in MODES:
        assert (await search(client, user, query="grey herons", mode=mode)).json()["hits"]
    assert (await client.delete(f"/api/v1/documents/{document_id}", headers=user.headers)).status_code == 204
    for mode in MODES:
        assert (await search(client, user, query="grey herons", mode=mode)).json()["hits"] == [], mode


async def test_reprocessed_documents_are_not_found_twice(client: httpx.AsyncClient) -> None:
    user = await register(client)
    collection_id = await create_collection(client, user, "C")
    document_id = await ingest_document(client, user, collection_id, "herons.md", DOCS["herons.md"])
    assert (await search(client, user, query="grey herons", mode="semantic")).json()["hits"]
    await client.post(f"/api/v1/documents/{document_id}/reprocess", headers=user.headers)
    assert await process_inline(uuid.UUID(document_id), 2) == "ready"
    hits = (await search(client, user, query="grey herons", mode="semantic", limit=50)).json()["hits"]
    chunk_ids = [h["chunk_id"] for h in hits]
    assert len(chunk_ids) == len(set(chunk_ids))
    chunks = (await client.get(f"/api/v1/documents/{document_id}/chunks", headers=user.headers)).json()["items"]
    assert set(chunk_ids) <= {c["id"] for c in chunks}


async def test_similar_documents(client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]) -> None:
    user, collection_id, ids = library
    extra = await ingest_document(
        client, user, collection_id, "egrets.md",
        b"# Birds\n\nEgrets and herons wade in shallow water to catch fish and frogs.\n",
    )  # fmt: skip
    response = await client.get(f"/api/v1/documents/{extra}/similar", headers=user.headers)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[0]["id"] == ids["herons.md"]
    assert extra not in {item["id"] for item in items}
    stranger = await register(client)
    assert (await client.get(f"/api/v1/documents/{extra}/similar", headers=stranger.headers)).status_code == 404


async def test_viewer_can_search_and_api_key_scopes_apply(
    client: httpx.AsyncClient, library: tuple[SignedIn, str, dict[str, str]]
) -> None:
    user, _, _ = library
    viewer = await add_member(client, user, "viewer")
    assert (await search(client, viewer, query="oaks")).status_code == 200
    key = await client.post(
        "/api/v1/api-keys", json={"name": "no docs", "scopes": ["collections:read"]}, headers=user.headers
    )
    refused = await client.post("/api/v1/search", json={"query": "oaks"}, headers={"X-API-Key": key.json()["key"]})
    assert refused.status_code == 403


async def test_keyword_search_is_exact_when_other_orgs_fill_the_best_matches(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite the full-text index is shared, and keyword search first scores the best
    # `FAST_POOL` matches of every organization; when those are someone else's, it must still
    # return this organization's own matches (not an empty or short page).
    from tessera.core.retrieval import keyword

    monkeypatch.setattr(keyword, "FAST_POOL", 2)
    stranger = await register(client)
    theirs = await create_collection(client, stranger, "Theirs")
    for number in range(6):
        body = b"# Herons\n\nGrey herons and more grey herons wade in shallow water: herons, herons.\n"
        await ingest_document(client, stranger, theirs, f"herons-{number}.md", body + str(number).encode())
    owner = await register(client)
    mine = await create_collection(client, owner, "Mine")
    expected = await ingest_document(client, owner, mine, "marsh.md", DOCS["herons.md"])

    hits = (await search(client, owner, query="grey herons", mode="keyword", limit=1)).json()["hits"]
    assert [h["document_id"] for h in hits] == [expected]
