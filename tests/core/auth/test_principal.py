"""Who is calling: every kind of bad credential is a 401 (never a 500, never anonymous)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import delete, update
from sqlalchemy.sql import Executable

from tessera.core.auth import tokens
from tessera.core.auth.models import ApiKey, AuthSession, User
from tessera.core.db.base import utcnow
from tests.conftest import TEST_SECRET
from tests.factories import SignedIn, error_code, register

ME = "/api/v1/auth/me"
SWITCH_ORG = "/api/v1/auth/switch-org"
OTHER_SECRET = "another-secret-key-that-is-long-enough-9876543210"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: bytes, *, alg: str = "HS256", key: str = TEST_SECRET) -> str:
    """A JWT assembled by hand, so the payload can be anything at all."""
    signing_input = f"{b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64(payload)}"
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(key.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(signature)}"


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def reissue(token: str, key: str = TEST_SECRET, **changes: Any) -> str:
    """The same claims with `changes` applied (None removes a claim), signed again."""
    claims = claims_of(token)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def execute(app: FastAPI, statement: Executable) -> None:
    async with app.state.sessionmaker() as session:
        await session.execute(statement)
        await session.commit()


def assert_unauthenticated(response: httpx.Response, code: str, case: str) -> None:
    assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert error["code"] == code, f"{case}: {error}"
    assert error["message"], case
    assert "details" in error, case
    assert response.headers["WWW-Authenticate"] == "Bearer", case
    assert "user" not in response.json(), case


async def test_bad_credentials_are_refused_with_401(client: httpx.AsyncClient) -> None:
    user = await register(client)
    other = await register(client)
    token = user.access_token
    claims = claims_of(token)
    header, payload, signature = token.split(".")
    now = int(utcnow().timestamp())
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_payload = b64(json.dumps(claims).encode())
    mfa_challenge = tokens.encode_mfa_challenge(
        key=TEST_SECRET, issuer="tessera", user_id=uuid.UUID(user.user_id), ttl_seconds=300
    )
    cases: dict[str, tuple[dict[str, str], str]] = {
        "no credentials": ({}, "not_authenticated"),
        "basic auth": ({"Authorization": "Basic dXNlcjpwYXNz"}, "not_authenticated"),
        "bearer without a token": ({"Authorization": "Bearer"}, "invalid_token"),
        "bearer with a blank token": ({"Authorization": "Bearer "}, "invalid_token"),
        "garbage": (bearer("garbage"), "invalid_token"),
        "three garbage parts": (bearer("a.b.c"), "invalid_token"),
        "header only": (bearer(header), "invalid_token"),
        "no signature": (bearer(f"{header}.{payload}."), "invalid_token"),
        "other key": (bearer(reissue(token, key=OTHER_SECRET)), "invalid_token"),
        "alg none": (bearer(f"{none_header}.{none_payload}."), "invalid_token"),
        "alg none with the real signature": (bearer(f"{none_header}.{none_payload}.{signature}"), "invalid_token"),
        "alg HS512": (bearer(signed(json.dumps(claims).encode(), alg="HS512")), "invalid_token"),
        "payload of another user": (
            bearer(f"{header}.{other.access_token.split('.')[1]}.{signature}"),
            "invalid_token",
        ),
        "expired": (bearer(reissue(token, iat=now - 3600, exp=now - 600)), "token_expired"),
        "mfa challenge": (bearer(mfa_challenge), "invalid_token"),
        "refresh token": (bearer(user.refresh_token), "invalid_token"),
        "typ refresh": (bearer(reissue(token, typ="refresh")), "invalid_token"),
        "no typ": (bearer(reissue(token, typ=None)), "invalid_token"),
        "other issuer": (bearer(reissue(token, iss="someone-else")), "invalid_token"),
        "no issuer": (bearer(reissue(token, iss=None)), "invalid_token"),
        "no exp": (bearer(reissue(token, exp=None)), "invalid_token"),
        "no iat": (bearer(reissue(token, iat=None)), "invalid_token"),
        "exp not a number": (bearer(reissue(token, exp="tomorrow")), "invalid_token"),
        "exp beyond any calendar": (bearer(reissue(token, exp=10**20)), "invalid_token"),
        "sub not a uuid": (bearer(reissue(token, sub="not-a-uuid")), "invalid_token"),
        "sub a number": (bearer(reissue(token, sub=12345)), "invalid_token"),
        "no sub": (bearer(reissue(token, sub=None)), "invalid_token"),
        "sid not a uuid": (bearer(reissue(token, sid="not-a-uuid")), "invalid_token"),
        "sid a list": (bearer(reissue(token, sid=[claims["sid"]])), "invalid_token"),
        "no sid": (bearer(reissue(token, sid=None)), "invalid_token"),
        "org not a uuid": (bearer(reissue(token, org="acme")), "invalid_token"),
        "unknown user": (bearer(reissue(token, sub=str(uuid.uuid4()))), "invalid_token"),
        "unknown session": (bearer(reissue(token, sid=str(uuid.uuid4()))), "invalid_token"),
        "another user's session": (bearer(reissue(token, sid=claims_of(other.access_token)["sid"])), "invalid_token"),
        "payload a json array": (bearer(signed(b"[1, 2]")), "invalid_token"),
        "payload not json": (bearer(signed(b"\xff\xfe")), "invalid_token"),
        "header a json array": (bearer(f"{b64(b'[1]')}.{payload}.{signature}"), "invalid_token"),
        "huge token": (bearer("x" * 100_000), "invalid_token"),
        "api key garbage as bearer": (bearer("tsk_garbage"), "invalid_token"),
        "api key shaped but unknown": (bearer("tsk_0123456789ab_" + "A" * 43), "invalid_token"),
        "x-api-key garbage": ({"X-API-Key": "tsk_garbage"}, "invalid_token"),
        "x-api-key without the prefix": ({"X-API-Key": "not-a-key"}, "invalid_token"),
        "x-api-key with a jwt": ({"X-API-Key": token}, "invalid_token"),
    }
    for case, (headers, code) in cases.items():
        response = await client.get(ME, headers=headers)

        assert_unauthenticated(response, code, case)
    non_ascii = await client.get(ME, headers=[(b"Authorization", b"Bearer \xc3\xa9\xff")])
    assert_unauthenticated(non_ascii, "invalid_token", "non-ascii bearer")
    # The genuine token still works after all that, and so do its claims re-signed for a minute:
    # the refusals above came from what was changed.
    assert (await client.get(ME, headers=user.headers)).status_code == 200
    fresh = tokens.encode_access_token(
        key=TEST_SECRET, issuer="tessera", user_id=uuid.UUID(user.user_id), org_id=uuid.UUID(user.org_id),
        session_id=uuid.UUID(claims["sid"]), ttl_seconds=60,
    )  # fmt: skip
    expired = tokens.encode_access_token(
        key=TEST_SECRET, issuer="tessera", user_id=uuid.UUID(user.user_id), org_id=uuid.UUID(user.org_id),
        session_id=uuid.UUID(claims["sid"]), ttl_seconds=-60,
    )  # fmt: skip
    assert (await client.get(ME, headers=bearer(fresh))).status_code == 200
    assert_unauthenticated(await client.get(ME, headers=bearer(expired)), "token_expired", "expired by ttl")


async def test_tokens_of_an_ended_sign_in_are_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    logged_out = await register(client)
    deleted_session = await register(client)
    expired_session = await register(client)
    deleted_user = await register(client)

    assert (await client.post("/api/v1/auth/logout", headers=logged_out.headers)).status_code == 204
    await execute(app, delete(AuthSession).where(AuthSession.user_id == uuid.UUID(deleted_session.user_id)))
    await execute(
        app,
        update(AuthSession)
        .where(AuthSession.user_id == uuid.UUID(expired_session.user_id))
        .values(expires_at=utcnow() - timedelta(seconds=1)),
    )
    await execute(app, delete(User).where(User.id == uuid.UUID(deleted_user.user_id)))

    cases: dict[str, tuple[SignedIn, str]] = {
        "logged out": (logged_out, "invalid_token"),
        "session deleted": (deleted_session, "invalid_token"),
        "session expired": (expired_session, "token_expired"),
        "user deleted": (deleted_user, "invalid_token"),
    }
    for case, (user, code) in cases.items():
        assert_unauthenticated(await client.get(ME, headers=user.headers), code, case)
        refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": user.refresh_token})
        assert refreshed.status_code == 401, case


async def test_x_org_id_selects_one_of_your_organizations(client: httpx.AsyncClient) -> None:
    user = await register(client)
    stranger = await register(client)

    own = await client.get(ME, headers={**user.headers, "X-Org-Id": user.org_id})
    foreign = await client.get(ME, headers={**user.headers, "X-Org-Id": stranger.org_id})
    unknown = await client.get(ME, headers={**user.headers, "X-Org-Id": str(uuid.uuid4())})

    assert own.status_code == 200
    assert own.json()["org_id"] == user.org_id
    for response in (foreign, unknown):
        assert response.status_code == 404
        assert error_code(response) == "organization_not_found"
    for raw in ("not-a-uuid", "1234", "' OR 1=1 --", stranger.org_id + "0"):
        response = await client.get(ME, headers={**user.headers, "X-Org-Id": raw})
        assert response.status_code == 422, raw
        assert error_code(response) == "invalid_input"


async def test_an_api_key_acts_for_its_creator_within_its_scopes(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await register(client)
    stranger = await register(client)
    created = await client.post(
        "/api/v1/api-keys", headers=user.headers, json={"name": "CI", "scopes": ["documents:read"]}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]

    for headers in ({"X-API-Key": key}, bearer(key)):
        me = await client.get(ME, headers=headers)
        assert me.status_code == 200, me.text
        assert (me.json()["auth_method"], me.json()["scopes"]) == ("api_key", ["documents:read"])
        assert (me.json()["user"]["id"], me.json()["org_id"]) == (user.user_id, user.org_id)
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert_unauthenticated(await client.get(ME, headers={"X-API-Key": tampered}), "invalid_token", "tampered key")
    # A bad key next to a good bearer token is still a bad credential, not a fallback.
    assert_unauthenticated(
        await client.get(ME, headers={**user.headers, "X-API-Key": "tsk_garbage"}), "invalid_token", "mixed"
    )
    foreign = await client.get(ME, headers={"X-API-Key": key, "X-Org-Id": stranger.org_id})
    assert (foreign.status_code, error_code(foreign)) == (404, "organization_not_found")
    switched = await client.post(SWITCH_ORG, headers={"X-API-Key": key}, json={"org_id": user.org_id})
    assert switched.status_code == 401
    await execute(app, update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert_unauthenticated(await client.get(ME, headers={"X-API-Key": key}), "token_expired", "expired key")
    await execute(app, update(ApiKey).values(expires_at=None))
    assert (await client.delete(f"/api/v1/api-keys/{key_id}", headers=user.headers)).status_code == 204
    assert_unauthenticated(await client.get(ME, headers={"X-API-Key": key}), "invalid_token", "revoked key")
