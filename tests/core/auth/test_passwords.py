from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from tessera.core.auth import passwords

GOOD = "Analytical-Engine-1843"


class TestPasswordProblems:
    def test_a_good_password_has_no_problems(self) -> None:
        assert passwords.password_problems(GOOD, min_length=10, email="ada@example.com", name="Ada Lovelace") == []

    @pytest.mark.parametrize(
        ("password", "problem"),
        [
            ("Short-1", "must be at least 10 characters"),
            ("Ab1-" * 65, "must be at most 256 characters"),
            ("password123", "is too common or too simple"),
            ("PASSWORD123", "is too common or too simple"),
            ("passw0rd", "is too common or too simple"),
            ("1111111111111", "is too common or too simple"),
            ("abcabcabcabc", "is too common or too simple"),
        ],
    )
    def test_problem_is_reported(self, password: str, problem: str) -> None:
        assert problem in passwords.password_problems(password, min_length=10)

    def test_the_minimum_length_is_configurable(self) -> None:
        assert passwords.password_problems("Analytical-1", min_length=12) == []
        assert passwords.password_problems("Analytical-1", min_length=13) == ["must be at least 13 characters"]

    def test_the_email_name_and_the_users_name_are_not_allowed_inside(self) -> None:
        problems = passwords.password_problems(
            "xx-LOVELACE-ada lovelace-xx", min_length=10, email="lovelace@example.com", name="Ada Lovelace"
        )

        assert "must not contain your e-mail name" in problems
        assert "must not contain your name" in problems

    def test_short_email_names_and_names_are_not_held_against_a_password(self) -> None:
        assert passwords.password_problems("Al-Analytical-Eng", min_length=10, email="al@example.com", name="Al") == []

    def test_every_problem_is_reported_at_once(self) -> None:
        assert len(passwords.password_problems("aaaa", min_length=10, email="aaaa@example.com")) == 3


@pytest.fixture(autouse=True)
def production_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parameters shipped (tests/conftest.py lowers them for the rest of the suite)."""
    monkeypatch.setattr(passwords, "_hasher", PasswordHasher())


class TestHashing:
    async def test_hash_is_argon2id_salted_and_verifies(self) -> None:
        first = await passwords.hash_password(GOOD)
        second = await passwords.hash_password(GOOD)

        assert first.startswith("$argon2id$")
        assert first != second
        assert GOOD not in first
        assert await passwords.verify_password(first, GOOD)
        assert await passwords.verify_password(second, GOOD)
        assert not passwords.needs_rehash(first)

    async def test_wrong_password_does_not_verify(self) -> None:
        stored = passwords.hash_password_sync(GOOD)

        for attempt in ("analytical-engine-1843", GOOD + " "):
            assert not await passwords.verify_password(stored, attempt), attempt

    async def test_unicode_passwords_round_trip(self) -> None:
        stored = await passwords.hash_password("Ünïcødé-パスワード-🔐")

        assert await passwords.verify_password(stored, "Ünïcødé-パスワード-🔐")
        assert not await passwords.verify_password(stored, "Unicode-パスワード-🔐")

    @pytest.mark.parametrize(
        "stored", [None, "", "not-a-hash", "$2b$12$abcdefghijklmnopqrstuv", "$argon2id$v=19$garbage"]
    )
    async def test_a_missing_or_foreign_hash_never_verifies(self, stored: str | None) -> None:
        assert not await passwords.verify_password(stored, GOOD)

    def test_hashes_with_weaker_parameters_need_a_rehash(self) -> None:
        weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)

        assert passwords.needs_rehash(weak)
