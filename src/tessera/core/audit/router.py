from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from tessera.core.audit.models import AuditEvent
from tessera.core.audit.schemas import AuditEventPage, AuditEventRead, AuditProblemRead, AuditVerification
from tessera.core.audit.service import verify_audit_chains
from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput
from tessera.core.pagination import PageParamsDep, paginate
from tessera.core.ratelimit.dependencies import rate_limit

router = APIRouter(prefix="/audit-events", tags=["audit"], dependencies=[rate_limit("default")])

AuditReader = Annotated[Principal, require("audit:read")]


@router.get(
    "",
    response_model=AuditEventPage,
    summary="The organization's audit trail",
    description="Newest first. Filters combine with AND. Admins and owners only.",
)
async def list_audit_events(
    principal: AuditReader,
    session: DbSession,
    page: PageParamsDep,
    action: Annotated[
        str | None, Query(max_length=100, description="Exact action, or a prefix ending in `.`: `auth.`")
    ] = None,
    actor_id: Annotated[uuid.UUID | None, Query(description="User or API key id.")] = None,
    target_type: Annotated[str | None, Query(max_length=64)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="Inclusive lower bound on created_at.")] = None,
    until: Annotated[datetime | None, Query(description="Exclusive upper bound on created_at.")] = None,
) -> AuditEventPage:
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise InvalidInput("since and until need a timezone, e.g. 2026-01-01T00:00:00Z")
    query = select(AuditEvent).where(AuditEvent.org_id == principal.org_id)
    if action:
        query = query.where(
            AuditEvent.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEvent.action == action
        )
    if actor_id:
        query = query.where(AuditEvent.actor_id == actor_id)
    if target_type:
        query = query.where(AuditEvent.target_type == target_type)
    if target_id:
        query = query.where(AuditEvent.target_id == target_id)
    if since:
        query = query.where(AuditEvent.created_at >= since)
    if until:
        query = query.where(AuditEvent.created_at < until)
    rows, cursor = await paginate(session, query, key=AuditEvent.id, params=page)
    return AuditEventPage(items=[AuditEventRead.model_validate(row) for row in rows], next_cursor=cursor)


@router.get(
    "/verify",
    response_model=AuditVerification,
    summary="Verify the organization's hash chain",
    description="Recomputes every link; any edited, inserted or deleted event is reported.",
)
async def verify_audit_events(principal: AuditReader, session: DbSession) -> AuditVerification:
    assert principal.org_id is not None
    report = await verify_audit_chains(session, org_id=principal.org_id)
    return AuditVerification(
        ok=report.ok,
        events=report.events,
        problems=[AuditProblemRead(seq=p.seq, event_id=p.event_id, problem=p.problem) for p in report.problems],
    )
