"""One webhook request: the signed JSON envelope POSTed to an endpoint, and what its answer means
for the delivery (succeeded, retry later, or failed for good)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx

import tessera
from tessera.core.notifications.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature_header
from tessera.core.notifications.targets import PrivateTargetRefused, webhook_transport

# Timeouts and rate limits: the receiver may well accept the same request later.
RETRYABLE_STATUSES = frozenset({408, 429})
ERROR_BODY_BYTES = 300
USER_AGENT = f"Tessera-Webhooks/{tessera.__version__}"

Verdict = Literal["succeeded", "retry", "failed"]


@dataclass(frozen=True)
class AttemptResult:
    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (`Retry-After` on a 429 or 503)."""


def envelope(
    *, delivery_id: uuid.UUID, org_id: uuid.UUID, event: str, created_at: datetime, data: dict[str, Any]
) -> bytes:
    """The request body, the same bytes at every attempt (the signature's timestamp changes)."""
    document = {
        "id": str(delivery_id),
        "event": event,
        "created_at": created_at.isoformat(),
        "org_id": str(org_id),
        "data": data,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


async def _error_text(response: httpx.Response) -> str:
    """The start of the answer's body, for the delivery log; never more is read."""
    collected = b""
    async for chunk in response.aiter_bytes():
        collected += chunk
        if len(collected) >= ERROR_BODY_BYTES:
            break
    text = collected[:ERROR_BODY_BYTES].decode("utf-8", "replace").strip()
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")


def judge(status_code: int) -> Verdict:
    if 200 <= status_code < 300:
        return "succeeded"
    if status_code >= 500 or status_code in RETRYABLE_STATUSES:
        return "retry"
    return "failed"  # redirects are not followed, and other 4xx will not change by themselves


async def post_webhook(
    *,
    url: str,
    secret: str,
    event: str,
    delivery_id: uuid.UUID,
    body: bytes,
    timeout_seconds: float,
    allow_private: bool,
) -> AttemptResult:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(delivery_id),
        SIGNATURE_HEADER: signature_header(secret, body, int(time.time())),
    }
    transport = webhook_transport(allow_private=allow_private)
    try:
        # One bound for the whole attempt: httpx's timeout applies to each phase separately.
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(transport=transport, timeout=timeout_seconds, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            verdict = judge(response.status_code)
            error = None if verdict == "succeeded" else await _error_text(response)
            return AttemptResult(verdict, response.status_code, error, _retry_after(response))
    except PrivateTargetRefused as error:
        return AttemptResult("failed", error=f"refused: {error}")
    except TimeoutError:
        return AttemptResult("retry", error=f"timed out after {timeout_seconds:g} s")
    except httpx.TimeoutException as error:
        return AttemptResult("retry", error=f"timed out: {type(error).__name__}")
    except httpx.HTTPError as error:  # connection refused or reset, DNS failure, protocol error
        return AttemptResult("retry", error=f"{type(error).__name__}: {error}"[:500])
