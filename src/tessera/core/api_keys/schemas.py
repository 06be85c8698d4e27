from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tessera.core.auth.schemas import Name, StrictModel


class ApiKeyCreate(StrictModel):
    name: Name = Field(examples=["CI ingestion"])
    scopes: list[str] = Field(
        min_length=1,
        max_length=50,
        description="`resource:action` patterns: `documents:read`, `documents:*`, `*:read`, or `*`. "
        "The key can never do more than your role allows.",
        examples=[["documents:read", "documents:write"]],
    )
    # AwareDatetime: a naive value cannot be compared with UTC and would otherwise be a 500.
    expires_at: AwareDatetime | None = Field(None, description="Optional expiry (timezone-aware).")


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    scopes: list[str]
    created_by_id: uuid.UUID
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key. Shown once: store it now.")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyRead]
    next_cursor: str | None
