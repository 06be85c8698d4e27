"""Writing and verifying the audit trail.

Each event stores `hash = sha256(prev_hash + canonical(event))`. Changing, inserting or
deleting a row breaks the chain at that point; `verify_audit_chains` reports where.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.models import SYSTEM_CHAIN, AuditChainHead, AuditEvent
from tessera.core.db.base import new_id, utcnow

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # user | api_key | system | anonymous
    id: uuid.UUID | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class RequestMeta:
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


SYSTEM_ACTOR = Actor(type="system", label="system")
NO_REQUEST = RequestMeta()


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "id": str(event.id),
        "chain_id": str(event.chain_id),
        "seq": event.seq,
        "org_id": str(event.org_id) if event.org_id else None,
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + _canonical(event)).hexdigest()


async def _lock_chain_head(session: AsyncSession, chain_id: uuid.UUID) -> AuditChainHead:
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Create the head row if missing without failing when a concurrent writer just did.
    await session.execute(
        insert(AuditChainHead)
        .values(chain_id=chain_id, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing(index_elements=["chain_id"])
    )
    # FOR UPDATE serialises appenders on PostgreSQL; SQLite write transactions are already serial.
    head = (
        await session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.chain_id == chain_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return head


async def record_event(
    session: AsyncSession,
    *,
    action: str,
    org_id: uuid.UUID | None,
    actor: Actor,
    meta: RequestMeta = NO_REQUEST,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to its organization's chain, in the caller's transaction."""
    chain_id = org_id or SYSTEM_CHAIN
    head = await _lock_chain_head(session, chain_id)
    event = AuditEvent(
        id=new_id(),
        chain_id=chain_id,
        seq=head.seq + 1,
        org_id=org_id,
        created_at=utcnow(),
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=meta.ip,
        user_agent=(meta.user_agent or "")[:500] or None,
        request_id=meta.request_id,
        details=json.loads(json.dumps(details or {}, default=str)),
        prev_hash=head.hash,
    )
    event.hash = compute_hash(head.hash, event)
    head.seq = event.seq
    head.hash = event.hash
    session.add(event)
    await session.flush()
    return event


@dataclass(frozen=True, slots=True)
class ChainProblem:
    chain_id: uuid.UUID
    seq: int | None
    event_id: uuid.UUID | None
    problem: str


@dataclass(frozen=True, slots=True)
class VerificationReport:
    chains: int
    events: int
    problems: Sequence[ChainProblem]

    @property
    def ok(self) -> bool:
        return not self.problems


async def _events_in_order(session: AsyncSession, chain_id: uuid.UUID, batch: int = 1_000) -> AsyncIterator[AuditEvent]:
    last_seq = 0
    while True:
        query = (
            select(AuditEvent)
            .where(AuditEvent.chain_id == chain_id, AuditEvent.seq > last_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
        )
        rows = (await session.execute(query)).scalars().all()
        if not rows:
            return
        for row in rows:
            yield row
        last_seq = rows[-1].seq
        # Keep memory flat on long chains, without detaching the caller's own objects.
        for row in rows:
            session.expunge(row)


async def verify_audit_chains(session: AsyncSession, *, org_id: uuid.UUID | None = None) -> VerificationReport:
    """Recompute every chain (or one organization's) and report each break."""
    head_query = select(AuditChainHead)
    chain_query = select(AuditEvent.chain_id).distinct()
    if org_id is not None:
        # One organization's check must not scan every other organization's events.
        head_query = head_query.where(AuditChainHead.chain_id == org_id)
        chain_query = chain_query.where(AuditEvent.chain_id == org_id)
    heads = {head.chain_id: head for head in (await session.execute(head_query)).scalars().all()}
    chain_ids = set(heads) | set((await session.execute(chain_query)).scalars().all())
    problems: list[ChainProblem] = []
    events = 0
    for chain_id in sorted(chain_ids, key=str):
        head = heads.get(chain_id)
        head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
        prev_hash, expected_seq = GENESIS_HASH, 1
        async for event in _events_in_order(session, chain_id):
            events += 1
            if event.seq != expected_seq:
                problems.append(
                    ChainProblem(chain_id, expected_seq, None, f"events {expected_seq}..{event.seq - 1} are missing")
                )
            if event.prev_hash != prev_hash:
                problems.append(ChainProblem(chain_id, event.seq, event.id, "link to the previous event is broken"))
            if compute_hash(event.prev_hash, event) != event.hash:
                problems.append(ChainProblem(chain_id, event.seq, event.id, "event content does not match its hash"))
            prev_hash, expected_seq = event.hash, event.seq + 1
        if expected_seq - 1 != head_seq or prev_hash != head_hash:
            problems.append(
                ChainProblem(
                    chain_id, head_seq, None, f"chain ends at event {expected_seq - 1} but its head says {head_seq}"
                )
            )
    return VerificationReport(chains=len(chain_ids), events=events, problems=problems)
