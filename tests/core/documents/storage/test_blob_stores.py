"""The behaviour every blob store promises, run against each one (see the `store` fixture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessera.core.documents.storage.base import BlobNotFound, BlobStore, validate_key
from tessera.core.documents.storage.registry import BLOB_STORES, BlobStoreKind, create_blob_store

KEY = "0f3c9a/ab/ab12cd34ef"

BAD_KEYS = [
    "",
    "../x",
    "a/../../x",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a/./b",
    "a/..",
    ".",
    "..",
    "a/",
    "x\x00y",
    "tab\tkey",
    "new\nline",
    "esc\x1b",
    "back\\slash",
    "a b",
    "ünïcode",
    "x" * 513,
]


async def collect(store: BlobStore, key: str, chunk_size: int = 1024 * 1024) -> list[bytes]:
    return [piece async for piece in store.open_stream(key, chunk_size)]


class TestKeys:
    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_validate_key_rejects_unsafe_keys(self, key: str) -> None:
        with pytest.raises(ValueError, match="blob key"):
            validate_key(key)

    @pytest.mark.parametrize("key", ["a", "a/b/c", "org.1/x_y-z/file.pdf", "..a/b..", "x" * 512])
    def test_validate_key_accepts_safe_keys(self, key: str) -> None:
        assert validate_key(key) == key


async def test_put_bytes_then_get_bytes(store: BlobStore) -> None:
    await store.put_bytes(KEY, b"hello")
    assert await store.get_bytes(KEY) == b"hello"
    assert await store.exists(KEY)


async def test_put_replaces_an_existing_blob(store: BlobStore) -> None:
    await store.put_bytes(KEY, b"first version, longer")
    await store.put_bytes(KEY, b"second")
    assert await store.get_bytes(KEY) == b"second"


async def test_empty_blob_round_trips(store: BlobStore) -> None:
    await store.put_bytes("empty", b"")
    assert await store.get_bytes("empty") == b""
    assert await collect(store, "empty") == []


async def test_put_file_stores_the_file_content(store: BlobStore, source_dir: Path) -> None:
    source = source_dir / "upload.tmp"
    data = os.urandom(300_000)
    source.write_bytes(data)
    await store.put_file(KEY, source)
    assert await store.get_bytes(KEY) == data


async def test_open_stream_yields_the_blob_in_bounded_pieces(store: BlobStore) -> None:
    data = os.urandom(2 * 65_536 + 123)
    await store.put_bytes(KEY, data)
    pieces = await collect(store, KEY, chunk_size=65_536)
    assert b"".join(pieces) == data
    assert all(0 < len(piece) <= 65_536 for piece in pieces)
    assert len(pieces) >= 3


async def test_missing_blob_raises_blob_not_found(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await store.get_bytes("no/such/blob")
    assert caught.value.key == "no/such/blob"
    with pytest.raises(BlobNotFound):
        await collect(store, "no/such/blob")
    assert not await store.exists("no/such/blob")


async def test_a_key_prefix_is_not_a_blob(store: BlobStore) -> None:
    await store.put_bytes("dir/inner", b"x")
    assert not await store.exists("dir")
    with pytest.raises(BlobNotFound):
        await store.get_bytes("dir")
    await store.delete("dir")
    assert await store.exists("dir/inner")


async def test_delete_removes_and_is_idempotent(store: BlobStore) -> None:
    await store.put_bytes(KEY, b"x")
    await store.delete(KEY)
    assert not await store.exists(KEY)
    await store.delete(KEY)
    await store.delete("never/stored")
    with pytest.raises(BlobNotFound):
        await store.get_bytes(KEY)


async def test_delete_many_removes_present_keys_and_skips_missing(store: BlobStore) -> None:
    keys = [f"org/{i:02d}/blob" for i in range(5)]
    for key in keys:
        await store.put_bytes(key, key.encode())
    await store.put_bytes("keep/me", b"k")
    await store.delete_many([*keys[:3], "missing/one", *keys[3:]])
    for key in keys:
        assert not await store.exists(key)
    assert await store.get_bytes("keep/me") == b"k"
    await store.delete_many([])
    await store.delete_many(keys)


async def test_check_passes_on_a_usable_store(store: BlobStore) -> None:
    await store.check()
    assert store.name in BLOB_STORES


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_every_operation_rejects_bad_keys(store: BlobStore, source_dir: Path, key: str) -> None:
    source = source_dir / "upload.tmp"
    source.write_bytes(b"data")
    with pytest.raises(ValueError, match="blob key"):
        await store.put_bytes(key, b"data")
    with pytest.raises(ValueError, match="blob key"):
        await store.put_file(key, source)
    with pytest.raises(ValueError, match="blob key"):
        await store.get_bytes(key)
    with pytest.raises(ValueError, match="blob key"):
        await collect(store, key)
    with pytest.raises(ValueError, match="blob key"):
        await store.exists(key)
    with pytest.raises(ValueError, match="blob key"):
        await store.delete(key)
    await store.put_bytes("good/key", b"kept")
    with pytest.raises(ValueError, match="blob key"):
        await store.delete_many(["good/key", key])
    # Keys are all checked before anything is removed.
    assert await store.get_bytes("good/key") == b"kept"
    assert source.read_bytes() == b"data"


def test_registry_names_match_the_kind_literal() -> None:
    from typing import get_args

    assert set(get_args(BlobStoreKind)) == set(BLOB_STORES)


def test_unknown_store_kind_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown blob store kind 'ftp'; expected one of 'local', 's3'"):
        create_blob_store("ftp")
