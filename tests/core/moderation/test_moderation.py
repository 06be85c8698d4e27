"""Moderation: the rules moderator on its own (intent, not words; normalised spellings; the
organization's policy), and over HTTP on both backends: flagged questions refused with 422 and
logged in every transport, answers withheld, the policy API and tenant isolation of flags."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tessera.core.moderation.base import Policy
from tessera.core.moderation.rules import RulesModerator
from tests.factories import SignedIn, add_member, create_collection, error_code, ingest_document, register

RULES = RulesModerator()


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I will kill you tomorrow", "violence"),
        ("how do I make a pipe bomb", "violence"),
        ("I want to end my life", "self_harm"),
        ("you're an idiot and nobody likes you", "harassment"),
        ("go kill yourself", "harassment"),
        ("those people are an inferior race", "hate"),
        ("send me nude photos", "sexual"),
        ("y0u are a m0ron", "harassment"),  # digits for letters
        ("I WILL KİLL you", "violence"),  # case and a dotted capital I
    ],
)
async def test_rules_flag_intent(text: str, category: str) -> None:
    verdict = await RULES.check(text, Policy())
    assert verdict.flagged
    assert category in verdict.categories


@pytest.mark.parametrize(
    "text",
    [
        "How do I kill the process that holds the port?",
        "The patient was screened for self-harm risk at intake.",
        "Shoot me an email when the battery arrives.",
        "Our history course covers the ethnic cleansing of the 1990s.",
        "Children's hearing aids need smaller batteries.",
    ],
)
async def test_rules_leave_ordinary_text_alone(text: str) -> None:
    assert not (await RULES.check(text, Policy())).flagged


async def test_the_policy_adds_words_allows_phrases_and_disables_categories() -> None:
    policy = Policy(
        blocked={"harassment": ("useless bot",)}, allowed=("kill you in the raid",), disabled=frozenset({"sexual"})
    )
    assert (await RULES.check("what a USELESS   bot", policy)).flagged
    assert not (await RULES.check("a useless bottle", policy)).flagged  # whole words only
    assert not (await RULES.check("I will kill you in the raid tonight", policy)).flagged
    verdict = await RULES.check("send me nude photos", policy)
    assert (verdict.flagged, list(verdict.categories)) == (False, ["sexual"])  # matched, not flagging


# ---------------------------------------------------------------------------------------------
# over HTTP


@pytest.fixture
async def user(client: httpx.AsyncClient) -> SignedIn:
    owner = await register(client)
    collection_id = await create_collection(client, owner, "Guides")
    await ingest_document(
        client, owner, collection_id, "threats.md",
        b"# Security\n\nThe attacker wrote that he will kill you if you report him to the police.\n",
    )  # fmt: skip
    return owner


async def flags(client: httpx.AsyncClient, user: SignedIn) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/moderation/flags", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_flagged_questions_are_refused_everywhere_and_logged(client: httpx.AsyncClient, user: SignedIn) -> None:
    question = "I will kill you if the hearing aid breaks again"
    for url, body in [
        ("/api/v1/ask", {"question": question}),
        ("/api/v1/ask", {"question": question, "stream": True}),
        ("/api/v1/chat/send", {"content": question}),
        ("/api/v1/chat/send", {"content": question, "stream": True}),
    ]:
        response = await client.post(url, json=body, headers=user.headers)
        assert response.status_code == 422, response.text
        assert error_code(response) == "content_flagged"
        assert response.json()["error"]["details"]["categories"] == ["violence"]
    logged = await flags(client, user)
    assert [(f["direction"], f["source"]) for f in logged] == [
        ("input", "chat"),
        ("input", "chat"),
        ("input", "ask"),
        ("input", "ask"),
    ]
    assert logged[0]["excerpt"] == question
    assert logged[0]["categories"] == {"violence": 1.0}
    # Nothing was stored as a conversation.
    assert (await client.get("/api/v1/conversations", headers=user.headers)).json()["items"] == []


async def test_answers_that_quote_flagged_text_are_withheld(client: httpx.AsyncClient, user: SignedIn) -> None:
    response = await client.post(
        "/api/v1/ask", json={"question": "What did the attacker write about reporting him?"}, headers=user.headers
    )
    body = response.json()
    assert response.status_code == 200
    assert body["answer"] == "This answer was withheld by the organization's content policy."
    assert body["citations"] == []
    assert body["grounded"] is False
    assert (await flags(client, user))[0]["direction"] == "output"

    streamed = await client.post(
        "/api/v1/chat/send", json={"content": "What did the attacker write about reporting him?", "stream": True},
        headers=user.headers,
    )  # fmt: skip
    events = [block for block in streamed.text.strip().split("\n\n")]
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["content"] == "This answer was withheld by the organization's content policy."
    assert "kill" not in streamed.text


async def test_the_policy_api_and_its_effect(client: httpx.AsyncClient, user: SignedIn) -> None:
    policy = await client.get("/api/v1/moderation/policy", headers=user.headers)
    assert policy.json()["disabled"] == []
    assert policy.json()["moderator"] == "rules"
    updated = await client.put(
        "/api/v1/moderation/policy",
        json={"disabled": ["violence"], "blocked": {"harassment": ["useless bot"]}, "allowed": ["kill switch"]},
        headers=user.headers,
    )
    assert updated.status_code == 200, updated.text
    ask = await client.post("/api/v1/ask", json={"question": "I will kill you, useless bot"}, headers=user.headers)
    assert ask.json()["error"]["details"]["categories"] == ["harassment"]
    fine = await client.post("/api/v1/ask", json={"question": "I will kill you tonight"}, headers=user.headers)
    assert fine.status_code == 200  # violence is off for this organization

    bad = await client.put("/api/v1/moderation/policy", json={"disabled": ["spam"]}, headers=user.headers)
    assert bad.status_code == 422
    member = await add_member(client, user, "member")
    assert (await client.put("/api/v1/moderation/policy", json={}, headers=member.headers)).status_code == 403
    assert (await client.get("/api/v1/moderation/flags", headers=member.headers)).status_code == 403

    stranger = await register(client)
    assert await flags(client, stranger) == []
    assert (await client.get("/api/v1/moderation/policy", headers=stranger.headers)).json()["disabled"] == []
