from __future__ import annotations

import base64
import json
import re
import uuid

import jwt
import pytest

from tessera.core.auth import tokens
from tessera.core.auth.errors import InvalidToken, TokenExpired
from tests.conftest import TEST_SECRET

ISSUER = "tessera"


def access_token(*, ttl_seconds: int = 60, key: str = TEST_SECRET, org_id: uuid.UUID | None = None) -> str:
    return tokens.encode_access_token(
        key=key, issuer=ISSUER, user_id=USER_ID, org_id=org_id, session_id=SESSION_ID, ttl_seconds=ttl_seconds
    )


USER_ID = uuid.uuid4()
SESSION_ID = uuid.uuid4()
ORG_ID = uuid.uuid4()


class TestAccessTokens:
    def test_access_token_round_trips(self) -> None:
        claims = tokens.decode_access_token(access_token(org_id=ORG_ID), key=TEST_SECRET, issuer=ISSUER)

        assert (claims.user_id, claims.org_id, claims.session_id) == (USER_ID, ORG_ID, SESSION_ID)
        assert claims.expires_at.tzinfo is not None

    def test_access_token_without_an_organization_round_trips(self) -> None:
        claims = tokens.decode_access_token(access_token(), key=TEST_SECRET, issuer=ISSUER)

        assert claims.org_id is None

    def test_access_tokens_are_hs256_and_unique(self) -> None:
        first, second = access_token(), access_token()

        assert first != second
        assert jwt.get_unverified_header(first)["alg"] == "HS256"
        claims = jwt.decode(first, options={"verify_signature": False})
        assert set(claims) == {"iss", "sub", "org", "sid", "typ", "iat", "exp", "jti"}
        assert claims["typ"] == "access"

    def test_expired_access_token_is_refused_after_a_small_leeway(self) -> None:
        tokens.decode_access_token(access_token(ttl_seconds=-2), key=TEST_SECRET, issuer=ISSUER)

        with pytest.raises(TokenExpired):
            tokens.decode_access_token(access_token(ttl_seconds=-30), key=TEST_SECRET, issuer=ISSUER)

    def test_access_token_signed_with_another_key_is_refused(self) -> None:
        with pytest.raises(InvalidToken):
            tokens.decode_access_token(access_token(key="k" * 48), key=TEST_SECRET, issuer=ISSUER)

    def test_access_token_from_another_issuer_is_refused(self) -> None:
        with pytest.raises(InvalidToken):
            tokens.decode_access_token(access_token(), key=TEST_SECRET, issuer="someone-else")

    def test_unsigned_token_is_refused(self) -> None:
        claims = jwt.decode(access_token(), options={"verify_signature": False})
        parts = [json.dumps({"alg": "none", "typ": "JWT"}), json.dumps(claims)]
        unsigned = ".".join(base64.urlsafe_b64encode(part.encode()).rstrip(b"=").decode() for part in parts) + "."

        with pytest.raises(InvalidToken):
            tokens.decode_access_token(unsigned, key=TEST_SECRET, issuer=ISSUER)

    def test_access_and_mfa_challenge_tokens_are_not_interchangeable(self) -> None:
        challenge = tokens.encode_mfa_challenge(key=TEST_SECRET, issuer=ISSUER, user_id=USER_ID, ttl_seconds=60)

        assert tokens.decode_mfa_challenge(challenge, key=TEST_SECRET, issuer=ISSUER) == USER_ID
        with pytest.raises(InvalidToken):
            tokens.decode_access_token(challenge, key=TEST_SECRET, issuer=ISSUER)
        with pytest.raises(InvalidToken):
            tokens.decode_mfa_challenge(access_token(), key=TEST_SECRET, issuer=ISSUER)

    def test_expired_mfa_challenge_is_refused(self) -> None:
        challenge = tokens.encode_mfa_challenge(key=TEST_SECRET, issuer=ISSUER, user_id=USER_ID, ttl_seconds=-60)

        with pytest.raises(TokenExpired):
            tokens.decode_mfa_challenge(challenge, key=TEST_SECRET, issuer=ISSUER)


class TestSecrets:
    def test_new_secrets_are_long_random_and_url_safe(self) -> None:
        secrets = {tokens.new_secret() for _ in range(50)}

        assert len(secrets) == 50
        assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", secret) for secret in secrets)

    def test_secrets_are_stored_as_sha256_and_compared_by_hash(self) -> None:
        secret = tokens.new_secret()
        hashed = tokens.hash_secret(secret)

        assert re.fullmatch(r"[0-9a-f]{64}", hashed)
        assert hashed == tokens.hash_secret(secret)
        assert tokens.secrets_match(secret, hashed)
        assert not tokens.secrets_match(secret + "x", hashed)
        assert tokens.secrets_match_hash(hashed, hashed)
        assert not tokens.secrets_match_hash(tokens.hash_secret("other"), hashed)


class TestApiKeys:
    def test_new_api_key_carries_its_lookup_prefix(self) -> None:
        key, prefix = tokens.new_api_key()

        assert re.fullmatch(r"tsk_[0-9a-f]{12}", prefix)
        assert key.startswith(prefix + "_")
        assert len(key) > len(prefix) + 40
        assert tokens.api_key_prefix(key) == prefix
        assert tokens.new_api_key()[0] != key

    @pytest.mark.parametrize(
        "key",
        ["", "tsk_", "tsk_garbage", "tsk_0123456789ab", "tsk_0123456789ab_", "tsk_0123456789abc_rest",
         "tsk_0123456789a_rest", "xsk_0123456789ab_rest", "TSK_0123456789ab_rest", "eyJhbGciOiJIUzI1NiJ9.e30.x"],
    )  # fmt: skip
    def test_malformed_api_keys_have_no_prefix(self, key: str) -> None:
        assert tokens.api_key_prefix(key) is None
