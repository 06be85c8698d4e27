"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core.errors import PayloadTooLarge
from tessera.core.handlers import INTERNAL_ERROR_MESSAGE, error_body
from tessera.core.observability.logging import get_logger
from tessera.core.observability.metrics import Metrics

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The docs pages load their own scripts and styles from /static-docs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'"
)
DOCS_PATHS = ("/docs", "/redoc", "/static-docs")

access_log = get_logger("tessera.access")


class RequestContextMiddleware:
    """Request id, access log line, metrics, security headers and rate-limit headers."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None, hsts: bool) -> None:
        self.app = app
        self.metrics = metrics
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, REQUEST_ID_HEADER)
        request_id = incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        path: str = scope["path"]
        docs = _is_docs_path(path)

        status_sent: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status = status_sent = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else API_CSP)
                if self.hsts:
                    headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
                for name, value in scope["state"].get("rate_limit_headers", {}).items():
                    headers.setdefault(name, value)
            await send(message)

        if self.metrics:
            self.metrics.in_progress.inc()
        try:
            if _has_nul(scope):
                # PostgreSQL refuses NUL in text: a %00 that reached a query would be a 500.
                await _send_error(scope, send_wrapper, 400, "bad_request", "The URL must not contain NUL characters")
            else:
                await self.app(scope, receive, send_wrapper)
        except Exception:
            # Starlette renders unhandled errors outside every middleware, so that 500 would lack
            # the request id and security headers. Send it from here; the error handler still logs
            # the exception and the server still sees it re-raised.
            if status_sent is None:
                await _send_error(
                    scope, send_wrapper, 500, "internal_error", INTERNAL_ERROR_MESSAGE, {"request_id": request_id}
                )
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            if self.metrics:
                self.metrics.in_progress.dec()
                self.metrics.requests.labels(scope["method"], route_path, str(status)).inc()
                self.metrics.latency.labels(scope["method"], route_path).observe(elapsed)
            principal = scope["state"].get("principal")
            access_log.info(
                "request",
                method=scope["method"],
                path=path,
                route=route_path,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=str(principal.user_id) if principal else None,
                org_id=str(principal.org_id) if principal and principal.org_id else None,
            )
            structlog.contextvars.unbind_contextvars("request_id")


class BodySizeLimitMiddleware:
    """Refuse bodies over the limit with 413, by Content-Length up front or by counting a stream."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Exact paths (upload routes) that accept more; everything else, including JSON routes
        # below an upload path, keeps the small limit.
        self.overrides = {path.rstrip("/"): limit for path, limit in (overrides or {}).items()}

    def _limit_for(self, path: str) -> int:
        return self.overrides.get(path.rstrip("/"), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        declared = _header(scope, "content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(scope, send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(declared) > limit:
                await _send_too_large(scope, send, limit)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing and reaches the handler.
                    raise HTTPException(413, f"The request body is larger than {limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as error:
            if error.status_code != 413 or response_started:
                raise
            if not response_started:
                await _send_too_large(scope, send, limit)


def _has_nul(scope: Scope) -> bool:
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


def _is_docs_path(path: str) -> bool:
    # By whole path segment: "/docsearch" is not the docs page and keeps the strict policy.
    return any(path == prefix or path.startswith(prefix + "/") for prefix in DOCS_PATHS)


def _header(scope: Scope, name: str) -> str | None:
    raw = name.encode()
    for key, value in scope["headers"]:
        if key == raw:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _send_too_large(scope: Scope, send: Send, limit: int) -> None:
    await _send_error(scope, send, 413, PayloadTooLarge.code, f"The request body is larger than {limit} bytes")


async def _send_error(scope: Scope, send: Send, status: int, code: str, message: str, details: Any = None) -> None:
    body = json.dumps(error_body(code, message, details)).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body})
