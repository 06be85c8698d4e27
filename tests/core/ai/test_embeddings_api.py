"""`/api/v1/ai/embeddings/*` over HTTP: one text or a batch, through the AI client (hashing embedder)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tessera.core.ai.embeddings_router import MAX_BATCH, MAX_TEXT_CHARS
from tests.factories import SignedIn, add_member, error_code, register

GENERATE = "/api/v1/ai/embeddings/generate"
BATCH = "/api/v1/ai/embeddings/batch"


@pytest.fixture
async def user(client: httpx.AsyncClient) -> SignedIn:
    return await register(client)


async def test_generate_returns_a_unit_vector_of_the_servers_model(client: httpx.AsyncClient, user: SignedIn) -> None:
    response = await client.post(GENERATE, json={"text": "Grey herons stand in shallow water"}, headers=user.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "fake:hash-64"
    assert body["dimension"] == 64
    assert len(body["embedding"]) == 64
    assert np.linalg.norm(body["embedding"]) == pytest.approx(1.0, abs=1e-5)


async def test_input_is_another_name_for_text(client: httpx.AsyncClient, user: SignedIn) -> None:
    by_text = await client.post(GENERATE, json={"text": "oak trees", "kind": "query"}, headers=user.headers)
    by_input = await client.post(GENERATE, json={"input": "oak trees", "kind": "query"}, headers=user.headers)

    assert by_text.json() == by_input.json()


async def test_a_batch_keeps_the_order_and_matches_single_texts(client: httpx.AsyncClient, user: SignedIn) -> None:
    texts = ["steam engines and pistons", "oak trees live long", "herons eat fish"]

    response = await client.post(BATCH, json={"texts": texts}, headers=user.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["dimension"], len(body["embeddings"])) == ("fake:hash-64", 64, 3)
    for text, vector in zip(texts, body["embeddings"], strict=True):
        single = (await client.post(GENERATE, json={"text": text}, headers=user.headers)).json()["embedding"]
        assert vector == pytest.approx(single, abs=1e-6)
    similar = np.dot(body["embeddings"][0], body["embeddings"][0])
    different = np.dot(body["embeddings"][0], body["embeddings"][1])
    assert similar > different


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": "a", "input": "b"},
        {"text": ""},
        {"text": "a", "kind": "document"},
        {"text": "nul\x00inside"},
        {"text": "a", "model": "other"},
    ],
    ids=["neither", "both", "empty", "kind", "nul", "unknown-field"],
)
async def test_generate_refuses_bad_bodies(client: httpx.AsyncClient, user: SignedIn, body: dict[str, str]) -> None:
    response = await client.post(GENERATE, json=body, headers=user.headers)

    assert response.status_code == 422, response.text
    assert error_code(response) == "validation_error"


async def test_too_much_is_a_413(client: httpx.AsyncClient, user: SignedIn) -> None:
    too_many = await client.post(BATCH, json={"texts": ["x"] * (MAX_BATCH + 1)}, headers=user.headers)
    too_long = await client.post(BATCH, json={"texts": ["ok", "x" * (MAX_TEXT_CHARS + 1)]}, headers=user.headers)
    one_too_long = await client.post(GENERATE, json={"text": "x" * (MAX_TEXT_CHARS + 1)}, headers=user.headers)
    empty = await client.post(BATCH, json={"texts": []}, headers=user.headers)
    at_limit = await client.post(BATCH, json={"texts": ["x"] * MAX_BATCH}, headers=user.headers)

    assert too_many.status_code == 413
    assert error_code(too_many) == "embedding_batch_too_large"
    assert too_long.status_code == 413
    assert error_code(too_long) == "embedding_text_too_long"
    assert too_long.json()["error"]["details"] == {"indexes": [1]}
    assert one_too_long.status_code == 413
    assert empty.status_code == 422
    assert at_limit.status_code == 200
    assert len(at_limit.json()["embeddings"]) == MAX_BATCH


async def test_embeddings_need_a_signed_in_member(client: httpx.AsyncClient, user: SignedIn) -> None:
    viewer = await add_member(client, user, "viewer")

    anonymous = await client.post(GENERATE, json={"text": "hello"})
    as_viewer = await client.post(GENERATE, json={"text": "hello"}, headers=viewer.headers)

    assert anonymous.status_code == 401
    assert as_viewer.status_code == 200
