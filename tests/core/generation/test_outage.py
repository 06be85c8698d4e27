"""A hosted model's outage through `POST /api/v1/ask` (both backends): a fake OpenAI-compatible
server on uvicorn answers, is stopped mid-test, and comes back. Answers degrade to the extractive
model with no 5xx, the circuit opens after the configured failures (calls then skip the dead
server), and after the cooldown one trial call closes it again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tessera.core.generation.runtime import forget_chat_models
from tessera.main import create_app
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, create_collection, ingest_samples, register
from tests.servers import serve_in_thread

ANSWER = "Grey herons stand motionless in shallow water [1]."
COOLDOWN = 3.0  # long enough that a slow machine asks again inside it


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls = 0

    async def completions(self, request: Request) -> JSONResponse:
        self.calls += 1
        body = await request.json()
        return JSONResponse(
            {
                "id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 12},
            }
        )  # fmt: skip

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])


async def ask(client: httpx.AsyncClient, user: SignedIn) -> dict[str, Any]:
    response = await client.post("/api/v1/ask", json={"question": "How do grey herons hunt?"}, headers=user.headers)
    assert response.status_code == 200, response.text  # never a 5xx, whatever the model does
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("failures", [2])
async def test_outage_over_a_stopped_server(database_url: str, tmp_path: Path, failures: int) -> None:
    fake = FakeOpenAI()
    with serve_in_thread(fake.app(), "fake openai") as url:
        port = int(url.rsplit(":", 1)[1])
    # The server is stopped now; the settings point at where it was.
    settings = make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        generation={
            "provider": "openai", "model": "small", "base_url": f"{url}/v1", "timeout_seconds": 2,
            "retries": 0, "breaker_failures": failures, "breaker_cooldown_seconds": COOLDOWN,
        },
    )  # fmt: skip
    forget_chat_models()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50003))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                user = await register(client)
                collection_id = await create_collection(client, user, "Field notes")
                await ingest_samples(client, user, collection_id)

                # Down: each answer degrades to the extractive model, with the failure named.
                for _ in range(failures):
                    down = await ask(client, user)
                    assert down["model"] == "extractive:v1"
                    assert down["fallback_from"][0]["model"] == "openai:small"
                    assert "did not answer" in down["fallback_from"][0]["error"]
                    assert down["grounded"] is True
                # The circuit is open: the dead server is not even tried.
                skipped = await ask(client, user)
                assert "circuit open" in skipped["fallback_from"][0]["error"]

                # The server comes back on its port; after the cooldown one trial call closes the circuit.
                with serve_in_thread(fake.app(), "fake openai", port=port):
                    still_open = await ask(client, user)
                    assert "circuit open" in still_open["fallback_from"][0]["error"]
                    assert fake.calls == 0
                    time.sleep(COOLDOWN + 0.1)
                    back = await ask(client, user)
                    assert back["model"] == "openai:small"
                    assert back["fallback_from"] == []
                    again = await ask(client, user)
                    assert again["model"] == "openai:small"
                    assert fake.calls == 2
    finally:
        forget_chat_models()  # the app's shutdown closed the models it used
