"""The pseudonym vault: surrogates for original values, per organization and scope.

Originals are stored only encrypted (AES-256-GCM). Keys are derived per organization with HKDF
from `privacy.vault_key`, or from the server's `secret_key` when that is unset:
- an encryption key; the ciphertext is bound to its organization, scope, type and surrogate
  (associated data), so a row copied elsewhere does not decrypt;
- a lookup key: `original_hash` is an HMAC of scope, type and the normalised value, so the same
  value finds its surrogate again without the plaintext, and equal values in two scopes or two
  organizations don't link;
- a hashing key for the `hash` operator, so its hashes don't link across organizations.

Two requests pseudonymising the same value in the same scope at once get the same surrogate: the
unique constraints on (org, scope, hash) and (org, scope, surrogate) make the loser retry, and on
retry it finds the winner's row.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import uuid
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.privacy.anonymize import pseudonym_key
from tessera.core.privacy.errors import PiiVaultBusy, PiiVaultKeyMismatch
from tessera.core.privacy.models import PiiVaultEntry
from tessera.settings import Settings

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
SURROGATE_PATTERN = re.compile(r"\b[A-Z][A-Z0-9_]*_[0-9]+\b")
_HKDF_SALT = b"tessera-pii-vault-v1"
_INSERT_ATTEMPTS = 20
_QUERY_CHUNK = 500


@dataclass(frozen=True, slots=True)
class OrgKeys:
    org_id: uuid.UUID
    encryption: bytes
    lookup: bytes
    hashing: bytes


def _hkdf(master: bytes, purpose: bytes, org_id: uuid.UUID) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose + b"/" + org_id.bytes).derive(
        master
    )


@functools.lru_cache(maxsize=1024)
def _derive(master: bytes, org_id: uuid.UUID) -> OrgKeys:
    return OrgKeys(
        org_id=org_id,
        encryption=_hkdf(master, b"encrypt", org_id),
        lookup=_hkdf(master, b"lookup", org_id),
        hashing=_hkdf(master, b"hash", org_id),
    )


def org_keys(settings: Settings, org_id: uuid.UUID) -> OrgKeys:
    vault_key = settings.privacy.vault_key
    master = vault_key.get_secret_value() if vault_key is not None else settings.signing_key
    return _derive(master.encode(), org_id)


def surrogate_name(entity_type: str, number: int) -> str:
    return f"{entity_type}_{number}"


def lookup_hash(keys: OrgKeys, scope: str, entity_type: str, value: str) -> str:
    message = "\x00".join((scope, entity_type, pseudonym_key(value))).encode()
    return hmac.new(keys.lookup, message, hashlib.sha256).hexdigest()


def _associated_data(keys: OrgKeys, scope: str, entity_type: str, surrogate: str) -> bytes:
    return keys.org_id.bytes + "\x00".join((scope, entity_type, surrogate)).encode()


def encrypt(keys: OrgKeys, scope: str, entity_type: str, surrogate: str, value: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(keys.encryption).encrypt(
        nonce, value.encode(), _associated_data(keys, scope, entity_type, surrogate)
    )
    return FORMAT_VERSION + nonce + sealed


def decrypt(keys: OrgKeys, entry: PiiVaultEntry) -> str:
    blob = entry.encrypted_original
    if blob[:1] != FORMAT_VERSION:
        raise PiiVaultKeyMismatch("A vault entry has an unknown format")
    nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        plain = AESGCM(keys.encryption).decrypt(
            nonce, sealed, _associated_data(keys, entry.scope, entry.entity_type, entry.surrogate)
        )
    except InvalidTag as error:
        raise PiiVaultKeyMismatch(
            "The vault cannot be decrypted with the configured key (privacy.vault_key or secret_key changed?)"
        ) from error
    return plain.decode()


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for index in range(0, len(values), _QUERY_CHUNK):
        yield values[index : index + _QUERY_CHUNK]


async def _known(session: AsyncSession, org_id: uuid.UUID, scope: str, hashes_: Collection[str]) -> dict[str, str]:
    """original_hash → surrogate for the hashes already in the vault."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(hashes_)):
        rows = await session.execute(
            sa.select(PiiVaultEntry.original_hash, PiiVaultEntry.surrogate).where(
                PiiVaultEntry.org_id == org_id, PiiVaultEntry.scope == scope, PiiVaultEntry.original_hash.in_(chunk)
            )
        )
        found.update({h: s for h, s in rows})
    return found


async def _counts(session: AsyncSession, org_id: uuid.UUID, scope: str) -> Counter[str]:
    rows = await session.execute(
        sa.select(PiiVaultEntry.entity_type, sa.func.count())
        .where(PiiVaultEntry.org_id == org_id, PiiVaultEntry.scope == scope)
        .group_by(PiiVaultEntry.entity_type)
    )
    return Counter({entity_type: count for entity_type, count in rows})


def _entry(keys: OrgKeys, scope: str, entity_type: str, number: int, value: str, original_hash: str) -> PiiVaultEntry:
    surrogate = surrogate_name(entity_type, number)
    return PiiVaultEntry(
        org_id=keys.org_id,
        scope=scope,
        entity_type=entity_type,
        surrogate=surrogate,
        original_hash=original_hash,
        encrypted_original=encrypt(keys, scope, entity_type, surrogate, value),
    )


async def _add(session: AsyncSession, entries: list[PiiVaultEntry]) -> bool:
    """Insert in a savepoint; False (and nothing inserted) when a unique constraint says another
    request got there first."""
    try:
        async with session.begin_nested():
            session.add_all(entries)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def _add_one(
    session: AsyncSession, keys: OrgKeys, scope: str, entity_type: str, value: str, original_hash: str
) -> str:
    for _ in range(_INSERT_ATTEMPTS):
        known = await _known(session, keys.org_id, scope, [original_hash])
        if original_hash in known:
            return known[original_hash]
        number = (await _counts(session, keys.org_id, scope))[entity_type] + 1
        entry = _entry(keys, scope, entity_type, number, value, original_hash)
        if await _add(session, [entry]):
            return entry.surrogate
    raise PiiVaultBusy("Pseudonyms for this scope are being written by other requests; retry")


async def pseudonymize(
    session: AsyncSession, keys: OrgKeys, scope: str, values: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Surrogates for (entity type, original value) pairs, made and stored where new.

    Returns (entity type, `pseudonym_key(value)`) → surrogate."""
    wanted: dict[tuple[str, str], tuple[str, str]] = {}  # → (hash, the value as first seen)
    for entity_type, value in values:
        key = (entity_type, pseudonym_key(value))
        if key not in wanted:
            wanted[key] = (lookup_hash(keys, scope, entity_type, value), value)
    if not wanted:
        return {}
    known = await _known(session, keys.org_id, scope, {h for h, _ in wanted.values()})
    missing = [(key, h, value) for key, (h, value) in wanted.items() if h not in known]
    if missing:
        counts = await _counts(session, keys.org_id, scope)
        entries = []
        for (entity_type, _), original_hash, value in missing:
            counts[entity_type] += 1
            entries.append(_entry(keys, scope, entity_type, counts[entity_type], value, original_hash))
        if await _add(session, entries):
            known.update({e.original_hash: e.surrogate for e in entries})
        else:  # a concurrent request wrote some of them: one at a time, each finding or adding its row
            for (entity_type, _), original_hash, value in missing:
                known[original_hash] = await _add_one(session, keys, scope, entity_type, value, original_hash)
    return {key: known[h] for key, (h, _) in wanted.items()}


async def reveal(
    session: AsyncSession, keys: OrgKeys, scope: str, surrogates: Collection[str]
) -> dict[str, tuple[str, str]]:
    """surrogate → (entity type, original) for those of `surrogates` that the scope holds."""
    revealed: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(sorted(set(surrogates))):
        rows = await session.execute(
            sa.select(PiiVaultEntry).where(
                PiiVaultEntry.org_id == keys.org_id, PiiVaultEntry.scope == scope, PiiVaultEntry.surrogate.in_(chunk)
            )
        )
        for entry in rows.scalars():
            revealed[entry.surrogate] = (entry.entity_type, decrypt(keys, entry))
    return revealed


async def scope_exists(session: AsyncSession, org_id: uuid.UUID, scope: str) -> bool:
    query = sa.select(PiiVaultEntry.id).where(PiiVaultEntry.org_id == org_id, PiiVaultEntry.scope == scope).limit(1)
    return (await session.execute(query)).first() is not None


async def forget_scope(session: AsyncSession, org_id: uuid.UUID, scope: str) -> int:
    result = await session.execute(
        sa.delete(PiiVaultEntry).where(PiiVaultEntry.org_id == org_id, PiiVaultEntry.scope == scope)
    )
    return int(getattr(result, "rowcount", 0) or 0)
