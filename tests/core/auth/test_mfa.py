from __future__ import annotations

import asyncio
import re
import time
import uuid
from urllib.parse import parse_qs, unquote, urlparse

import httpx
import jwt
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tessera.core.audit.models import AuditEvent
from tessera.core.auth import mfa, tokens
from tessera.core.auth.models import User
from tests.conftest import TEST_SECRET
from tests.factories import DEFAULT_PASSWORD, SignedIn, error_code, login, register

SETUP = "/api/v1/auth/mfa/setup"
ENABLE = "/api/v1/auth/mfa/enable"
VERIFY = "/api/v1/auth/mfa/verify"
DISABLE = "/api/v1/auth/mfa/disable"
RECOVERY_CODES = "/api/v1/auth/mfa/recovery-codes"
ME = "/api/v1/auth/me"
RECOVERY_CODE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{8}$")


def totp(secret: str, steps_ahead: int = 0) -> str:
    """The code an authenticator shows now (or `steps_ahead` 30 s steps later, still inside the window).

    Each code is accepted once: a test uses the current step, then the next one.
    """
    return pyotp.TOTP(secret).at(time.time(), counter_offset=steps_ahead)


def wrong_code(secret: str) -> str:
    valid = {totp(secret, offset) for offset in (-1, 0, 1, 2)}
    return next(code for code in (f"{n:06d}" for n in range(1_000_000)) if code not in valid)


async def turn_on_mfa(client: httpx.AsyncClient, user: SignedIn) -> tuple[str, list[str]]:
    """Set up and enable MFA with the current step's code; returns the secret and recovery codes."""
    setup = await client.post(SETUP, headers=user.headers)
    assert setup.status_code == 200, setup.text
    secret: str = setup.json()["secret"]
    enabled = await client.post(ENABLE, headers=user.headers, json={"code": totp(secret)})
    assert enabled.status_code == 200, enabled.text
    codes: list[str] = enabled.json()["recovery_codes"]
    return secret, codes


async def challenge(client: httpx.AsyncClient, user: SignedIn) -> str:
    response = await login(client, user.email)
    assert response.status_code == 401, response.text
    assert error_code(response) == "mfa_required"
    token: str = response.json()["error"]["details"]["mfa_token"]
    return token


async def session_flags(client: httpx.AsyncClient, access_token: str) -> list[bool]:
    response = await client.get("/api/v1/auth/sessions", headers={"Authorization": f"Bearer {access_token}"})
    return [item["mfa_verified"] for item in response.json() if item["current"]]


async def audit_events(app: FastAPI, action: str) -> list[AuditEvent]:
    async with app.state.sessionmaker() as session:
        return list((await session.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars())


class TestMatchingStep:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    at = 1_800_000_015.0  # the middle of a step
    step = int(at // 30)

    def code_for(self, step: int) -> str:
        return pyotp.TOTP(self.secret).generate_otp(step)

    def test_codes_of_the_current_and_neighbouring_steps_are_accepted(self) -> None:
        for offset in (-1, 0, 1):
            code = self.code_for(self.step + offset)
            assert mfa.matching_step(self.secret, code, last_step=None, at=self.at) == self.step + offset

    def test_codes_outside_the_window_are_refused(self) -> None:
        for offset in (-3, -2, 2, 3):
            code = self.code_for(self.step + offset)
            assert mfa.matching_step(self.secret, code, last_step=None, at=self.at) is None

    def test_a_step_already_used_is_refused(self) -> None:
        code = self.code_for(self.step)

        assert mfa.matching_step(self.secret, code, last_step=self.step, at=self.at) is None
        assert mfa.matching_step(self.secret, code, last_step=self.step + 1, at=self.at) is None
        assert mfa.matching_step(self.secret, code, last_step=self.step - 1, at=self.at) == self.step

    def test_spaces_around_and_inside_the_code_are_ignored(self) -> None:
        code = self.code_for(self.step)

        assert mfa.matching_step(self.secret, f" {code[:3]} {code[3:]} ", last_step=None, at=self.at) == self.step

    @pytest.mark.parametrize(
        "code",
        [
            "",
            "12345",
            "1234567",
            "abcdef",
            "12345a",
            "\u0661\u0662\u0663\u0664\u0665\u0666",
            "\uff11\uff12\uff13\uff14\uff15\uff16",
            "\u00b9\u00b2\u00b3\u2074\u2075\u2076",
            "+12345",
            "-12345",
        ],
    )
    def test_anything_but_six_ascii_digits_is_refused(self, code: str) -> None:
        assert mfa.matching_step(self.secret, code, last_step=None, at=self.at) is None

    def test_a_code_for_another_secret_is_refused(self) -> None:
        other = pyotp.TOTP("KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU").generate_otp(self.step)

        assert mfa.matching_step(self.secret, other, last_step=None, at=self.at) is None


class TestSecretsAndRecoveryCodes:
    def test_new_totp_secrets_are_random_base32(self) -> None:
        secrets = {mfa.new_totp_secret() for _ in range(20)}

        assert len(secrets) == 20
        assert all(re.fullmatch(r"[A-Z2-7]{32}", secret) for secret in secrets)

    def test_provisioning_uri_names_the_issuer_account_and_secret(self) -> None:
        uri = mfa.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", email="ada@example.com", issuer="Tessera")

        parsed = urlparse(uri)
        assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
        assert unquote(parsed.path) == "/Tessera:ada@example.com"
        assert parse_qs(parsed.query) == {"secret": ["JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"], "issuer": ["Tessera"]}

    def test_recovery_codes_are_ten_distinct_codes_stored_as_hashes(self) -> None:
        codes, hashes = mfa.new_recovery_codes()

        assert len(codes) == len(set(codes)) == mfa.RECOVERY_CODE_COUNT == 10
        assert all(RECOVERY_CODE.match(code) for code in codes)
        assert hashes == [mfa.recovery_code_hash(code) for code in codes]
        assert not set(codes) & set(hashes)
        assert mfa.recovery_code_hash(f"  {codes[0].upper()} ") == hashes[0]
        assert mfa.new_recovery_codes()[0] != codes


class TestSetUpAndEnable:
    async def test_mfa_is_set_up_then_enabled_with_a_code(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        for path, body in ((SETUP, None), (ENABLE, {"code": "123456"}), (DISABLE, {"password": DEFAULT_PASSWORD,
                           "code": "123456"}), (RECOVERY_CODES, {"code": "123456"})):  # fmt: skip
            anonymous = await client.post(path, json=body)
            assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated"), path
        user = await register(client)
        before_setup = await client.post(ENABLE, headers=user.headers, json={"code": "123456"})
        assert (before_setup.status_code, error_code(before_setup)) == (409, "mfa_not_set_up")

        setup = await client.post(SETUP, headers=user.headers)

        assert setup.status_code == 200
        assert setup.headers["Cache-Control"] == "no-store"
        secret = setup.json()["secret"]
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        uri = urlparse(setup.json()["otpauth_uri"])
        assert parse_qs(uri.query) == {"secret": [secret], "issuer": ["Tessera"]}
        assert user.email in unquote(uri.path)
        for bad in (wrong_code(secret), "abcdef"):
            refused = await client.post(ENABLE, headers=user.headers, json={"code": bad})
            assert (refused.status_code, error_code(refused)) == (401, "invalid_mfa_code"), bad
        too_short = await client.post(ENABLE, headers=user.headers, json={"code": "12345"})
        assert (too_short.status_code, error_code(too_short)) == (422, "validation_error")
        assert (await client.get(ME, headers=user.headers)).json()["user"]["mfa_enabled"] is False

        enabled = await client.post(ENABLE, headers=user.headers, json={"code": totp(secret)})

        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["enabled"] is True
        assert enabled.headers["Cache-Control"] == "no-store"
        codes = enabled.json()["recovery_codes"]
        assert len(codes) == len(set(codes)) == 10
        assert all(RECOVERY_CODE.match(code) for code in codes)
        assert (await client.get(ME, headers=user.headers)).json()["user"]["mfa_enabled"] is True
        async with app.state.sessionmaker() as session:
            stored = (await session.execute(select(User).where(User.email == user.email))).scalar_one()
        assert stored.mfa_secret == secret
        assert len(stored.mfa_recovery_codes) == 10
        assert not set(codes) & set(stored.mfa_recovery_codes)
        assert len(await audit_events(app, "auth.mfa_enabled")) == 1
        # Once on, it cannot be enabled again or silently given a new secret.
        again = await client.post(ENABLE, headers=user.headers, json={"code": totp(secret, 1)})
        assert (again.status_code, error_code(again)) == (409, "mfa_already_enabled")
        new_secret = await client.post(SETUP, headers=user.headers)
        assert (new_secret.status_code, error_code(new_secret)) == (409, "mfa_already_enabled")


class TestSignInWithMfa:
    async def test_login_needs_the_code_and_refuses_a_replayed_one(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        secret, _ = await turn_on_mfa(client, user)

        without_code = await login(client, user.email)

        assert without_code.status_code == 401
        error = without_code.json()["error"]
        assert error["code"] == "mfa_required"
        assert "access_token" not in without_code.text
        mfa_token = error["details"]["mfa_token"]
        assert jwt.decode(mfa_token, options={"verify_signature": False})["typ"] == "mfa_challenge"
        assert len((await client.get("/api/v1/auth/sessions", headers=user.headers)).json()) == 1
        # The password is checked first: a wrong one says nothing about MFA.
        wrong_password = await login(client, user.email, "Difference-Engine-1822")
        assert error_code(wrong_password) == "invalid_credentials"
        assert "mfa_token" not in wrong_password.text
        wrong = await login(client, user.email, mfa_code=wrong_code(secret))
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_mfa_code")

        code = totp(secret, 1)
        signed_in = await login(client, user.email, mfa_code=code)

        assert signed_in.status_code == 200, signed_in.text
        assert await session_flags(client, signed_in.json()["access_token"]) == [True]
        replayed = await login(client, user.email, mfa_code=code)
        assert (replayed.status_code, error_code(replayed)) == (401, "invalid_mfa_code")
        # Arabic-Indic digits are refused like any wrong code (they once made a 500).
        arabic_indic = await login(client, user.email, mfa_code="\u0661\u0662\u0663\u0664\u0665\u0666")
        assert (arabic_indic.status_code, error_code(arabic_indic)) == (401, "invalid_mfa_code")

    async def test_verify_completes_a_challenge_with_a_code_or_a_recovery_code(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        user = await register(client)
        secret, recovery_codes = await turn_on_mfa(client, user)
        mfa_token = await challenge(client, user)

        code = totp(secret, 1)
        verified = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": code})

        assert verified.status_code == 200, verified.text
        assert verified.headers["Cache-Control"] == "no-store"
        access_token = verified.json()["access_token"]
        assert (await client.get(ME, headers={"Authorization": f"Bearer {access_token}"})).status_code == 200
        assert await session_flags(client, access_token) == [True]
        replayed = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": code})
        assert (replayed.status_code, error_code(replayed)) == (401, "invalid_mfa_code")
        # Each recovery code works once, typed in any case.
        first = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": recovery_codes[0]})
        assert first.status_code == 200, first.text
        reused = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": recovery_codes[0]})
        assert (reused.status_code, error_code(reused)) == (401, "invalid_mfa_code")
        shouted = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": f" {recovery_codes[1].upper()} "})
        assert shouted.status_code == 200, shouted.text
        events = await audit_events(app, "auth.mfa_recovery_code_used")
        assert sorted(event.details["remaining"] for event in events) == [8, 9]
        async with app.state.sessionmaker() as session:
            stored = (await session.execute(select(User).where(User.email == user.email))).scalar_one()
        assert len(stored.mfa_recovery_codes) == 8

    async def test_a_code_raced_by_two_sign_ins_lets_only_one_in(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        secret, recovery_codes = await turn_on_mfa(client, user)
        mfa_token = await challenge(client, user)

        for code in (totp(secret, 1), recovery_codes[0]):
            responses = await asyncio.gather(
                *(client.post(VERIFY, json={"mfa_token": mfa_token, "code": code}) for _ in range(3))
            )

            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200, 401, 401], [response.text for response in responses]

    async def test_verify_refuses_tokens_that_are_not_a_live_challenge(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        secret, _ = await turn_on_mfa(client, user)
        plain = await register(client)
        user_id = uuid.UUID(user.user_id)
        cases = {
            "access token": (user.access_token, "invalid_token"),
            "garbage": ("garbage", "invalid_token"),
            "expired": (
                tokens.encode_mfa_challenge(key=TEST_SECRET, issuer="tessera", user_id=user_id, ttl_seconds=-60),
                "token_expired",
            ),
            "other key": (
                tokens.encode_mfa_challenge(key="k" * 48, issuer="tessera", user_id=user_id, ttl_seconds=60),
                "invalid_token",
            ),
            "other issuer": (
                tokens.encode_mfa_challenge(key=TEST_SECRET, issuer="evil", user_id=user_id, ttl_seconds=60),
                "invalid_token",
            ),
            "user without mfa": (
                tokens.encode_mfa_challenge(
                    key=TEST_SECRET, issuer="tessera", user_id=uuid.UUID(plain.user_id), ttl_seconds=60
                ),
                "invalid_token",
            ),
            "unknown user": (
                tokens.encode_mfa_challenge(key=TEST_SECRET, issuer="tessera", user_id=uuid.uuid4(), ttl_seconds=60),
                "invalid_token",
            ),
        }
        for case, (token, code) in cases.items():
            response = await client.post(VERIFY, json={"mfa_token": token, "code": totp(secret)})
            assert (response.status_code, error_code(response)) == (401, code), f"{case}: {response.text}"
        for body in ({"mfa_token": "x"}, {"code": "123456"}, {"mfa_token": "x", "code": "12"}):
            response = await client.post(VERIFY, json=body)
            assert (response.status_code, error_code(response)) == (422, "validation_error"), body

    async def test_token_form_takes_the_code_as_client_secret(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        secret, recovery_codes = await turn_on_mfa(client, user)
        form = {"username": user.email, "password": DEFAULT_PASSWORD, "grant_type": "password"}

        without_code = await client.post("/api/v1/auth/token", data=form)
        with_code = await client.post("/api/v1/auth/token", data={**form, "client_secret": totp(secret, 1)})
        with_recovery_code = await client.post("/api/v1/auth/token", data={**form, "client_secret": recovery_codes[0]})

        assert (without_code.status_code, error_code(without_code)) == (401, "mfa_required")
        assert with_code.status_code == 200, with_code.text
        assert with_recovery_code.status_code == 200, with_recovery_code.text

    async def test_wrong_codes_count_towards_the_lockout(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        user = await register(client)
        secret, _ = await turn_on_mfa(client, user)
        mfa_token = await challenge(client, user)
        for _ in range(5):  # lockout_threshold
            response = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": wrong_code(secret)})
            assert error_code(response) == "invalid_mfa_code"

        locked = await client.post(VERIFY, json={"mfa_token": mfa_token, "code": totp(secret, 1)})

        assert (locked.status_code, error_code(locked)) == (429, "account_locked")
        assert int(locked.headers["Retry-After"]) >= 1
        assert error_code(await login(client, user.email, mfa_code=totp(secret, 1))) == "account_locked"
        reasons = [event.details["reason"] for event in await audit_events(app, "auth.login_failed")]
        assert reasons == ["bad_mfa_code"] * 5


class TestDisableAndRegenerate:
    async def test_disabling_mfa_needs_the_password_and_a_code(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        user = await register(client)
        not_on = await client.post(DISABLE, headers=user.headers, json={"password": DEFAULT_PASSWORD, "code": "123456"})
        assert (not_on.status_code, error_code(not_on)) == (409, "mfa_not_enabled")
        secret, _ = await turn_on_mfa(client, user)

        wrong_password = await client.post(
            DISABLE, headers=user.headers, json={"password": "Difference-Engine-1822", "code": totp(secret, 1)}
        )
        wrong = await client.post(
            DISABLE, headers=user.headers, json={"password": DEFAULT_PASSWORD, "code": wrong_code(secret)}
        )
        no_code = await client.post(DISABLE, headers=user.headers, json={"password": DEFAULT_PASSWORD})

        assert (wrong_password.status_code, error_code(wrong_password)) == (401, "invalid_credentials")
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_mfa_code")
        assert (no_code.status_code, error_code(no_code)) == (422, "validation_error")
        assert (await client.get(ME, headers=user.headers)).json()["user"]["mfa_enabled"] is True

        disabled = await client.post(
            DISABLE, headers=user.headers, json={"password": DEFAULT_PASSWORD, "code": totp(secret, 1)}
        )

        assert disabled.status_code == 204
        assert (await client.get(ME, headers=user.headers)).json()["user"]["mfa_enabled"] is False
        assert (await login(client, user.email)).status_code == 200
        assert len(await audit_events(app, "auth.mfa_disabled")) == 1
        # A fresh set-up gets a new secret; a recovery code can turn it off too.
        new_secret, recovery_codes = await turn_on_mfa(client, user)
        assert new_secret != secret
        by_recovery_code = await client.post(
            DISABLE, headers=user.headers, json={"password": DEFAULT_PASSWORD, "code": recovery_codes[3]}
        )
        assert by_recovery_code.status_code == 204

    async def test_new_recovery_codes_replace_the_old_ones(self, client: httpx.AsyncClient) -> None:
        user = await register(client)
        not_on = await client.post(RECOVERY_CODES, headers=user.headers, json={"code": "123456"})
        assert (not_on.status_code, error_code(not_on)) == (409, "mfa_not_enabled")
        secret, old_codes = await turn_on_mfa(client, user)
        wrong = await client.post(RECOVERY_CODES, headers=user.headers, json={"code": wrong_code(secret)})
        assert (wrong.status_code, error_code(wrong)) == (401, "invalid_mfa_code")
        # A recovery code cannot mint new recovery codes.
        by_recovery = await client.post(RECOVERY_CODES, headers=user.headers, json={"code": old_codes[0]})
        assert (by_recovery.status_code, error_code(by_recovery)) == (401, "invalid_mfa_code")

        response = await client.post(RECOVERY_CODES, headers=user.headers, json={"code": totp(secret, 1)})

        assert response.status_code == 200, response.text
        new_codes = response.json()["recovery_codes"]
        assert len(set(new_codes)) == 10
        assert not set(new_codes) & set(old_codes)
        old = await login(client, user.email, mfa_code=old_codes[1])
        assert (old.status_code, error_code(old)) == (401, "invalid_mfa_code")
        assert (await login(client, user.email, mfa_code=new_codes[0])).status_code == 200
