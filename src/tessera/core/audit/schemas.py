from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    created_at: datetime
    actor_type: str
    actor_id: uuid.UUID | None
    actor_label: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str


class AuditEventPage(BaseModel):
    items: list[AuditEventRead]
    next_cursor: str | None


class AuditProblemRead(BaseModel):
    seq: int | None
    event_id: uuid.UUID | None
    problem: str


class AuditVerification(BaseModel):
    ok: bool
    events: int
    problems: list[AuditProblemRead]
