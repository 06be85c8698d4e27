"""Calibrating the FAQ match threshold from the organization's own votes and resolved hand-offs:
the choice rule on hand-made outcomes, the leave-one-out index, and the endpoint over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import numpy as np
import pytest

from tessera.core.embeddings.fake import FakeEmbedder
from tessera.modules.support.calibration import GRID, JudgedQuestion, Outcome, outcome, point, suggest
from tessera.modules.support.matching import FaqEntry, FaqIndex, MatchWeights
from tests.factories import SignedIn, add_member, error_code, register
from tests.modules.support.test_chatbot import consenting_member, send
from tests.modules.support.test_faqs_api import CARD, PIN, create_faq

CALIBRATE = "/api/v1/support/settings/calibrate"
WORDINGS = (
    "when will my new card arrive please",
    "my new card did not arrive",
    "new card arrive when",
    "has my new card been posted",
    "how long until my card arrives",
)


# The choice rule


def test_outcomes_are_right_wrong_or_unjudged() -> None:
    card, pin, fees = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    answered = JudgedQuestion("where is my card", answered_by={card})
    assert outcome(answered, card, 0.8) == Outcome(score=0.8, right=True, wrong=False, answerable=True)
    assert outcome(answered, pin, 0.8).wrong  # another FAQ than the one named
    voted_down = JudgedQuestion("card fees abroad", not_answered_by={card})
    assert outcome(voted_down, card, 0.7).wrong
    unjudged = outcome(voted_down, fees, 0.7)  # nobody said whether the fees FAQ answers it
    assert not unjudged.right
    assert not unjudged.wrong
    assert not unjudged.answerable
    nothing_answers = JudgedQuestion("deliver to a locker", unanswerable=True)
    assert outcome(nothing_answers, fees, 0.5).wrong
    assert outcome(answered, None, 0).score < 0  # no published FAQ at all: never a match


def test_the_suggestion_is_the_lowest_threshold_reaching_the_precision() -> None:
    outcomes = [
        Outcome(0.90, right=True, wrong=False, answerable=True),
        Outcome(0.80, right=True, wrong=False, answerable=True),
        Outcome(0.72, right=False, wrong=True, answerable=False),
        Outcome(0.60, right=True, wrong=False, answerable=True),
        Outcome(0.55, right=False, wrong=True, answerable=False),
        Outcome(0.50, right=False, wrong=True, answerable=True),
        Outcome(0.40, right=False, wrong=False, answerable=False),  # unjudged: counts as a match, not in precision
    ]
    at_60 = point(outcomes, 0.60)
    assert (at_60.matches, at_60.right, at_60.wrong, at_60.precision) == (4, 3, 1, 0.75)
    assert at_60.recall == 0.75  # 3 of the 4 answerable questions
    assert suggest(outcomes, 0.75) == point(outcomes, 0.56)  # the lowest grid step that drops the 0.55 mistake
    assert suggest(outcomes, 1.0) == point(outcomes, 0.73)
    assert suggest([Outcome(0.9, right=False, wrong=True, answerable=True)], 0.9) is None
    assert GRID[0] == 0.3
    assert GRID[-1] == 0.95


def test_an_index_without_a_learned_wording_scores_it_as_a_new_question() -> None:
    embedder = FakeEmbedder()
    entries = [
        FaqEntry(uuid.uuid4(), CARD["question"], CARD["answer"], (), "en", None, 0, ("where is my card", "card late")),
        FaqEntry(uuid.uuid4(), PIN["question"], PIN["answer"], (), "en", None, 0, ("pin blocked",)),
    ]
    # Stored order interleaves the two FAQs' phrasings, as rows added over time do.
    stored = [("where is my card", 0), ("pin blocked", 1), ("card late", 0)]
    index = FaqIndex(
        revision=1,
        model=embedder.name,
        entries=entries,
        question_vectors=embedder.embed_sync([e.question for e in entries]),
        answer_vectors=embedder.embed_sync([e.answer for e in entries]),
        phrasing_vectors=embedder.embed_sync([text for text, _ in stored]),
        phrasing_owners=np.array([owner for _, owner in stored], dtype=np.int32),
    )
    weights = MatchWeights()

    def best(which: FaqIndex, query: str) -> tuple[uuid.UUID, float, float]:
        top = which.rank(query, embedder.embed_sync([query])[0], weights=weights, limit=1)[0]
        return top.entry.id, top.scores.score, top.scores.question

    assert best(index, "Where is my card?")[1] == 1.0
    without = index.without_phrasings(["Where is my card?"])
    assert without.entries[0].phrasings == ("card late",)
    assert without.entries[1].phrasings == ("pin blocked",)
    _, score, question = best(without, "Where is my card?")
    assert score < 0.9
    assert question < 0.99
    # The other phrasings keep their own vectors: each still matches itself exactly.
    for text, owner in (("pin blocked", 1), ("card late", 0)):
        found, score, question = best(without, text)
        assert (found, score) == (entries[owner].id, 1.0)
        assert question == pytest.approx(1.0, abs=1e-3)
    assert index.without_phrasings(["never learned"]) is index
    both = index.without_phrasings(["where is my card", "PIN blocked!"])
    assert [e.phrasings for e in both.entries] == [("card late",), ()]
    assert both.phrasing_owners.tolist() == [0]


# Over HTTP


async def vote(client: httpx.AsyncClient, user: SignedIn, faq: dict[str, Any], query: str, helpful: bool) -> None:
    response = await client.post(
        f"/api/v1/faqs/{faq['id']}/feedback", json={"helpful": helpful, "query": query}, headers=user.headers
    )
    assert response.status_code == 200, response.text


async def ask_unanswerable(client: httpx.AsyncClient, member: SignedIn, question: str) -> None:
    reply = await send(client, member, question)
    # Handed off as unanswered, or as out of scope when no FAQ comes near.
    assert reply["route"].get("id") is not None, reply["route"]


async def hand_off(client: httpx.AsyncClient, member: SignedIn, admin: SignedIn, question: str, **body: Any) -> None:
    await ask_unanswerable(client, member, question)
    listed = await client.get("/api/v1/support/handoffs", params={"status": "open"}, headers=admin.headers)
    handoff = next(h for h in listed.json()["items"] if h["question"] == question)
    resolved = await client.patch(
        f"/api/v1/support/handoffs/{handoff['id']}", json={"status": "resolved", **body}, headers=admin.headers
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["faq_id"] == body.get("faq_id")


async def test_calibration_from_votes_and_resolved_handoffs(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    card = await create_faq(client, admin, **CARD)
    pin = await create_faq(client, admin, **PIN)
    member = await consenting_member(client, admin)

    thin = await client.post(CALIBRATE, json={}, headers=admin.headers)
    assert thin.status_code == 200, thin.text
    assert thin.json()["examples"] == 0
    assert thin.json()["suggested_threshold"] is None
    assert "20 are needed" in thin.json()["reason"]

    for query in ("when will my new card arrive please", "my new card did not arrive", "new card arrive when"):
        await vote(client, member, card, query, helpful=True)
    for query in ("how do i reset my pin code", "reset my PIN please", "pin reset how"):
        await vote(client, member, pin, query, helpful=True)
    await vote(client, member, card, "exchange rate for my card abroad", helpful=False)
    await vote(client, member, card, "exchange rate for my card abroad", helpful=False)  # one question, two votes
    await hand_off(client, member, admin, "Is there an interest rate on savings accounts?")
    await hand_off(client, member, admin, "Do you offer mortgages for holiday homes?")
    await hand_off(client, member, admin, "Card blocked in a shop in Lisbon, what now?", faq_id=pin["id"])

    report = await client.post(CALIBRATE, json={"min_examples": 5, "target_precision": 0.8}, headers=admin.headers)
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["examples"], body["answerable"], body["unanswered"]) == (10, 7, 3)
    assert body["current_threshold"] == 0.65
    assert [p["threshold"] for p in body["curve"]] == [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8,
                                                       0.85, 0.9, 0.95]  # fmt: skip
    # The six voted wordings were learned as phrasings; rescored without their own, none scores 1.0.
    assert body["curve"][-1]["matches"] == 0
    suggested = body["suggested_threshold"]
    assert suggested is not None, body
    assert body["at_suggested"]["precision"] >= 0.8
    assert body["at_suggested"]["right"] >= 1
    assert body["applied"] is False
    unchanged = await client.get("/api/v1/support/settings", headers=admin.headers)
    assert unchanged.json()["match_threshold"] is None

    applied = await client.post(
        CALIBRATE, json={"min_examples": 5, "target_precision": 0.8, "apply": True}, headers=admin.headers
    )
    assert applied.json()["applied"] is True
    assert applied.json()["suggested_threshold"] == suggested
    stored = await client.get("/api/v1/support/settings", headers=admin.headers)
    assert stored.json()["match_threshold"] == suggested
    assert stored.json()["effective_match_threshold"] == suggested
    events = await client.get(
        "/api/v1/audit-events", params={"action": "support.threshold_calibrated"}, headers=admin.headers
    )
    assert [e["details"]["threshold"] for e in events.json()["items"]] == [suggested]

    # The curve at the new threshold is what `at_current` reports from now on.
    again = await client.post(CALIBRATE, json={"min_examples": 5, "target_precision": 0.8}, headers=admin.headers)
    assert again.json()["current_threshold"] == suggested
    assert again.json()["at_current"] == again.json()["at_suggested"]


async def test_calibration_needs_questions_the_faqs_must_not_match(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    card = await create_faq(client, admin, **CARD)
    for query in WORDINGS:
        await vote(client, admin, card, query, helpful=True)
    report = await client.post(CALIBRATE, json={"min_examples": 5, "apply": True}, headers=admin.headers)
    body = report.json()
    assert (body["answerable"], body["unanswered"], body["suggested_threshold"], body["applied"]) == (5, 0, None, False)
    assert "judged as not answered" in body["reason"]
    assert (await client.get("/api/v1/support/settings", headers=admin.headers)).json()["match_threshold"] is None


async def test_calibration_is_per_organization_and_validated(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    card = await create_faq(client, admin, **CARD)
    await vote(client, admin, card, "my new card did not arrive", helpful=True)
    other = await register(client)
    theirs = await client.post(CALIBRATE, json={}, headers=other.headers)
    assert theirs.json()["examples"] == 0

    member = await add_member(client, admin, "member")
    assert (await client.post(CALIBRATE, json={}, headers=member.headers)).status_code == 403
    for bad in ({"target_precision": 2}, {"min_examples": 1}, {"apply": "maybe"}, {"surprise": 1}):
        refused = await client.post(CALIBRATE, json=bad, headers=admin.headers)
        assert refused.status_code == 422, bad
        assert error_code(refused) == "validation_error"


async def test_a_handoff_cannot_name_another_organizations_faq(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    await create_faq(client, admin, **CARD)
    member = await consenting_member(client, admin)
    await ask_unanswerable(client, member, "Do you offer mortgages for holiday homes?")
    handoff = (await client.get("/api/v1/support/handoffs", headers=admin.headers)).json()["items"][0]
    stranger = await register(client)
    foreign = await create_faq(client, stranger, **PIN)
    path = f"/api/v1/support/handoffs/{handoff['id']}"
    refused = await client.patch(path, json={"status": "resolved", "faq_id": foreign["id"]}, headers=admin.headers)
    assert refused.status_code == 404
    assert error_code(refused) == "faq_not_found"
    unchanged = (await client.get(path, headers=admin.headers)).json()
    assert (unchanged["status"], unchanged["faq_id"]) == ("open", None)


async def test_a_handoff_resolved_with_an_faq_teaches_it_the_question(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    await create_faq(client, admin, **CARD)
    pin = await create_faq(client, admin, **PIN)
    member = await consenting_member(client, admin)
    question = "Do you offer mortgages for holiday homes?"
    personal = "Mortgage questions for jane.doe@example.com please"
    for text in (question, personal):
        await ask_unanswerable(client, member, text)
    listed = (await client.get("/api/v1/support/handoffs", headers=admin.headers)).json()["items"]
    by_question = {h["question"]: h["id"] for h in listed}

    path = f"/api/v1/support/handoffs/{by_question[question]}"
    noted = await client.patch(path, json={"faq_id": pin["id"]}, headers=admin.headers)
    assert (noted.json()["faq_id"], noted.json()["learned"]) == (pin["id"], False)  # not resolved yet
    resolved = await client.patch(path, json={"status": "resolved"}, headers=admin.headers)
    assert resolved.json()["learned"] is True
    found = await client.get("/api/v1/faqs/search", params={"q": question}, headers=member.headers)
    top = found.json()["items"][0]
    assert (top["faq"]["id"], top["score"], top["match"]) == (pin["id"], 1.0, True)
    assert (await client.get(f"/api/v1/faqs/{pin['id']}", headers=admin.headers)).json()["learned_phrasings"] == 1

    kept_out = await client.patch(
        f"/api/v1/support/handoffs/{by_question[personal]}",
        json={"status": "resolved", "faq_id": pin["id"]},
        headers=admin.headers,
    )
    assert kept_out.json()["learned"] is False  # it may hold personal data
    assert (await client.get(f"/api/v1/faqs/{pin['id']}", headers=admin.headers)).json()["learned_phrasings"] == 1
