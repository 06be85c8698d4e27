"""The retention purge: an organization's chat messages older than its retention go, with the
conversations they leave empty and old resolved hand-offs; analytics turns keep their counts
without who asked; organizations without a retention keep everything."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.modules.support.models import Handoff, HandoffReason, HandoffStatus, SupportTurn, TurnRoute
from tessera.modules.support.retention import purge_expired
from tests.factories import register
from tests.modules.support.test_faqs_api import PIN, create_faq


async def test_purge_removes_what_is_past_retention(client: httpx.AsyncClient, app: Any) -> None:
    kept_org = await register(client)
    purged_org = await register(client)
    for user in (kept_org, purged_org):
        await create_faq(client, user, **PIN)
        consent = {"data_processing_consent": True}
        assert (await client.patch("/api/v1/support/profile", json=consent, headers=user.headers)).status_code == 200
        sent = await client.post("/api/v1/chat/send", json={"content": "How do I reset my PIN?"}, headers=user.headers)
        assert sent.status_code == 200, sent.text
    changed = await client.patch("/api/v1/support/settings", json={"retention_days": 30}, headers=purged_org.headers)
    assert changed.json()["retention_days"] == 30

    old = utcnow() - timedelta(days=31)
    async with unit_of_work(app.state.sessionmaker) as session:
        for user in (kept_org, purged_org):
            org_id = uuid.UUID(user.org_id)
            await session.execute(sa.update(ChatMessage).where(ChatMessage.org_id == org_id).values(created_at=old))
            await session.execute(sa.update(Conversation).where(Conversation.org_id == org_id).values(updated_at=old))
            await session.execute(sa.update(SupportTurn).where(SupportTurn.org_id == org_id).values(created_at=old))
            session.add(
                Handoff(
                    org_id=org_id, user_id=uuid.UUID(user.user_id), question="Old question",
                    reason=HandoffReason.no_answer, status=HandoffStatus.resolved, updated_at=old,
                )
            )  # fmt: skip
    async with unit_of_work(app.state.sessionmaker) as session:
        purged = await purge_expired(session, utcnow())
    assert (purged.organizations, purged.messages, purged.conversations, purged.handoffs) == (1, 2, 1, 1)

    async with unit_of_work(app.state.sessionmaker, write=False) as session:

        def count(model: Any, org: str) -> Any:
            return sa.select(sa.func.count()).select_from(model).where(model.org_id == uuid.UUID(org))

        for user, messages, handoffs in ((kept_org, 2, 1), (purged_org, 0, 0)):
            assert (await session.execute(count(ChatMessage, user.org_id))).scalar_one() == messages
            assert (await session.execute(count(Handoff, user.org_id))).scalar_one() == handoffs
        turns = (
            (await session.execute(sa.select(SupportTurn).where(SupportTurn.org_id == uuid.UUID(purged_org.org_id))))
            .scalars()
            .all()
        )
    assert [(t.route, t.user_id, t.conversation_id) for t in turns] == [(TurnRoute.faq, None, None)]


async def test_the_retention_workflow_is_scheduled_and_purges(settings: Any) -> None:
    """On a real worker: the hourly schedule exists, and a run of the workflow purges."""
    from dbos import DBOS

    from tessera.main import create_app
    from tessera.modules.support.jobs import RETENTION_SCHEDULE, RETENTION_WORKFLOW

    with_jobs = settings.model_copy(
        update={"jobs": settings.jobs.model_copy(update={"enabled": True, "embedded_worker": True})}
    )
    app = create_app(with_jobs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            user = await register(client)
            await client.patch("/api/v1/support/settings", json={"retention_days": 1}, headers=user.headers)
            await client.patch("/api/v1/support/profile", json={"data_processing_consent": True}, headers=user.headers)
            await client.post("/api/v1/chat/send", json={"content": "hello"}, headers=user.headers)
        async with unit_of_work(app.state.sessionmaker) as session:
            old = utcnow() - timedelta(days=2)
            await session.execute(sa.update(ChatMessage).values(created_at=old))
        schedules = {s["schedule_name"]: s for s in await DBOS.list_schedules_async()}
        assert schedules[RETENTION_WORKFLOW]["schedule"] == RETENTION_SCHEDULE
        workflow_id = await app.state.jobs.enqueue(RETENTION_WORKFLOW, utcnow(), None)
        result = await app.state.jobs.result(workflow_id, timeout=60)
    assert result["messages"] == 2
