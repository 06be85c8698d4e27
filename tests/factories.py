"""Helpers that create users and organizations through the real API, and rows through services."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_PASSWORD = "Analytical-Engine-1843"
_counter = itertools.count(1)


@dataclass
class SignedIn:
    email: str
    password: str
    user_id: str
    org_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    name: str = "Test User",
    **extra: Any,
) -> SignedIn:
    """Register through the API (a new user owning a new organization) and return their tokens."""
    email = email or f"user{next(_counter)}@example.com"
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, "name": name, **extra}
    )
    assert response.status_code == 201, response.text
    tokens = response.json()
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    body = me.json()
    return SignedIn(
        email=email,
        password=password,
        user_id=body["user"]["id"],
        org_id=body["org_id"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


async def add_member(client: httpx.AsyncClient, admin: SignedIn, role: str) -> SignedIn:
    """A new user who joins `admin`'s organization with `role` through an invitation."""
    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    invited = await client.post(
        "/api/v1/members/invitations", json={"email": email, "role": role}, headers=admin.headers
    )
    assert invited.status_code == 201, invited.text
    return await register(client, email=email, invitation_token=invited.json()["token"])


async def login(
    client: httpx.AsyncClient, email: str, password: str = DEFAULT_PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password, **extra})


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def create_collection(client: httpx.AsyncClient, user: SignedIn, name: str = "Guides", **extra: Any) -> str:
    """A collection through the API; returns its id."""
    response = await client.post("/api/v1/collections", json={"name": name, **extra}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def ingest_document(
    client: httpx.AsyncClient, user: SignedIn, collection_id: str, name: str, content: bytes, metadata: str = "{}"
) -> str:
    """Upload one file through the API and run the pipeline's steps on it in this process; returns
    the document id once it is `ready`."""
    from tessera.core.documents.pipeline import process_inline

    response = await client.post(
        "/api/v1/documents",
        data={"collection_id": collection_id, "metadata": metadata},
        files={"files": (name, content)},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    document_id = response.json()["documents"][0]["id"]
    assert await process_inline(uuid.UUID(document_id), 1) == "ready"
    return str(document_id)


# Three short Markdown documents on unrelated topics, each with a heading path: search tests
# can tell which document a query should find in every mode.
SAMPLE_DOCS = {
    "herons.md": b"# Birds of the marsh\n\n## Herons\n\nGrey herons stand motionless in shallow water, waiting "
    b"to spear fish and frogs with a quick stab of the beak.\n",
    "oaks.md": b"# Trees\n\n## Oaks\n\nOak trees grow slowly and live for centuries; their acorns feed jays, "
    b"squirrels and wild boar through the winter.\n",
    "engines.md": b"# Machines\n\n## Steam engines\n\nA steam engine turns the pressure of boiling water into "
    b"motion through pistons, valves and a heavy flywheel.\n",
}


async def ingest_samples(client: httpx.AsyncClient, user: SignedIn, collection_id: str) -> dict[str, str]:
    """SAMPLE_DOCS ingested into the collection: file name → document id."""
    return {
        name: await ingest_document(client, user, collection_id, name, content) for name, content in SAMPLE_DOCS.items()
    }
