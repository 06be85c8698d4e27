"""The support bot through `POST /chat/send` and the chat WebSocket, as a user meets it: FAQ first,
then the knowledge base, then a hand-off; small talk; consent decides what is stored."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.testclient import TestClient

from tessera.core.chat.models import ChatMessage, Conversation
from tessera.core.db.session import unit_of_work
from tessera.core.notifications.mailers.fake import FakeMailer
from tessera.core.notifications.models import NotificationDelivery
from tessera.main import create_app
from tessera.modules.support.models import Handoff, SupportTurn
from tessera.settings import Settings
from tests.factories import SignedIn, add_member, register
from tests.modules.support.test_faqs_api import CARD, PIN, create_faq


async def support_org(client: httpx.AsyncClient, **org_settings: Any) -> tuple[SignedIn, SignedIn]:
    """An admin with the two FAQs, and a member who consented to storage."""
    admin = await register(client)
    await create_faq(client, admin, **CARD)
    await create_faq(client, admin, **PIN)
    if org_settings:
        changed = await client.patch("/api/v1/support/settings", json=org_settings, headers=admin.headers)
        assert changed.status_code == 200, changed.text
    return admin, await consenting_member(client, admin)


async def consenting_member(client: httpx.AsyncClient, admin: SignedIn) -> SignedIn:
    """A member of `admin`'s organization who consented to storage, in English."""
    member = await add_member(client, admin, "member")
    consent = await client.patch(
        "/api/v1/support/profile", json={"data_processing_consent": True, "language": "en"}, headers=member.headers
    )
    assert consent.status_code == 200, consent.text
    assert consent.json()["stores_conversations"] is True
    return member


async def send(client: httpx.AsyncClient, user: SignedIn, content: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/chat/send", json={"content": content, **extra}, headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def rows(app: Any, model: Any, **where: Any) -> list[Any]:
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        query = sa.select(model).filter_by(**where)
        return list((await session.execute(query)).scalars())


async def test_a_confident_faq_match_answers_with_its_link(client: httpx.AsyncClient, app: Any) -> None:
    _, member = await support_org(client)
    reply = await send(client, member, "How can I reset my PIN?")
    assert reply["route"]["kind"] == "faq"
    assert reply["route"]["title"] == PIN["question"]
    assert reply["content"].startswith(PIN["answer"])
    assert reply["route"]["url"] in reply["content"]
    assert reply["model"] == "support:faq"
    assert reply["stored"] is True
    stored = await client.get(f"/api/v1/conversations/{reply['conversation_id']}", headers=member.headers)
    assert stored.json()["messages"][1]["route"]["kind"] == "faq"
    turns = await rows(app, SupportTurn, conversation_id=uuid.UUID(reply["conversation_id"]))
    assert [t.route.value for t in turns] == ["faq"]
    assert turns[0].faq_id == uuid.UUID(reply["route"]["id"])
    faq = await client.get(f"/api/v1/faqs/{reply['route']['id']}", headers=member.headers)
    assert faq.json()["view_count"] == 2  # the chat answer and this read


async def test_a_chat_addressed_to_an_assistant_is_the_assistants_to_answer(
    client: httpx.AsyncClient, app: Any
) -> None:
    """The support bot is the organization's default chat; another product's assistant in the same
    organization answers its own conversations (no FAQ route, no support analytics row)."""
    admin, member = await support_org(client)
    created = await client.post(
        "/api/v1/assistants", json={"name": "reading-guide", "title": "Reading guide"}, headers=admin.headers
    )
    assert created.status_code == 201, created.text
    reply = await send(client, member, "How can I reset my PIN?", assistant_id=created.json()["id"])
    assert reply["route"] is None
    assert reply["model"] != "support:faq"
    assert await rows(app, SupportTurn, conversation_id=uuid.UUID(reply["conversation_id"])) == []
    follow_up = await send(client, member, "Hello!", conversation_id=reply["conversation_id"])
    assert follow_up["route"] is None  # the conversation stays the assistant's
    default_chat = await send(client, member, "How can I reset my PIN?")
    assert default_chat["route"]["kind"] == "faq"


async def test_small_talk_and_requests_for_a_human(client: httpx.AsyncClient, app: Any) -> None:
    _, member = await support_org(client, handoff_emails=["agents@example.com"])
    hello = await send(client, member, "Hello!")
    assert hello["route"] == {**hello["route"], "kind": "intent", "intent": "greeting"}
    thanks = await send(client, member, "thanks a lot", conversation_id=hello["conversation_id"])
    assert thanks["route"]["intent"] == "thanks"

    FakeMailer.outbox.clear()
    human = await send(client, member, "Can I talk to a real person please?")
    assert human["route"]["kind"] == "handoff"
    assert human["route"]["intent"] == "human"
    handoffs = await rows(app, Handoff, id=uuid.UUID(human["route"]["id"]))
    assert handoffs[0].reason.value == "requested"
    assert handoffs[0].question == "Can I talk to a real person please?"
    deliveries = await rows(app, NotificationDelivery, org_id=uuid.UUID(member.org_id))
    assert [d.channel.value for d in deliveries] == ["email"]
    assert any("real person" in email.text for email in FakeMailer.outbox)


async def test_unanswered_questions_are_handed_off(client: httpx.AsyncClient, app: Any) -> None:
    admin, member = await support_org(client)
    reply = await send(client, member, "Can my card be delivered to a PIN-protected locker abroad?")
    assert reply["grounded"] is False
    assert reply["route"]["kind"] in ("handoff", "intent")
    listed = await client.get("/api/v1/support/handoffs", headers=admin.headers)
    assert [h["question"] for h in listed.json()["items"]] == [
        "Can my card be delivered to a PIN-protected locker abroad?"
    ]
    handoff = listed.json()["items"][0]
    resolved = await client.patch(
        f"/api/v1/support/handoffs/{handoff['id']}", json={"status": "resolved"}, headers=admin.headers
    )
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved_by"] == admin.user_id
    refused = await client.get("/api/v1/support/handoffs", headers=member.headers)
    assert refused.status_code == 403
    stranger = await register(client)
    assert (await client.get(f"/api/v1/support/handoffs/{handoff['id']}", headers=stranger.headers)).status_code == 404


async def test_without_consent_nothing_is_stored(client: httpx.AsyncClient, app: Any) -> None:
    admin, _ = await support_org(client)
    newcomer = await add_member(client, admin, "member")
    profile = await client.get("/api/v1/support/profile", headers=newcomer.headers)
    assert profile.json()["stores_conversations"] is False
    reply = await send(client, newcomer, "How do I reset my PIN?")
    assert reply["stored"] is False
    assert reply["route"]["kind"] == "faq"
    assert await rows(app, Conversation, user_id=uuid.UUID(newcomer.user_id)) == []
    follow_up = await client.post(
        "/api/v1/chat/send",
        json={"content": "and then?", "conversation_id": reply["conversation_id"]},
        headers=newcomer.headers,
    )
    assert follow_up.status_code == 404
    turns = await rows(app, SupportTurn, user_id=uuid.UUID(newcomer.user_id))
    assert [(t.stored, t.conversation_id) for t in turns] == [(False, None)]

    consent = await client.patch(
        "/api/v1/support/profile", json={"data_processing_consent": True}, headers=newcomer.headers
    )
    assert consent.json()["data_processing_consent"]["version"] == "1"
    kept = await send(client, newcomer, "How do I reset my PIN?")
    assert kept["stored"] is True
    withdrawn = await client.patch(
        "/api/v1/support/profile", json={"data_processing_consent": False}, headers=newcomer.headers
    )
    assert withdrawn.json()["stores_conversations"] is False
    assert await rows(app, ChatMessage, conversation_id=uuid.UUID(kept["conversation_id"])) == []


async def test_the_bot_answers_in_the_users_language(client: httpx.AsyncClient) -> None:
    _, member = await support_org(client)
    await client.patch("/api/v1/support/profile", json={"language": "fr"}, headers=member.headers)
    reply = await send(client, member, "Bonjour")
    assert reply["content"].startswith("Bonjour !")


async def test_orgs_without_the_bot_chat_as_before(client: httpx.AsyncClient) -> None:
    user = await register(client)
    reply = await send(client, user, "How do I reset my PIN?")
    assert reply["route"] is None
    assert reply["stored"] is True


async def test_profile_and_settings_validation(client: httpx.AsyncClient) -> None:
    admin, member = await support_org(client)
    for body in ({"timezone": "Mars/Olympus"}, {"language": "french!"}, {"unknown": 1}):
        assert (await client.patch("/api/v1/support/profile", json=body, headers=member.headers)).status_code == 422
    for body in ({"match_threshold": 2}, {"handoff_emails": ["nope"]}, {"collections": [str(uuid.uuid4())]}):
        response = await client.patch("/api/v1/support/settings", json=body, headers=admin.headers)
        assert response.status_code == 422, body
    assert (await client.patch("/api/v1/support/settings", json={}, headers=member.headers)).status_code == 403


def test_the_websocket_answers_from_faqs(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as http:
        admin = _register_sync(http)
        created = http.post("/api/v1/faqs", json=PIN, headers=_bearer(admin))
        assert created.status_code == 201, created.text
        consent = http.patch("/api/v1/support/profile", json={"data_processing_consent": True}, headers=_bearer(admin))
        assert consent.status_code == 200
        with http.websocket_connect("/api/v1/chat/ws") as socket:
            socket.send_text(json.dumps({"type": "auth", "token": admin}))
            assert json.loads(socket.receive_text())["type"] == "ready"
            socket.send_text(json.dumps({"type": "message", "content": "how to reset my PIN"}))
            frames = []
            while True:
                frame = json.loads(socket.receive_text())
                frames.append(frame)
                if frame["type"] in ("response", "error"):
                    break
        response = frames[-1]
        assert response["type"] == "response", frames
        assert response["route"]["kind"] == "faq"
        assert response["stored"] is True
        assert "".join(f["text"] for f in frames if f["type"] == "delta") == response["content"]


def _register_sync(http: TestClient) -> str:
    email = f"ws-{uuid.uuid4().hex[:8]}@example.com"
    registered = http.post(
        "/api/v1/auth/register", json={"email": email, "password": "Analytical-Engine-1843", "name": "Ws"}
    )
    assert registered.status_code == 201, registered.text
    token: str = registered.json()["access_token"]
    return token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
