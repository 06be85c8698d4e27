"""The pseudonym vault on both backends: surrogates consistent within a scope and independent across
scopes and organizations, no plaintext in the table, ciphertexts bound to their row and key, and
two transactions racing on the same scope ending up with the same surrogates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tessera.core.auth.models import Organization
from tessera.core.db.session import create_engine, create_sessionmaker, is_sqlite, unit_of_work
from tessera.core.privacy import vault
from tessera.core.privacy.errors import PiiVaultKeyMismatch
from tessera.core.privacy.models import PiiVaultEntry
from tests.conftest import test_settings as make_settings

SETTINGS = make_settings()
NAMES = ("John Smith", "Mary Jones", "jane@example.com")


async def new_org(session: AsyncSession) -> uuid.UUID:
    org = Organization(name="Vault test", slug=f"vault-{uuid.uuid4().hex[:12]}")
    session.add(org)
    await session.flush()
    return org.id


async def test_same_value_same_surrogate_within_a_scope(session: AsyncSession) -> None:
    keys = vault.org_keys(SETTINGS, await new_org(session))

    first = await vault.pseudonymize(
        session, keys, "case-1",
        [("PERSON", "John Smith"), ("PERSON", "Mary Jones"), ("PERSON", "JOHN  smith"), ("EMAIL_ADDRESS", "j@x.org")],
    )  # fmt: skip
    later = await vault.pseudonymize(session, keys, "case-1", [("PERSON", "Alan Turing"), ("PERSON", "john smith")])

    assert first == {
        ("PERSON", "john smith"): "PERSON_1",
        ("PERSON", "mary jones"): "PERSON_2",
        ("EMAIL_ADDRESS", "j@x.org"): "EMAIL_ADDRESS_1",
    }
    assert later == {("PERSON", "alan turing"): "PERSON_3", ("PERSON", "john smith"): "PERSON_1"}


async def test_scopes_and_organizations_are_independent(session: AsyncSession) -> None:
    alpha, beta = vault.org_keys(SETTINGS, await new_org(session)), vault.org_keys(SETTINGS, await new_org(session))

    await vault.pseudonymize(session, alpha, "one", [("PERSON", "Mary Jones")])
    in_one = await vault.pseudonymize(session, alpha, "one", [("PERSON", "John Smith")])
    in_two = await vault.pseudonymize(session, alpha, "two", [("PERSON", "John Smith")])
    in_beta = await vault.pseudonymize(session, beta, "one", [("PERSON", "John Smith")])

    assert (in_one, in_two, in_beta) == (
        {("PERSON", "john smith"): "PERSON_2"},
        {("PERSON", "john smith"): "PERSON_1"},
        {("PERSON", "john smith"): "PERSON_1"},
    )
    hashes = (await session.execute(sa.text("SELECT original_hash FROM pii_vault_entry"))).scalars().all()
    assert len(hashes) == len(set(hashes))  # the same name in another scope or org does not link
    # Each organization sees only its own entries.
    assert await vault.reveal(session, beta, "one", ["PERSON_1", "PERSON_2"]) == {"PERSON_1": ("PERSON", "John Smith")}
    assert not await vault.scope_exists(session, beta.org_id, "two")


async def test_the_table_holds_no_plaintext(session: AsyncSession) -> None:
    keys = vault.org_keys(SETTINGS, await new_org(session))
    await vault.pseudonymize(session, keys, "raw", [("PERSON", n) for n in NAMES])

    rows = (
        await session.execute(
            sa.text("SELECT * FROM pii_vault_entry WHERE org_id = :org"),
            {"org": keys.org_id.hex if is_sqlite(session) else keys.org_id},
        )
    ).all()

    assert len(rows) == len(NAMES)
    dumped = repr(rows).casefold()
    raw = b"".join(bytes(value) for row in rows for value in row if isinstance(value, bytes | memoryview))
    for name in NAMES:
        for form in (name, name.casefold(), name.upper()):
            assert form.casefold() not in dumped
            assert form.encode() not in raw
    assert await vault.reveal(session, keys, "raw", ["PERSON_1", "PERSON_2", "PERSON_3"]) == {
        "PERSON_1": ("PERSON", "John Smith"),
        "PERSON_2": ("PERSON", "Mary Jones"),
        "PERSON_3": ("PERSON", "jane@example.com"),
    }


async def test_ciphertexts_are_bound_to_their_row_and_key(session: AsyncSession) -> None:
    keys = vault.org_keys(SETTINGS, await new_org(session))
    await vault.pseudonymize(session, keys, "bound", [("PERSON", "John Smith"), ("PERSON", "Mary Jones")])
    entries = {
        e.surrogate: e
        for e in (await session.execute(sa.select(PiiVaultEntry).where(PiiVaultEntry.org_id == keys.org_id))).scalars()
    }

    # Another key (vault_key set, or secret_key changed) cannot decrypt: an explicit error, not garbage.
    rotated = vault.org_keys(make_settings(privacy={"vault_key": "another-vault-key-0123456789abcdef"}), keys.org_id)
    with pytest.raises(PiiVaultKeyMismatch):
        await vault.reveal(session, rotated, "bound", ["PERSON_1"])
    # Swapping two rows' ciphertexts does not swap the names: the row is part of what is authenticated.
    one, two = entries["PERSON_1"], entries["PERSON_2"]
    one.encrypted_original, two.encrypted_original = two.encrypted_original, one.encrypted_original
    await session.flush()
    with pytest.raises(PiiVaultKeyMismatch):
        await vault.reveal(session, keys, "bound", ["PERSON_1"])


async def test_forget_scope_deletes_only_that_scope(session: AsyncSession) -> None:
    keys = vault.org_keys(SETTINGS, await new_org(session))
    await vault.pseudonymize(session, keys, "keep", [("PERSON", "John Smith")])
    await vault.pseudonymize(session, keys, "drop", [("PERSON", "John Smith"), ("PERSON", "Mary Jones")])

    assert await vault.forget_scope(session, keys.org_id, "drop") == 2
    assert not await vault.scope_exists(session, keys.org_id, "drop")
    assert await vault.reveal(session, keys, "keep", ["PERSON_1"]) == {"PERSON_1": ("PERSON", "John Smith")}


# ---------------------------------------------------------------------------------------------
# two transactions at once (each in its own connection, committing for real)


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(SETTINGS, database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _until_someone_waits(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Until another transaction waits on a lock (PostgreSQL). SQLite has one writer at a time:
    there the second transaction waits at BEGIN IMMEDIATE, which cannot be observed; yield a little."""
    async with sessionmaker() as probe:
        if is_sqlite(probe):
            await asyncio.sleep(0.1)
            return
        for _ in range(500):
            waiting = (await probe.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar_one()
            if waiting:
                return
            await probe.rollback()
            await asyncio.sleep(0.02)
    raise AssertionError("the second transaction never waited for the first")


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # The same value: the second transaction's insert collides on the hash and finds the first's row.
        ([("PERSON", "John Smith")], [("PERSON", "John Smith")], {("PERSON", "john smith"): "PERSON_1"}),
        # Another value: it collides on the surrogate number and takes the next one.
        ([("PERSON", "John Smith")], [("PERSON", "Mary Jones")], {("PERSON", "mary jones"): "PERSON_2"}),
        # Both at once.
        (
            [("PERSON", "John Smith")],
            [("PERSON", "Mary Jones"), ("PERSON", "john smith")],
            {("PERSON", "mary jones"): "PERSON_2", ("PERSON", "john smith"): "PERSON_1"},
        ),
    ],
    ids=["same-value", "other-value", "both"],
)
async def test_concurrent_transactions_agree_on_surrogates(
    sessionmaker: async_sessionmaker[AsyncSession],
    first: list[tuple[str, str]],
    second: list[tuple[str, str]],
    expected: dict[tuple[str, str], str],
) -> None:
    async with unit_of_work(sessionmaker) as setup:
        keys = vault.org_keys(SETTINGS, await new_org(setup))

    async def later() -> dict[tuple[str, str], str]:
        async with unit_of_work(sessionmaker) as session:
            return await vault.pseudonymize(session, keys, "race", second)

    async with unit_of_work(sessionmaker) as session:
        made_first = await vault.pseudonymize(session, keys, "race", first)
        racing = asyncio.create_task(later())
        await _until_someone_waits(sessionmaker)
    made_second = await racing

    assert made_first == {("PERSON", "john smith"): "PERSON_1"}
    assert made_second == expected
    async with unit_of_work(sessionmaker, write=False) as session:
        query = sa.select(PiiVaultEntry.surrogate).where(PiiVaultEntry.org_id == keys.org_id)
        stored: list[Any] = list((await session.execute(query)).scalars())
    assert sorted(stored) == sorted({*made_first.values(), *made_second.values()})
