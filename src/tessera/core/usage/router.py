from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tessera.core.auth.dependencies import require
from tessera.core.auth.principal import Principal
from tessera.core.db.session import DbSession
from tessera.core.errors import InvalidInput
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.core.usage import service
from tessera.core.usage.models import UsageBudget

router = APIRouter(prefix="/usage", tags=["usage"], dependencies=[rate_limit("default")])
Reader = Annotated[Principal, require("org:read")]
# Everyone's usage and the budgets: admins and owners (no member role grants these actions).
Reviewer = Annotated[Principal, require("usage:review")]
Manager = Annotated[Principal, require("usage:manage")]


class UsageGroup(BaseModel):
    key: str | None = Field(description="The model, user id, API key id, transport or day (null: none).")
    requests: int
    input_tokens: int
    output_tokens: int
    cost: float | None = Field(description="In `currency`, where the model is priced.")


class UsageReport(BaseModel):
    scope: str = Field(description="`organization` (admins) or `me`.")
    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")
    group_by: str
    currency: str
    totals: UsageGroup
    groups: list[UsageGroup]

    model_config = ConfigDict(populate_by_name=True)


class BudgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_monthly_tokens: int | None = Field(
        None, ge=0, description="Tokens (input + output) the organization may use a month."
    )
    user_monthly_tokens: int | None = Field(None, ge=0, description="Tokens each user may use a month.")
    user_monthly_requests: int | None = Field(None, ge=0, description="Questions each user may ask a month.")


@router.get(
    "",
    response_model=UsageReport,
    response_model_by_alias=True,
    summary="Model usage: requests, tokens and cost",
    description="Answers (every transport) over a date range (UTC days, default: this month), grouped by `model`, "
    "`user`, `api_key`, `source` (ask, chat, chat_ws, openai) or `day`. Admins see the organization "
    "(`scope=organization`); others see their own.",
    responses={422: InvalidInput.schema()},
)
async def usage_report(
    request: Request,
    principal: Reader,
    session: DbSession,
    from_: Annotated[date | None, Query(alias="from")] = None,
    to: Annotated[date | None, Query()] = None,
    group_by: Annotated[str, Query(pattern="^(model|user|api_key|source|day)$")] = "model",
    scope: Annotated[str, Query(pattern="^(organization|me)$")] = "organization",
) -> dict[str, Any]:
    assert principal.org_id is not None
    today = datetime.now(UTC).date()
    start = from_ or today.replace(day=1)
    end = to or today
    mine = scope == "me" or not principal.can("usage:review")
    groups = await service.summary(
        session, principal.org_id, start=start, end=end, group_by=group_by,  # type: ignore[arg-type]
        user_id=principal.user.id if mine else None,
    )  # fmt: skip
    totals = {
        "key": None,
        "requests": sum(g["requests"] for g in groups),
        "input_tokens": sum(g["input_tokens"] for g in groups),
        "output_tokens": sum(g["output_tokens"] for g in groups),
        "cost": round(sum(g["cost"] for g in groups if g["cost"] is not None), 8)
        if any(g["cost"] is not None for g in groups)
        else None,
    }
    return {
        "scope": "me" if mine else "organization",
        "from": start,
        "to": end,
        "group_by": group_by,
        "currency": request.app.state.settings.generation.currency,
        "totals": totals,
        "groups": groups,
    }


@router.get("/budget", response_model=BudgetBody, summary="Your organization's monthly budgets")
async def get_budget(principal: Reader, session: DbSession) -> BudgetBody:
    assert principal.org_id is not None
    row = await session.get(UsageBudget, principal.org_id)
    if row is None:
        return BudgetBody()
    return BudgetBody(
        org_monthly_tokens=row.org_monthly_tokens,
        user_monthly_tokens=row.user_monthly_tokens,
        user_monthly_requests=row.user_monthly_requests,
    )


@router.put(
    "/budget",
    response_model=BudgetBody,
    summary="Set your organization's monthly budgets",
    description="Null removes a limit. Over a budget, questions are refused with 429 `budget_exceeded` and a "
    "`Retry-After` that points at the start of next month (UTC).",
)
async def put_budget(body: BudgetBody, principal: Manager, session: DbSession) -> BudgetBody:
    assert principal.org_id is not None
    row = await session.get(UsageBudget, principal.org_id)
    if row is None:
        row = UsageBudget(org_id=principal.org_id)
        session.add(row)
    row.org_monthly_tokens = body.org_monthly_tokens
    row.user_monthly_tokens = body.user_monthly_tokens
    row.user_monthly_requests = body.user_monthly_requests
    await session.flush()
    return body
