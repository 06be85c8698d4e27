from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput
from tessera.core.moderation import service
from tessera.core.moderation.base import CATEGORIES
from tessera.core.pagination import Page, PageParamsDep, encode_cursor
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.strings import Label

router = APIRouter(prefix="/moderation", tags=["moderation"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("org:read")]
# Governing what the organization allows, and reading other people's flagged messages: admins and
# owners (no member role grants these actions).
Manager = Annotated[Principal, require("moderation:manage")]
Reviewer = Annotated[Principal, require("moderation:review")]


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: list[str] = Field(default_factory=list, description=f"Categories not checked: {', '.join(CATEGORIES)}.")
    blocked: dict[str, list[Label]] = Field(
        default_factory=dict,
        description="Category → your own words or phrases that flag it (whole words, case-insensitive).",
        examples=[{"harassment": ["useless bot"]}],
    )
    allowed: list[Label] = Field(
        default_factory=list, max_length=500, description="Phrases that never flag (e.g. `kill switch`)."
    )


class PolicyRead(PolicyBody):
    categories: list[str] = Field(default_factory=lambda: list(CATEGORIES))
    moderator: str


class FlagRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID | None
    direction: str
    source: str
    categories: dict[str, Any]
    excerpt: str
    moderator: str
    created_at: datetime


@router.get("/policy", response_model=PolicyRead, summary="Your organization's moderation policy")
async def get_policy(request: Request, principal: Reader, session: DbSession) -> PolicyRead:
    assert principal.org_id is not None
    policy = await service.load_policy(session, principal.org_id)
    return PolicyRead(
        disabled=sorted(policy.disabled),
        blocked={c: list(t) for c, t in policy.blocked.items()},
        allowed=list(policy.allowed),
        moderator=request.app.state.settings.moderation.provider,
    )


@router.put(
    "/policy",
    response_model=PolicyRead,
    summary="Set your organization's moderation policy",
    description="Replaces the policy: categories switched off, your own blocked words per category, and phrases "
    "that never flag. Applies to questions and answers from the next request on.",
    responses={422: InvalidInput.schema()},
)
async def put_policy(body: PolicyBody, request: Request, principal: Manager, session: DbSession) -> PolicyRead:
    assert principal.org_id is not None
    row = await service.save_policy(
        session, principal.org_id, disabled=body.disabled, blocked=body.blocked, allowed=body.allowed
    )
    return PolicyRead(
        disabled=row.disabled,
        blocked=row.blocked,
        allowed=row.allowed,
        moderator=request.app.state.settings.moderation.provider,
    )


@router.get(
    "/flags",
    response_model=Page[FlagRead],
    summary="What moderation flagged",
    description="Newest first: refused questions (`input`) and withheld answers (`output`), with categories and "
    "a 200-character excerpt.",
)
async def list_flags(principal: Reviewer, session: DbSession, page: PageParamsDep) -> Page[FlagRead]:
    assert principal.org_id is not None
    rows = list(await service.list_flags(session, principal.org_id, limit=page.limit + 1, after=page.after))
    cursor = encode_cursor(rows[page.limit - 1].id) if len(rows) > page.limit else None
    return Page[FlagRead](items=[FlagRead.model_validate(r) for r in rows[: page.limit]], next_cursor=cursor)
