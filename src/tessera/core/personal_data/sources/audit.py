"""The audit trail: erased users' events keep what happened and lose who did it.

An event names the user when they (or one of their API keys) acted, when they are its target, or
when their e-mail or id appears in its details. Erasing rewrites each such event:

- their id, as actor or target, becomes a *tombstone*: a random UUID, one per erase call, so the
  events of one erased person still read as one person's, without saying whose;
- the actor label (their e-mail), and the IP address and user agent of the events they caused, go;
- every string in the details holding their e-mail or id becomes "[erased]"; so does, in the
  events they caused or were the target of, any string holding their name or equal to the name
  or prefix of one of their API keys.

Events are hash-chained per organization (core/audit/service.py): changing one breaks every later
link. So each chain touched is *re-sealed*: hashes are recomputed from the first redacted event
to the head, and an `audit.redacted` event is appended that records how many events changed, from
which sequence number, and the head before (its seq and hash), so a head hash kept elsewhere can
still be matched to this point. Re-sealing also checks the old links; a chain that was already
broken is re-sealed all the same, and the `audit.redacted` event lists where it was broken, so
erasure never launders earlier tampering.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.audit.models import SYSTEM_CHAIN, AuditChainHead, AuditEvent
from tessera.core.audit.service import GENESIS_HASH, SYSTEM_ACTOR, compute_hash, record_event
from tessera.core.auth.models import ApiKey, User
from tessera.core.personal_data.sources.common import fields, scrub

REDACTED_ACTION = "audit.redacted"
RESEAL_BATCH = 1_000
MAX_REPORTED_BREAKS = 100
EVENT_FIELDS = (
    "id", "org_id", "created_at", "action", "actor_type", "actor_id", "target_type", "target_id", "ip",
    "user_agent", "details",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Subject:
    """The person being erased, in every form an audit event may name them."""

    user_id: uuid.UUID
    key_ids: frozenset[uuid.UUID]
    # Names and prefixes of their API keys (lower case), erased where a detail is exactly one.
    key_labels: frozenset[str]
    email: str | None
    name: str | None

    @property
    def ids(self) -> frozenset[uuid.UUID]:
        return self.key_ids | {self.user_id}

    @property
    def id_strings(self) -> frozenset[str]:
        return frozenset(str(value) for value in self.ids)

    def acted(self, event: AuditEvent) -> bool:
        label = (event.actor_label or "").lower()
        return event.actor_id in self.ids or (self.email is not None and label == self.email)

    def targeted(self, event: AuditEvent) -> bool:
        return event.target_id is not None and event.target_id.lower() in self.id_strings

    def needles(self, *, with_name: bool) -> tuple[str, ...]:
        found = [*self.id_strings, self.user_id.hex]
        if self.email:
            found.append(self.email)
        if with_name and self.name and self.name.strip():
            found.append(self.name.strip().lower())
        return tuple(found)


async def load_subject(session: AsyncSession, user_id: uuid.UUID) -> Subject:
    account = (await session.execute(select(User.email, User.name).where(User.id == user_id))).one_or_none()
    keys = (
        await session.execute(select(ApiKey.id, ApiKey.name, ApiKey.prefix).where(ApiKey.created_by_id == user_id))
    ).all()
    return Subject(
        user_id=user_id,
        key_ids=frozenset(key.id for key in keys),
        key_labels=frozenset(label.lower() for key in keys for label in (key.name, key.prefix)),
        email=account.email.lower() if account else None,
        name=account.name if account else None,
    )


def redaction(event: AuditEvent, subject: Subject, tombstone: uuid.UUID) -> dict[str, Any]:
    """The columns of `event` to change so that it no longer names the subject (empty: it doesn't)."""
    changes: dict[str, Any] = {}
    acted, targeted = subject.acted(event), subject.targeted(event)
    if acted:
        if event.actor_id in subject.ids:
            changes["actor_id"] = tombstone
        changes.update({column: None for column in ("actor_label", "ip", "user_agent") if getattr(event, column)})
    if targeted:
        changes["target_id"] = str(tombstone)
    own = acted or targeted
    details = scrub(event.details, subject.needles(with_name=own), subject.key_labels if own else ())
    if details != event.details:
        changes["details"] = details
    return changes


def _mentions(subject: Subject) -> Any:
    """A filter that finds every event that may name the subject (redaction() decides)."""
    details = cast(AuditEvent.details, Text)
    conditions = [
        AuditEvent.actor_id.in_(subject.ids),
        AuditEvent.target_id.in_(subject.id_strings),
        details.contains(str(subject.user_id), autoescape=True),
    ]
    if subject.email:
        conditions.append(func.lower(AuditEvent.actor_label) == subject.email)
        # As stored: JSON escapes non-ASCII characters on SQLite, PostgreSQL keeps them.
        for form in {subject.email, json.dumps(subject.email)[1:-1]}:
            conditions.append(details.contains(form, autoescape=True))
    return or_(*conditions)


@dataclass(slots=True)
class _Reseal:
    first_seq: int
    previous_seq: int
    previous_hash: str
    broken_at: list[int]


async def _reseal(
    session: AsyncSession, chain_id: uuid.UUID, first: int, changes: dict[uuid.UUID, dict[str, Any]]
) -> _Reseal:
    """Apply `changes` (event id → columns) to one chain, whose first changed event is number
    `first`, and recompute its links from there up to the head."""
    # The head's row lock queues appenders (record_event) until this transaction ends.
    head = (
        await session.execute(
            select(AuditChainHead)
            .where(AuditChainHead.chain_id == chain_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    prev_hash = GENESIS_HASH
    if first > 1:
        prev_hash = (
            await session.execute(
                select(AuditEvent.hash).where(AuditEvent.chain_id == chain_id, AuditEvent.seq == first - 1)
            )
        ).scalar_one()
    report = _Reseal(first_seq=first, previous_seq=head.seq, previous_hash=head.hash, broken_at=[])
    old_prev, after, last_seq = prev_hash, first - 1, first - 1
    while True:
        events = (
            (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.chain_id == chain_id, AuditEvent.seq > after)
                    .order_by(AuditEvent.seq)
                    .limit(RESEAL_BATCH)
                    .execution_options(populate_existing=True)
                )
            )
            .scalars()
            .all()
        )
        if not events:
            break
        rows = []
        for event in events:
            # Detached: the new values go out in one bulk UPDATE, not as the unit of work's changes.
            session.expunge(event)
            intact = event.seq == last_seq + 1 and event.prev_hash == old_prev
            intact = intact and compute_hash(event.prev_hash, event) == event.hash
            if not intact and len(report.broken_at) < MAX_REPORTED_BREAKS:
                report.broken_at.append(event.seq)
            old_prev, last_seq = event.hash, event.seq
            change = changes.get(event.id, {})
            for column, value in change.items():
                setattr(event, column, value)
            event.prev_hash = prev_hash
            event.hash = compute_hash(prev_hash, event)
            prev_hash = event.hash
            rows.append({"id": event.id, **change, "prev_hash": event.prev_hash, "hash": event.hash})
        await session.execute(update(AuditEvent), rows)
        after = events[-1].seq
    if (head.seq, head.hash) != (last_seq, old_prev) and len(report.broken_at) < MAX_REPORTED_BREAKS:
        report.broken_at.append(head.seq)
    head.seq, head.hash = last_seq, prev_hash
    await session.flush()
    return report


class AuditTrailSource:
    """Exports the events the user caused (themselves or through their API keys); erasing redacts
    every event that names them (module docstring)."""

    name = "audit_events"

    async def export(self, session: AsyncSession, user_id: uuid.UUID) -> Any:
        subject = await load_subject(session, user_id)
        rows = await session.execute(
            select(AuditEvent).where(AuditEvent.actor_id.in_(subject.ids)).order_by(AuditEvent.created_at)
        )
        return [fields(event, *EVENT_FIELDS) for event in rows.scalars()]

    async def erase(self, session: AsyncSession, user_id: uuid.UUID, org_id: uuid.UUID | None) -> int:
        subject = await load_subject(session, user_id)
        tombstone = uuid.uuid4()
        query = select(AuditEvent).where(_mentions(subject)).execution_options(populate_existing=True)
        if org_id is not None:
            query = query.where(AuditEvent.chain_id == org_id)
        by_chain: dict[uuid.UUID, dict[uuid.UUID, dict[str, Any]]] = defaultdict(dict)
        first: dict[uuid.UUID, int] = {}
        for event in (await session.execute(query)).scalars():
            change = redaction(event, subject, tombstone)
            if change:
                by_chain[event.chain_id][event.id] = change
                first[event.chain_id] = min(event.seq, first.get(event.chain_id, event.seq))
        for chain_id in sorted(by_chain, key=str):
            changes = by_chain[chain_id]
            report = await _reseal(session, chain_id, first[chain_id], changes)
            await record_event(
                session, action=REDACTED_ACTION, org_id=None if chain_id == SYSTEM_CHAIN else chain_id,
                actor=SYSTEM_ACTOR, target_type="user", target_id=tombstone,
                details={
                    "reason": "personal_data.erased",
                    "events": len(changes),
                    "resealed_from_seq": report.first_seq,
                    "previous_head": {"seq": report.previous_seq, "hash": report.previous_hash},
                    "broken_before": report.broken_at,
                },
            )  # fmt: skip
        return sum(len(changes) for changes in by_chain.values())
