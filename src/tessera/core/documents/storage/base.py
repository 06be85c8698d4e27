"""Where uploaded files live: the blob store protocol, its errors and the key rules.

Keys are chosen by the server (see `pipeline.blob_key`), never by a client, and are checked all the
same: a key that could name something outside the store is a bug to stop, not a path to follow.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Final, Protocol

MAX_KEY_LENGTH: Final = 512
DEFAULT_STREAM_CHUNK: Final = 1024 * 1024
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


class BlobNotFound(Exception):
    """No blob is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no blob stored under {key!r}")
        self.key = key


def validate_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError.

    A key is `/`-separated segments of `A-Z a-z 0-9 . _ -`, none of them empty, `.` or `..`, at most
    512 characters in all: it cannot be absolute, climb out of the store or hold control characters.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"blob key is longer than {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"blob key {key!r} has an empty, '.' or '..' segment")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"blob key {key!r} may only contain A-Z, a-z, 0-9, '.', '_', '-' and '/'")
    return key


class BlobStore(Protocol):
    """Stores immutable files by key. Every method validates its keys with `validate_key`.

    Errors: `BlobNotFound` for a missing key where one is needed, `ValueError` for an invalid key,
    `ProviderUnavailable` (from `tessera.core.errors`) when a remote store cannot be reached or
    refuses a request.
    """

    name: str
    """Short name of the implementation, for logs and health output ("local", "s3")."""

    async def put_file(self, key: str, source: Path) -> None:
        """Store a finished file under `key`, replacing any blob already there.

        The store may move `source` into place rather than copy it, so the caller must not use it
        afterwards; it should still remove it with `unlink(missing_ok=True)`, as a copy leaves it.
        Readers never see a partly written blob.
        """
        ...

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, atomically replacing any blob already there."""
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The whole blob. Raises `BlobNotFound`."""
        ...

    def open_stream(self, key: str, chunk_size: int = DEFAULT_STREAM_CHUNK) -> AsyncIterator[bytes]:
        """The blob in pieces of at most `chunk_size` bytes, for large files.

        An async generator: `BlobNotFound` is raised by the first iteration, not by this call.
        """
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None:
        """Remove the blob; a missing key is not an error."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove every blob named (missing ones are skipped), in as few requests as the store allows."""
        ...

    async def check(self) -> None:
        """Readiness probe: return if the store can be read and written, raise otherwise."""
        ...
