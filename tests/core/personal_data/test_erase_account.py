"""`DELETE /api/v1/me` on both backends: afterwards no table holds anything of the person (every
table is read), the audit trail keeps their events without them and still verifies, the
organization they alone were in is gone with its files, and everyone else's data is untouched."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from tessera.core.audit.models import AuditEvent
from tessera.core.audit.service import verify_audit_chains
from tessera.core.auth.models import AuthSession
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.settings import Settings
from tests.core.personal_data.conftest import NAME, WORD, Footprint, ok
from tests.core.personal_data.every_table import rows_mentioning
from tests.factories import DEFAULT_PASSWORD, add_member, error_code, login, register

ME = "/api/v1/me"


async def erase(footprint: Footprint) -> None:
    response = await footprint.http.delete(ME, headers=footprint.person.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""


async def all_events(app: Any) -> list[AuditEvent]:
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.seq))).scalars())


async def test_no_table_holds_anything_of_the_person_afterwards(app: Any, footprint: Footprint) -> None:
    before = await rows_mentioning(app.state.engine, footprint.needles)
    # The check itself finds the person where they are: in every area.
    assert {m.table for m in before} >= {
        "user_account", "membership", "auth_session", "api_key", "conversation", "chat_message",
        "moderation_flag", "usage_record", "audit_event", "document", "collection", "idempotent_request",
        "invitation", "pii_vault_entry", "organization",
    }  # fmt: skip

    await erase(footprint)

    assert await rows_mentioning(app.state.engine, footprint.needles) == []


async def test_the_audit_trail_keeps_the_events_without_the_person(
    app: Any, client: httpx.AsyncClient, footprint: Footprint
) -> None:
    events_before = {e.id: e for e in await all_events(app) if e.org_id == uuid.UUID(footprint.shared_org)}
    theirs = {e.id for e in events_before.values() if e.actor_id == footprint.user_id}
    assert len(theirs) >= 4  # joined, failed sign-in, signed in, MFA, API key, collection, upload

    await erase(footprint)

    after = {e.id: e for e in await all_events(app)}
    assert set(events_before) <= set(after)  # nothing deleted from the shared organization's chain
    tombstones = {after[event_id].actor_id for event_id in theirs}
    assert len(tombstones) == 1
    [tombstone] = tombstones
    assert tombstone is not None
    assert tombstone != footprint.user_id
    for event_id in theirs:
        event = after[event_id]
        assert (event.actor_label, event.ip, event.user_agent) == (None, None, None)
        assert event.action == events_before[event_id].action
    [redacted] = [
        e for e in after.values() if e.action == "audit.redacted" and e.org_id == uuid.UUID(footprint.shared_org)
    ]
    assert redacted.target_id == str(tombstone)
    assert redacted.details["events"] >= len(theirs)
    assert redacted.details["broken_before"] == []
    # The owner's invitation names the person's e-mail: it stays, scrubbed.
    [invited] = [e for e in after.values() if e.action == "member.invited"]
    assert invited.details == {"email": "[erased]", "role": "member"}
    assert invited.actor_id == uuid.UUID(footprint.owner.user_id)

    # Every chain (the shared organization's and the system's) verifies after the re-sealing.
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        report = await verify_audit_chains(session)
    assert report.ok, report.problems
    verified = await client.get("/api/v1/audit-events/verify", headers=footprint.owner.headers)
    assert verified.json()["ok"] is True

    erased = await client.get(
        "/api/v1/audit-events", params={"action": "personal_data.erased"}, headers=footprint.owner.headers
    )
    [event] = erased.json()["items"]
    assert (event["actor_type"], event["actor_id"], event["actor_label"]) == ("user", None, None)
    assert (event["ip"], event["user_agent"], event["target_id"]) == (None, None, None)
    assert event["details"] == {"scope": "account"}


async def test_the_person_can_no_longer_sign_in_and_others_are_untouched(
    client: httpx.AsyncClient, footprint: Footprint
) -> None:
    owner = footprint.owner
    key = footprint.api_key["key"]
    await erase(footprint)

    assert (await footprint.http.get("/api/v1/auth/me", headers=footprint.person.headers)).status_code == 401
    assert (await client.get("/api/v1/auth/me", headers={"X-API-Key": key})).status_code == 401
    assert (await login(client, footprint.person.email, DEFAULT_PASSWORD)).status_code == 401

    members = (await client.get("/api/v1/members", headers=owner.headers)).json()["items"]
    assert [m["user_id"] for m in members] == [owner.user_id]
    conversation = await client.get(f"/api/v1/conversations/{footprint.owner_conversation_id}", headers=owner.headers)
    assert conversation.status_code == 200
    assert conversation.json()["messages"][0]["content"] == "How long do oak trees live?"
    # The document they uploaded is the organization's: it stays, without them.
    document = await ok(await client.get(f"/api/v1/documents/{footprint.document_id}", headers=owner.headers))
    assert document["filename"] == "marsh.md"
    archive = (await client.get("/api/v1/me/export", headers=owner.headers)).json()
    assert [m["org_id"] for m in archive["sources"]["memberships"]] == [owner.org_id]
    assert len(archive["sources"]["conversations"]) == 1

    # The address is free again.
    again = await register(client, email=footprint.person.email, name=NAME)
    assert again.user_id != footprint.person.user_id


async def test_an_organization_with_no_other_member_is_deleted_with_its_files(
    app: Any, client: httpx.AsyncClient, settings: Settings, footprint: Footprint
) -> None:
    blobs = Path(settings.blob_dir)
    own_files = uuid.UUID(footprint.own_org).hex
    files_before = {path for path in blobs.rglob("*") if path.is_file()}
    assert [path for path in files_before if own_files in str(path)]

    await erase(footprint)

    orgs = (await client.get("/api/v1/orgs", headers=footprint.owner.headers)).json()
    assert [org["id"] for org in orgs] == [footprint.owner.org_id]
    # Only the system chain still names it: the deletion and the erasure that caused it.
    mentions = await rows_mentioning(app.state.engine, [uuid.UUID(footprint.own_org)])
    assert {m.table for m in mentions} == {"audit_event"}
    system = [
        e for e in await all_events(app) if e.org_id is None and e.action in ("org.deleted", "personal_data.erased")
    ]
    [deleted] = [e for e in system if e.action == "org.deleted"]
    assert deleted.target_id == footprint.own_org
    assert deleted.details["reason"] == "sole_member_erased"
    assert deleted.details["audit_events"] > 0
    [account] = [e for e in system if e.action == "personal_data.erased"]
    assert account.details["organizations_deleted"] == [footprint.own_org]
    assert account.details["organizations_left"] == 1
    # The organization's uploaded file is gone from disk; the shared organization's files stay.
    files_after = {path for path in blobs.rglob("*") if path.is_file()}
    assert files_after == {path for path in files_before if own_files not in str(path)}
    assert not any(WORD.lower().encode() in path.read_bytes().lower() for path in files_after)


async def test_the_only_owner_of_an_organization_with_members_must_hand_it_over_first(
    client: httpx.AsyncClient,
) -> None:
    owner = await register(client)
    member = await add_member(client, owner, "member")

    refused = await client.delete(ME, headers=owner.headers)
    assert refused.status_code == 409
    assert error_code(refused) == "sole_owner"
    assert refused.json()["error"]["details"]["organizations"] == [
        {"id": owner.org_id, "name": "Test User's organization"}
    ]
    assert (await client.get("/api/v1/auth/me", headers=owner.headers)).status_code == 200

    promoted = await client.patch(f"/api/v1/members/{member.user_id}", json={"role": "owner"}, headers=owner.headers)
    assert promoted.status_code == 200
    assert (await client.delete(ME, headers=owner.headers)).status_code == 204
    members = (await client.get("/api/v1/members", headers=member.headers)).json()["items"]
    assert [(m["user_id"], m["role"]) for m in members] == [(member.user_id, "owner")]


async def test_erasing_needs_the_signed_in_person(client: httpx.AsyncClient) -> None:
    user = await register(client)
    key = (await client.post("/api/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers=user.headers)).json()

    anonymous = await client.delete(ME)
    assert anonymous.status_code == 401
    by_key = await client.delete(ME, headers={"X-API-Key": key["key"]})
    assert by_key.status_code == 403
    assert error_code(by_key) == "sign_in_required"
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200


async def test_erasing_needs_a_recent_sign_in(app: Any, client: httpx.AsyncClient) -> None:
    user = await register(client)
    # The sign-in happened an hour ago (the default window is 15 minutes).
    async with unit_of_work(app.state.sessionmaker) as session:
        await session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == uuid.UUID(user.user_id))
            .values(created_at=utcnow() - timedelta(hours=1))
        )
    stale = await client.delete(ME, headers=user.headers)
    assert stale.status_code == 403
    assert error_code(stale) == "reauthentication_required"
    assert "sign in again" in stale.json()["error"]["message"]

    # New tokens from the refresh token are the same old sign-in.
    refreshed = await ok(await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}))
    again = await client.delete(ME, headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert error_code(again) == "reauthentication_required"
    assert (await client.get("/api/v1/auth/me", headers=user.headers)).status_code == 200

    fresh = await ok(await login(client, user.email))
    erased = await client.delete(ME, headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert erased.status_code == 204, erased.text
    assert (await login(client, user.email)).status_code == 401


async def test_an_account_without_organizations_is_erased_too(
    app: Any, client: httpx.AsyncClient, footprint: Footprint
) -> None:
    owner = footprint.owner
    member = await add_member(client, owner, "viewer")
    removed = await client.delete(f"/api/v1/members/{member.user_id}", headers=owner.headers)
    assert removed.status_code == 204

    # Their sign-in into the organization ended with the membership: sign in again, with no organization.
    signed_in = await ok(await login(client, member.email))
    headers = {"Authorization": f"Bearer {signed_in['access_token']}"}
    assert (await ok(await client.get("/api/v1/auth/me", headers=headers)))["org_id"] is None

    assert (await client.delete(ME, headers=headers)).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 401
    assert await rows_mentioning(app.state.engine, [uuid.UUID(member.user_id), member.email]) == []
