"""`GET /api/v1/me/export` on both backends: one JSON attachment with everything the person left in
every area and organization, never a secret or a hash, and the export itself audited."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tessera.core.personal_data.registry import CORE_SOURCE_NAMES
from tests.core.personal_data.conftest import IP, QUESTION, USER_AGENT, WORD, Footprint, as_org
from tests.factories import error_code, register

EXPORT = "/api/v1/me/export"


async def export(footprint: Footprint) -> tuple[httpx.Response, dict[str, Any]]:
    response = await footprint.http.get(EXPORT, headers=footprint.person.headers)
    assert response.status_code == 200, response.text
    return response, response.json()


async def test_the_archive_is_a_json_attachment_in_the_documented_format(footprint: Footprint) -> None:
    response, archive = await export(footprint)

    assert response.headers["content-type"].startswith("application/json")
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="tessera-personal-data-')
    assert disposition.endswith('.json"')
    assert archive["format"] == "tessera.personal-data/v1"
    assert archive["exported_at"]
    assert set(archive["sources"]) >= CORE_SOURCE_NAMES
    user = archive["user"]
    assert (user["id"], user["email"], user["name"]) == (
        footprint.person.user_id, footprint.person.email, footprint.name
    )  # fmt: skip
    assert user["mfa_enabled"] is True


async def test_the_archive_holds_everything_the_person_left(footprint: Footprint) -> None:
    _, archive = await export(footprint)
    sources = archive["sources"]

    memberships = {m["org_id"]: m for m in sources["memberships"]}
    assert memberships[footprint.shared_org]["role"] == "member"
    assert memberships[footprint.own_org]["role"] == "owner"
    assert memberships[footprint.shared_org]["organization"] == "Olive Owner's organization"

    assert {(s["ip"], s["user_agent"]) for s in sources["sessions"]} == {(IP, USER_AGENT)}
    assert len(sources["sessions"]) == 2  # registration and sign-in

    [key] = sources["api_keys"]
    assert (key["name"], key["prefix"], key["scopes"]) == (
        "Zebulon laptop",
        footprint.api_key["prefix"],
        ["documents:read"],
    )

    conversations = {c["id"]: c for c in sources["conversations"]}
    assert set(conversations) == {footprint.conversation_id, footprint.own_org_conversation_id}
    shared = conversations[footprint.conversation_id]
    assert shared["org_id"] == footprint.shared_org
    question, answer = shared["messages"]
    assert (question["role"], question["content"]) == ("user", QUESTION)
    assert answer["role"] == "assistant"
    assert answer["citations"]
    assert (answer["feedback"], answer["feedback_comment"]) == ("down", f"{WORD} expected more")

    [flag] = sources["moderation_flags"]
    assert (flag["direction"], flag["excerpt"], flag["org_id"]) == (
        "input",
        f"I will kill you, {WORD}",
        footprint.shared_org,
    )

    assert {(u["org_id"], u["source"]) for u in sources["usage"]} == {
        (footprint.shared_org, "chat"), (footprint.own_org, "chat")
    }  # fmt: skip
    [entry] = sources["pii_vault"]
    assert (entry["scope"], entry["surrogate"]) == (f"conversation:{footprint.conversation_id}", "EMAIL_ADDRESS_1")

    assert [d["id"] for d in sources["documents"] if d["org_id"] == footprint.shared_org] == [footprint.document_id]
    assert footprint.collection_id in [c["id"] for c in sources["collections"]["owned"]]
    assert [(r["key"], r["status_code"]) for r in sources["idempotent_requests"]] == [("upload-1", 202)]
    [received] = sources["invitations"]["received"]
    assert (received["org_id"], received["role"]) == (footprint.shared_org, "member")
    assert received["accepted_at"]

    actions = [event["action"] for event in sources["audit_events"]]
    for action in ("member.joined", "auth.login_failed", "auth.login", "auth.mfa_enabled", "api_key.created"):
        assert action in actions
    assert all(event["actor_id"] == footprint.person.user_id for event in sources["audit_events"])
    assert {event["ip"] for event in sources["audit_events"]} == {IP}


async def test_the_archive_holds_no_secrets(footprint: Footprint) -> None:
    response, archive = await export(footprint)

    text = response.text
    for secret in (
        footprint.mfa_secret,
        footprint.api_key["key"],
        footprint.extra["refresh_token"],
        footprint.extra["password_hash_prefix"],
    ):
        assert secret not in text
    for forbidden in ("password_hash", "mfa_secret", "mfa_recovery_codes", "key_hash", "token_hash"):
        assert forbidden not in text
    assert "hash" not in json.dumps(archive["user"])


async def test_the_export_is_audited(client: httpx.AsyncClient, footprint: Footprint) -> None:
    await export(footprint)

    events = await client.get(
        "/api/v1/audit-events", params={"action": "personal_data.exported"}, headers=footprint.owner.headers
    )
    [event] = events.json()["items"]
    assert event["actor_id"] == footprint.person.user_id
    assert event["target_id"] == footprint.person.user_id
    assert event["details"]["sources"] == sorted(event["details"]["sources"])


async def test_another_users_archive_holds_none_of_it(client: httpx.AsyncClient, footprint: Footprint) -> None:
    stranger = await register(client)

    archive = (await client.get(EXPORT, headers=stranger.headers)).json()

    assert WORD not in json.dumps(archive)
    assert footprint.person.email not in json.dumps(archive)
    assert archive["sources"]["conversations"] == []


async def test_api_keys_cannot_export_and_strangers_are_refused(
    client: httpx.AsyncClient, footprint: Footprint
) -> None:
    full_key = await client.post(
        "/api/v1/api-keys", json={"name": "all", "scopes": ["*"]}, headers=footprint.owner.headers
    )
    by_key = await client.get(EXPORT, headers={"X-API-Key": full_key.json()["key"]})
    assert by_key.status_code == 403
    assert error_code(by_key) == "sign_in_required"

    anonymous = await client.get(EXPORT)
    assert anonymous.status_code == 401
    assert error_code(anonymous) == "not_authenticated"

    # The archive does not depend on the active organization.
    other_org = await client.get(EXPORT, headers=as_org(footprint.person, footprint.own_org))
    assert other_org.json()["sources"]["memberships"] == (await export(footprint))[1]["sources"]["memberships"]
