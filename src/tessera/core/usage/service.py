"""Usage accounting and monthly budgets for answers.

Every answer (JSON, SSE, WebSocket, `/v1`) records its tokens with the organization, user, API key,
model and transport, and a cost where the model is priced (`generation.prices`). Before an answer
is generated, the organization's budgets for the current calendar month (UTC) are checked: over
the organization's token budget, a user's token budget or a user's request quota, the request is
refused with 429 and a `Retry-After` that points at the start of next month.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.auth.principal import Principal
from tessera.core.db.session import unit_of_work
from tessera.core.errors import InvalidInput, TooManyRequests
from tessera.core.usage.models import UsageBudget, UsageRecord
from tessera.settings import GenerationSettings

GroupBy = Literal["model", "user", "api_key", "source", "day"]


class BudgetExceeded(TooManyRequests):
    """A monthly budget or quota is used up."""

    code = "budget_exceeded"


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def cost_of(settings: GenerationSettings, model: str, input_tokens: int, output_tokens: int) -> float | None:
    price = settings.prices.get(model)
    if price is None:
        return None
    return round(input_tokens / 1e6 * price.input_per_million + output_tokens / 1e6 * price.output_per_million, 8)


async def check_budget(session: AsyncSession, principal: Principal, *, now: datetime | None = None) -> None:
    """Raises `BudgetExceeded` (429) when this month's budget of the organization or the user is spent."""
    assert principal.org_id is not None
    budget = await session.get(UsageBudget, principal.org_id)
    if budget is None or (
        budget.org_monthly_tokens is None
        and budget.user_monthly_tokens is None
        and budget.user_monthly_requests is None
    ):
        return
    now = now or datetime.now(UTC)
    start, end = month_bounds(now)
    tokens = UsageRecord.input_tokens + UsageRecord.output_tokens
    this_month = sa.and_(UsageRecord.org_id == principal.org_id, UsageRecord.created_at >= start)
    retry_after = max(1, int((end - now).total_seconds()))
    if budget.org_monthly_tokens is not None:
        used = int(await session.scalar(sa.select(sa.func.coalesce(sa.func.sum(tokens), 0)).where(this_month)) or 0)
        if used >= budget.org_monthly_tokens:
            raise BudgetExceeded(
                "Your organization's monthly token budget is used up",
                details={"budget": "org_monthly_tokens", "limit": budget.org_monthly_tokens, "used": used,
                         "resets_at": end.isoformat()},
                retry_after=retry_after,
            )  # fmt: skip
    if budget.user_monthly_tokens is not None or budget.user_monthly_requests is not None:
        row = (
            await session.execute(
                sa.select(sa.func.coalesce(sa.func.sum(tokens), 0), sa.func.count(UsageRecord.id)).where(
                    this_month, UsageRecord.user_id == principal.user.id
                )
            )
        ).one()
        used_tokens, requests = int(row[0]), int(row[1])
        if budget.user_monthly_tokens is not None and used_tokens >= budget.user_monthly_tokens:
            raise BudgetExceeded(
                "Your monthly token budget is used up",
                details={"budget": "user_monthly_tokens", "limit": budget.user_monthly_tokens, "used": used_tokens,
                         "resets_at": end.isoformat()},
                retry_after=retry_after,
            )  # fmt: skip
        if budget.user_monthly_requests is not None and requests >= budget.user_monthly_requests:
            raise BudgetExceeded(
                "Your monthly quota of questions is used up",
                details={"budget": "user_monthly_requests", "limit": budget.user_monthly_requests, "used": requests,
                         "resets_at": end.isoformat()},
                retry_after=retry_after,
            )  # fmt: skip


def record(
    session: AsyncSession,
    principal: Principal,
    settings: GenerationSettings,
    *,
    model: str,
    source: str,
    input_tokens: int,
    output_tokens: int,
) -> UsageRecord:
    assert principal.org_id is not None
    row = UsageRecord(
        org_id=principal.org_id,
        user_id=principal.user.id,
        api_key_id=principal.api_key_id,
        model=model,
        source=source,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(settings, model, input_tokens, output_tokens),
    )
    session.add(row)
    return row


async def record_detached(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, settings: GenerationSettings, **fields: Any
) -> None:
    """`record` in its own transaction (streams, which outlive the request's)."""
    async with unit_of_work(sessionmaker) as session:
        record(session, principal, settings, **fields)


async def summary(
    session: AsyncSession,
    org_id: uuid.UUID,
    *,
    start: date,
    end: date,
    group_by: GroupBy,
    user_id: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """Requests, tokens and cost per group over [start, end] (days, UTC), largest first."""
    if end < start:
        raise InvalidInput("`to` is before `from`")
    lower = datetime(start.year, start.month, start.day, tzinfo=UTC)
    upper = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    columns: dict[str, Any] = {
        "model": UsageRecord.model,
        "user": UsageRecord.user_id,
        "api_key": UsageRecord.api_key_id,
        "source": UsageRecord.source,
    }
    rows: Sequence[Any]
    filters = [UsageRecord.org_id == org_id, UsageRecord.created_at >= lower, UsageRecord.created_at < upper]
    if user_id is not None:
        filters.append(UsageRecord.user_id == user_id)
    if group_by == "day":
        # Portable across backends: the rows of the range, summed per day here.
        raw = (
            await session.execute(
                sa.select(
                    UsageRecord.created_at, UsageRecord.input_tokens, UsageRecord.output_tokens, UsageRecord.cost
                ).where(*filters)
            )
        ).all()
        days: dict[str, dict[str, Any]] = {}
        for created, tokens_in, tokens_out, cost in raw:
            entry = days.setdefault(
                created.date().isoformat(),
                {"key": created.date().isoformat(), "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost": None},
            )
            entry["requests"] += 1
            entry["input_tokens"] += tokens_in
            entry["output_tokens"] += tokens_out
            if cost is not None:
                entry["cost"] = round((entry["cost"] or 0.0) + cost, 8)
        return sorted(days.values(), key=lambda e: e["key"])
    column = columns[group_by]
    rows = (
        await session.execute(
            sa.select(
                column,
                sa.func.count(UsageRecord.id),
                sa.func.sum(UsageRecord.input_tokens),
                sa.func.sum(UsageRecord.output_tokens),
                sa.func.sum(UsageRecord.cost),
            )
            .where(*filters)
            .group_by(column)
        )
    ).all()
    result = [
        {"key": str(key) if key is not None else None, "requests": int(count), "input_tokens": int(tokens_in or 0),
         "output_tokens": int(tokens_out or 0), "cost": round(float(cost), 8) if cost is not None else None}
        for key, count, tokens_in, tokens_out, cost in rows
    ]  # fmt: skip
    return sorted(result, key=lambda e: -(e["input_tokens"] + e["output_tokens"]))
