from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from tessera.core.documents.storage import local
from tessera.core.documents.storage.local import LocalBlobStore
from tessera.core.documents.storage.registry import create_blob_store
from tessera.core.errors import ProviderUnavailable

from .test_blob_stores import BAD_KEYS


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if not p.is_dir()}


def test_registry_builds_a_local_store(tmp_path: Path) -> None:
    store = create_blob_store("local", root=tmp_path / "blobs")
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "blobs").resolve()


async def test_blobs_are_files_under_the_root_with_mode_0640(
    local_store: LocalBlobStore, store_root: Path, source_dir: Path
) -> None:
    await local_store.put_bytes("org/ab/one", b"1")
    source = source_dir / "upload.tmp"
    source.write_bytes(b"2")
    source.chmod(0o666)
    await local_store.put_file("org/ab/two", source)
    for name, content in (("one", b"1"), ("two", b"2")):
        path = store_root / "org" / "ab" / name
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_put_file_moves_the_source_on_the_same_filesystem(local_store: LocalBlobStore, source_dir: Path) -> None:
    source = source_dir / "upload.tmp"
    source.write_bytes(b"moved")
    await local_store.put_file("k", source)
    assert not source.exists()
    assert await local_store.get_bytes("k") == b"moved"


async def test_put_file_copies_across_filesystems(
    local_store: LocalBlobStore, store_root: Path, source_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second filesystem cannot be mounted in a test; make the rename of the source fail the way
    # os.replace does across devices (EXDEV) and let every other rename through.
    source = source_dir / "upload.tmp"
    source.write_bytes(b"copied" * 1000)
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(local.os, "replace", replace)
    await local_store.put_file("k", source)
    assert await local_store.get_bytes("k") == b"copied" * 1000
    assert source.exists(), "a copy leaves the source for the caller to remove"
    assert stat.S_IMODE((store_root / "k").stat().st_mode) == 0o640
    assert files_under(store_root) == {store_root / "k"}


async def test_nothing_is_written_outside_the_root(
    local_store: LocalBlobStore, store_root: Path, source_dir: Path, tmp_path: Path
) -> None:
    source = source_dir / "upload.tmp"
    for key in BAD_KEYS:
        source.write_bytes(b"x")
        for attempt in (local_store.put_bytes(key, b"x"), local_store.put_file(key, source)):
            with pytest.raises(ValueError, match="blob key"):
                await attempt
    await local_store.put_bytes("a/b/c", b"inside")
    await local_store.check()
    assert {p for p in files_under(tmp_path) if not p.is_relative_to(store_root)} == {source}
    assert files_under(store_root) == {store_root / "a" / "b" / "c"}


async def test_writes_leave_no_temporary_files(local_store: LocalBlobStore, store_root: Path) -> None:
    for i in range(20):
        await local_store.put_bytes(f"dir/blob{i % 3}", os.urandom(1000 + i))
    await local_store.check()
    assert sorted(p.name for p in files_under(store_root)) == ["blob0", "blob1", "blob2"]


async def test_a_failed_write_keeps_the_old_state_and_no_temporary_file(
    local_store: LocalBlobStore, store_root: Path
) -> None:
    await local_store.put_bytes("a/b", b"inner")
    # "a" is a directory, so renaming the finished temporary file onto it fails.
    with pytest.raises(OSError, match="directory"):
        await local_store.put_bytes("a", b"clobber")
    assert files_under(store_root) == {store_root / "a" / "b"}
    assert await local_store.get_bytes("a/b") == b"inner"


async def test_a_symlink_out_of_the_root_is_refused(
    local_store: LocalBlobStore, store_root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    store_root.mkdir()
    (store_root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the store root"):
        await local_store.get_bytes("link/secret")
    with pytest.raises(ValueError, match="outside the store root"):
        await local_store.put_bytes("link/new", b"x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


async def test_check_fails_when_the_root_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    with pytest.raises(ProviderUnavailable, match="not writable"):
        await LocalBlobStore(blocker / "blobs").check()


async def test_check_creates_a_missing_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "new" / "root")
    await store.check()
    assert (tmp_path / "new" / "root").is_dir()
    assert list((tmp_path / "new" / "root").iterdir()) == []
