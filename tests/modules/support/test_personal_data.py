"""GDPR for the support product: `GET /me/export` holds the user's profile, consents, FAQ votes,
hand-offs and bot usage; `DELETE /me` leaves nothing of them in any table (every table is read),
hand-offs announced to webhooks included, while the organization's FAQs and figures stay."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from tessera.core.db.session import unit_of_work
from tessera.modules.support.models import Faq, SupportTurn
from tests.core.personal_data.every_table import rows_mentioning
from tests.factories import add_member, register
from tests.modules.support.test_faqs_api import CARD, PIN, create_faq

WORD = "Quibblethorpe"
QUESTION = f"Can a {WORD} courier deliver my replacement card to the moon?"


async def test_export_and_erase_cover_the_support_data(client: httpx.AsyncClient, app: Any) -> None:
    admin = await register(client)
    faq = await create_faq(client, admin, **CARD)
    await create_faq(client, admin, **PIN)
    settings = {"handoff_emails": ["agents@example.com"]}
    assert (await client.patch("/api/v1/support/settings", json=settings, headers=admin.headers)).status_code == 200
    hook = await client.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["support.*"]}, headers=admin.headers
    )
    assert hook.status_code == 201, hook.text

    person = await add_member(client, admin, "member")
    profile = {"data_processing_consent": True, "marketing_consent": True, "language": "en", "timezone": "Europe/Oslo"}
    assert (await client.patch("/api/v1/support/profile", json=profile, headers=person.headers)).status_code == 200
    for content in ("How do I reset my PIN?", QUESTION, "I want to talk to a human"):
        sent = await client.post("/api/v1/chat/send", json={"content": content}, headers=person.headers)
        assert sent.status_code == 200, sent.text
    vote = {"helpful": False, "comment": f"{WORD} says this is wrong"}
    voted = await client.post(f"/api/v1/faqs/{faq['id']}/feedback", json=vote, headers=person.headers)
    assert voted.status_code == 200

    exported = await client.get("/api/v1/me/export", headers=person.headers)
    assert exported.status_code == 200, exported.text
    support = exported.json()["sources"]["support"]
    assert support["profiles"][0]["timezone"] == "Europe/Oslo"
    assert support["profiles"][0]["marketing_consent"]["given"] is True
    assert [v["comment"] for v in support["faq_feedback"]] == [vote["comment"]]
    assert {h["question"] for h in support["handoffs"]} >= {QUESTION, "I want to talk to a human"}
    assert sum(t["count"] for t in support["bot_turns"]) == 3

    needles = [uuid.UUID(person.user_id), person.email, WORD]
    before = await rows_mentioning(app.state.engine, needles)
    assert {m.table for m in before} >= {"support_profile", "faq_feedback", "support_handoff", "support_turn"}

    erased = await client.delete("/api/v1/me", headers=person.headers)
    assert erased.status_code == 204, erased.text

    assert await rows_mentioning(app.state.engine, needles) == []
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        turns = (await session.execute(sa.select(sa.func.count(SupportTurn.id)))).scalar_one()
        kept = await session.get(Faq, uuid.UUID(faq["id"]))
    assert turns == 3  # the organization's figures stay, without the person
    assert kept is not None
    assert kept.not_helpful_count == 1
