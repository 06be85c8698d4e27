"""Webhook signatures, in Stripe's scheme: `X-Tessera-Signature: t=<unix seconds>,v1=<hex>`, where the
hex is HMAC-SHA256 over `<t>.<raw body>` keyed with the endpoint's secret. The timestamp lets a
receiver refuse replays; `verify_signature` is what a Python receiver needs (docs/notifications.md)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

EVENT_HEADER = "X-Tessera-Event"
DELIVERY_HEADER = "X-Tessera-Delivery"
SIGNATURE_HEADER = "X-Tessera-Signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """256 random bits; the whole string, prefix included, is the HMAC key."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """Whether `header` (the `X-Tessera-Signature` value) signs `body` (the raw request body, before
    any JSON parsing) with `secret`, at a time within `tolerance_seconds` of `now` (default: the
    clock). Any `v1` entry may match, so a header may carry several signatures."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body)
    # Constant-time comparison: a timing difference would leak the expected digest byte by byte.
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
