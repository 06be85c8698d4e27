"""A person who leaves a footprint in every core area, through the real API, from their own IP
address and user agent, so tests can look for every trace of them afterwards."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import SignedIn, create_collection, ingest_samples, login, register

NAME = "Zebulon Quarkwright"
USER_AGENT = "ZebulonBrowser/7.1"
IP = "198.51.100.23"
# In every question the person asks, so any copy of their words is easy to find.
WORD = "Quokkazeta"
QUESTION = f"What do grey herons eat, {WORD}?"


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    # The fake PII detector: the vault is exercised without loading spaCy. Many requests: no limits.
    return make_settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        privacy={"detector": "fake"},
        rate_limit={"enabled": False},
    )


def client_for(app: Any, ip: str, user_agent: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50001))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers={"User-Agent": user_agent})


@pytest.fixture
async def own_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The person's own browser: their IP address and user agent."""
    async with client_for(app, IP, USER_AGENT) as http:
        yield http


def as_org(user: SignedIn, org_id: str) -> dict[str, str]:
    return {**user.headers, "X-Org-Id": org_id}


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def upload(
    http: httpx.AsyncClient, headers: dict[str, str], collection_id: str, name: str, content: bytes, **extra: str
) -> str:
    """Upload one file and run the pipeline on it in this process; returns the document id."""
    from tessera.core.documents.pipeline import process_inline

    response = await http.post(
        "/api/v1/documents",
        data={"collection_id": collection_id, "metadata": "{}"},
        files={"files": (name, content)},
        headers={**headers, **extra},
    )
    body = await ok(response, 202)
    document_id: str = body["documents"][0]["id"]
    assert await process_inline(uuid.UUID(document_id), 1) == "ready"
    return document_id


async def join(
    http: httpx.AsyncClient,
    client: httpx.AsyncClient,
    admin: SignedIn,
    joiner: SignedIn,
    *,
    role: str = "member",
    org_id: str | None = None,
) -> None:
    """`joiner` (signed in with `http`) joins `admin`'s active organization, or `org_id`, through an
    invitation."""
    headers = as_org(admin, org_id) if org_id else admin.headers
    invited = await ok(
        await client.post("/api/v1/members/invitations", json={"email": joiner.email, "role": role}, headers=headers),
        201,
    )
    await ok(await http.post("/api/v1/invitations/accept", json={"token": invited["token"]}, headers=joiner.headers))


@dataclass
class Footprint:
    """What the person did. `owner` owns the shared organization and stays; `own_org` is the
    person's own organization, which has no other member."""

    http: httpx.AsyncClient
    person: SignedIn
    name: str
    owner: SignedIn
    shared_org: str
    own_org: str
    mfa_secret: str
    api_key: dict[str, Any]
    conversation_id: str
    own_org_conversation_id: str
    owner_conversation_id: str
    document_id: str
    collection_id: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> uuid.UUID:
        return uuid.UUID(self.person.user_id)

    @property
    def needles(self) -> list[str | uuid.UUID]:
        """Everything that identifies the person or repeats their words."""
        return [
            self.user_id,
            self.person.email,
            self.name,
            WORD,
            USER_AGENT,
            IP,
            self.api_key["prefix"],
            uuid.UUID(self.conversation_id),
            uuid.UUID(self.own_org_conversation_id),
        ]


async def leave_footprint(client: httpx.AsyncClient, http: httpx.AsyncClient) -> Footprint:
    """`http` is the person's own client; `client` everyone else's."""
    owner = await register(client, name="Olive Owner")
    owner_collection = await create_collection(client, owner, "Field notes")
    await ingest_samples(client, owner, owner_collection)
    owner_reply = await ok(
        await client.post("/api/v1/chat/send", json={"content": "How long do oak trees live?"}, headers=owner.headers)
    )

    email = f"zebulon-{uuid.uuid4().hex[:8]}@example.com"
    invited = await ok(
        await client.post(
            "/api/v1/members/invitations", json={"email": email, "role": "member"}, headers=owner.headers
        ),
        201,
    )
    person = await register(http, email=email, name=NAME, invitation_token=invited["token"])
    assert person.org_id == owner.org_id
    # A mistyped password: the failed sign-in is audited with the person's IP and user agent.
    assert (await login(http, email, "not-the-password-1")).status_code == 401
    signed_in = await ok(await login(http, email))
    person.access_token = signed_in["access_token"]

    secret = (await ok(await http.post("/api/v1/auth/mfa/setup", headers=person.headers)))["secret"]
    code = pyotp.TOTP(secret).now()
    await ok(await http.post("/api/v1/auth/mfa/enable", json={"code": code}, headers=person.headers))
    api_key = await ok(
        await http.post(
            "/api/v1/api-keys", json={"name": "Zebulon laptop", "scopes": ["documents:read"]}, headers=person.headers
        ),
        201,
    )

    # In the shared organization: a collection and a document of theirs, a conversation with
    # feedback, a question moderation refused, pseudonyms of the conversation in the vault.
    collection_id = await create_collection(http, person, "Marsh notes")
    document_id = await upload(
        http, person.headers, collection_id, "marsh.md", b"# Marsh\n\nBitterns boom at dusk among the reeds.\n",
        **{"Idempotency-Key": "upload-1"},
    )  # fmt: skip
    reply = await ok(await http.post("/api/v1/chat/send", json={"content": QUESTION}, headers=person.headers))
    assert reply["grounded"] is True, reply
    await ok(
        await http.post(
            f"/api/v1/conversations/{reply['conversation_id']}/messages/{reply['message_id']}/feedback",
            json={"rating": "down", "comment": f"{WORD} expected more"},
            headers=person.headers,
        )
    )
    flagged = await http.post("/api/v1/chat/send", json={"content": f"I will kill you, {WORD}"}, headers=person.headers)
    assert flagged.status_code == 422, flagged.text
    anonymized = await ok(
        await http.post(
            "/api/v1/ai/pii/anonymize",
            json={
                "text": f"Write to {email} about it",
                "conversation_id": reply["conversation_id"],
                "operators": {"DEFAULT": {"type": "pseudonymize"}},
            },
            headers=person.headers,
        )
    )
    assert "EMAIL_ADDRESS_1" in anonymized["text"]

    # Their own organization, with nobody else in it: a document about them, a conversation.
    own_org = (await ok(await http.post("/api/v1/orgs", json={"name": f"{NAME}'s lab"}, headers=person.headers), 201))[
        "id"
    ]
    own_headers = as_org(person, own_org)
    own_collection = (
        await ok(await http.post("/api/v1/collections", json={"name": "Diary"}, headers=own_headers), 201)
    )["id"]
    await upload(
        http, own_headers, own_collection, "diary.md",
        f"# Diary of {NAME}\n\n{WORD} days: herons at dawn, {email} for replies.\n".encode(),
    )  # fmt: skip
    own_reply = await ok(
        await http.post("/api/v1/chat/send", json={"content": f"Who wrote about {WORD}?"}, headers=own_headers)
    )
    return Footprint(
        http=http,
        person=person,
        name=NAME,
        owner=owner,
        shared_org=owner.org_id,
        own_org=own_org,
        mfa_secret=secret,
        api_key=api_key,
        conversation_id=reply["conversation_id"],
        own_org_conversation_id=own_reply["conversation_id"],
        owner_conversation_id=owner_reply["conversation_id"],
        document_id=document_id,
        collection_id=collection_id,
        extra={"password_hash_prefix": "$argon2", "refresh_token": signed_in["refresh_token"]},
    )


async def sign_in_again(footprint: Footprint, org_id: str | None = None) -> SignedIn:
    """A new sign-in of the person (their MFA code from the next 30 s step: each code works once)."""
    code = pyotp.TOTP(footprint.mfa_secret).at(time.time(), counter_offset=1)
    extra = {"org_id": org_id} if org_id else {}
    tokens = await ok(await login(footprint.http, footprint.person.email, mfa_code=code, **extra))
    return dataclasses.replace(
        footprint.person, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )


@pytest.fixture
async def footprint(client: httpx.AsyncClient, own_client: httpx.AsyncClient) -> Footprint:
    return await leave_footprint(client, own_client)
