"""Support analytics: the dashboard (a daily series, totals, response times, answer rates, top
intents and FAQs, unanswered questions clustered by meaning, helpfulness), the chatbot's
conversations, and one user's activity.

Everything is read from `SupportTurn` (one row per message the bot answered), `Handoff`,
`FaqFeedback` and the ratings of the chatbot's answers (`ChatMessage.feedback` in the conversations
its turns belong to), always scoped to the caller's organization.

Days are bucketed in Python from the range's turn rows, in the requested time zone: the same code on
SQLite and PostgreSQL (whose date functions differ), and cheap at analytics volumes (a turn row is a
few ids and numbers, streamed; a year of a busy bot is some hundred thousand rows, and the dashboard
is cached). Figures that need no day buckets are aggregated in SQL.

The dashboard is cached per organization and query (Redis when `redis_url` is set, else in this
process) for `support.analytics_cache_seconds`; the other endpoints are always fresh.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
import uuid
import zoneinfo
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.auth.models import Membership, User
from tessera.core.auth.principal import Principal
from tessera.core.chat.models import ChatMessage, Conversation, Feedback, MessageRole
from tessera.core.db.base import utcnow
from tessera.core.embeddings.base import Embedder
from tessera.core.errors import InvalidInput, NotFound, ProviderRejected, ProviderUnavailable
from tessera.core.observability.logging import get_logger
from tessera.core.pagination import PageParams, encode_cursor
from tessera.modules.support.faqs import org_of
from tessera.modules.support.models import Faq, FaqFeedback, Handoff, HandoffStatus, SupportTurn, TurnRoute
from tessera.modules.support.schemas import (
    AnalyticsChatRatings,
    AnalyticsConversationRead,
    AnalyticsDashboard,
    AnalyticsDay,
    AnalyticsFaqCount,
    AnalyticsFaqVotes,
    AnalyticsHandoffCounts,
    AnalyticsHelpfulness,
    AnalyticsIntentCount,
    AnalyticsQuestionCluster,
    AnalyticsRates,
    AnalyticsResponseTime,
    AnalyticsRouteCounts,
    AnalyticsTotals,
    AnalyticsUnanswered,
    AnalyticsUserActivity,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = get_logger("tessera.support.analytics")
_K = TypeVar("_K", str, uuid.UUID)

DEFAULT_DAYS = 30
MAX_DAYS = 366
# Dates outside these bounds are refused: midnight of 0001-01-01 east of UTC is not a datetime.
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(9998, 12, 31)
DEFAULT_TOP = 10
MAX_TOP = 50
# Near-duplicate questions of all-MiniLM-L6-v2 sit above ~0.8; related but different ones below.
DEFAULT_SIMILARITY = 0.8
MIN_SIMILARITY = 0.5
MAX_EXAMPLES = 5
# The clustering embeds distinct wordings (vectors are cached by the embedder, so a dashboard
# refresh embeds only new ones). Beyond these, the least frequent are left out, and said so.
MAX_CLUSTERED_HANDOFFS = 20_000
MAX_CLUSTERED_WORDINGS = 2_000
QUESTION_CHARS = 300
EMBEDDED_CHARS = 1_000
STREAM_BATCH = 2_000
CSV_PAGE = 1_000
MAX_CSV_ROWS = 10_000
REDIS_TIMEOUT_SECONDS = 2.0
CACHE_PREFIX = "tessera:support:analytics:"
CACHE_VERSION = "1"  # part of every key: bump it when AnalyticsDashboard changes shape
_COSINE_SLACK = 1e-6  # float32 rounding: identical texts may score 0.9999999

DAY_COLUMNS = (
    "day",
    "conversations",
    "messages",
    "active_users",
    "faq_answers",
    "grounded_answers",
    "handoffs",
    "intent_answers",
)
CONVERSATION_COLUMNS = (
    "id",
    "conversation_id",
    "user_id",
    "first_turn_at",
    "last_turn_at",
    "turns",
    "faq_turns",
    "grounded_turns",
    "handoff_turns",
    "intent_turns",
    "handed_off",
    "average_latency_ms",
)


class InvalidDateRange(InvalidInput):
    """`from` and `to` are reversed, out of bounds, or further apart than the endpoint allows."""

    code = "invalid_date_range"


class InvalidTimeZone(InvalidInput):
    """`timezone` is not an IANA time zone name such as `Europe/Paris`."""

    code = "invalid_timezone"


class AnalyticsUserNotFound(NotFound):
    """The user is not a member of your organization."""

    code = "support_analytics_user_not_found"


# Date ranges


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _midnight(day: date, zone: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, clock_time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DateRange:
    """Whole days in a time zone; either bound may be open (lists and user activity)."""

    from_date: date | None
    to_date: date | None
    timezone: str

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def start(self) -> datetime | None:
        return None if self.from_date is None else _midnight(self.from_date, self.zone)

    @property
    def end(self) -> datetime | None:
        """Exclusive: the midnight after `to_date` (23 or 25 hours after the last one across DST)."""
        return None if self.to_date is None else _midnight(self.to_date + timedelta(days=1), self.zone)

    def where(self, column: Any) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if self.start is not None:
            conditions.append(column >= self.start)
        if self.end is not None:
            conditions.append(column < self.end)
        return conditions

    def days(self) -> list[date]:
        if self.from_date is None or self.to_date is None:
            raise ValueError("an open range has no list of days")
        return [self.from_date + timedelta(days=n) for n in range((self.to_date - self.from_date).days + 1)]


def resolve_range(
    from_date: date | None,
    to_date: date | None,
    timezone: str,
    *,
    default_days: int | None = None,
    max_days: int | None = None,
    today: date | None = None,
) -> DateRange:
    """Check a requested range. With `default_days`, a missing `to` is today (in `timezone`) and a
    missing `from` is `default_days` days up to `to`; without, missing bounds stay open.

    Raises:
        InvalidTimeZone: `timezone` is not an IANA name.
        InvalidDateRange: `to` is before `from`, a date is out of bounds, or the range is longer
            than `max_days` days.
    """
    if timezone not in _zone_names():
        raise InvalidTimeZone(f"Unknown time zone {timezone[:64]!r}: use an IANA name such as Europe/Paris or UTC")
    for name, value in (("from", from_date), ("to", to_date)):
        if value is not None and not MIN_DATE <= value <= MAX_DATE:
            raise InvalidDateRange(f"`{name}` must be between {MIN_DATE} and {MAX_DATE}")
    if default_days is not None:
        to_date = to_date or today or utcnow().astimezone(zoneinfo.ZoneInfo(timezone)).date()
        from_date = from_date or to_date - timedelta(days=default_days - 1)
    if from_date is not None and to_date is not None:
        if to_date < from_date:
            raise InvalidDateRange("`to` is before `from`")
        if max_days is not None and (to_date - from_date).days + 1 > max_days:
            raise InvalidDateRange(f"The range is {(to_date - from_date).days + 1} days long; at most {max_days}")
    return DateRange(from_date, to_date, timezone)


# Caching the dashboard


class AnalyticsCache(Protocol):
    async def get(self, key: str) -> str | None:
        """The value stored under `key`, or None when absent or expired. Never raises for an
        unreachable store: a cache outage costs speed, not the dashboard."""
        ...

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        """Store `value` for `ttl_seconds`. Never raises for an unreachable store."""
        ...


class MemoryAnalyticsCache:
    """This process's dashboards (the embedded default), least recently used dropped first."""

    def __init__(self, max_entries: int = 1_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisAnalyticsCache:
    """Dashboards shared by every API process. Each call opens a short-lived client: dashboards are
    read seldom, and nothing is left open when the app stops."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url

    def _client(self) -> Redis[bytes]:
        from redis.asyncio import Redis

        client: Redis[bytes] = Redis.from_url(
            self.redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        return client

    async def get(self, key: str) -> str | None:
        client = self._client()
        try:
            raw = await client.get(key)
        except Exception as error:  # redis-py raises its own errors and OSError alike
            logger.warning("analytics cache: Redis read failed", error=str(error))
            return None
        finally:
            await _close(client)
        return None if raw is None else raw.decode()

    async def put(self, key: str, value: str, ttl_seconds: int) -> None:
        client = self._client()
        try:
            await client.set(key, value.encode(), ex=ttl_seconds)
        except Exception as error:
            logger.warning("analytics cache: Redis write failed", error=str(error))
        finally:
            await _close(client)


async def _close(client: Redis[bytes]) -> None:
    try:
        # types-redis predates `aclose` (redis-py 5), which replaced the deprecated `close`.
        await client.aclose()  # type: ignore[attr-defined]
    except Exception as error:
        logger.warning("analytics cache: closing the Redis client failed", error=str(error))


@dataclass(frozen=True, slots=True)
class DashboardQuery:
    range: DateRange
    top: int = DEFAULT_TOP
    similarity: float = DEFAULT_SIMILARITY


def cache_key(org_id: uuid.UUID, query: DashboardQuery, embedder_name: str) -> str:
    """The organization in clear (so one organization's entries can be found and dropped), the
    query hashed. Resolved dates, never "the last 30 days": a cached default goes stale at midnight."""
    spec = json.dumps(
        [
            CACHE_VERSION,
            str(query.range.from_date),
            str(query.range.to_date),
            query.range.timezone,
            query.top,
            query.similarity,
            embedder_name,
        ]
    )
    return f"{CACHE_PREFIX}{org_id}:{hashlib.sha256(spec.encode()).hexdigest()[:32]}"


async def dashboard(
    session: AsyncSession,
    principal: Principal,
    embedder: Embedder,
    query: DashboardQuery,
    *,
    cache: AnalyticsCache | None,
    ttl_seconds: int,
) -> tuple[AnalyticsDashboard, bool]:
    """The organization's dashboard, from the cache when a fresh copy is there. Returns the
    figures and whether they came from the cache."""
    org_id = org_of(principal)
    key = cache_key(org_id, query, embedder.name)
    use_cache = cache is not None and ttl_seconds > 0
    if use_cache and cache is not None:
        raw = await cache.get(key)
        if raw is not None:
            try:
                return AnalyticsDashboard.model_validate_json(raw), True
            except ValidationError:
                logger.warning("analytics cache: unreadable entry ignored", key=key)
    figures = await compute_dashboard(session, org_id, embedder, query)
    if use_cache and cache is not None:
        await cache.put(key, figures.model_dump_json(), ttl_seconds)
    return figures, False


# The dashboard


def _conversation_key() -> sa.ColumnElement[uuid.UUID]:
    """A turn's conversation; a turn answered outside any conversation counts as its own."""
    return sa.func.coalesce(SupportTurn.conversation_id, SupportTurn.id)


def _route_count(route: TurnRoute) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((SupportTurn.route == route, 1), else_=0))


def _handed_off_count() -> sa.ColumnElement[int]:
    handed = sa.or_(SupportTurn.route == TurnRoute.handoff, SupportTurn.handoff_id.is_not(None))
    return sa.func.sum(sa.case((handed, 1), else_=0))


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(slots=True)
class _Tally:
    conversations: set[uuid.UUID] = field(default_factory=set)
    users: set[uuid.UUID] = field(default_factory=set)
    routes: Counter[TurnRoute] = field(default_factory=Counter)
    messages: int = 0

    def add(self, conversation: uuid.UUID, user_id: uuid.UUID | None, route: TurnRoute) -> None:
        self.conversations.add(conversation)
        if user_id is not None:
            self.users.add(user_id)
        self.routes[route] += 1
        self.messages += 1

    def figures(self) -> dict[str, int]:
        return {
            "conversations": len(self.conversations),
            "messages": self.messages,
            "active_users": len(self.users),
            "faq_answers": self.routes[TurnRoute.faq],
            "grounded_answers": self.routes[TurnRoute.grounded],
            "handoffs": self.routes[TurnRoute.handoff],
            "intent_answers": self.routes[TurnRoute.intent],
        }


def p95(values: Sequence[float]) -> float | None:
    """The nearest-rank 95th percentile: the smallest value with at least 95% of values at or under it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


async def compute_dashboard(
    session: AsyncSession, org_id: uuid.UUID, embedder: Embedder, query: DashboardQuery
) -> AnalyticsDashboard:
    span = query.range
    if span.from_date is None or span.to_date is None:
        raise ValueError("the dashboard needs both bounds")
    zone = span.zone
    days = {day: _Tally() for day in span.days()}
    total = _Tally()
    latencies = array("d")
    intents: Counter[str] = Counter()
    faqs: Counter[uuid.UUID] = Counter()

    turns = sa.select(
        _conversation_key(),
        SupportTurn.user_id,
        SupportTurn.route,
        SupportTurn.intent,
        SupportTurn.faq_id,
        SupportTurn.latency_ms,
        SupportTurn.created_at,
    ).where(SupportTurn.org_id == org_id, *span.where(SupportTurn.created_at))
    result = await session.stream(turns.execution_options(yield_per=STREAM_BATCH))
    async for partition in result.partitions():
        for conversation, user_id, route, intent, faq_id, latency_ms, created_at in partition:
            day = days.get(created_at.astimezone(zone).date())
            if day is None:  # cannot happen with the range's own bounds; kept out all the same
                continue
            day.add(conversation, user_id, route)
            total.add(conversation, user_id, route)
            latencies.append(float(latency_ms))
            if route == TurnRoute.intent:
                intents[intent or "unknown"] += 1
            elif route == TurnRoute.faq and faq_id is not None:
                faqs[faq_id] += 1

    turn_count = total.messages
    return AnalyticsDashboard(
        from_date=span.from_date,
        to_date=span.to_date,
        timezone=span.timezone,
        generated_at=utcnow(),
        totals=AnalyticsTotals(**total.figures()),
        response_time=AnalyticsResponseTime(
            average_ms=round(sum(latencies) / turn_count, 1) if turn_count else None,
            p95_ms=_rounded(p95(latencies)),
        ),
        rates=AnalyticsRates(
            faq_match_rate=_ratio(total.routes[TurnRoute.faq], turn_count),
            handoff_rate=_ratio(total.routes[TurnRoute.handoff], turn_count),
            grounded_rate=_ratio(total.routes[TurnRoute.grounded], turn_count),
        ),
        days=[AnalyticsDay(day=day, **tally.figures()) for day, tally in days.items()],
        top_intents=[
            AnalyticsIntentCount(intent=name, count=count) for name, count in _top(intents.items(), query.top)
        ],
        top_faqs=await _top_faqs(session, org_id, faqs, query.top),
        unanswered=await _unanswered(session, org_id, embedder, query),
        helpfulness=AnalyticsHelpfulness(
            faq=await _faq_votes(session, org_id, span), chat=await _chat_ratings(session, org_id, span)
        ),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _top(counts: Iterable[tuple[_K, int]], limit: int) -> list[tuple[_K, int]]:
    """Most frequent first, then by name: the same order on every call."""
    return sorted(counts, key=lambda item: (-item[1], str(item[0])))[:limit]


async def _top_faqs(
    session: AsyncSession, org_id: uuid.UUID, counts: Counter[uuid.UUID], limit: int
) -> list[AnalyticsFaqCount]:
    top: list[tuple[uuid.UUID, int]] = _top(counts.items(), limit)
    if not top:
        return []
    rows = await session.execute(
        sa.select(Faq.id, Faq.question).where(Faq.org_id == org_id, Faq.id.in_([faq for faq, _ in top]))
    )
    questions = {faq_id: question for faq_id, question in rows}
    return [AnalyticsFaqCount(faq_id=faq, question=questions.get(faq), count=count) for faq, count in top]


def _support_conversations(org_id: uuid.UUID) -> sa.Select[Any]:
    """The conversations the support chatbot answered in (chat ratings elsewhere are not its own)."""
    return sa.select(SupportTurn.conversation_id).where(
        SupportTurn.org_id == org_id, SupportTurn.conversation_id.is_not(None)
    )


async def _faq_votes(
    session: AsyncSession, org_id: uuid.UUID, span: DateRange, *, user_id: uuid.UUID | None = None
) -> AnalyticsFaqVotes:
    query = sa.select(FaqFeedback.helpful, sa.func.count()).where(
        FaqFeedback.org_id == org_id, *span.where(FaqFeedback.created_at)
    )
    if user_id is not None:
        query = query.where(FaqFeedback.user_id == user_id)
    counts = {bool(helpful): int(n) for helpful, n in await session.execute(query.group_by(FaqFeedback.helpful))}
    helpful, not_helpful = counts.get(True, 0), counts.get(False, 0)
    return AnalyticsFaqVotes(
        helpful=helpful, not_helpful=not_helpful, helpful_ratio=_ratio(helpful, helpful + not_helpful)
    )


async def _chat_ratings(
    session: AsyncSession, org_id: uuid.UUID, span: DateRange, *, user_id: uuid.UUID | None = None
) -> AnalyticsChatRatings:
    # A message records no time for its rating: ratings count on the day of the answer they rate.
    query = sa.select(ChatMessage.feedback, sa.func.count()).where(
        ChatMessage.org_id == org_id,
        ChatMessage.role == MessageRole.assistant,
        ChatMessage.feedback.is_not(None),
        ChatMessage.conversation_id.in_(_support_conversations(org_id)),
        *span.where(ChatMessage.created_at),
    )
    if user_id is not None:
        query = query.join(Conversation, Conversation.id == ChatMessage.conversation_id).where(
            Conversation.org_id == org_id, Conversation.user_id == user_id
        )
    counts = {rating: int(n) for rating, n in await session.execute(query.group_by(ChatMessage.feedback))}
    up, down = counts.get(Feedback.up, 0), counts.get(Feedback.down, 0)
    return AnalyticsChatRatings(up=up, down=down, up_ratio=_ratio(up, up + down))


# Unanswered questions


@dataclass(slots=True)
class _Wording:
    """Hand-offs whose questions read the same once case and spacing are set aside."""

    key: str
    latest_at: datetime
    spellings: Counter[str] = field(default_factory=Counter)
    count: int = 0
    open: int = 0

    @property
    def text(self) -> str:
        # Rows come newest first and ties keep their first-seen order: the newest common spelling.
        return self.spellings.most_common(1)[0][0]


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= QUESTION_CHARS else flat[: QUESTION_CHARS - 1] + "…"


def cluster_vectors(vectors: npt.NDArray[np.float32], similarity: float) -> list[list[int]]:
    """Greedy leader clustering of L2-normalised rows, in their order: each row joins the cluster
    whose leader (first row) it is closest to, when their cosine reaches `similarity`, else leads a
    new one. Every member is within `similarity` of its leader, and the result depends only on
    the order, so callers pass rows most frequent first."""
    leaders = np.zeros_like(vectors)
    clusters: list[list[int]] = []
    for index, vector in enumerate(vectors):
        if clusters:
            scores = leaders[: len(clusters)] @ vector
            best = int(np.argmax(scores))
            if float(scores[best]) >= similarity - _COSINE_SLACK:
                clusters[best].append(index)
                continue
        leaders[len(clusters)] = vector
        clusters.append([index])
    return clusters


def most_central(members: Sequence[int], vectors: npt.NDArray[np.float32], weights: Sequence[int]) -> int:
    """The member with the highest weighted mean cosine to the cluster (ties: the earlier member)."""
    if len(members) == 1:
        return members[0]
    block = vectors[list(members)]
    weight = np.asarray([weights[m] for m in members], dtype=np.float32)
    centrality = (block @ block.T) @ weight / float(weight.sum())
    ranked = sorted(range(len(members)), key=lambda i: (-round(float(centrality[i]), 5), i))
    return members[ranked[0]]


async def _unanswered(
    session: AsyncSession, org_id: uuid.UUID, embedder: Embedder, query: DashboardQuery
) -> AnalyticsUnanswered:
    in_range = [Handoff.org_id == org_id, *query.range.where(Handoff.created_at)]
    by_kind = await session.execute(
        sa.select(Handoff.status, Handoff.reason, sa.func.count())
        .where(*in_range)
        .group_by(Handoff.status, Handoff.reason)
    )
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for status, reason, n in by_kind:
        statuses[str(status)] += int(n)
        reasons[str(reason)] += int(n)

    rows = await session.execute(
        sa.select(Handoff.question, Handoff.status, Handoff.created_at)
        .where(*in_range)
        .order_by(Handoff.created_at.desc(), Handoff.id.desc())
        .limit(MAX_CLUSTERED_HANDOFFS)
    )
    wordings: dict[str, _Wording] = {}
    for question, status, created_at in rows:
        text = _short(question)
        key = text.casefold()
        wording = wordings.get(key)
        if wording is None:
            wording = wordings[key] = _Wording(key=key, latest_at=created_at)
        wording.spellings[text] += 1
        wording.count += 1
        wording.open += status == HandoffStatus.open
    ordered = sorted(wordings.values(), key=lambda w: (-w.count, -w.latest_at.timestamp(), w.key))
    ordered = ordered[:MAX_CLUSTERED_WORDINGS]

    clustering = "semantic"
    groups: list[list[int]]
    vectors = np.zeros((0, 0), dtype=np.float32)
    if ordered:
        try:
            vectors = await embedder.embed([w.text[:EMBEDDED_CHARS] for w in ordered], kind="query")
            groups = cluster_vectors(vectors, query.similarity)
        except (ProviderUnavailable, ProviderRejected) as error:
            logger.warning("analytics: embedder unavailable, grouping identical questions only", error=str(error))
            clustering = "exact"
            groups = [[index] for index in range(len(ordered))]
    else:
        groups = []

    weights = [w.count for w in ordered]
    clusters = []
    for members in groups:
        center = most_central(members, vectors, weights) if clustering == "semantic" else members[0]
        clusters.append(
            AnalyticsQuestionCluster(
                question=ordered[center].text,
                count=sum(ordered[m].count for m in members),
                open=sum(ordered[m].open for m in members),
                examples=[ordered[m].text for m in members[:MAX_EXAMPLES]],
                latest_at=max(ordered[m].latest_at for m in members),
            )
        )
    clusters.sort(key=lambda c: (-c.count, -c.latest_at.timestamp(), c.question))
    return AnalyticsUnanswered(
        total=sum(statuses.values()),
        open=statuses[HandoffStatus.open.value],
        resolved=statuses[HandoffStatus.resolved.value],
        reasons=dict(sorted(reasons.items())),
        clustering=clustering,
        similarity=query.similarity,
        clustered=sum(weights),
        clusters=clusters[: query.top],
    )


def dashboard_csv(figures: AnalyticsDashboard) -> str:
    """The daily series, one row a day (RFC 4180: CRLF line ends, a header row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(DAY_COLUMNS)
    for day in figures.days:
        writer.writerow([day.day.isoformat(), *(getattr(day, column) for column in DAY_COLUMNS[1:])])
    return buffer.getvalue()


# Conversations


@dataclass(frozen=True, slots=True)
class ConversationFilter:
    range: DateRange
    route: TurnRoute | None = None
    handed_off: bool | None = None


async def list_conversations(
    session: AsyncSession, principal: Principal, filters: ConversationFilter, params: PageParams
) -> tuple[list[AnalyticsConversationRead], str | None]:
    """The chatbot's conversations, newest first (keyset on the conversation id, a UUIDv7), with
    figures over their turns in the range. Returns a page and the next page's cursor."""
    org_id = org_of(principal)
    key = _conversation_key()
    query = (
        sa.select(
            key.label("key"),
            sa.func.count(SupportTurn.conversation_id).label("linked"),
            sa.func.count().label("turns"),
            sa.func.min(SupportTurn.created_at).label("first_turn_at"),
            sa.func.max(SupportTurn.created_at).label("last_turn_at"),
            sa.func.avg(SupportTurn.latency_ms).label("average_latency_ms"),
            _handed_off_count().label("handed_off"),
            *(_route_count(route).label(route.value) for route in TurnRoute),
        )
        .where(SupportTurn.org_id == org_id, *filters.range.where(SupportTurn.created_at))
        .group_by(key)
    )
    if params.after is not None:
        query = query.where(key < params.after)
    if filters.route is not None:
        query = query.having(_route_count(filters.route) > 0)
    if filters.handed_off is not None:
        query = query.having(_handed_off_count() > 0 if filters.handed_off else _handed_off_count() == 0)
    rows = (await session.execute(query.order_by(key.desc()).limit(params.limit + 1))).all()
    next_cursor = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        next_cursor = encode_cursor(rows[-1].key)

    users: dict[uuid.UUID, uuid.UUID] = {}
    if rows:
        owners = await session.execute(
            sa.select(key, SupportTurn.user_id)
            .where(SupportTurn.org_id == org_id, key.in_([row.key for row in rows]), SupportTurn.user_id.is_not(None))
            .order_by(SupportTurn.created_at)
        )
        for conversation, user_id in owners:
            if user_id is not None:
                users.setdefault(conversation, user_id)
    items = [
        AnalyticsConversationRead(
            id=row.key,
            conversation_id=row.key if row.linked else None,
            user_id=users.get(row.key),
            first_turn_at=row.first_turn_at,
            last_turn_at=row.last_turn_at,
            turns=int(row.turns),
            routes=AnalyticsRouteCounts(**{route.value: int(getattr(row, route.value)) for route in TurnRoute}),
            handed_off=int(row.handed_off) > 0,
            average_latency_ms=round(float(row.average_latency_ms), 1),
        )
        for row in rows
    ]
    return items, next_cursor


async def export_conversations(
    session: AsyncSession, principal: Principal, filters: ConversationFilter, *, after: uuid.UUID | None
) -> tuple[list[AnalyticsConversationRead], str | None]:
    """Every matching conversation from `after` on, up to `MAX_CSV_ROWS`; the cursor of the rest."""
    items: list[AnalyticsConversationRead] = []
    cursor: str | None = None
    while len(items) < MAX_CSV_ROWS:
        page, cursor = await list_conversations(
            session, principal, filters, PageParams(limit=min(CSV_PAGE, MAX_CSV_ROWS - len(items)), after=after)
        )
        items.extend(page)
        if cursor is None:
            break
        after = items[-1].id
    return items, cursor


def conversations_csv(items: Sequence[AnalyticsConversationRead]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CONVERSATION_COLUMNS)
    for item in items:
        writer.writerow(
            [
                item.id,
                item.conversation_id or "",
                item.user_id or "",
                item.first_turn_at.isoformat(),
                item.last_turn_at.isoformat(),
                item.turns,
                item.routes.faq,
                item.routes.grounded,
                item.routes.handoff,
                item.routes.intent,
                "true" if item.handed_off else "false",
                item.average_latency_ms,
            ]
        )
    return buffer.getvalue()


# One user


async def user_activity(
    session: AsyncSession, principal: Principal, user_id: uuid.UUID, span: DateRange
) -> AnalyticsUserActivity:
    """What one member of the organization did with the chatbot in the range.

    Raises:
        AnalyticsUserNotFound: the user is not a member of the caller's organization.
    """
    org_id = org_of(principal)
    member = (
        await session.execute(
            sa.select(User.name, User.email, Membership.role)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.org_id == org_id, User.id == user_id)
        )
    ).one_or_none()
    if member is None:
        raise AnalyticsUserNotFound("No member of your organization has this id")

    mine = [SupportTurn.org_id == org_id, SupportTurn.user_id == user_id, *span.where(SupportTurn.created_at)]
    routes = AnalyticsRouteCounts()
    turns, latency = 0, 0.0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    by_route = await session.execute(
        sa.select(
            SupportTurn.route,
            sa.func.count(),
            sa.func.sum(SupportTurn.latency_ms),
            sa.func.min(SupportTurn.created_at),
            sa.func.max(SupportTurn.created_at),
        )
        .where(*mine)
        .group_by(SupportTurn.route)
    )
    for route, n, latency_sum, first, last in by_route:
        setattr(routes, TurnRoute(route).value, int(n))
        turns += int(n)
        latency += float(latency_sum or 0.0)
        first_seen = first if first_seen is None else min(first_seen, first)
        last_seen = last if last_seen is None else max(last_seen, last)
    conversations = (
        await session.execute(sa.select(sa.func.count(sa.distinct(_conversation_key()))).where(*mine))
    ).scalar_one()

    handoffs: Counter[str] = Counter()
    for status, n in await session.execute(
        sa.select(Handoff.status, sa.func.count())
        .where(Handoff.org_id == org_id, Handoff.user_id == user_id, *span.where(Handoff.created_at))
        .group_by(Handoff.status)
    ):
        handoffs[str(status)] += int(n)

    return AnalyticsUserActivity(
        user_id=user_id,
        name=member.name,
        email=member.email,
        role=str(member.role),
        from_date=span.from_date,
        to_date=span.to_date,
        timezone=span.timezone,
        turns=turns,
        conversations=int(conversations),
        first_seen_at=first_seen,
        last_seen_at=last_seen,
        average_latency_ms=round(latency / turns, 1) if turns else None,
        routes=routes,
        handoffs=AnalyticsHandoffCounts(
            total=sum(handoffs.values()),
            open=handoffs[HandoffStatus.open.value],
            resolved=handoffs[HandoffStatus.resolved.value],
        ),
        faq_feedback=await _faq_votes(session, org_id, span, user_id=user_id),
        chat_ratings=await _chat_ratings(session, org_id, span, user_id=user_id),
    )
