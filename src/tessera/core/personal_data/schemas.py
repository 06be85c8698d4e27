from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ARCHIVE_FORMAT = "tessera.personal-data/v1"

_ARCHIVE_EXAMPLE: dict[str, Any] = {
    "format": ARCHIVE_FORMAT,
    "exported_at": "2026-12-08T10:00:00Z",
    "user": {
        "id": "0193a1f2-7c1e-7b8a-9f3e-2d4c5b6a7e8f",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "created_at": "2026-11-02T09:12:00Z",
        "updated_at": "2026-12-01T17:40:00Z",
        "last_login_at": "2026-12-08T09:58:00Z",
        "is_active": True,
        "is_superuser": False,
        "mfa_enabled": True,
        "default_org_id": "0193a1f2-7c1e-7b8a-9f3e-000000000001",
        "failed_login_count": 0,
        "locked_until": None,
    },
    "sources": {
        "memberships": [{"org_id": "0193a1f2-…", "organization": "Analytical Engines", "role": "owner"}],
        "sessions": [{"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 …", "created_at": "2026-12-08T09:58:00Z"}],
        "conversations": [{"title": "Battery life", "messages": [{"role": "user", "content": "How long…"}]}],
    },
}


class AccountExport(BaseModel):
    """The account row, without its secrets (password hash, MFA secret and recovery codes)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    is_active: bool
    is_superuser: bool
    mfa_enabled: bool = Field(description="Whether sign-in asks for a second factor; the secret is never exported.")
    default_org_id: uuid.UUID | None
    failed_login_count: int = Field(description="Failed sign-ins since the last successful one.")
    locked_until: datetime | None


class PersonalDataArchive(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ARCHIVE_EXAMPLE]})

    format: Literal["tessera.personal-data/v1"] = Field(description="The archive's format and version.")
    exported_at: datetime
    user: AccountExport
    sources: dict[str, Any] = Field(
        description="What each source of personal data holds about you, by source name "
        "(docs/personal-data.md lists them): memberships, sessions, API keys, conversations, …"
    )


class ErasureRead(BaseModel):
    account_erased: bool = Field(
        description="True when the member belonged to no other organization, so their account was erased too."
    )
    sources: dict[str, int] = Field(description="Rows deleted or anonymised, by source of personal data.")
