"""TOTP (RFC 6238) and recovery codes."""

from __future__ import annotations

import secrets
import time

import pyotp

from tessera.core.auth.tokens import hash_secret

RECOVERY_CODE_COUNT = 10
# Accept the previous and next 30 s step too: phone clocks drift.
VALID_WINDOW = 1


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, *, last_step: int | None, at: float | None = None) -> int | None:
    """The time step the code belongs to, or None. A step at or before `last_step` is refused (replay)."""
    code = code.strip().replace(" ", "")
    # isascii: str.isdigit() accepts other scripts' digits ("١٢٣٤٥٦"), which compare_digest refuses.
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    current = int(now // totp.interval)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if secrets.compare_digest(totp.generate_otp(step), code) and (last_step is None or step > last_step):
            return step
    return None


def new_recovery_codes() -> tuple[list[str], list[str]]:
    """Returns (codes to show once, their hashes to store). 64 random bits each: SHA-256 suffices."""
    codes = [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(RECOVERY_CODE_COUNT)]
    return codes, [hash_secret(code) for code in codes]


def recovery_code_hash(code: str) -> str:
    return hash_secret(code.strip().lower())
