"""Redacting the audit trail, on a rolled-back session on both backends: which events change and
how, the chain re-sealed so it verifies, and a chain that was already broken reported, not laundered."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.models import AuditEvent
from tessera.core.audit.service import Actor, RequestMeta, record_event, verify_audit_chains
from tessera.core.auth.models import ApiKey, Organization, User
from tessera.core.personal_data.sources.audit import AuditTrailSource, Subject, redaction

HERE = RequestMeta(ip="198.51.100.9", user_agent="Probe/1", request_id="req-1")


async def people(session: AsyncSession) -> tuple[Organization, User, User]:
    org = Organization(name="Acme", slug=f"acme-{uuid.uuid4().hex[:8]}")
    ada = User(email=f"ada-{uuid.uuid4().hex[:6]}@example.com", name="Ada Lovelace", password_hash="x")
    bob = User(email=f"bob-{uuid.uuid4().hex[:6]}@example.com", name="Bob Babbage", password_hash="x")
    session.add_all([org, ada, bob])
    await session.flush()
    return org, ada, bob


def test_redaction_of_one_event() -> None:
    ada_id, bob_id, tombstone = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ada = Subject(
        user_id=ada_id, key_ids=frozenset(), key_labels=frozenset({"ada's key"}), email="ada@x.org", name="Ada L"
    )

    own = AuditEvent(
        actor_type="user", actor_id=ada_id, actor_label="ada@x.org", ip="1.2.3.4", user_agent="UA",
        target_type="api_key", target_id=str(uuid.uuid4()),
        details={"name": "Ada's key", "note": "by Ada L", "nested": [{"who": "ADA@x.org"}], "n": 3},
    )  # fmt: skip
    assert redaction(own, ada, tombstone) == {
        "actor_id": tombstone,
        "actor_label": None,
        "ip": None,
        "user_agent": None,
        "details": {"name": "[erased]", "note": "[erased]", "nested": [{"who": "[erased]"}], "n": 3},
    }
    # Someone else acted on her: their IP stays, her id and e-mail go; her name alone is not searched.
    on_her = AuditEvent(
        actor_type="user", actor_id=bob_id, actor_label="bob@x.org", ip="5.6.7.8", user_agent="UB",
        target_type="user", target_id=str(ada_id), details={"email": "ada@x.org", "role": "member"},
    )  # fmt: skip
    assert redaction(on_her, ada, tombstone) == {
        "target_id": str(tombstone),
        "details": {"email": "[erased]", "role": "member"},
    }
    unrelated = AuditEvent(
        actor_type="user", actor_id=bob_id, actor_label="bob@x.org", ip="5.6.7.8", user_agent="UB",
        target_type=None, target_id=None, details={"name": "Ada L's notes"},
    )  # fmt: skip
    assert redaction(unrelated, ada, tombstone) == {}


async def test_erasing_reseals_the_chain_and_records_the_redaction(session: AsyncSession) -> None:
    org, ada, bob = await people(session)
    ada_actor, bob_actor = Actor("user", ada.id, ada.email), Actor("user", bob.id, bob.email)
    await record_event(session, action="a.one", org_id=org.id, actor=bob_actor, meta=HERE)
    await record_event(session, action="a.two", org_id=org.id, actor=ada_actor, meta=HERE, details={"x": ada.name})
    await record_event(session, action="a.three", org_id=org.id, actor=bob_actor, target_type="user", target_id=ada.id)
    await record_event(session, action="a.four", org_id=org.id, actor=bob_actor, meta=HERE)
    await record_event(session, action="s.one", org_id=None, actor=Actor("anonymous", ada.id, ada.email), meta=HERE)

    redacted = await AuditTrailSource().erase(session, ada.id, None)

    assert redacted == 3
    assert (await verify_audit_chains(session)).ok
    events = {e.action: e for e in (await session.execute(select(AuditEvent))).scalars() if e.org_id in (org.id, None)}
    tombstone = events["a.two"].actor_id
    assert tombstone not in (None, ada.id)
    assert events["a.three"].target_id == str(tombstone)
    assert events["s.one"].actor_id == tombstone
    assert (events["a.two"].ip, events["a.two"].details) == (None, {"x": "[erased]"})
    assert (events["a.one"].ip, events["a.four"].ip) == (HERE.ip, HERE.ip)
    marks = [e for e in (await session.execute(select(AuditEvent))).scalars() if e.action == "audit.redacted"]
    in_org = next(e for e in marks if e.org_id == org.id)
    assert in_org.details["events"] == 2
    assert in_org.details["resealed_from_seq"] == events["a.two"].seq
    assert in_org.details["previous_head"]["seq"] == events["a.four"].seq
    assert in_org.details["broken_before"] == []
    # A second erasure finds nothing left to redact.
    assert await AuditTrailSource().erase(session, ada.id, None) == 0


async def test_an_already_broken_chain_is_reported_not_laundered(session: AsyncSession) -> None:
    org, ada, bob = await people(session)
    bob_actor = Actor("user", bob.id, bob.email)
    await record_event(session, action="b.one", org_id=org.id, actor=Actor("user", ada.id, ada.email))
    tampered = await record_event(session, action="b.two", org_id=org.id, actor=bob_actor, details={"amount": 1})
    await record_event(session, action="b.three", org_id=org.id, actor=bob_actor)
    org_id, ada_id, tampered_seq = org.id, ada.id, tampered.seq
    await session.execute(update(AuditEvent).where(AuditEvent.id == tampered.id).values(details={"amount": 1000}))
    session.expire_all()
    assert not (await verify_audit_chains(session, org_id=org_id)).ok

    await AuditTrailSource().erase(session, ada_id, org_id)

    marks = select(AuditEvent).where(AuditEvent.org_id == org_id, AuditEvent.action == "audit.redacted")
    mark = (await session.execute(marks)).scalar_one()
    assert mark.details["broken_before"] == [tampered_seq]
    # Re-sealed all the same: the chain verifies from here on, and the mark keeps the evidence.
    assert (await verify_audit_chains(session, org_id=org_id)).ok


async def test_events_of_the_users_api_keys_are_theirs(session: AsyncSession) -> None:
    org, ada, _ = await people(session)
    key = ApiKey(
        org_id=org.id, created_by_id=ada.id, name="ada-laptop", prefix=f"tsk_{uuid.uuid4().hex[:12]}",
        key_hash="0" * 64, scopes=["*"],
    )  # fmt: skip
    session.add(key)
    await session.flush()
    await record_event(
        session, action="k.used", org_id=org.id, actor=Actor("api_key", key.id, ada.email), meta=HERE,
        details={"key": key.prefix},
    )  # fmt: skip

    assert await AuditTrailSource().erase(session, ada.id, org.id) == 1

    event = (await session.execute(select(AuditEvent).where(AuditEvent.action == "k.used"))).scalar_one()
    assert event.actor_id not in (key.id, None)
    assert (event.actor_label, event.ip, event.details) == (None, None, {"key": "[erased]"})
