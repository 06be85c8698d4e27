"""Password hashing (argon2id) and policy."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106 "second recommended option" (64 MiB, 3 passes) is ~60 ms a hash here; that is the cost
# of one sign-in, and hashing runs in a thread so it never stalls the event loop.
_hasher = PasswordHasher()
# Verified against when the e-mail is unknown, so both paths cost the same (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("tessera-timing-equaliser")

COMMON_PASSWORDS = frozenset(
    {
        "password", "password1", "password123", "123456789", "1234567890", "12345678", "qwertyuiop",
        "iloveyou", "admin123", "welcome1", "letmein123", "changeme", "passw0rd", "qwerty123",
        "abc123456", "football", "baseball", "sunshine1", "princess1", "trustno1",
    }
)  # fmt: skip


def password_problems(
    password: str, *, min_length: int, email: str | None = None, name: str | None = None
) -> list[str]:
    """Why a password is not acceptable; empty when it is (NIST SP 800-63B: length, no known-bad ones)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"must be at least {min_length} characters")
    if len(password) > 256:
        problems.append("must be at most 256 characters")
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        problems.append("is too common or too simple")
    if email and email.split("@")[0].lower() in lowered and len(email.split("@")[0]) >= 4:
        problems.append("must not contain your e-mail name")
    if name and len(name) >= 4 and name.lower() in lowered:
        problems.append("must not contain your name")
    return problems


def hash_password_sync(password: str) -> str:
    return _hasher.hash(password)


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-effort check: with no hash (unknown user) a dummy hash is verified and False returned."""
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
