"""FAQ categories and FAQs over HTTP: CRUD, visibility by status, search, feedback, isolation."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.factories import SignedIn, add_member, error_code, register

CARD = {
    "question": "When will my new card arrive?",
    "answer": "Cards are posted within 2 working days and arrive in 5 to 7 working days. Track it in Cards.",
    "keywords": ["delivery"],
    "status": "published",
}
PIN = {
    "question": "How do I reset my PIN?",
    "answer": "Open the app, go to Card settings and choose Reset PIN, then confirm with your passcode.",
    "status": "published",
}


async def create_faq(client: httpx.AsyncClient, user: SignedIn, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/faqs", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_faq_lifecycle(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    category = await client.post("/api/v1/faq-categories", json={"name": "Cards & PINs"}, headers=admin.headers)
    assert category.status_code == 201, category.text
    assert category.json()["slug"] == "cards-pins"
    faq = await create_faq(client, admin, **CARD, category_id=category.json()["id"], phrasings=["Where is my card?"])
    assert faq["slug"] == "when-will-my-new-card-arrive"
    assert faq["published_at"] is not None
    assert faq["phrasings"] == ["Where is my card?"]
    assert faq["url"] == f"/api/v1/faqs/{faq['id']}"

    again = await create_faq(client, admin, **CARD)
    assert again["slug"] == "when-will-my-new-card-arrive-2"
    taken = await client.post("/api/v1/faqs", json={**PIN, "slug": faq["slug"]}, headers=admin.headers)
    assert taken.status_code == 409
    assert error_code(taken) == "faq_slug_taken"

    read = await client.get(f"/api/v1/faqs/{faq['id']}", headers=admin.headers)
    assert read.json()["view_count"] == 1
    by_slug = await client.get(f"/api/v1/faqs/by-slug/{faq['slug']}", headers=admin.headers)
    assert by_slug.json()["id"] == faq["id"]
    assert by_slug.json()["view_count"] == 2

    updated = await client.patch(
        f"/api/v1/faqs/{faq['id']}", json={"status": "archived", "category_id": None}, headers=admin.headers
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["status"] == "archived"
    assert updated.json()["category_id"] is None
    listed = await client.get("/api/v1/faqs", params={"status": "archived"}, headers=admin.headers)
    assert [f["id"] for f in listed.json()["items"]] == [faq["id"]]

    categories = await client.get("/api/v1/faq-categories", headers=admin.headers)
    assert categories.json()["items"][0]["faq_count"] == 0
    deleted = await client.delete(f"/api/v1/faqs/{faq['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/api/v1/faqs/{faq['id']}", headers=admin.headers)).status_code == 404


async def test_readers_see_published_faqs_only_and_cannot_edit(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    member = await add_member(client, admin, "member")
    agent = await add_member(client, admin, "agent")
    draft = await create_faq(client, agent, **{**PIN, "status": "draft"})
    published = await create_faq(client, admin, **CARD)

    listed = await client.get("/api/v1/faqs", headers=member.headers)
    assert [f["id"] for f in listed.json()["items"]] == [published["id"]]
    hidden = await client.get(f"/api/v1/faqs/{draft['id']}", headers=member.headers)
    assert hidden.status_code == 404
    assert error_code(hidden) == "faq_not_found"
    refused = await client.post("/api/v1/faqs", json=PIN, headers=member.headers)
    assert refused.status_code == 403
    edit = await client.patch(f"/api/v1/faqs/{published['id']}", json={"priority": 5}, headers=member.headers)
    assert edit.status_code == 403


async def test_search_matches_paraphrases_and_learns_from_feedback(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    member = await add_member(client, admin, "member")
    card = await create_faq(client, admin, **CARD)
    await create_faq(client, admin, **PIN)

    found = await client.get("/api/v1/faqs/search", params={"q": "reset PIN"}, headers=member.headers)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["items"][0]["faq"]["question"] == PIN["question"]
    assert set(body["items"][0]["scores"]) == {"question", "answer", "question_terms", "answer_terms"}
    assert body["threshold"] == 0.65

    wording = "parcel tracking for plastic"
    vote = await client.post(
        f"/api/v1/faqs/{card['id']}/feedback", json={"helpful": True, "query": wording}, headers=member.headers
    )
    assert vote.status_code == 200, vote.text
    assert vote.json() == {"faq_id": card["id"], "helpful_count": 1, "not_helpful_count": 0, "learned": True}
    learned = await client.get("/api/v1/faqs/search", params={"q": wording}, headers=member.headers)
    top = learned.json()["items"][0]
    assert top["faq"]["id"] == card["id"]
    assert top["scores"]["question"] == 1.0
    assert top["match"] is True
    assert learned.json()["match"]["faq"]["id"] == card["id"]

    personal = await client.post(
        f"/api/v1/faqs/{card['id']}/feedback",
        json={"helpful": True, "query": "card for jane.doe@example.com"},
        headers=member.headers,
    )
    assert personal.json()["learned"] is False
    assert personal.json()["helpful_count"] == 2


async def test_search_filters_and_bad_input(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    category = (await client.post("/api/v1/faq-categories", json={"name": "Cards"}, headers=admin.headers)).json()
    await create_faq(client, admin, **CARD, category_id=category["id"])
    await create_faq(client, admin, **{**PIN, "language": "fr"})
    by_slug = await client.get("/api/v1/faqs/search", params={"q": "card", "category": "cards"}, headers=admin.headers)
    assert [h["faq"]["question"] for h in by_slug.json()["items"]] == [CARD["question"]]
    french = await client.get("/api/v1/faqs/search", params={"q": "card", "language": "fr"}, headers=admin.headers)
    assert [h["faq"]["question"] for h in french.json()["items"]] == [PIN["question"]]
    for params in ({"q": ""}, {"q": "x", "limit": 0}, {"q": "x", "language": "English!"}):
        response = await client.get("/api/v1/faqs/search", params=params, headers=admin.headers)
        assert response.status_code == 422, params
    unknown = await client.get("/api/v1/faqs/search", params={"q": "x", "category": "nope"}, headers=admin.headers)
    assert unknown.status_code == 404
    for body in ({"question": "", "answer": "a"}, {**CARD, "priority": 101}, {**CARD, "slug": "Not A Slug"}):
        assert (await client.post("/api/v1/faqs", json=body, headers=admin.headers)).status_code == 422


async def test_categories_order(client: httpx.AsyncClient) -> None:
    admin = await register(client)
    ids = []
    for name in ("Cards", "Payments", "Security"):
        ids.append(
            (await client.post("/api/v1/faq-categories", json={"name": name}, headers=admin.headers)).json()["id"]
        )
    ordered = await client.put("/api/v1/faq-categories/order", json={"ids": [ids[2], ids[0]]}, headers=admin.headers)
    assert ordered.status_code == 200, ordered.text
    assert [c["name"] for c in ordered.json()["items"]] == ["Security", "Cards", "Payments"]
    twice = await client.put("/api/v1/faq-categories/order", json={"ids": [ids[0], ids[0]]}, headers=admin.headers)
    assert twice.status_code == 422
    clash = await client.patch(f"/api/v1/faq-categories/{ids[1]}", json={"slug": "cards"}, headers=admin.headers)
    assert clash.status_code == 409
    assert error_code(clash) == "faq_category_slug_taken"


async def test_another_organizations_faqs_are_404(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    stranger = await register(client)
    faq = await create_faq(client, owner, **CARD)
    category = (await client.post("/api/v1/faq-categories", json={"name": "Cards"}, headers=owner.headers)).json()
    for method, path, body in (
        ("GET", f"/api/v1/faqs/{faq['id']}", None),
        ("PATCH", f"/api/v1/faqs/{faq['id']}", {"priority": 1}),
        ("DELETE", f"/api/v1/faqs/{faq['id']}", None),
        ("POST", f"/api/v1/faqs/{faq['id']}/feedback", {"helpful": True}),
        ("GET", f"/api/v1/faq-categories/{category['id']}", None),
        ("PATCH", f"/api/v1/faq-categories/{category['id']}", {"name": "x"}),
        ("DELETE", f"/api/v1/faq-categories/{category['id']}", None),
        ("GET", f"/api/v1/faqs/by-slug/{faq['slug']}", None),
    ):
        response = await client.request(method, path, json=body, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
    moved = await client.post("/api/v1/faqs", json={**PIN, "category_id": category["id"]}, headers=stranger.headers)
    assert moved.status_code == 404
    search = await client.get("/api/v1/faqs/search", params={"q": "card arrive"}, headers=stranger.headers)
    assert search.json()["items"] == []


async def test_vectors_of_another_model_are_remade(client: httpx.AsyncClient, app: Any) -> None:
    import sqlalchemy as sa

    from tessera.core.db.session import unit_of_work
    from tessera.modules.support.models import Faq

    admin = await register(client)
    faq = await create_faq(client, admin, **PIN)
    await client.patch("/api/v1/support/profile", json={"data_processing_consent": True}, headers=admin.headers)
    async with unit_of_work(app.state.sessionmaker) as session:
        await session.execute(sa.update(Faq).values(embedding_model="retired:model", question_vector=b"\x00" * 8))
        # What a model change looks like to other processes: the revision moves.
        from tessera.modules.support.faqs import bump_revision

        await bump_revision(session, uuid.UUID(admin.org_id))

    chat = await client.post("/api/v1/chat/send", json={"content": "how do I reset my PIN"}, headers=admin.headers)
    assert chat.status_code == 200, chat.text
    assert chat.json()["route"]["id"] == faq["id"]  # answered from vectors made in memory
    found = await client.get("/api/v1/faqs/search", params={"q": "reset my PIN"}, headers=admin.headers)
    assert found.json()["items"][0]["faq"]["id"] == faq["id"]
    async with unit_of_work(app.state.sessionmaker, write=False) as session:
        models = set((await session.execute(sa.select(Faq.embedding_model))).scalars())
    assert len(models) == 1
    assert "retired:model" not in models
