"""The audit hash chain: it holds across and within requests, and every kind of tampering shows."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update

from tessera.core.audit.models import AuditChainHead, AuditEvent
from tessera.core.audit.service import GENESIS_HASH, compute_hash
from tests.factories import SignedIn, register

VERIFY = "/api/v1/audit-events/verify"


async def verify(client: httpx.AsyncClient, caller: SignedIn) -> dict[str, Any]:
    response = await client.get(VERIFY, headers=caller.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def busy_org(client: httpx.AsyncClient) -> SignedIn:
    """An organization with a few events: register (two in one request), invitations, renames."""
    owner = await register(client)
    for i in range(2):
        email = f"m{i}-{uuid.uuid4().hex[:6]}@example.com"
        invited = await client.post("/api/v1/members/invitations", json={"email": email}, headers=owner.headers)
        await register(client, email=email, invitation_token=invited.json()["token"])
    await client.patch("/api/v1/orgs/current", json={"name": "Renamed"}, headers=owner.headers)
    return owner


async def chain(app: Any, org_id: str) -> tuple[list[AuditEvent], AuditChainHead]:
    async with app.state.sessionmaker() as session:
        events = list(
            (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.chain_id == uuid.UUID(org_id)).order_by(AuditEvent.seq)
                )
            ).scalars()
        )
        head = await session.get(AuditChainHead, uuid.UUID(org_id))
    assert head is not None
    return events, head


def assert_linked(events: list[AuditEvent], head: AuditChainHead) -> None:
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    previous = GENESIS_HASH
    for event in events:
        assert event.prev_hash == previous
        assert event.hash == compute_hash(previous, event)
        previous = event.hash
    assert (head.seq, head.hash) == (events[-1].seq, events[-1].hash)


async def run_sql(app: Any, statement: Any) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(statement)
        await session.commit()


class TestIntactChain:
    async def test_chain_links_within_and_across_requests(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await busy_org(client)
        events, head = await chain(app, owner.org_id)
        # register: org.created + user.registered; each invitee: member.invited, then member.joined +
        # user.registered in one request; then org.renamed.
        assert [event.action for event in events] == [
            "org.created", "user.registered",
            "member.invited", "member.joined", "user.registered",
            "member.invited", "member.joined", "user.registered",
            "org.renamed",
        ]  # fmt: skip
        assert_linked(events, head)
        assert await verify(client, owner) == {"ok": True, "events": 9, "problems": []}

    async def test_concurrent_writers_keep_one_chain(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        responses = await asyncio.gather(
            *(
                client.patch("/api/v1/orgs/current", json={"name": f"Concurrent {i}"}, headers=owner.headers)
                for i in range(8)
            )
        )
        assert [response.status_code for response in responses] == [200] * 8
        events, head = await chain(app, owner.org_id)
        assert len(events) == 10
        assert_linked(events, head)
        assert (await verify(client, owner))["ok"] is True

    async def test_each_org_has_its_own_chain(self, client: httpx.AsyncClient, app: Any) -> None:
        first = await register(client)
        second = await register(client)
        # A failed sign-in for an unknown address chains under no organization.
        assert (
            await client.post("/api/v1/auth/login", json={"email": "ghost@example.com", "password": "Whatever-123"})
        ).status_code == 401
        for owner in (first, second):
            events, head = await chain(app, owner.org_id)
            assert [event.seq for event in events] == [1, 2]
            assert_linked(events, head)
            assert await verify(client, owner) == {"ok": True, "events": 2, "problems": []}


class TestTampering:
    async def test_changed_details_are_reported(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await busy_org(client)
        events, _ = await chain(app, owner.org_id)
        target = events[2]
        await run_sql(app, update(AuditEvent).where(AuditEvent.id == target.id).values(details={"email": "x@evil.com"}))
        report = await verify(client, owner)
        assert report["ok"] is False
        assert report["events"] == len(events)
        assert report["problems"] == [
            {"seq": target.seq, "event_id": str(target.id), "problem": "event content does not match its hash"}
        ]

    async def test_every_recorded_column_is_covered(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await register(client)
        events, _ = await chain(app, owner.org_id)
        event = events[0]
        changes: dict[str, Any] = {
            "action": "org.deleted",
            "actor_id": uuid.uuid4(),
            "actor_label": "someone@else.com",
            "actor_type": "system",
            "target_id": "other",
            "target_type": "thing",
            "ip": "198.51.100.1",
            "user_agent": "curl",
            "request_id": "forged",
            "created_at": event.created_at - timedelta(days=1),
            "details": {**event.details, "name": "Forged"},
        }
        for column, value in changes.items():
            original = getattr(event, column)
            await run_sql(app, update(AuditEvent).where(AuditEvent.id == event.id).values({column: value}))
            problems = (await verify(client, owner))["problems"]
            assert problems == [
                {"seq": 1, "event_id": str(event.id), "problem": "event content does not match its hash"}
            ], column
            await run_sql(app, update(AuditEvent).where(AuditEvent.id == event.id).values({column: original}))
        assert (await verify(client, owner))["ok"] is True

    async def test_a_recomputed_hash_breaks_the_next_link(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await busy_org(client)
        events, _ = await chain(app, owner.org_id)
        target = events[3]
        target.details = {"role": "owner"}
        forged = compute_hash(target.prev_hash, target)
        await run_sql(
            app, update(AuditEvent).where(AuditEvent.id == target.id).values(details=target.details, hash=forged)
        )
        report = await verify(client, owner)
        assert report["problems"] == [
            {"seq": target.seq + 1, "event_id": str(events[4].id), "problem": "link to the previous event is broken"}
        ]

    async def test_deleting_the_newest_event_is_reported(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await busy_org(client)
        events, _ = await chain(app, owner.org_id)
        await run_sql(app, delete(AuditEvent).where(AuditEvent.id == events[-1].id))
        report = await verify(client, owner)
        assert report["ok"] is False
        assert report["events"] == len(events) - 1
        n = len(events)
        assert report["problems"] == [
            {"seq": n, "event_id": None, "problem": f"chain ends at event {n - 1} but its head says {n}"}
        ]

    async def test_deleting_an_event_in_the_middle_is_reported(self, client: httpx.AsyncClient, app: Any) -> None:
        owner = await busy_org(client)
        events, _ = await chain(app, owner.org_id)
        await run_sql(app, delete(AuditEvent).where(AuditEvent.id == events[4].id))
        problems = (await verify(client, owner))["problems"]
        assert problems == [
            {"seq": 5, "event_id": None, "problem": "events 5..5 are missing"},
            {"seq": 6, "event_id": str(events[5].id), "problem": "link to the previous event is broken"},
        ]

    async def test_tampering_in_another_org_does_not_show_here(self, client: httpx.AsyncClient, app: Any) -> None:
        mine = await register(client)
        theirs = await register(client)
        their_events, _ = await chain(app, theirs.org_id)
        await run_sql(app, update(AuditEvent).where(AuditEvent.id == their_events[0].id).values(ip="0.0.0.0"))
        assert (await verify(client, mine))["ok"] is True
        assert (await verify(client, theirs))["ok"] is False
