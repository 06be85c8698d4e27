"""Every failure leaves in the shape `{"error": {"code", "message", "details"}}`, with the right status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import select

from tessera.core.auth.models import Organization
from tessera.core.db.session import DbSession, create_engine
from tessera.main import create_app
from tessera.settings import Settings
from tests.factories import register


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    error: dict[str, object] = body["error"]
    return error


class SecretFailure(RuntimeError):
    pass


def _test_routes() -> APIRouter:
    """Routes that exist only in these tests, to reach failures no real route should have."""
    router = APIRouter(prefix="/_test")

    @router.get("/boom")
    async def boom() -> dict[str, str]:
        raise SecretFailure("password=hunter2 leaked in a stack trace")

    @router.post("/clashing-insert")
    async def clashing_insert(session: DbSession, existing_org_id: uuid.UUID, slug: str) -> dict[str, str]:
        # No flush: both INSERTs run at COMMIT, where the duplicate primary key fails.
        session.add(Organization(name="Innocent bystander", slug=slug))
        session.add(Organization(id=existing_org_id, name="Duplicate", slug=f"{slug}-dup"))
        return {"status": "saved"}

    return router


@pytest.fixture
async def test_app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    app.include_router(_test_routes())
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def lenient_client(test_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Returns the 500 response the server sends instead of re-raising the app's exception."""
    transport = httpx.ASGITransport(app=test_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_unknown_route_is_404_in_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")

    error = assert_error_shape(response, 404, "not_found")
    assert error["details"] is None


async def test_wrong_method_is_405_with_allow_header(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health")

    assert_error_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


async def test_malformed_json_is_422_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b'{"email": "ada@example.com", ', headers={"content-type": "application/json"}
    )

    error = assert_error_shape(response, 422, "validation_error")
    assert isinstance(error["details"], list)
    assert error["details"][0]["type"] == "json_invalid"


async def test_missing_field_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "ada@example.com"})

    error = assert_error_shape(response, 422, "validation_error")
    assert error["message"] == "password: Field required"
    assert error["details"] == [{"loc": ["body", "password"], "msg": "Field required", "type": "missing"}]


async def test_unexpected_exception_is_500_with_request_id_and_no_internals(
    lenient_client: httpx.AsyncClient,
) -> None:
    response = await lenient_client.get("/_test/boom")

    error = assert_error_shape(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "SecretFailure" not in response.text
    request_id = response.headers["x-request-id"]
    assert error["details"] == {"request_id": request_id}
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unexpected_exception_keeps_the_callers_request_id(lenient_client: httpx.AsyncClient) -> None:
    response = await lenient_client.get("/_test/boom", headers={"X-Request-Id": "trace-42"})

    error = assert_error_shape(response, 500, "internal_error")
    assert error["details"] == {"request_id": "trace-42"}
    assert response.headers["x-request-id"] == "trace-42"


async def test_failing_commit_is_a_5xx_and_saves_nothing(lenient_client: httpx.AsyncClient, settings: Settings) -> None:
    owner = await register(lenient_client)
    slug = f"bystander-{uuid.uuid4().hex[:8]}"

    response = await lenient_client.post(
        "/_test/clashing-insert", params={"existing_org_id": owner.org_id, "slug": slug}
    )

    assert response.status_code >= 500, response.text
    assert_error_shape(response, 500, "internal_error")
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            saved = (
                await connection.execute(select(Organization.slug).where(Organization.slug.like(f"{slug}%")))
            ).all()
            original = (
                await connection.execute(select(Organization.name).where(Organization.id == uuid.UUID(owner.org_id)))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert saved == []
    assert original != "Duplicate"
