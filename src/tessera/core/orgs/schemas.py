from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tessera.core.auth.models import Role
from tessera.core.auth.schemas import Name, StrictModel


class OrganizationCreate(StrictModel):
    name: Name = Field(examples=["Acme Hearing"])


class OrganizationUpdate(StrictModel):
    name: Name


class OrganizationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime


class MemberRead(BaseModel):
    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    joined_at: datetime


class MemberPage(BaseModel):
    items: list[MemberRead]
    next_cursor: str | None


class MemberUpdate(StrictModel):
    role: Role


class InvitationCreate(StrictModel):
    email: EmailStr = Field(examples=["grace@example.com"])
    role: Role = Role.member


class InvitationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime


class InvitationCreated(InvitationRead):
    token: str = Field(description="Shown once. The invitee accepts with it (or registers with it).")


class InvitationPage(BaseModel):
    items: list[InvitationRead]
    next_cursor: str | None


class InvitationAccept(StrictModel):
    token: str = Field(min_length=1, max_length=200)


class InvitationAccepted(BaseModel):
    org: OrganizationRead
    role: Role
