"""Blobs as files under one directory: `root/<key>`.

Every write goes to a temporary file in the target directory, is flushed to disk and then renamed
over the target, so a reader (or a crash) sees the old blob or the new one, never half of one.
Temporary names start with `~`, which no key may contain, so they can never be read as blobs.
Filesystem calls (resolving a key's path included) block, so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import BinaryIO, Final

from tessera.core.documents.storage.base import DEFAULT_STREAM_CHUNK, BlobNotFound, validate_key
from tessera.core.errors import ProviderUnavailable

FILE_MODE: Final = 0o640
_TEMP_PREFIX: Final = "~tmp-"


class LocalBlobStore:
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        """The file of `key`. Blocking (it resolves symlinks): call it in a worker thread."""
        path = self.root / validate_key(key)
        # validate_key already rules out escapes; this also catches a symlink planted inside the root.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"blob key {key!r} resolves outside the store root")
        return path

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(lambda: self._put_file(self._path(key), Path(source)))

    async def put_bytes(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(lambda: self._write_atomically(self._path(key), lambda out: out.write(data)))

    async def get_bytes(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(lambda: self._path(key).read_bytes())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def open_stream(self, key: str, chunk_size: int = DEFAULT_STREAM_CHUNK) -> AsyncIterator[bytes]:
        try:
            handle = await asyncio.to_thread(lambda: self._path(key).open("rb"))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            while piece := await asyncio.to_thread(handle.read, chunk_size):
                yield piece
        finally:
            handle.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(lambda: self._path(key).is_file())

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(lambda: _unlink(self._path(key)))

    async def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            await asyncio.to_thread(self._delete_many, keys)

    def _delete_many(self, keys: list[str]) -> None:
        paths = [self._path(key) for key in keys]  # check every key before removing anything
        for path in paths:
            _unlink(path)

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self._check)
        except OSError as error:
            raise ProviderUnavailable(f"local blob store at {self.root} is not writable: {error}") from error

    def _check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Writing a file proves more than os.access: a read-only mount or a full disk fails here.
        with tempfile.TemporaryFile(dir=self.root, prefix=_TEMP_PREFIX) as probe:
            probe.write(b"ok")

    def _put_file(self, target: Path, source: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with source.open("rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(source, FILE_MODE)
            os.replace(source, target)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            # Another filesystem: copy into a temporary file beside the target instead.
            with source.open("rb") as handle:
                self._write_atomically(target, lambda out: shutil.copyfileobj(handle, out, DEFAULT_STREAM_CHUNK))
            return
        _fsync_directory(target.parent)

    def _write_atomically(self, target: Path, write: Callable[[BinaryIO], object]) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(descriptor, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temporary, FILE_MODE)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _fsync_directory(target.parent)


def _unlink(path: Path) -> None:
    # A key naming a directory (a prefix of other keys) holds no blob: nothing to delete.
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
        path.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; without it a crash may lose the new directory entry."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
