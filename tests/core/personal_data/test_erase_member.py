"""`POST /api/v1/members/{user_id}/erase` on both backends: an admin erases a member's data in their
organization only (the member's data elsewhere survives), and the account too once the member
belongs nowhere; another organization's user is a 404, yourself a 422, an owner needs an owner."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from tessera.core.audit.service import verify_audit_chains
from tessera.core.db.session import unit_of_work
from tests.core.personal_data.conftest import IP, QUESTION, USER_AGENT, WORD, Footprint, as_org, join, ok, sign_in_again
from tests.core.personal_data.every_table import rows_mentioning
from tests.factories import add_member, error_code, register

ELSEWHERE = f"How long do oak trees live, {WORD}?"


def erase_url(user_id: str | uuid.UUID) -> str:
    return f"/api/v1/members/{user_id}/erase"


async def chains_verify(app: Any) -> None:
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        report = await verify_audit_chains(session)
    assert report.ok, report.problems


async def test_an_admin_erases_a_member_in_their_organization_only(
    app: Any, client: httpx.AsyncClient, footprint: Footprint
) -> None:
    person, owner = footprint.person, footprint.owner
    # The person also belongs to a third organization, where they chat too.
    other_owner = await register(client, name="Otto Other")
    other_collection = await client.post("/api/v1/collections", json={"name": "Trees"}, headers=other_owner.headers)
    await join(footprint.http, client, other_owner, person)
    elsewhere = as_org(person, other_owner.org_id)
    kept = await ok(await footprint.http.post("/api/v1/chat/send", json={"content": ELSEWHERE}, headers=elsewhere))
    del other_collection

    response = await client.post(erase_url(person.user_id), headers=owner.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account_erased"] is False
    assert body["sources"]["conversations"] == 3  # one conversation and its two messages
    assert body["sources"]["moderation_flags"] == 1
    assert body["sources"]["audit_events"] > 0
    # Gone from the organization: membership, conversation, flag, key; the member's words nowhere.
    members = (await client.get("/api/v1/members", headers=owner.headers)).json()["items"]
    assert person.user_id not in [m["user_id"] for m in members]
    mentions = await rows_mentioning(
        app.state.engine, [QUESTION, f"I will kill you, {WORD}", footprint.api_key["prefix"]]
    )
    assert mentions == []
    shared = uuid.UUID(footprint.shared_org)

    def in_shared_org(table: str, row: Mapping[str, Any]) -> bool:
        return shared in (row.get("org_id"), row.get("chain_id"))

    assert await rows_mentioning(app.state.engine, [footprint.user_id, IP, USER_AGENT], only=in_shared_org) == []
    # Elsewhere the person is still there: account, other memberships, other conversations.
    assert {m.table for m in await rows_mentioning(app.state.engine, [footprint.user_id])} >= {
        "user_account", "membership", "conversation", "audit_event"
    }  # fmt: skip
    # Their sign-ins into the organization ended, as when a member is removed; their data in the
    # other organizations is untouched.
    assert (await footprint.http.get("/api/v1/auth/me", headers=person.headers)).status_code == 401
    elsewhere = (await sign_in_again(footprint, other_owner.org_id)).headers
    archive = (await footprint.http.get("/api/v1/me/export", headers=elsewhere)).json()["sources"]
    assert {m["org_id"] for m in archive["memberships"]} == {footprint.own_org, other_owner.org_id}
    assert {c["id"] for c in archive["conversations"]} == {footprint.own_org_conversation_id, kept["conversation_id"]}
    assert all(u["org_id"] != footprint.shared_org for u in archive["usage"])
    assert (await footprint.http.get("/api/v1/auth/me", headers=elsewhere)).status_code == 200
    # The shared organization keeps its own data, and the usage without the member.
    usage = await client.get("/api/v1/usage", headers=owner.headers)
    assert usage.status_code == 200, usage.text
    owner_conversation = await client.get(
        f"/api/v1/conversations/{footprint.owner_conversation_id}", headers=owner.headers
    )
    assert owner_conversation.status_code == 200
    await chains_verify(app)

    events = (
        await client.get("/api/v1/audit-events", params={"action": "personal_data.erased"}, headers=owner.headers)
    ).json()["items"]
    [event] = events
    assert event["actor_id"] == owner.user_id
    assert event["target_id"] is None
    assert event["details"]["scope"] == "organization"
    assert event["details"]["account_erased"] is False
    removed = (
        await client.get("/api/v1/audit-events", params={"action": "member.removed"}, headers=owner.headers)
    ).json()["items"]
    assert removed[0]["target_id"] != person.user_id


async def test_a_member_left_in_no_organization_is_erased_altogether(
    app: Any, client: httpx.AsyncClient, footprint: Footprint
) -> None:
    person = footprint.person
    # The owner joins the person's own organization and is made its owner too: then the owner can
    # erase the person from both, and the second erasure leaves them in no organization.
    await join(client, footprint.http, person, footprint.owner, org_id=footprint.own_org)
    promoted = await footprint.http.patch(
        f"/api/v1/members/{footprint.owner.user_id}", json={"role": "owner"}, headers=as_org(person, footprint.own_org)
    )
    assert promoted.status_code == 200, promoted.text

    first = await ok(await client.post(erase_url(person.user_id), headers=footprint.owner.headers))
    assert first["account_erased"] is False
    second = await ok(await client.post(erase_url(person.user_id), headers=as_org(footprint.owner, footprint.own_org)))

    assert second["account_erased"] is True
    # What identifies them is gone. The diary they uploaded to their former organization mentions them
    # in its text: documents are the organization's content and stay (docs/personal-data.md).
    identifiers = [footprint.user_id, USER_AGENT, IP, footprint.api_key["prefix"], uuid.UUID(footprint.conversation_id)]
    assert await rows_mentioning(app.state.engine, identifiers) == []
    leftovers = await rows_mentioning(app.state.engine, footprint.needles)
    assert leftovers
    content = ("document", "document_text", "document_chunk", "chunk_fts")
    assert [m for m in leftovers if not m.table.startswith(content)] == []
    assert (await footprint.http.get("/api/v1/auth/me", headers=person.headers)).status_code == 401
    # The organization they named after themselves stays, without their name.
    orgs = {org["id"]: org for org in (await client.get("/api/v1/orgs", headers=footprint.owner.headers)).json()}
    assert orgs[footprint.own_org]["name"] == "[erased]'s lab"
    assert "zebulon" not in orgs[footprint.own_org]["slug"]
    await chains_verify(app)


async def test_who_may_erase_whom(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    admin = await add_member(client, owner, "admin")
    member = await add_member(client, owner, "member")
    second_owner = await add_member(client, owner, "owner")
    stranger = await register(client)

    own = await client.post(erase_url(admin.user_id), headers=admin.headers)
    assert own.status_code == 422
    assert error_code(own) == "cannot_erase_yourself"
    elsewhere = await client.post(erase_url(stranger.user_id), headers=owner.headers)
    assert elsewhere.status_code == 404
    assert error_code(elsewhere) == "member_not_found"
    unknown = await client.post(erase_url(uuid.uuid4()), headers=owner.headers)
    assert unknown.status_code == 404
    by_member = await client.post(erase_url(admin.user_id), headers=member.headers)
    assert by_member.status_code == 403
    assert error_code(by_member) == "permission_denied"
    owner_by_admin = await client.post(erase_url(second_owner.user_id), headers=admin.headers)
    assert owner_by_admin.status_code == 403
    assert (await client.post(erase_url(owner.user_id), headers=stranger.headers)).status_code == 404
    assert (await client.post(erase_url(owner.user_id))).status_code == 401

    # Refusals change nothing; an owner may erase another owner.
    members = (await client.get("/api/v1/members", headers=owner.headers)).json()["items"]
    assert len(members) == 4
    erased = await client.post(erase_url(second_owner.user_id), headers=owner.headers)
    assert erased.status_code == 200, erased.text
    assert erased.json()["account_erased"] is True
    assert (await client.get("/api/v1/auth/me", headers=second_owner.headers)).status_code == 401
    by_admin = await client.post(erase_url(member.user_id), headers=admin.headers)
    assert by_admin.status_code == 200
