"""Request ids, security headers, the offline docs page, CORS and the request body limit."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.core.observability.middleware import API_CSP
from tessera.main import create_app
from tessera.settings import Settings
from tests.conftest import test_settings as make_settings
from tests.factories import DEFAULT_PASSWORD

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
ALLOWED_ORIGIN = "https://app.example.com"
BODY_LIMIT = 1_024


@asynccontextmanager
async def serve(tmp_path: Path, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app for behaviour decided before any database work (its SQLite file is never opened)."""
    settings = make_settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}", data_dir=tmp_path, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(tmp_path) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}


class TestRequestId:
    async def test_every_response_carries_a_fresh_request_id(self, http: httpx.AsyncClient) -> None:
        first = await http.get("/health")
        second = await http.get("/no-such-page")

        assert GENERATED_ID.match(first.headers["x-request-id"])
        assert GENERATED_ID.match(second.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    @pytest.mark.parametrize("given", ["abc-123", "trace.7:span_9", "x" * 64, "0af7651916cd43dd8448eb211c80319c"])
    async def test_valid_incoming_request_id_is_kept(self, http: httpx.AsyncClient, given: str) -> None:
        response = await http.get("/health", headers={"X-Request-Id": given})

        assert response.headers["x-request-id"] == given

    @pytest.mark.parametrize("given", ["x" * 65, "has space", "<script>", "a/b", "new\\nline", ""])
    async def test_invalid_incoming_request_id_is_replaced(self, http: httpx.AsyncClient, given: str) -> None:
        response = await http.get("/health", headers={"X-Request-Id": given})

        assert response.headers["x-request-id"] != given
        assert GENERATED_ID.match(response.headers["x-request-id"])

    async def test_access_log_line_names_request_id_route_and_status(
        self, tmp_path: Path, capfd: pytest.CaptureFixture[str]
    ) -> None:
        async with serve(tmp_path, log_level="INFO") as http:
            await http.get("/health", headers={"X-Request-Id": "log-probe-1"})

        lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]
        access = [line for line in lines if line.get("event") == "request" and line.get("request_id") == "log-probe-1"]
        assert len(access) == 1, lines
        assert access[0]["route"] == "/health"
        assert access[0]["status"] == 200
        assert access[0]["method"] == "GET"


class TestUrlSanity:
    @pytest.mark.parametrize("url", ["/health?q=%00", "/api/v1/api-keys/abc%00def", "/api/v1/audit-events?action=a%00"])
    async def test_nul_in_the_url_is_400(self, http: httpx.AsyncClient, url: str) -> None:
        response = await http.get(url)

        assert_error(response, 400, "bad_request")
        assert "NUL" in response.json()["error"]["message"]
        assert GENERATED_ID.match(response.headers["x-request-id"])


class TestSecurityHeaders:
    async def test_api_responses_carry_strict_headers(self, http: httpx.AsyncClient) -> None:
        for response in (await http.get("/health"), await http.get("/openapi.json"), await http.get("/nope")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cross-origin-opener-policy"] == "same-origin"
            assert "camera=()" in response.headers["permissions-policy"]
            assert response.headers["content-security-policy"] == API_CSP
            assert "strict-transport-security" not in response.headers

    async def test_production_adds_hsts(self, tmp_path: Path) -> None:
        async with serve(tmp_path, environment="production") as http:
            response = await http.get("/health")

        assert response.headers["strict-transport-security"].startswith("max-age=")

    async def test_csp_is_relaxed_for_the_docs_only(self, http: httpx.AsyncClient) -> None:
        docs = await http.get("/docs")
        lookalike = await http.get("/docsearch")

        assert "script-src 'self'" in docs.headers["content-security-policy"]
        assert docs.headers["x-frame-options"] == "DENY"
        assert lookalike.headers["content-security-policy"] == API_CSP


class TestDocsPage:
    async def test_docs_page_loads_its_assets_from_this_server(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/docs")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "/static-docs/swagger-ui-bundle.js" in response.text
        assert "/static-docs/swagger-ui.css" in response.text
        assert "/openapi.json" in response.text
        assert not re.search(r"""(src|href)=["']https?://""", response.text), "the docs page must work offline"

    @pytest.mark.parametrize(
        ("asset", "content_type"),
        [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"), ("favicon-32x32.png", "image/png")],
    )
    async def test_docs_assets_are_served(self, http: httpx.AsyncClient, asset: str, content_type: str) -> None:
        response = await http.get(f"/static-docs/{asset}")

        assert response.status_code == 200
        assert content_type in response.headers["content-type"]
        assert len(response.content) > 100

    async def test_oauth2_redirect_page_is_served(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/docs/oauth2-redirect")

        assert response.status_code == 200
        assert "oauth2" in response.text.lower()


class TestCors:
    @pytest.fixture
    async def cors(self, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
        async with serve(tmp_path, http={"cors_origins": [ALLOWED_ORIGIN]}) as client:
            yield client

    @staticmethod
    def preflight(origin: str) -> dict[str, str]:
        return {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }

    async def test_preflight_from_allowed_origin_is_allowed(self, cors: httpx.AsyncClient) -> None:
        response = await cors.options("/api/v1/auth/login", headers=self.preflight(ALLOWED_ORIGIN))

        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert response.headers["access-control-allow-credentials"] == "true"
        assert "POST" in response.headers["access-control-allow-methods"]
        assert "authorization" in response.headers["access-control-allow-headers"].lower()

    async def test_preflight_from_other_origin_is_refused(self, cors: httpx.AsyncClient) -> None:
        response = await cors.options("/api/v1/auth/login", headers=self.preflight("https://evil.example.com"))

        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers

    async def test_simple_request_from_allowed_origin_exposes_our_headers(self, cors: httpx.AsyncClient) -> None:
        response = await cors.get("/health", headers={"Origin": ALLOWED_ORIGIN})

        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
        assert "retry-after" in exposed

    async def test_simple_request_from_other_origin_gets_no_cors_headers(self, cors: httpx.AsyncClient) -> None:
        response = await cors.get("/health", headers={"Origin": "https://evil.example.com"})

        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers

    async def test_cors_is_off_without_origins(self, http: httpx.AsyncClient) -> None:
        response = await http.options("/api/v1/auth/login", headers=self.preflight(ALLOWED_ORIGIN))

        assert response.status_code == 405
        assert "access-control-allow-origin" not in response.headers


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b" " * piece


def padded_json(payload: dict[str, Any], total: int) -> bytes:
    body = json.dumps(payload).encode()
    assert len(body) <= total
    return body + b" " * (total - len(body))  # trailing whitespace is valid JSON


class TestBodySizeLimit:
    @pytest.fixture
    def settings(self, database_url: str, tmp_path: Path) -> Settings:
        return make_settings(database_url=database_url, data_dir=tmp_path / "data", http={"max_body_bytes": BODY_LIMIT})

    async def test_declared_length_over_the_limit_is_413(self, tmp_path: Path) -> None:
        async with serve(tmp_path, http={"max_body_bytes": BODY_LIMIT}) as http:
            response = await http.post(
                "/api/v1/auth/login",
                content=b"{" + b" " * BODY_LIMIT + b"}",
                headers={"content-type": "application/json"},
            )

        assert_error(response, 413, "payload_too_large")
        assert str(BODY_LIMIT) in response.json()["error"]["message"]
        assert GENERATED_ID.match(response.headers["x-request-id"])
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_streamed_body_over_the_limit_is_413(self, tmp_path: Path) -> None:
        async with serve(tmp_path, http={"max_body_bytes": BODY_LIMIT}) as http:
            request = http.build_request(
                "POST",
                "/api/v1/auth/login",
                content=chunks(BODY_LIMIT * 3),
                headers={"content-type": "application/json"},
            )
            assert "content-length" not in request.headers
            response = await http.send(request)

        assert_error(response, 413, "payload_too_large")
        assert GENERATED_ID.match(response.headers["x-request-id"])

    async def test_body_at_the_limit_passes(self, client: httpx.AsyncClient) -> None:
        body = padded_json({"email": "limit@example.com", "password": DEFAULT_PASSWORD, "name": "Limit"}, BODY_LIMIT)

        response = await client.post(
            "/api/v1/auth/register", content=body, headers={"content-type": "application/json"}
        )

        assert response.status_code == 201, response.text

    async def test_streamed_body_under_the_limit_passes(self, client: httpx.AsyncClient) -> None:
        body = padded_json({"email": "stream@example.com", "password": DEFAULT_PASSWORD, "name": "Stream"}, 900)

        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 100):
                yield body[start : start + 100]

        request = client.build_request(
            "POST", "/api/v1/auth/register", content=stream(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in request.headers

        response = await client.send(request)

        assert response.status_code == 201, response.text

    async def test_non_numeric_content_length_is_400(self, tmp_path: Path) -> None:
        async with serve(tmp_path) as http:
            request = http.build_request("POST", "/api/v1/auth/login", content=b"{}")
            request.headers["content-length"] = "lots"
            response = await http.send(request)

        assert_error(response, 400, "bad_request")
