"""Support analytics over HTTP: the dashboard's figures on a known set of turns, hand-offs and votes,
time zones and ranges, clustering, CSV, caching (in process and Redis), conversations, one user's
activity, permissions and tenant isolation.

The chatbot that writes turns is tested on its own: here the rows are written directly, so every
figure below can be worked out by hand from `seed()`.
"""

from __future__ import annotations

import csv
import io
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import numpy as np
import pytest

from tessera.core.chat.models import ChatMessage, Conversation, Feedback, MessageRole
from tessera.core.embeddings.fake import FakeEmbedder
from tessera.main import create_app
from tessera.modules.support.analytics import (
    DEFAULT_SIMILARITY,
    cluster_vectors,
    most_central,
    p95,
    resolve_range,
)
from tessera.modules.support.models import (
    FaqFeedback,
    Handoff,
    HandoffReason,
    HandoffStatus,
    SupportTurn,
    TurnRoute,
)
from tessera.settings import EmbeddingSettings, Settings
from tests.factories import SignedIn, add_member, error_code, register
from tests.servers import serve_in_thread

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
DASHBOARD = "/api/v1/analytics/dashboard"
CONVERSATIONS = "/api/v1/analytics/conversations"
RANGE = {"from": "2024-05-01", "to": "2024-05-04"}


def at(day: int, hour: int, minute: int = 0, month: int = 5) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Seeded:
    admin: SignedIn
    agent: SignedIn
    faq_card: str
    faq_pin: str
    conversations: dict[str, uuid.UUID] = field(default_factory=dict)
    unlinked: dict[str, uuid.UUID] = field(default_factory=dict)


async def create_faq(client: httpx.AsyncClient, user: SignedIn, question: str) -> str:
    response = await client.post(
        "/api/v1/faqs",
        json={"question": question, "answer": f"The answer to: {question}", "status": "published"},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def turn(
    org: str, user: str | None, route: TurnRoute, created_at: datetime, latency: float, **extra: Any
) -> SupportTurn:
    return SupportTurn(
        org_id=uuid.UUID(org),
        user_id=uuid.UUID(user) if user else None,
        route=route,
        latency_ms=latency,
        created_at=created_at,
        **extra,
    )


def handoff(
    org: str,
    user: str | None,
    question: str,
    created_at: datetime,
    status: HandoffStatus = HandoffStatus.open,
    reason: HandoffReason = HandoffReason.no_answer,
) -> Handoff:
    return Handoff(
        org_id=uuid.UUID(org),
        user_id=uuid.UUID(user) if user else None,
        question=question,
        reason=reason,
        status=status,
        created_at=created_at,
    )


async def add_rows(app: Any, *rows: Any) -> None:
    async with app.state.sessionmaker() as session:
        session.add_all(rows)
        await session.commit()


async def seed(app: Any, client: httpx.AsyncClient) -> Seeded:
    """Organization A (admin u1, agent u2) with the figures the tests check, and organization B
    with look-alike rows in the same days that A must never count.

    Turns (UTC): t0 04-30 23:00 (01:00 on 05-01 in Paris), t1..t8 in 05-01..05-04, t9 on 05-05.
    """
    admin = await register(client)
    agent = await add_member(client, admin, "agent")
    org, u1, u2 = admin.org_id, admin.user_id, agent.user_id
    seeded = Seeded(admin, agent, await create_faq(client, admin, "When will my new card arrive?"), "")
    seeded.faq_pin = await create_faq(client, admin, "How do I reset my PIN?")
    card = uuid.UUID(seeded.faq_card)

    conversations = {
        name: Conversation(org_id=uuid.UUID(org), user_id=uuid.UUID(user), title=name)
        for name, user in (("c1", u1), ("c2", u2), ("c3", u1), ("other", u1))
    }
    await add_rows(app, *conversations.values())
    seeded.conversations = {name: c.id for name, c in conversations.items()}
    c1, c2, c3 = (conversations[name].id for name in ("c1", "c2", "c3"))

    h1 = handoff(org, u1, "Where is my card?", at(1, 10))
    await add_rows(app, h1)
    turns = {
        "t0": turn(org, u1, TurnRoute.grounded, at(30, 23, month=4), 80, stored=False),
        "t1": turn(org, u1, TurnRoute.faq, at(1, 9), 100, conversation_id=c1, faq_id=card, match_score=0.9),
        "t2": turn(org, u1, TurnRoute.grounded, at(1, 9, 1), 200, conversation_id=c1),
        "t3": turn(org, u2, TurnRoute.intent, at(1, 10), 50, conversation_id=c2, intent="greeting"),
        "t4": turn(org, u1, TurnRoute.handoff, at(2, 8), 400, conversation_id=c1, handoff_id=h1.id),
        "t5": turn(org, u2, TurnRoute.intent, at(2, 12), 60, intent="thanks", stored=False),
        "t6": turn(org, u2, TurnRoute.faq, at(2, 13), 120, faq_id=card, match_score=0.8, stored=False),
        "t7": turn(org, u2, TurnRoute.intent, at(4, 22, 30), 70, conversation_id=c2, intent="greeting"),
        "t8": turn(org, u1, TurnRoute.grounded, at(4, 12), 300, conversation_id=c3),
        "t9": turn(org, u1, TurnRoute.intent, at(5, 12), 90, conversation_id=c3, intent="thanks"),
    }
    await add_rows(app, *turns.values())
    seeded.unlinked = {name: turns[name].id for name in ("t0", "t5", "t6")}

    await add_rows(
        app,
        handoff(org, u1, "Where is my card?", at(2, 9), HandoffStatus.resolved),
        handoff(org, u1, "where is my card", at(2, 11)),
        handoff(org, u2, "WHERE IS MY CARD??", at(3, 8)),
        handoff(org, u2, "where is my card now", at(4, 9)),
        handoff(org, None, "my card has not arrived yet", at(4, 10), reason=HandoffReason.requested),
        handoff(org, u2, "How do I close my account?", at(1, 12), HandoffStatus.resolved, HandoffReason.out_of_scope),
        handoff(org, u2, "how do i close my account", at(3, 12)),
        handoff(org, u2, "how to close my account", at(2, 15)),
        handoff(org, u1, "Do you ship to Canada?", at(20, 9, month=4)),  # before the range
        FaqFeedback(faq_id=card, org_id=uuid.UUID(org), user_id=uuid.UUID(u1), helpful=True, created_at=at(1, 9)),
        FaqFeedback(faq_id=card, org_id=uuid.UUID(org), user_id=uuid.UUID(u1), helpful=True, created_at=at(2, 9)),
        FaqFeedback(faq_id=card, org_id=uuid.UUID(org), user_id=uuid.UUID(u2), helpful=True, created_at=at(3, 9)),
        FaqFeedback(faq_id=card, org_id=uuid.UUID(org), user_id=uuid.UUID(u2), helpful=False, created_at=at(4, 9)),
        FaqFeedback(faq_id=card, org_id=uuid.UUID(org), helpful=False, created_at=at(1, 9, month=4)),
    )

    def answer(conversation: uuid.UUID, created_at: datetime, feedback: Feedback | None) -> ChatMessage:
        return ChatMessage(
            conversation_id=conversation,
            org_id=uuid.UUID(org),
            role=MessageRole.assistant,
            content="An answer.",
            feedback=feedback,
            created_at=created_at,
        )

    await add_rows(
        app,
        ChatMessage(
            conversation_id=c1, org_id=uuid.UUID(org), role=MessageRole.user, content="Hi", created_at=at(1, 9)
        ),
        answer(c1, at(1, 9), Feedback.up),
        answer(c1, at(2, 8), Feedback.down),
        answer(c1, at(2, 8, 5), None),
        answer(c2, at(1, 10), Feedback.up),
        answer(c3, at(4, 12), Feedback.up),
        answer(c1, at(1, 9, month=4), Feedback.up),  # before the range
        answer(conversations["other"].id, at(1, 9), Feedback.down),  # not a support conversation
    )

    # Organization B: rows on the same days that A must never count.
    other = await register(client)
    other_faq = uuid.UUID(await create_faq(client, other, "When will my new card arrive?"))
    other_conversation = Conversation(org_id=uuid.UUID(other.org_id), user_id=uuid.UUID(other.user_id), title="b")
    await add_rows(app, other_conversation)
    await add_rows(
        app,
        turn(other.org_id, other.user_id, TurnRoute.faq, at(1, 9), 5_000, conversation_id=other_conversation.id),
        turn(other.org_id, other.user_id, TurnRoute.handoff, at(2, 9), 5_000, conversation_id=other_conversation.id),
        handoff(other.org_id, other.user_id, "Where is my card?", at(2, 9)),
        FaqFeedback(faq_id=other_faq, org_id=uuid.UUID(other.org_id), helpful=False, created_at=at(2, 9)),
        ChatMessage(
            conversation_id=other_conversation.id,
            org_id=uuid.UUID(other.org_id),
            role=MessageRole.assistant,
            content="B",
            feedback=Feedback.down,
            created_at=at(2, 9),
        ),
    )
    return seeded


class AppClient(httpx.AsyncClient):
    app_state: Any


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AppClient]:
    """Another app on the same database (tokens stay valid: same secret, same sessions)."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("203.0.113.7", 50000))
        async with AppClient(transport=transport, base_url="http://testserver") as http:
            http.app_state = application
            yield http


def redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


# The dashboard


async def test_dashboard_figures_are_exact(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)

    response = await client.get(DASHBOARD, params=RANGE, headers=seeded.agent.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from_date"], body["to_date"], body["timezone"]) == ("2024-05-01", "2024-05-04", "UTC")
    assert response.headers["x-cache"] == "miss"
    assert body["days"] == [
        {"day": "2024-05-01", "conversations": 2, "messages": 3, "active_users": 2, "faq_answers": 1,
         "grounded_answers": 1, "handoffs": 0, "intent_answers": 1},
        # c1 and two turns answered outside any conversation, each counted alone.
        {"day": "2024-05-02", "conversations": 3, "messages": 3, "active_users": 2, "faq_answers": 1,
         "grounded_answers": 0, "handoffs": 1, "intent_answers": 1},
        {"day": "2024-05-03", "conversations": 0, "messages": 0, "active_users": 0, "faq_answers": 0,
         "grounded_answers": 0, "handoffs": 0, "intent_answers": 0},
        {"day": "2024-05-04", "conversations": 2, "messages": 2, "active_users": 2, "faq_answers": 0,
         "grounded_answers": 1, "handoffs": 0, "intent_answers": 1},
    ]  # fmt: skip
    assert body["totals"] == {
        "conversations": 5,
        "messages": 8,
        "active_users": 2,
        "faq_answers": 2,
        "grounded_answers": 2,
        "handoffs": 1,
        "intent_answers": 3,
    }
    # Latencies 100 200 50 400 60 120 70 300: mean 162.5; nearest-rank p95 of 8 values is the 8th.
    assert body["response_time"] == {"average_ms": 162.5, "p95_ms": 400.0}
    assert body["rates"] == {"faq_match_rate": 0.25, "handoff_rate": 0.125, "grounded_rate": 0.25}
    assert body["top_intents"] == [{"intent": "greeting", "count": 2}, {"intent": "thanks", "count": 1}]
    assert body["top_faqs"] == [{"faq_id": seeded.faq_card, "question": "When will my new card arrive?", "count": 2}]
    assert body["helpfulness"] == {
        "faq": {"helpful": 3, "not_helpful": 1, "helpful_ratio": 0.75},
        "chat": {"up": 3, "down": 1, "up_ratio": 0.75},
    }


async def test_unanswered_questions_are_clustered_by_the_embedder(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    # What the test embedder (`fake`: hashed words and trigrams) says about these questions.
    vectors = FakeEmbedder(64).embed_sync(
        ["Where is my card?", "where is my card now", "my card has not arrived yet", "how do i close my account",
         "how to close my account"]
    )  # fmt: skip
    assert float(vectors[0] @ vectors[1]) >= DEFAULT_SIMILARITY  # a near-duplicate
    assert float(vectors[0] @ vectors[2]) < 0.5  # the same topic, but not the same question
    assert 0.6 <= float(vectors[3] @ vectors[4]) < DEFAULT_SIMILARITY

    body = (await client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)).json()["unanswered"]

    assert {k: body[k] for k in ("total", "open", "resolved", "reasons", "clustering", "similarity", "clustered")} == {
        "total": 9,
        "open": 7,
        "resolved": 2,
        "reasons": {"no_answer": 7, "out_of_scope": 1, "requested": 1},
        "clustering": "semantic",
        "similarity": DEFAULT_SIMILARITY,
        "clustered": 9,
    }
    assert body["clusters"] == [
        {
            "question": "Where is my card?",
            "count": 5,
            "open": 4,
            "examples": ["Where is my card?", "where is my card now", "WHERE IS MY CARD??", "where is my card"],
            "latest_at": "2024-05-04T09:00:00Z",
        },
        {
            "question": "how do i close my account",
            "count": 2,
            "open": 1,
            "examples": ["how do i close my account", "How do I close my account?"],
            "latest_at": "2024-05-03T12:00:00Z",
        },
        {
            "question": "my card has not arrived yet",
            "count": 1,
            "open": 1,
            "examples": ["my card has not arrived yet"],
            "latest_at": "2024-05-04T10:00:00Z",
        },
        {
            "question": "how to close my account",
            "count": 1,
            "open": 1,
            "examples": ["how to close my account"],
            "latest_at": "2024-05-02T15:00:00Z",
        },
    ]

    looser = await client.get(DASHBOARD, params={**RANGE, "similarity": 0.6, "top": 2}, headers=seeded.admin.headers)
    clusters = looser.json()["unanswered"]["clusters"]
    assert [(c["question"], c["count"]) for c in clusters] == [
        ("Where is my card?", 5),
        ("how do i close my account", 3),
    ]


async def test_questions_are_grouped_by_wording_when_the_embedder_fails(settings: Settings) -> None:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    refusing = FastAPI()

    @refusing.post("/v1/embeddings")
    async def refuse() -> JSONResponse:
        return JSONResponse({"error": {"message": "no such model"}}, status_code=400)

    with serve_in_thread(refusing, "embeddings") as url:
        broken = settings.model_copy(
            update={"embeddings": EmbeddingSettings(provider="openai", base_url=f"{url}/v1", model="gone", dimension=8)}
        )
        async with serving(broken) as http:
            admin = await register(http)
            await add_rows(
                http.app_state,
                handoff(admin.org_id, None, "Where is my card?", at(1, 9)),
                handoff(admin.org_id, None, "where is my card?", at(2, 9)),
                handoff(admin.org_id, None, "where is my card", at(3, 9)),
            )
            response = await http.get(DASHBOARD, params=RANGE, headers=admin.headers)

    assert response.status_code == 200, response.text
    unanswered = response.json()["unanswered"]
    assert unanswered["clustering"] == "exact"
    # Case and spacing aside, only identical wordings share a group; the newest spelling leads.
    assert [(c["question"], c["count"], c["examples"]) for c in unanswered["clusters"]] == [
        ("where is my card?", 2, ["where is my card?"]),
        ("where is my card", 1, ["where is my card"]),
    ]


async def test_days_are_counted_in_the_requested_time_zone(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)

    utc = (await client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)).json()
    paris = await client.get(DASHBOARD, params={**RANGE, "timezone": "Europe/Paris"}, headers=seeded.admin.headers)

    assert paris.status_code == 200, paris.text
    assert [d["messages"] for d in utc["days"]] == [3, 3, 0, 2]
    # Paris is UTC+2 in May: t0 (04-30 23:00 UTC) falls on 05-01, t7 (05-04 22:30 UTC) on 05-05.
    assert [d["messages"] for d in paris.json()["days"]] == [4, 3, 0, 1]
    assert paris.json()["timezone"] == "Europe/Paris"
    assert paris.json()["totals"]["messages"] == 8


async def test_dashboard_defaults_to_the_last_30_days(client: httpx.AsyncClient) -> None:
    admin = await register(client)

    response = await client.get(DASHBOARD, headers=admin.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["days"]) == 30
    assert date.fromisoformat(body["to_date"]).toordinal() - date.fromisoformat(body["from_date"]).toordinal() == 29
    assert body["timezone"] == "UTC"
    assert body["totals"]["messages"] == 0
    assert body["response_time"] == {"average_ms": None, "p95_ms": None}
    assert body["rates"] == {"faq_match_rate": None, "handoff_rate": None, "grounded_rate": None}
    assert body["unanswered"]["clusters"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2024-05-04", "to": "2024-05-01"}, "invalid_date_range"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "invalid_date_range"),  # 367 days
        ({"from": "0001-01-01", "to": "0001-01-02"}, "invalid_date_range"),
        ({"from": "2024-05-01", "to": "9999-12-31"}, "invalid_date_range"),
        ({**RANGE, "timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({**RANGE, "timezone": "../../etc/passwd"}, "invalid_timezone"),
        ({"from": "2024-02-30"}, "validation_error"),
        ({**RANGE, "format": "xml"}, "validation_error"),
        ({**RANGE, "similarity": "0.2"}, "validation_error"),
    ],
)
async def test_dashboard_rejects_bad_ranges(client: httpx.AsyncClient, params: dict[str, str], code: str) -> None:
    admin = await register(client)

    response = await client.get(DASHBOARD, params=params, headers=admin.headers)

    assert response.status_code == 422, response.text
    assert error_code(response) == code


async def test_a_range_of_366_days_is_accepted(client: httpx.AsyncClient) -> None:
    admin = await register(client)

    response = await client.get(DASHBOARD, params={"from": "2024-01-01", "to": "2024-12-31"}, headers=admin.headers)

    assert response.status_code == 200, response.text
    assert len(response.json()["days"]) == 366


async def test_dashboard_csv_is_the_daily_series(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)

    by_format = await client.get(DASHBOARD, params={**RANGE, "format": "csv"}, headers=seeded.admin.headers)
    by_accept = await client.get(DASHBOARD, params=RANGE, headers={**seeded.admin.headers, "Accept": "text/csv"})

    for response in (by_format, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert response.headers["content-disposition"] == (
            'attachment; filename="support-analytics-2024-05-01-2024-05-04.csv"'
        )
    assert by_format.text == by_accept.text
    rows = list(csv.reader(io.StringIO(by_format.text)))
    assert rows == [
        ["day", "conversations", "messages", "active_users", "faq_answers", "grounded_answers", "handoffs",
         "intent_answers"],
        ["2024-05-01", "2", "3", "2", "1", "1", "0", "1"],
        ["2024-05-02", "3", "3", "2", "1", "0", "1", "1"],
        ["2024-05-03", "0", "0", "0", "0", "0", "0", "0"],
        ["2024-05-04", "2", "2", "2", "0", "1", "0", "1"],
    ]  # fmt: skip
    assert by_format.text.endswith("\r\n")


async def test_members_may_not_read_analytics(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    member = await add_member(client, seeded.admin, "member")
    viewer = await add_member(client, seeded.admin, "viewer")

    for user in (member, viewer):
        for url in (DASHBOARD, CONVERSATIONS, f"/api/v1/analytics/users/{seeded.admin.user_id}"):
            response = await client.get(url, headers=user.headers)
            assert response.status_code == 403, (url, response.text)
            assert error_code(response) == "permission_denied"
    assert (await client.get(DASHBOARD)).status_code == 401


async def test_another_organizations_rows_are_never_counted(app: Any, client: httpx.AsyncClient) -> None:
    await seed(app, client)
    # A third organization with nothing of its own sees nothing, even on the seeded days.
    empty = await register(client)

    body = (await client.get(DASHBOARD, params=RANGE, headers=empty.headers)).json()

    assert body["totals"]["messages"] == 0
    assert body["unanswered"]["total"] == 0
    assert body["helpfulness"]["faq"]["not_helpful"] == 0
    assert body["helpfulness"]["chat"]["down"] == 0
    listed = await client.get(CONVERSATIONS, headers=empty.headers)
    assert listed.json() == {"items": [], "next_cursor": None}


# The cache


async def test_dashboard_is_cached_per_organization_and_query(
    app: Any, client: httpx.AsyncClient, settings: Settings
) -> None:
    seeded = await seed(app, client)
    org, u1 = seeded.admin.org_id, seeded.admin.user_id
    first = await client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)
    await add_rows(app, turn(org, u1, TurnRoute.faq, at(3, 9), 10))

    cached = await client.get(DASHBOARD, params=RANGE, headers=seeded.agent.headers)
    other_query = await client.get(DASHBOARD, params={**RANGE, "top": 3}, headers=seeded.admin.headers)

    assert (first.headers["x-cache"], cached.headers["x-cache"]) == ("miss", "hit")
    assert cached.json() == first.json()
    assert cached.json()["totals"]["messages"] == 8
    assert other_query.headers["x-cache"] == "miss"
    assert other_query.json()["totals"]["messages"] == 9

    uncached = settings.model_copy(
        update={"support": settings.support.model_copy(update={"analytics_cache_seconds": 0})}
    )
    async with serving(uncached) as fresh_client:
        fresh = await fresh_client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)
        await add_rows(app, turn(org, u1, TurnRoute.faq, at(3, 10), 10))
        again = await fresh_client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)
    assert (fresh.headers["x-cache"], again.headers["x-cache"]) == ("miss", "miss")
    assert (fresh.json()["totals"]["messages"], again.json()["totals"]["messages"]) == (9, 10)


async def test_the_cache_never_serves_another_organization(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    other = await register(client)
    await add_rows(app, turn(other.org_id, other.user_id, TurnRoute.intent, at(2, 9), 10, intent="greeting"))

    mine = await client.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)
    theirs = await client.get(DASHBOARD, params=RANGE, headers=other.headers)

    assert theirs.headers["x-cache"] == "miss"
    assert (mine.json()["totals"]["messages"], theirs.json()["totals"]["messages"]) == (8, 1)


async def test_dashboard_cache_lives_in_redis_when_configured(
    app: Any, client: httpx.AsyncClient, settings: Settings
) -> None:
    if not redis_reachable():
        pytest.skip(f"no Redis server on {REDIS_HOST}:{REDIS_PORT} (start one to test the shared cache)")
    from redis.asyncio import Redis

    seeded = await seed(app, client)
    other = await register(client)
    await add_rows(app, turn(other.org_id, other.user_id, TurnRoute.intent, at(2, 9), 10, intent="greeting"))
    shared = settings.model_copy(update={"redis_url": f"redis://{REDIS_HOST}:{REDIS_PORT}/0"})
    redis: Redis[bytes] = Redis.from_url(f"redis://{REDIS_HOST}:{REDIS_PORT}/0")
    prefix = "tessera:support:analytics:"
    try:
        async with serving(shared) as one_process:
            first = await one_process.get(DASHBOARD, params=RANGE, headers=seeded.admin.headers)
        stored = [key async for key in redis.scan_iter(match=f"{prefix}{seeded.admin.org_id}:*")]
        assert len(stored) == 1
        assert 0 < await redis.ttl(stored[0]) <= settings.support.analytics_cache_seconds

        await add_rows(app, turn(seeded.admin.org_id, seeded.admin.user_id, TurnRoute.faq, at(3, 9), 10))
        # Another process (a new app: its memory is empty) is served from Redis.
        async with serving(shared) as another_process:
            cached = await another_process.get(DASHBOARD, params=RANGE, headers=seeded.agent.headers)
            theirs = await another_process.get(DASHBOARD, params=RANGE, headers=other.headers)

        assert cached.headers["x-cache"] == "hit"
        assert cached.json() == first.json()
        assert cached.json()["totals"]["messages"] == 8
        assert theirs.headers["x-cache"] == "miss"
        assert theirs.json()["totals"]["messages"] == 1
    finally:
        for org in (seeded.admin.org_id, other.org_id):
            keys = [key async for key in redis.scan_iter(match=f"{prefix}{org}:*")]
            if keys:
                await redis.delete(*keys)
        await redis.aclose()  # type: ignore[attr-defined]


# Conversations


async def test_conversations_are_listed_with_their_figures(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    c1, c2, c3 = (seeded.conversations[name] for name in ("c1", "c2", "c3"))
    u1, u2 = seeded.admin.user_id, seeded.agent.user_id

    response = await client.get(CONVERSATIONS, headers=seeded.agent.headers)

    assert response.status_code == 200, response.text
    items = {item["id"]: item for item in response.json()["items"]}
    expected_ids = sorted([c1, c2, c3, *seeded.unlinked.values()], reverse=True)
    assert [item["id"] for item in response.json()["items"]] == [str(key) for key in expected_ids]
    assert items[str(c1)] == {
        "id": str(c1),
        "conversation_id": str(c1),
        "user_id": u1,
        "first_turn_at": "2024-05-01T09:00:00Z",
        "last_turn_at": "2024-05-02T08:00:00Z",
        "turns": 3,
        "routes": {"faq": 1, "grounded": 1, "handoff": 1, "intent": 0},
        "handed_off": True,
        "average_latency_ms": 233.3,
    }
    assert (items[str(c2)]["user_id"], items[str(c2)]["turns"], items[str(c2)]["handed_off"]) == (u2, 2, False)
    assert (items[str(c3)]["turns"], items[str(c3)]["average_latency_ms"]) == (2, 195.0)
    lone = items[str(seeded.unlinked["t5"])]
    assert (lone["conversation_id"], lone["user_id"], lone["turns"]) == (None, u2, 1)
    assert lone["routes"] == {"faq": 0, "grounded": 0, "handoff": 0, "intent": 1}


async def test_conversations_filter_by_range_route_and_handoff(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    c1, c2, c3 = (seeded.conversations[name] for name in ("c1", "c2", "c3"))
    t0, t5, t6 = (seeded.unlinked[name] for name in ("t0", "t5", "t6"))

    async def ids(**params: Any) -> set[uuid.UUID]:
        response = await client.get(CONVERSATIONS, params=params, headers=seeded.admin.headers)
        assert response.status_code == 200, response.text
        return {uuid.UUID(item["id"]) for item in response.json()["items"]}

    assert await ids(handed_off="true") == {c1}
    assert await ids(handed_off="false") == {c2, c3, t0, t5, t6}
    assert await ids(route="faq") == {c1, t6}
    assert await ids(route="intent") == {c2, c3, t5}
    assert await ids(**RANGE) == {c1, c2, c3, t5, t6}
    in_paris = await ids(**RANGE, timezone="Europe/Paris")
    assert in_paris == {c1, c2, c3, t0, t5, t6}  # t0 is on 05-01 in Paris; c2 keeps t3
    ranged = await client.get(CONVERSATIONS, params={**RANGE}, headers=seeded.admin.headers)
    c3_in_range = next(item for item in ranged.json()["items"] if item["id"] == str(c3))
    assert c3_in_range["turns"] == 1  # t9 (05-05) is outside
    reversed_range = await client.get(
        CONVERSATIONS, params={"from": "2024-05-04", "to": "2024-05-01"}, headers=seeded.admin.headers
    )
    assert reversed_range.status_code == 422
    assert error_code(reversed_range) == "invalid_date_range"


async def test_conversations_are_paged(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    everything = (await client.get(CONVERSATIONS, headers=seeded.admin.headers)).json()["items"]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(CONVERSATIONS, params=params, headers=seeded.admin.headers)).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 2
    assert seen == [item["id"] for item in everything]
    bad = await client.get(CONVERSATIONS, params={"cursor": "!!!"}, headers=seeded.admin.headers)
    assert bad.status_code == 422
    assert error_code(bad) == "invalid_cursor"


async def test_conversations_export_as_csv(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    c1 = seeded.conversations["c1"]

    response = await client.get(CONVERSATIONS, params={"format": "csv", "limit": 1}, headers=seeded.admin.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="support-conversations-all-all.csv"'
    assert "x-next-cursor" not in response.headers
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 6  # every conversation: the export is not cut to `limit`
    row = next(r for r in rows if r["id"] == str(c1))
    assert row == {
        "id": str(c1),
        "conversation_id": str(c1),
        "user_id": seeded.admin.user_id,
        "first_turn_at": "2024-05-01T09:00:00+00:00",
        "last_turn_at": "2024-05-02T08:00:00+00:00",
        "turns": "3",
        "faq_turns": "1",
        "grounded_turns": "1",
        "handoff_turns": "1",
        "intent_turns": "0",
        "handed_off": "true",
        "average_latency_ms": "233.3",
    }
    lone = next(r for r in rows if r["id"] == str(seeded.unlinked["t0"]))
    assert lone["conversation_id"] == ""
    by_accept = await client.get(CONVERSATIONS, headers={**seeded.admin.headers, "Accept": "text/csv"})
    assert by_accept.text == response.text


# One user


async def test_user_activity(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    url = f"/api/v1/analytics/users/{seeded.admin.user_id}"

    ranged = await client.get(url, params=RANGE, headers=seeded.agent.headers)
    all_time = await client.get(url, headers=seeded.agent.headers)

    assert ranged.status_code == 200, ranged.text
    assert ranged.json() == {
        "user_id": seeded.admin.user_id,
        "name": "Test User",
        "email": seeded.admin.email,
        "role": "owner",
        "from_date": "2024-05-01",
        "to_date": "2024-05-04",
        "timezone": "UTC",
        "turns": 4,
        "conversations": 2,
        "first_seen_at": "2024-05-01T09:00:00Z",
        "last_seen_at": "2024-05-04T12:00:00Z",
        "average_latency_ms": 250.0,
        "routes": {"faq": 1, "grounded": 2, "handoff": 1, "intent": 0},
        "handoffs": {"total": 3, "open": 2, "resolved": 1},
        "faq_feedback": {"helpful": 2, "not_helpful": 0, "helpful_ratio": 1.0},
        "chat_ratings": {"up": 2, "down": 1, "up_ratio": 0.6667},
    }
    body = all_time.json()
    assert (body["from_date"], body["to_date"]) == (None, None)
    assert (body["turns"], body["conversations"]) == (6, 3)  # t0 and t9 too; t0 counts as its own
    assert body["first_seen_at"] == "2024-04-30T23:00:00Z"
    assert body["handoffs"]["total"] == 4  # with the April question
    assert body["chat_ratings"] == {"up": 3, "down": 1, "up_ratio": 0.75}  # never the non-support conversation

    agent = await client.get(
        f"/api/v1/analytics/users/{seeded.agent.user_id}", params=RANGE, headers=seeded.admin.headers
    )
    assert agent.json()["role"] == "agent"
    assert agent.json()["routes"] == {"faq": 1, "grounded": 0, "handoff": 0, "intent": 3}
    assert agent.json()["faq_feedback"] == {"helpful": 1, "not_helpful": 1, "helpful_ratio": 0.5}


async def test_user_activity_of_a_user_without_turns(client: httpx.AsyncClient) -> None:
    admin = await register(client)

    response = await client.get(f"/api/v1/analytics/users/{admin.user_id}", headers=admin.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["turns"], body["first_seen_at"], body["average_latency_ms"]) == (0, None, None)
    assert body["faq_feedback"]["helpful_ratio"] is None


async def test_another_organizations_user_is_not_found(app: Any, client: httpx.AsyncClient) -> None:
    seeded = await seed(app, client)
    stranger = await register(client)

    for user_id in (stranger.user_id, str(uuid.uuid4())):
        response = await client.get(f"/api/v1/analytics/users/{user_id}", headers=seeded.admin.headers)
        assert response.status_code == 404, response.text
        assert error_code(response) == "support_analytics_user_not_found"
    # And the other way round: A's user is unknown to B, although A's rows exist.
    response = await client.get(f"/api/v1/analytics/users/{seeded.admin.user_id}", headers=stranger.headers)
    assert response.status_code == 404
    bad = await client.get("/api/v1/analytics/users/not-a-uuid", headers=seeded.admin.headers)
    assert bad.status_code == 422


# Pure parts


def test_p95_is_the_nearest_rank() -> None:
    assert p95([]) is None
    assert p95([7.0]) == 7.0
    assert p95([float(n) for n in range(1, 21)]) == 19.0  # ceil(0.95 * 20) = 19th
    assert p95([float(n) for n in range(1, 101)]) == 95.0


def test_clustering_is_greedy_and_deterministic() -> None:
    texts = ["where is my card", "where is my card now", "how do i close my account", "Where is my card?"]
    vectors = FakeEmbedder(64).embed_sync(texts)

    clusters = cluster_vectors(vectors, DEFAULT_SIMILARITY)

    assert clusters == [[0, 1, 3], [2]]
    assert cluster_vectors(vectors, DEFAULT_SIMILARITY) == clusters
    assert cluster_vectors(vectors, 1.0) == [[0, 3], [1], [2]]  # identical vectors only
    assert most_central([0, 1, 3], vectors, [1, 5, 1, 1]) == 1  # weight pulls the centre
    assert most_central([0, 1, 3], vectors, [1, 1, 1, 1]) == 0
    assert cluster_vectors(np.zeros((0, 64), dtype=np.float32), 0.8) == []


def test_ranges_follow_the_time_zone_and_daylight_saving() -> None:
    # Paris switched to summer time on 2024-03-31: that day has 23 hours.
    span = resolve_range(date(2024, 3, 31), date(2024, 3, 31), "Europe/Paris")
    assert span.start == datetime(2024, 3, 30, 23, tzinfo=UTC)
    assert span.end == datetime(2024, 3, 31, 22, tzinfo=UTC)
    default = resolve_range(None, None, "UTC", default_days=30, today=date(2024, 5, 31))
    assert (default.from_date, default.to_date) == (date(2024, 5, 2), date(2024, 5, 31))
    open_ended = resolve_range(date(2024, 5, 1), None, "UTC")
    assert (open_ended.start, open_ended.end) == (datetime(2024, 5, 1, tzinfo=UTC), None)
