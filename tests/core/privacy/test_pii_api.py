"""The PII API over HTTP on both backends (with the `fake` pattern detector): analyse, every
anonymisation operator with its offsets, pseudonyms consistent within a scope and reversible by
`pii:reveal` holders only (audited), the organization's policy, tenant isolation, and 413/422."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog.testing

from tessera.core.db.session import create_engine
from tessera.core.observability.logging import configure_logging
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, add_member, error_code, register

MAX_CHARS = 2_000
NOTE = "Dr Jane Doe (jane@example.com, 212-555-0187) referred Mr John Smith, SSN 078-05-1120."
PII = ("Jane Doe", "jane@example.com", "212-555-0187", "John Smith", "078-05-1120")
ANALYZE, ANONYMIZE, QUICK = "/api/v1/ai/pii/analyze", "/api/v1/ai/pii/anonymize", "/api/v1/ai/pii/quick-anonymize"
DEANONYMIZE, POLICY = "/api/v1/ai/pii/deanonymize", "/api/v1/ai/pii/policy"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        privacy={"detector": "fake", "max_text_chars": MAX_CHARS},
        rate_limit={"enabled": False},
    )


@dataclass
class Org:
    owner: SignedIn
    member: SignedIn


@pytest.fixture
async def org(client: httpx.AsyncClient) -> Org:
    owner = await register(client)
    return Org(owner=owner, member=await add_member(client, owner, "member"))


async def post(client: httpx.AsyncClient, user: SignedIn, url: str, body: dict[str, Any], status: int = 200) -> Any:
    response = await client.post(url, json=body, headers=user.headers)
    assert response.status_code == status, response.text
    return response.json()


async def audit(client: httpx.AsyncClient, user: SignedIn, action: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit-events", params={"action": action}, headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- analyze ------------------------------------------------------------------------------------


async def test_analyze_reports_types_offsets_scores_and_recognizers(client: httpx.AsyncClient, org: Org) -> None:
    body = await post(client, org.member, ANALYZE, {"text": NOTE})

    found = [(e["entity_type"], e["text"]) for e in body["entities"]]
    assert found == [
        ("PERSON", "Jane Doe"),
        ("EMAIL_ADDRESS", "jane@example.com"),
        ("PHONE_NUMBER", "212-555-0187"),
        ("PERSON", "John Smith"),
        ("US_SSN", "078-05-1120"),
    ]
    for entity in body["entities"]:
        assert NOTE[entity["start"] : entity["end"]] == entity["text"]
        assert 0 < entity["score"] <= 1
        assert entity["recognizer"] == "PatternDetector"


async def test_analyze_narrows_by_entities_and_threshold(client: httpx.AsyncClient, org: Org) -> None:
    only_ssn = await post(client, org.member, ANALYZE, {"text": NOTE, "entities": ["US_SSN"]})
    confident = await post(client, org.member, ANALYZE, {"text": NOTE, "score_threshold": 0.8})

    assert [e["entity_type"] for e in only_ssn["entities"]] == ["US_SSN"]
    assert "PHONE_NUMBER" not in {e["entity_type"] for e in confident["entities"]}  # scored 0.75


async def test_the_pii_routes_need_credentials(client: httpx.AsyncClient) -> None:
    for url in (ANALYZE, ANONYMIZE, QUICK, DEANONYMIZE):
        response = await client.post(url, json={"text": NOTE, "scope": "x"})
        assert response.status_code == 401
    assert (await client.get(POLICY)).status_code == 401


# --- anonymize ----------------------------------------------------------------------------------


async def test_every_operator_with_offsets_in_both_texts(client: httpx.AsyncClient, org: Org) -> None:
    operators = {
        "PERSON": {"type": "pseudonymize"},
        "EMAIL_ADDRESS": {"type": "mask", "chars_to_mask": 4, "masking_char": "#"},
        "PHONE_NUMBER": {"type": "redact"},
        "US_SSN": {"type": "hash", "hash_type": "sha512"},
        "DEFAULT": {"type": "keep"},
    }

    body = await post(client, org.member, ANONYMIZE, {"text": NOTE, "operators": operators, "scope": "case-1"})

    ssn_hash = body["text"].split("SSN ")[1].rstrip(".")
    assert body["text"] == f"Dr PERSON_1 (####@example.com, ) referred Mr PERSON_2, SSN {ssn_hash}."
    assert len(ssn_hash) == 128
    assert int(ssn_hash, 16) >= 0
    assert body["scope"] == "case-1"
    assert [(i["entity_type"], i["operator"]) for i in body["items"]] == [
        ("PERSON", "pseudonymize"),
        ("EMAIL_ADDRESS", "mask"),
        ("PHONE_NUMBER", "redact"),
        ("PERSON", "pseudonymize"),
        ("US_SSN", "hash"),
    ]
    new_values = ["PERSON_1", "####@example.com", "", "PERSON_2", ssn_hash]
    for item, original, new in zip(body["items"], PII, new_values, strict=True):
        assert NOTE[item["start"] : item["end"]] == original
        assert body["text"][item["new_start"] : item["new_end"]] == new


async def test_replace_is_the_fallback_and_takes_a_new_value(client: httpx.AsyncClient, org: Org) -> None:
    tags = await post(client, org.member, ANONYMIZE, {"text": NOTE})
    custom = await post(
        client, org.member, ANONYMIZE,
        {"text": NOTE, "operators": {"DEFAULT": {"type": "replace", "new_value": "[removed]"}}},
    )  # fmt: skip

    assert tags["text"] == "Dr <PERSON> (<EMAIL_ADDRESS>, <PHONE_NUMBER>) referred Mr <PERSON>, SSN <US_SSN>."
    assert tags["scope"] is None  # nothing was pseudonymised, nothing stored
    assert custom["text"] == "Dr [removed] ([removed], [removed]) referred Mr [removed], SSN [removed]."


async def test_pseudonyms_are_consistent_within_a_scope_and_not_across(client: httpx.AsyncClient, org: Org) -> None:
    pseudonymize = {"DEFAULT": {"type": "pseudonymize"}}

    async def anonymize(text: str, **scope: str) -> dict[str, Any]:
        result: dict[str, Any] = await post(
            client, org.member, ANONYMIZE, {"text": text, "operators": pseudonymize, **scope}
        )
        return result

    first = await anonymize("Mr John Smith and Dr Jane Doe", scope="visit-7")
    again = await anonymize("Dr Jane Doe wrote to Mr John  Smith", scope="visit-7")
    other = await anonymize("Dr Jane Doe alone", scope="visit-8")

    assert first["text"] == "Mr PERSON_1 and Dr PERSON_2"
    assert again["text"] == "Dr PERSON_2 wrote to Mr PERSON_1"  # white space does not make another person
    assert other["text"] == "Dr PERSON_1 alone"


async def test_concurrent_requests_get_the_same_pseudonyms(client: httpx.AsyncClient, org: Org) -> None:
    body = {"text": NOTE, "operators": {"DEFAULT": {"type": "pseudonymize"}}, "scope": "busy"}

    responses = await asyncio.gather(*(client.post(ANONYMIZE, json=body, headers=org.member.headers) for _ in range(6)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["text"] for r in responses}) == 1
    restored = await post(client, org.owner, DEANONYMIZE, {"text": responses[0].json()["text"], "scope": "busy"})
    assert restored["text"] == NOTE


async def test_conversation_and_document_ids_name_scopes_and_a_missing_scope_is_made(
    client: httpx.AsyncClient, org: Org
) -> None:
    conversation, document = uuid.uuid4(), uuid.uuid4()
    pseudonymize = {"PERSON": {"type": "pseudonymize"}}

    by_conversation = await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": pseudonymize, "conversation_id": str(conversation)}
    )
    by_document = await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": pseudonymize, "document_id": str(document)}
    )
    made = await post(client, org.member, ANONYMIZE, {"text": NOTE, "operators": pseudonymize})
    made_again = await post(client, org.member, ANONYMIZE, {"text": NOTE, "operators": pseudonymize})

    assert by_conversation["scope"] == f"conversation:{conversation}"
    assert by_document["scope"] == f"document:{document}"
    assert made["scope"].startswith("anon:")
    assert made["scope"] != made_again["scope"]
    restored = await post(client, org.owner, DEANONYMIZE, {"text": made["text"], "scope": made["scope"]})
    assert restored["text"].startswith("Dr Jane Doe (<EMAIL_ADDRESS>")


async def test_hashes_are_stable_within_an_organization_and_differ_across(client: httpx.AsyncClient, org: Org) -> None:
    other = await register(client)
    body = {"text": "mail jane@example.com", "operators": {"DEFAULT": {"type": "hash"}}}

    mine = (await post(client, org.member, ANONYMIZE, body))["text"]
    mine_again = (await post(client, org.owner, ANONYMIZE, body))["text"]
    theirs = (await post(client, other, ANONYMIZE, body))["text"]

    assert mine == mine_again
    assert mine != theirs


# --- deanonymize --------------------------------------------------------------------------------


async def test_deanonymize_round_trip_is_audited_without_the_values(client: httpx.AsyncClient, org: Org) -> None:
    anonymized = await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": {"DEFAULT": {"type": "pseudonymize"}}, "scope": "rt"}
    )
    assert not any(value in anonymized["text"] for value in PII)

    restored = await post(client, org.owner, DEANONYMIZE, {"text": anonymized["text"], "scope": "rt"})

    assert restored["text"] == NOTE
    for item in restored["items"]:
        assert anonymized["text"][item["start"] : item["end"]] == item["surrogate"]
        assert NOTE[item["new_start"] : item["new_end"]] in PII
    # Surrogates in a text written afterwards (say, by a model) come back too; unknown ones stay.
    reply = await post(
        client,
        org.owner,
        DEANONYMIZE,
        {"text": "PERSON_2 thanks PERSON_1. PERSON_9 and XPERSON_1 stay.", "scope": "rt"},
    )
    assert reply["text"] == "John Smith thanks Jane Doe. PERSON_9 and XPERSON_1 stay."
    events = await audit(client, org.owner, "pii.deanonymized")
    assert len(events) == 2
    assert events[-1]["actor_id"] == org.owner.user_id
    assert events[-1]["target_id"] == "rt"
    assert events[-1]["details"] == {
        "scope": "rt", "restored": 5, "distinct": 5,
        "entity_types": {"PERSON": 2, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1, "US_SSN": 1},
    }  # fmt: skip
    assert not any(value in str(events) for value in PII)


async def test_members_cannot_reveal_or_set_the_policy(client: httpx.AsyncClient, org: Org) -> None:
    await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": {"PERSON": {"type": "pseudonymize"}}, "scope": "p"}
    )

    response = await client.post(DEANONYMIZE, json={"text": "PERSON_1", "scope": "p"}, headers=org.member.headers)
    policy = await client.put(POLICY, json={"deny": ["Nightingale"]}, headers=org.member.headers)

    assert response.status_code == policy.status_code == 403
    assert error_code(response) == "permission_denied"
    assert response.json()["error"]["details"] == {"permission": "pii:reveal"}
    assert "Jane Doe" not in response.text
    assert await audit(client, org.owner, "pii.deanonymized") == []
    assert (await client.get(POLICY, headers=org.member.headers)).status_code == 200


async def test_viewers_may_analyze_but_not_anonymize(client: httpx.AsyncClient, org: Org) -> None:
    viewer = await add_member(client, org.owner, "viewer")

    await post(client, viewer, ANALYZE, {"text": NOTE})
    response = await client.post(ANONYMIZE, json={"text": NOTE}, headers=viewer.headers)

    assert response.status_code == 403
    assert response.json()["error"]["details"] == {"permission": "pii:write"}


async def test_another_organization_cannot_reveal_a_scope(client: httpx.AsyncClient, org: Org) -> None:
    pseudonymize = {"operators": {"PERSON": {"type": "pseudonymize"}}, "scope": "shared-name"}
    mine = await post(client, org.member, ANONYMIZE, {"text": NOTE, **pseudonymize})
    intruder = await register(client)

    response = await client.post(
        DEANONYMIZE, json={"text": mine["text"], "scope": "shared-name"}, headers=intruder.headers
    )
    assert response.status_code == 404
    assert error_code(response) == "pii_scope_not_found"
    assert not any(value in response.text for value in PII)

    # The intruder's own scope of the same name has its own pseudonyms, and reveals only its own values.
    theirs = await post(client, intruder, ANONYMIZE, {"text": "Dr Alan Turing", **pseudonymize})
    revealed = await post(client, intruder, DEANONYMIZE, {"text": mine["text"], "scope": "shared-name"})
    assert theirs["text"] == "Dr PERSON_1"
    assert revealed["text"].startswith("Dr Alan Turing (")
    assert not any(value in revealed["text"] for value in ("Jane Doe", "John Smith"))
    assert (await post(client, org.owner, DEANONYMIZE, {"text": "PERSON_1", "scope": "shared-name"}))[
        "text"
    ] == "Jane Doe"


async def test_deleting_a_scope_makes_it_irreversible(client: httpx.AsyncClient, org: Org) -> None:
    body = await post(
        client,
        org.member,
        ANONYMIZE,
        {"text": NOTE, "operators": {"PERSON": {"type": "pseudonymize"}}, "scope": "gone"},
    )
    intruder = await register(client)

    assert (await client.delete("/api/v1/ai/pii/scopes/gone", headers=intruder.headers)).status_code == 404
    assert (await client.delete("/api/v1/ai/pii/scopes/gone", headers=org.member.headers)).status_code == 204
    again = await client.delete("/api/v1/ai/pii/scopes/gone", headers=org.member.headers)
    response = await client.post(DEANONYMIZE, json={"text": body["text"], "scope": "gone"}, headers=org.owner.headers)

    assert again.status_code == response.status_code == 404
    assert error_code(response) == "pii_scope_not_found"
    [event] = await audit(client, org.owner, "pii.scope_deleted")
    assert event["details"] == {"scope": "gone", "entries": 2}


# --- policy -------------------------------------------------------------------------------------


async def test_policy_defaults_then_allow_deny_entities_and_threshold(client: httpx.AsyncClient, org: Org) -> None:
    default = (await client.get(POLICY, headers=org.member.headers)).json()
    assert default == {
        "allow": [], "deny": [], "operators": {}, "entities": None, "score_threshold": None,
        "effective_score_threshold": 0.4, "updated_at": None,
    }  # fmt: skip
    text = "Dr Jane Doe of Project Nightingale: jane@example.com, 212-555-0187"

    policy = {"allow": ["jane doe"], "deny": ["project nightingale"], "entities": ["PERSON", "PHONE_NUMBER"],
              "score_threshold": 0.8}  # fmt: skip
    saved = (await client.put(POLICY, json=policy, headers=org.owner.headers)).json()
    found = await post(client, org.member, ANALYZE, {"text": text})

    assert saved["effective_score_threshold"] == 0.8
    assert saved["updated_at"] is not None
    # Jane Doe allowed, the deny-listed project reported, e-mail not enabled, the phone below 0.8.
    assert [(e["entity_type"], e["text"]) for e in found["entities"]] == [("DENY_LIST", "Project Nightingale")]
    # A request's own threshold and types stay within the policy's types.
    narrowed = await post(
        client,
        org.member,
        ANALYZE,
        {"text": text, "score_threshold": 0.5, "entities": ["PHONE_NUMBER", "EMAIL_ADDRESS"]},
    )
    assert [e["entity_type"] for e in narrowed["entities"]] == ["DENY_LIST", "PHONE_NUMBER"]
    [event] = await audit(client, org.owner, "pii.policy_updated")
    assert event["details"]["deny"] == 1
    assert "nightingale" not in str(event).casefold()


async def test_quick_anonymize_uses_tags_then_the_policy(client: httpx.AsyncClient, org: Org) -> None:
    before = await post(client, org.member, QUICK, {"text": NOTE})
    policy = {"operators": {"PERSON": {"type": "pseudonymize"}, "DEFAULT": {"type": "mask", "chars_to_mask": 3}}}
    assert (await client.put(POLICY, json=policy, headers=org.owner.headers)).status_code == 200
    after = await post(client, org.member, QUICK, {"text": NOTE})
    request_wins = await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": {"DEFAULT": {"type": "redact"}}}
    )
    policy_fills_in = await post(
        client, org.member, ANONYMIZE, {"text": NOTE, "operators": {"US_SSN": {"type": "redact"}}}
    )

    assert before["text"] == "Dr <PERSON> (<EMAIL_ADDRESS>, <PHONE_NUMBER>) referred Mr <PERSON>, SSN <US_SSN>."
    assert before["scope"] is None
    assert after["text"] == "Dr PERSON_1 (***e@example.com, ***-555-0187) referred Mr PERSON_2, SSN ***-05-1120."
    assert after["scope"].startswith("anon:")
    assert request_wins["text"] == "Dr  (, ) referred Mr , SSN ."
    assert policy_fills_in["text"] == "Dr PERSON_1 (***e@example.com, ***-555-0187) referred Mr PERSON_2, SSN ."
    restored = await post(client, org.owner, DEANONYMIZE, {"text": after["text"], "scope": after["scope"]})
    assert restored["text"].startswith("Dr Jane Doe (***e@example.com")


async def test_policies_belong_to_one_organization(client: httpx.AsyncClient, org: Org) -> None:
    other = await register(client)
    await client.put(
        POLICY, json={"allow": ["Jane Doe"], "operators": {"DEFAULT": {"type": "redact"}}}, headers=org.owner.headers
    )

    theirs = (await client.get(POLICY, headers=other.headers)).json()
    their_quick = await post(client, other, QUICK, {"text": "Dr Jane Doe"})

    assert theirs["allow"] == []
    assert theirs["operators"] == {}
    assert their_quick["text"] == "Dr <PERSON>"
    assert (await post(client, org.member, QUICK, {"text": "Dr Jane Doe"}))["text"] == "Dr Jane Doe"


# --- bad input ----------------------------------------------------------------------------------


async def test_texts_over_the_limit_are_413(client: httpx.AsyncClient, org: Org) -> None:
    long_text = "a" * (MAX_CHARS + 1)
    for url, user, extra in (
        (ANALYZE, org.member, {}), (ANONYMIZE, org.member, {}), (QUICK, org.member, {}),
        (DEANONYMIZE, org.owner, {"scope": "any"}),
    ):  # fmt: skip
        response = await client.post(url, json={"text": long_text, **extra}, headers=user.headers)
        assert response.status_code == 413, (url, response.text)
        assert error_code(response) == "pii_text_too_long"
        assert response.json()["error"]["details"] == {"length": MAX_CHARS + 1, "max_text_chars": MAX_CHARS}
    assert (await client.post(ANALYZE, json={"text": "a" * MAX_CHARS}, headers=org.member.headers)).status_code == 200


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (ANALYZE, {"text": ""}),
        (ANALYZE, {"text": "nul\x00inside"}),
        (ANALYZE, {"text": "x", "language": "fr"}),
        (ANALYZE, {"text": "x", "entities": ["person"]}),
        (ANALYZE, {"text": "x", "score_threshold": 1.5}),
        (ANALYZE, {"text": "x", "unknown": 1}),
        (ANONYMIZE, {"text": "x", "operators": {"PERSON": {"type": "shred"}}}),
        (ANONYMIZE, {"text": "x", "operators": {"PERSON": {"type": "mask", "masking_char": "**"}}}),
        (ANONYMIZE, {"text": "x", "operators": {"PERSON": {"type": "mask", "chars_to_mask": 0}}}),
        (ANONYMIZE, {"text": "x", "operators": {"PERSON": {"type": "hash", "hash_type": "md5"}}}),
        (ANONYMIZE, {"text": "x", "operators": {"PERSON": {"type": "redact", "new_value": "y"}}}),
        (ANONYMIZE, {"text": "x", "operators": {"bad key": {"type": "redact"}}}),
        (ANONYMIZE, {"text": "x", "scope": "has spaces"}),
        (ANONYMIZE, {"text": "x", "scope": "s" * 65}),
        (ANONYMIZE, {"text": "x", "scope": "a", "conversation_id": str(uuid.uuid4())}),
        (ANONYMIZE, {"text": "x", "document_id": "not-a-uuid"}),
        (QUICK, {"text": "x", "operators": {}}),
        (DEANONYMIZE, {"text": "PERSON_1"}),
        (DEANONYMIZE, {"text": "PERSON_1", "scope": "../etc"}),
    ],
)
async def test_bad_input_is_422(client: httpx.AsyncClient, org: Org, url: str, body: dict[str, Any]) -> None:
    response = await client.post(url, json=body, headers=org.owner.headers)

    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "policy",
    [
        {"allow": [""]},
        {"deny": ["tab\there"]},
        {"deny": ["x" * 201]},
        {"entities": ["lower"]},
        {"score_threshold": -0.1},
        {"operators": {"PERSON": {"type": "mask", "from_end": "sometimes"}}},
        {"surprise": True},
    ],
)
async def test_bad_policies_are_422(client: httpx.AsyncClient, org: Org, policy: dict[str, Any]) -> None:
    response = await client.put(POLICY, json=policy, headers=org.owner.headers)

    assert response.status_code == 422, response.text


# --- nothing unmasked is logged -----------------------------------------------------------------


@pytest.fixture
async def debug_client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url=database_url, data_dir=tmp_path / "debug", log_level="DEBUG", privacy={"detector": "fake"}
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield http
    finally:
        configure_logging(make_settings())  # back to WARNING, as the other tests run


async def test_texts_are_neither_logged_nor_stored_in_plain(
    debug_client: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await register(debug_client)
    caplog.set_level("DEBUG")
    caplog.set_level("INFO", logger="sqlalchemy.engine")  # SQL statements with their parameters
    with structlog.testing.capture_logs() as logged:
        anonymized = await post(
            debug_client, owner, ANONYMIZE,
            {"text": NOTE, "operators": {"DEFAULT": {"type": "pseudonymize"}}, "scope": "log"},
        )  # fmt: skip
        await post(debug_client, owner, ANALYZE, {"text": NOTE})
        await post(debug_client, owner, DEANONYMIZE, {"text": anonymized["text"], "scope": "log"})
        await debug_client.post(ANALYZE, json={"text": NOTE + "\x00"}, headers=owner.headers)  # a 422

    # Our own log lines (the access log among them) and the libraries' (SQL statements and parameters).
    assert any(line.get("path") == ANONYMIZE for line in logged)
    assert any("INSERT INTO pii_vault_entry" in record.getMessage() for record in caplog.records)
    everything = repr(logged) + "\n".join(record.getMessage() for record in caplog.records)
    assert not any(value in everything for value in PII)
    engine = create_engine(make_settings(), database_url)
    try:
        async with engine.connect() as connection:
            for table in ("pii_vault_entry", "audit_event", "pii_policy"):
                rows = (await connection.execute(sa.text(f"SELECT * FROM {table}"))).all()
                dumped = repr(rows) + "".join(
                    bytes(v).decode("latin-1") for r in rows for v in r if isinstance(v, bytes)
                )
                assert not any(value in dumped for value in PII), table
    finally:
        await engine.dispose()
