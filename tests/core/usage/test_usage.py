"""Usage accounting and budgets over HTTP on both backends: every transport records its answer,
reports group and total per model, user, API key, source and day, costs follow the price list,
budgets refuse with 429 and Retry-After, and nobody sees another organization's usage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tessera.settings import ModelPrice
from tests.factories import SignedIn, add_member, create_collection, error_code, ingest_samples, register


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> SignedIn:
    user = await register(client)
    collection_id = await create_collection(client, user, "Field notes")
    await ingest_samples(client, user, collection_id)
    return user


async def report(client: httpx.AsyncClient, user: SignedIn, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/usage", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_transport_is_recorded_and_reported(
    client: httpx.AsyncClient, app: FastAPI, owner: SignedIn
) -> None:
    app.state.settings.generation.prices = {"extractive:v1": ModelPrice(input_per_million=1.0, output_per_million=2.0)}
    question = {"question": "What do grey herons eat?"}
    assert (await client.post("/api/v1/ask", json=question, headers=owner.headers)).status_code == 200
    stream = await client.post("/api/v1/ask", json={**question, "stream": True}, headers=owner.headers)
    assert "event: done" in stream.text
    sent = await client.post(
        "/api/v1/chat/send", json={"content": "How long do oak trees live?"}, headers=owner.headers
    )
    assert sent.status_code == 200
    streamed = await client.post(
        "/api/v1/chat/send", json={"content": "How long do oak trees live?", "stream": True}, headers=owner.headers
    )
    assert "event: done" in streamed.text

    by_source = await report(client, owner, group_by="source")
    assert by_source["scope"] == "organization"
    assert {g["key"]: g["requests"] for g in by_source["groups"]} == {"ask": 2, "chat": 2}
    totals = by_source["totals"]
    assert totals["requests"] == 4
    assert totals["input_tokens"] > 0
    expected = (totals["input_tokens"] * 1.0 + totals["output_tokens"] * 2.0) / 1e6
    assert totals["cost"] == pytest.approx(expected, rel=1e-6)
    assert by_source["currency"] == "USD"

    by_model = await report(client, owner, group_by="model")
    assert [g["key"] for g in by_model["groups"]] == ["extractive:v1"]
    by_day = await report(client, owner, group_by="day")
    assert [g["key"] for g in by_day["groups"]] == [datetime.now(UTC).date().isoformat()]
    by_user = await report(client, owner, group_by="user")
    assert [g["key"] for g in by_user["groups"]] == [owner.user_id]

    assert (await report(client, owner, **{"from": "2020-01-01", "to": "2020-01-31"}))["totals"]["requests"] == 0
    bad = await client.get("/api/v1/usage", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=owner.headers)
    assert bad.status_code == 422
    assert (await client.get("/api/v1/usage", params={"group_by": "x"}, headers=owner.headers)).status_code == 422


async def test_members_see_their_own_and_organizations_are_apart(client: httpx.AsyncClient, owner: SignedIn) -> None:
    member = await add_member(client, owner, "member")
    await client.post("/api/v1/ask", json={"question": "What do grey herons eat?"}, headers=owner.headers)
    await client.post("/api/v1/ask", json={"question": "How long do oak trees live?"}, headers=member.headers)
    mine = await report(client, member)
    assert (mine["scope"], mine["totals"]["requests"]) == ("me", 1)
    assert (await report(client, owner))["totals"]["requests"] == 2
    assert (await report(client, owner, scope="me"))["totals"]["requests"] == 1
    stranger = await register(client)
    assert (await report(client, stranger))["totals"]["requests"] == 0

    key = await client.post(
        "/api/v1/api-keys", json={"name": "bot", "scopes": ["documents:read", "org:read"]}, headers=owner.headers
    )
    headers = {"X-API-Key": key.json()["key"]}
    assert (await client.post("/api/v1/ask", json={"question": "oak trees?"}, headers=headers)).status_code == 200
    by_key = await report(client, owner, group_by="api_key")
    assert {g["key"] for g in by_key["groups"]} == {None, key.json()["id"]}


async def test_budgets_refuse_with_429_until_next_month(client: httpx.AsyncClient, owner: SignedIn) -> None:
    member = await add_member(client, owner, "member")
    forbidden = await client.put("/api/v1/usage/budget", json={"user_monthly_requests": 1}, headers=member.headers)
    assert forbidden.status_code == 403
    put = await client.put("/api/v1/usage/budget", json={"user_monthly_requests": 1}, headers=owner.headers)
    assert put.status_code == 200, put.text
    assert (await client.get("/api/v1/usage/budget", headers=member.headers)).json()["user_monthly_requests"] == 1

    assert (await client.post("/api/v1/ask", json={"question": "herons?"}, headers=owner.headers)).status_code == 200
    refused = await client.post("/api/v1/chat/send", json={"content": "oaks?"}, headers=owner.headers)
    assert refused.status_code == 429
    assert error_code(refused) == "budget_exceeded"
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["error"]["details"]["budget"] == "user_monthly_requests"
    # The quota is per user: a colleague still has theirs.
    assert (await client.post("/api/v1/ask", json={"question": "oaks?"}, headers=member.headers)).status_code == 200

    await client.put("/api/v1/usage/budget", json={"org_monthly_tokens": 10}, headers=owner.headers)
    spent = await client.post("/api/v1/ask", json={"question": "oaks?"}, headers=member.headers)
    assert spent.status_code == 429
    assert spent.json()["error"]["details"]["budget"] == "org_monthly_tokens"

    await client.put("/api/v1/usage/budget", json={}, headers=owner.headers)
    assert (await client.post("/api/v1/ask", json={"question": "oaks?"}, headers=owner.headers)).status_code == 200
    bad = await client.put("/api/v1/usage/budget", json={"org_monthly_tokens": -1}, headers=owner.headers)
    assert bad.status_code == 422
