"""The AI service and the API as two real processes sharing one database: AI work goes over HTTP;
killing the AI service turns the routes that need it into 503 `ai_unavailable` (the circuit
opens, and nothing unmasked is stored meanwhile); starting it again recovers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.processes import TesseraProcess, tessera_env

NOTE = "Mr John Smith (john.smith@example.com, 212-555-0101) reported tinnitus in his left ear."


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[TesseraProcess, TesseraProcess, str]]:
    database = tmp_path / "shared.db"
    common = {
        "TESSERA_DATA_DIR": str(tmp_path / "data"),
        "TESSERA_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "TESSERA_EMBEDDINGS__PROVIDER": "fake",
        # What crosses the process boundary is the point here, not the models: the pattern-based
        # detector and rules-only extractor start in milliseconds (tests/core/privacy has Presidio).
        "TESSERA_PRIVACY__DETECTOR": "fake",
        "TESSERA_ENTITIES__EXTRACTOR": "fake",
        "TESSERA_JOBS__ENABLED": "false",
    }
    ai = TesseraProcess(
        tessera_env(**common), tmp_path / "ai.log", args=("--role", "ai"), ready_path="/api/v1/ai/health"
    )
    api = TesseraProcess(
        tessera_env(
            **common,
            TESSERA_AI__URL=ai.url,
            TESSERA_AI__RETRIES="1",
            TESSERA_AI__CIRCUIT_FAILURES="2",
            TESSERA_AI__CIRCUIT_COOLDOWN_SECONDS="1",
            TESSERA_AI__TIMEOUT_SECONDS="5",
        ),
        tmp_path / "api.log",
        ready_path="/health/ready",
    )
    api.migrate()
    ai.start()
    api.start()
    try:
        yield ai, api, str(database)
    finally:
        api.stop()
        ai.stop()


def vault_rows(database: str) -> int:
    with sa.create_engine(f"sqlite:///{database}").connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM pii_vault_entry")).scalar_one())


def sign_up(client: httpx.Client) -> dict[str, str]:
    body = {"email": f"two-{time.monotonic_ns()}@example.com", "password": "correct horse battery", "name": "Two"}
    registered = client.post("/api/v1/auth/register", json=body)
    assert registered.status_code == 201, registered.text
    return {"Authorization": f"Bearer {registered.json()['access_token']}"}


def test_ai_work_crosses_processes_and_an_outage_fails_closed(
    processes: tuple[TesseraProcess, TesseraProcess, str],
) -> None:
    ai, api, database = processes
    with httpx.Client(base_url=api.url, timeout=30) as client:
        headers = sign_up(client)
        health = client.get("/api/v1/ai/health").json()
        assert (health["status"], health["mode"], health["url"]) == ("ok", "remote", ai.url)

        found = client.post("/api/v1/ai/pii/analyze", json={"text": NOTE}, headers=headers)
        assert found.status_code == 200, found.text
        assert {"EMAIL_ADDRESS", "PHONE_NUMBER"} <= {e["entity_type"] for e in found.json()["entities"]}
        masked = client.post(
            "/api/v1/ai/pii/anonymize",
            json={"text": NOTE, "operators": {"DEFAULT": {"type": "pseudonymize"}}, "scope": "visit-1"},
            headers=headers,
        )
        assert masked.status_code == 200, masked.text
        assert "john.smith@example.com" not in masked.json()["text"]
        stored = vault_rows(database)
        assert stored >= 2
        status = client.get("/api/v1/ai/models/status", headers=headers).json()
        assert status["mode"] == "remote"
        assert {m["capability"]: m["state"] for m in status["models"]}["pii"] == "ready"

        ai.kill()
        for _ in range(2):  # each call is retried once, then the API answers 503
            down = client.post(
                "/api/v1/ai/pii/anonymize",
                json={"text": NOTE, "operators": {"DEFAULT": {"type": "pseudonymize"}}, "scope": "visit-2"},
                headers=headers,
            )
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "ai_unavailable"
            assert int(down.headers["Retry-After"]) >= 1
        open_circuit = client.get("/api/v1/ai/health")
        assert open_circuit.status_code == 503
        assert open_circuit.json()["circuit"] == "open"
        fast = client.post("/api/v1/ai/pii/analyze", json={"text": NOTE}, headers=headers)
        assert fast.status_code == 503
        assert "circuit open" in fast.json()["error"]["message"]
        assert vault_rows(database) == stored  # nothing was pseudonymised, so nothing stored, meanwhile

        ai.start()
        time.sleep(1.2)  # past the cooldown: the next call is the trial that closes the circuit
        back = client.post("/api/v1/ai/pii/analyze", json={"text": NOTE}, headers=headers)
        assert back.status_code == 200, back.text
        assert client.get("/api/v1/ai/health").json()["circuit"] == "closed"
    for log in (ai.log, api.log):
        assert "john.smith@example.com" not in log.read_text()  # texts are never logged
