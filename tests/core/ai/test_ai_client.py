"""The AI client in process and over HTTP to an AI-role app on a real uvicorn server: results,
service-token auth, retries, the circuit breaker opening and closing, health and model status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from tessera.core.ai.client import InProcessAIClient
from tessera.core.ai.errors import AIServiceMisconfigured, AIServiceUnavailable
from tessera.core.ai.remote import RemoteAIClient
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import register
from tests.processes import free_port
from tests.servers import serve_in_thread


@pytest.fixture
def ai_settings() -> Settings:
    return make_settings(privacy={"detector": "fake"})


@pytest.fixture
def ai_port() -> int:
    return free_port()


@pytest.fixture
def ai_service(ai_settings: Settings, ai_port: int) -> Iterator[str]:
    with serve_in_thread(create_app(ai_settings, role="ai"), "AI service", port=ai_port) as url:
        yield url


def remote(settings: Settings, url: str, **ai: Any) -> RemoteAIClient:
    return RemoteAIClient(settings.model_copy(update={"ai": settings.ai.model_copy(update={"url": url, **ai})}))


async def test_remote_results_match_in_process(ai_settings: Settings, ai_service: str) -> None:
    local, far = InProcessAIClient(ai_settings), remote(ai_settings, ai_service)
    try:
        texts = ["hearing aids for the left ear", "tinnitus since March"]
        (local_model, local_vectors), (far_model, far_vectors) = await asyncio.gather(
            local.embed(texts), far.embed(texts)
        )
        assert far_model == local_model
        assert far_vectors.shape == local_vectors.shape == (2, local_vectors.shape[1])
        assert np.allclose(far_vectors, local_vectors)

        note = "Call Jane at 212-555-0101 or write to jane.roe@example.com."
        assert await far.analyze_pii(note) == await local.analyze_pii(note)
        found = {entity.entity_type for entity in await far.analyze_pii(note, deny=["Jane"])}
        assert {"EMAIL_ADDRESS", "PHONE_NUMBER"} <= found

        status = await far.models_status()
        assert status.mode == "remote"
        assert status.url == ai_service.rstrip("/")
        assert {m.capability: m.state for m in status.models}["embeddings"] == "ready"
        health = await far.health()
        assert (health.status, health.mode, health.circuit) == ("ok", "remote", "closed")
    finally:
        await asyncio.gather(local.close(), far.close())


async def test_a_wrong_service_token_is_a_clear_configuration_error(ai_settings: Settings, ai_service: str) -> None:
    far = remote(ai_settings, ai_service, service_token=SecretStr("not-the-shared-secret"))
    try:
        with pytest.raises(AIServiceMisconfigured, match="service token"):
            await far.embed(["hello"])
        assert far.circuit.state == "closed"  # a refusal says the service is up
    finally:
        await far.close()
    async with httpx.AsyncClient(base_url=ai_service) as raw:
        response = await raw.post("/internal/ai/embeddings", json={"texts": ["x"]})
    assert response.status_code == 401


async def test_outage_opens_the_circuit_and_recovery_closes_it(ai_settings: Settings, ai_port: int) -> None:
    app = create_app(ai_settings, role="ai")
    far = remote(
        ai_settings, f"http://127.0.0.1:{ai_port}", retries=1, circuit_failures=2, circuit_cooldown_seconds=0.5
    )
    try:
        with serve_in_thread(app, "AI service", port=ai_port):
            assert len(await far.analyze_pii("Mail bob@example.org")) == 1

        # Down: each call is retried once, then fails with 503 and Retry-After; two open the circuit.
        for _ in range(2):
            with pytest.raises(AIServiceUnavailable) as failed:
                await far.analyze_pii("Mail bob@example.org")
            assert failed.value.status_code == 503
            assert failed.value.headers["Retry-After"]
        assert far.circuit.state == "open"
        with pytest.raises(AIServiceUnavailable, match="circuit open"):
            await far.embed(["fails fast"])
        health = await far.health()
        assert (health.status, health.circuit) == ("unavailable", "open")

        with serve_in_thread(app, "AI service", port=ai_port):
            await asyncio.sleep(0.6)  # past the cooldown: one trial call goes through and closes it
            assert len(await far.analyze_pii("Mail bob@example.org")) == 1
            assert far.circuit.state == "closed"
            assert (await far.health()).status == "ok"
    finally:
        await far.close()


async def test_health_and_models_status_over_the_api(client: httpx.AsyncClient) -> None:
    health = await client.get("/api/v1/ai/health")
    assert health.status_code == 200
    assert health.json()["mode"] == "in_process"
    assert health.json()["status"] == "ok"

    assert (await client.get("/api/v1/ai/models/status")).status_code == 401
    user = await register(client)
    status = await client.get("/api/v1/ai/models/status", headers=user.headers)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["mode"] == "in_process"
    assert body["process_memory_mb"] > 0
    assert {m["capability"] for m in body["models"]} == {"pii", "entities", "embeddings"}


async def test_warm_up_loads_models_and_records_their_cost(ai_settings: Settings) -> None:
    client = InProcessAIClient(ai_settings)
    try:
        await client.warm_up()
        models = {m.capability: m for m in (await client.models_status()).models}
        for capability in ("pii", "embeddings"):
            assert models[capability].state == "ready", models[capability]
            assert models[capability].load_seconds is not None
            assert models[capability].loaded_at is not None
        assert (models["embeddings"].model or "").startswith("fake")
    finally:
        await client.close()
