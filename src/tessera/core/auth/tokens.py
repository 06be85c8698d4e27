"""Access tokens (JWT, HS256) and opaque secrets (refresh tokens, API keys, invitations)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from tessera.core.auth.errors import InvalidToken, TokenExpired
from tessera.core.db.base import utcnow

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"
MFA_CHALLENGE_TYPE = "mfa_challenge"
API_KEY_PREFIX = "tsk_"


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    org_id: uuid.UUID | None
    session_id: uuid.UUID
    expires_at: datetime


def encode_access_token(
    *, key: str, issuer: str, user_id: uuid.UUID, org_id: uuid.UUID | None, session_id: uuid.UUID, ttl_seconds: int
) -> str:
    now = utcnow()
    claims = {
        "iss": issuer,
        "sub": str(user_id),
        "org": str(org_id) if org_id else None,
        "sid": str(session_id),
        "typ": ACCESS_TOKEN_TYPE,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def _decode(token: str, *, key: str, issuer: str, token_type: str) -> dict[str, object]:
    try:
        # An explicit algorithm list rejects `alg=none` and algorithm-confusion tokens.
        claims: dict[str, object] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "iss", "typ"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as error:
        raise TokenExpired("The token has expired") from error
    except jwt.PyJWTError as error:
        raise InvalidToken("The token is not valid") from error
    if claims.get("typ") != token_type:
        raise InvalidToken("The token is not valid")
    return claims


def decode_access_token(token: str, *, key: str, issuer: str) -> AccessClaims:
    claims = _decode(token, key=key, issuer=issuer, token_type=ACCESS_TOKEN_TYPE)
    try:
        org = claims.get("org")
        return AccessClaims(
            user_id=uuid.UUID(str(claims["sub"])),
            org_id=uuid.UUID(str(org)) if org else None,
            session_id=uuid.UUID(str(claims["sid"])),
            expires_at=datetime.fromtimestamp(float(str(claims["exp"])), tz=utcnow().tzinfo),
        )
    except (KeyError, ValueError, OverflowError) as error:
        # OverflowError: an `exp` beyond what datetime can represent.
        raise InvalidToken("The token is not valid") from error


def encode_mfa_challenge(*, key: str, issuer: str, user_id: uuid.UUID, ttl_seconds: int) -> str:
    now = utcnow()
    claims = {
        "iss": issuer,
        "sub": str(user_id),
        "typ": MFA_CHALLENGE_TYPE,
        "iat": now,
        "exp": now + timedelta(seconds=ttl_seconds),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_mfa_challenge(token: str, *, key: str, issuer: str) -> uuid.UUID:
    claims = _decode(token, key=key, issuer=issuer, token_type=MFA_CHALLENGE_TYPE)
    try:
        return uuid.UUID(str(claims["sub"]))
    except ValueError as error:
        raise InvalidToken("The token is not valid") from error


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 is enough for high-entropy random secrets (unlike passwords, they cannot be guessed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), expected_hash)


def secrets_match_hash(secret_hash: str, expected_hash: str) -> bool:
    return hmac.compare_digest(secret_hash, expected_hash)


def new_api_key() -> tuple[str, str]:
    """Returns (full key, lookup prefix). The prefix is public; the rest is shown once."""
    prefix = API_KEY_PREFIX + secrets.token_hex(6)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def api_key_prefix(key: str) -> str | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, separator, rest = key.partition("_")[2].partition("_")
    if not separator or not rest or len(prefix) != 12:
        return None
    return API_KEY_PREFIX + prefix
