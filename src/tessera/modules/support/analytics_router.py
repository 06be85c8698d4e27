"""The support analytics API: the dashboard, the chatbot's conversations and one user's activity,
as JSON or CSV. Needs `support:analytics` (agents and admins)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from tessera.core.db.session import DbSession
from tessera.core.errors import PermissionDenied
from tessera.core.pagination import PageParamsDep
from tessera.core.ratelimit.dependencies import rate_limit
from tessera.modules.support import analytics
from tessera.modules.support.analytics import (
    AnalyticsCache,
    AnalyticsUserNotFound,
    InvalidDateRange,
    MemoryAnalyticsCache,
    RedisAnalyticsCache,
)
from tessera.modules.support.dependencies import AnalyticsReader, EmbedderDep, SupportSettingsDep
from tessera.modules.support.models import TurnRoute
from tessera.modules.support.schemas import (
    AnalyticsConversationPage,
    AnalyticsDashboard,
    AnalyticsFormat,
    AnalyticsRoute,
    AnalyticsUserActivity,
)
from tessera.settings import Settings

analytics_router = APIRouter(prefix="/analytics", tags=["support: analytics"], dependencies=[rate_limit("default")])

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
FromDate = Annotated[
    date | None,
    Query(alias="from", description="First day (YYYY-MM-DD), in `timezone`.", examples=["2024-05-01"]),
]
ToDate = Annotated[
    date | None, Query(alias="to", description="Last day (YYYY-MM-DD), included.", examples=["2024-05-31"])
]
TimeZoneParam = Annotated[
    str,
    Query(max_length=64, description="IANA time zone that days are counted in.", examples=["Europe/Paris"]),
]
FormatParam = Annotated[
    AnalyticsFormat | None,
    Query(alias="format", description="`csv` for a CSV attachment (so does `Accept: text/csv`); default JSON."),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: PermissionDenied.schema(),
    422: {
        **InvalidDateRange.schema(),
        "description": "A reversed or too long range (`invalid_date_range`), an unknown time zone "
        "(`invalid_timezone`), a bad cursor (`invalid_cursor`) or parameter (`validation_error`).",
    },
}


def _csv_example(header: str, row: str) -> dict[str, Any]:
    return {"text/csv": {"schema": {"type": "string"}, "example": f"{header}\r\n{row}\r\n"}}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _analytics_cache(request: Request) -> AnalyticsCache | None:
    """Redis when `redis_url` is set (shared by every process), else one cache per app; None when
    `support.analytics_cache_seconds` is 0."""
    settings = _settings(request)
    if settings.support.analytics_cache_seconds == 0:
        return None
    if settings.redis_url:
        return RedisAnalyticsCache(settings.redis_url)
    state = request.app.state
    cache: MemoryAnalyticsCache | None = getattr(state, "support_analytics_cache", None)
    if cache is None:
        cache = state.support_analytics_cache = MemoryAnalyticsCache()
    return cache


def _wants_csv(request: Request, format_: AnalyticsFormat | None) -> bool:
    if format_ is not None:
        return format_ == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _csv(content: str, filename: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        content,
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **(headers or {})},
    )


def _name_part(value: date | None) -> str:
    return value.isoformat() if value else "all"


@analytics_router.get(
    "/dashboard",
    response_model=AnalyticsDashboard,
    summary="The support chatbot's dashboard",
    description="For the days `from`..`to` (default: the last 30 days; at most 366) counted in `timezone` "
    "(default UTC): a series of every day (zeros included) of conversations, messages (turns the bot answered), "
    "active users and answers by route; totals; average and 95th-percentile response time; the FAQ match, "
    "hand-off and knowledge-base answer rates; the top intents and FAQs; the unanswered questions (hand-offs "
    "created in the range, open and resolved) grouped into clusters of near-duplicates by embedding cosine "
    "(`similarity`), each with its most central question, count, up to 5 wordings and latest date; and "
    "helpfulness (FAQ votes, ratings of the bot's answers). Cached per organization and query for "
    "`support.analytics_cache_seconds` (`generated_at` tells the age; `X-Cache: hit|miss`). `format=csv` or "
    "`Accept: text/csv`: the daily series as a CSV attachment. Needs `support:analytics` (agents, admins).",
    responses={
        200: {"content": _csv_example(",".join(analytics.DAY_COLUMNS), "2024-05-01,12,40,9,22,10,3,5")},
        **_ERRORS,
    },
)
async def get_dashboard(
    request: Request,
    principal: AnalyticsReader,
    session: DbSession,
    embedder: EmbedderDep,
    settings: SupportSettingsDep,
    cache: Annotated[AnalyticsCache | None, Depends(_analytics_cache)],
    response: Response,
    from_date: FromDate = None,
    to_date: ToDate = None,
    timezone: TimeZoneParam = "UTC",
    top: Annotated[
        int, Query(ge=1, le=analytics.MAX_TOP, description="How many intents, FAQs and question clusters.")
    ] = analytics.DEFAULT_TOP,
    similarity: Annotated[
        float,
        Query(
            ge=analytics.MIN_SIMILARITY,
            le=1.0,
            description="Cosine from which two unanswered questions share a cluster (1: identical only).",
        ),
    ] = analytics.DEFAULT_SIMILARITY,
    format_: FormatParam = None,
) -> AnalyticsDashboard | Response:
    span = analytics.resolve_range(
        from_date, to_date, timezone, default_days=analytics.DEFAULT_DAYS, max_days=analytics.MAX_DAYS
    )
    figures, cached = await analytics.dashboard(
        session,
        principal,
        embedder,
        analytics.DashboardQuery(span, top=top, similarity=similarity),
        cache=cache,
        ttl_seconds=settings.analytics_cache_seconds,
    )
    headers = {"X-Cache": "hit" if cached else "miss"}
    if _wants_csv(request, format_):
        name = f"support-analytics-{figures.from_date}-{figures.to_date}.csv"
        return _csv(analytics.dashboard_csv(figures), name, headers)
    response.headers.update(headers)
    return figures


@analytics_router.get(
    "/conversations",
    response_model=AnalyticsConversationPage,
    summary="The support chatbot's conversations",
    description="Newest first, from the bot's turns grouped by conversation (a turn answered outside a "
    "conversation is listed alone, with `conversation_id: null`): user, first and last turn, turns, turns by "
    "route, whether it was handed off, and the average response time, over its turns in `from`..`to` (days in "
    "`timezone`; both optional). Filters: `route` (a conversation with at least one such turn) and `handed_off`. "
    "Paged with `cursor`/`limit`. `format=csv` or `Accept: text/csv`: every matching conversation from `cursor` "
    "on as a CSV attachment (at most 10,000 rows; `X-Next-Cursor` then gives the rest). Needs `support:analytics`.",
    responses={
        200: {
            "content": _csv_example(
                ",".join(analytics.CONVERSATION_COLUMNS),
                "0190a5c8-0000-7000-8000-000000000001,0190a5c8-0000-7000-8000-000000000001,"
                "0190a5c8-0000-7000-8000-00000000000a,2024-05-01T09:30:00+00:00,2024-05-01T09:34:10+00:00,"
                "4,2,1,1,0,true,812.5",
            )
        },
        **_ERRORS,
    },
)
async def list_conversations(
    request: Request,
    principal: AnalyticsReader,
    session: DbSession,
    page: PageParamsDep,
    from_date: FromDate = None,
    to_date: ToDate = None,
    timezone: TimeZoneParam = "UTC",
    route: Annotated[AnalyticsRoute | None, Query(description="Conversations with a turn of this route.")] = None,
    handed_off: Annotated[bool | None, Query(description="Only conversations handed off (or not).")] = None,
    format_: FormatParam = None,
) -> AnalyticsConversationPage | Response:
    filters = analytics.ConversationFilter(
        analytics.resolve_range(from_date, to_date, timezone),
        route=TurnRoute(route) if route else None,
        handed_off=handed_off,
    )
    if _wants_csv(request, format_):
        items, cursor = await analytics.export_conversations(session, principal, filters, after=page.after)
        name = f"support-conversations-{_name_part(from_date)}-{_name_part(to_date)}.csv"
        return _csv(analytics.conversations_csv(items), name, {"X-Next-Cursor": cursor} if cursor else None)
    items, cursor = await analytics.list_conversations(session, principal, filters, page)
    return AnalyticsConversationPage(items=items, next_cursor=cursor)


@analytics_router.get(
    "/users/{user_id}",
    response_model=AnalyticsUserActivity,
    summary="One user's activity with the support chatbot",
    description="A member of your organization: turns, conversations, first and last turn, turns by route, "
    "average response time, hand-offs (open, resolved), the FAQ votes they cast and the ratings they gave the "
    "bot's answers, within `from`..`to` (days in `timezone`; both optional, default all time). A user who is not "
    "a member of your organization is a 404. Needs `support:analytics`.",
    responses={404: AnalyticsUserNotFound.schema(), **_ERRORS},
)
async def get_user_activity(
    principal: AnalyticsReader,
    session: DbSession,
    user_id: Annotated[uuid.UUID, Path(description="The user's id.")],
    from_date: FromDate = None,
    to_date: ToDate = None,
    timezone: TimeZoneParam = "UTC",
) -> AnalyticsUserActivity:
    span = analytics.resolve_range(from_date, to_date, timezone)
    return await analytics.user_activity(session, principal, user_id, span)
