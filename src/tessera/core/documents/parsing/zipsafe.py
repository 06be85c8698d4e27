"""Open ZIP-based files (DOCX, PPTX, XLSX, EPUB) only after checking they cannot hurt the worker.

Every check runs on the central directory, before a single member is expanded: a decompression
bomb is refused by its declared sizes, not discovered by running out of memory. Reads that do
expand a member go through `read_member`/`iter_member`, which stop at a hard byte cap.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Generator

from tessera.core.documents.parsing.base import CorruptDocument, EncryptedDocument, ParseLimits, UnsafeDocument

MAX_MEMBERS = 10_000
BOMB_MIN_BYTES = 1 << 20
"""Members smaller than this may have any compression ratio: a tiny XML part of repeated markup is no bomb."""
CHUNK_BYTES = 64 * 1024

# OPC (ECMA-376 Part 2) and EPUB OCF allow only these two. bzip2 and LZMA would also be unsafe here:
# CPython's zipfile decompresses them without an output cap per read.
_SUPPORTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ENCRYPTED_FLAG = 0x1
_DRIVE = re.compile(r"^[A-Za-z]:")


def open_zip(data: bytes, limits: ParseLimits) -> zipfile.ZipFile:
    """Open `data` as a ZIP archive whose central directory passed every safety check.

    Raises:
        CorruptDocument: not a readable ZIP archive, or a member uses an unsupported compression method.
        EncryptedDocument: a member is password-protected.
        UnsafeDocument: too many members, too large once expanded, a bomb-like ratio, or an unsafe member name.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise CorruptDocument(f"not a readable ZIP archive: {exc}") from exc
    try:
        _check_members(archive.infolist(), limits)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_members(infos: list[zipfile.ZipInfo], limits: ParseLimits) -> None:
    if len(infos) > MAX_MEMBERS:
        raise UnsafeDocument(f"archive has {len(infos)} members (limit {MAX_MEMBERS})")
    total = 0
    for info in infos:
        name = info.filename
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise EncryptedDocument(f"archive member {name!r} is password-protected")
        if _is_unsafe_name(name):
            raise UnsafeDocument(f"archive member name {name!r} points outside the archive")
        if info.compress_type not in _SUPPORTED_COMPRESSION:
            raise CorruptDocument(f"archive member {name!r} uses unsupported compression method {info.compress_type}")
        total += info.file_size
        if total > limits.max_expanded_bytes:
            raise UnsafeDocument(f"archive expands to more than {limits.max_expanded_bytes} bytes")
        if info.file_size > BOMB_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_compression_ratio:
                raise UnsafeDocument(
                    f"archive member {name!r} has compression ratio {ratio:.0f} "
                    f"(limit {limits.max_compression_ratio:.0f}): likely a decompression bomb"
                )


def _is_unsafe_name(name: str) -> bool:
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return True
    return any(part == ".." for part in re.split(r"[/\\]", name))


def iter_member(
    archive: zipfile.ZipFile, name: str, limits: ParseLimits, max_bytes: int
) -> Generator[bytes, None, None]:
    """Yield the expanded bytes of member `name` in chunks, never more than `max_bytes` in total.

    Declared sizes can lie, so the cap is enforced on the bytes actually produced as well.

    Raises:
        CorruptDocument: the member is missing or its data is damaged.
        UnsafeDocument: the member is larger than `max_bytes` (or `limits.max_expanded_bytes`).
    """
    cap = min(max_bytes, limits.max_expanded_bytes)
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        raise CorruptDocument(f"archive member {name!r} is missing") from exc
    if info.file_size > cap:
        raise UnsafeDocument(f"archive member {name!r} is larger than {cap} bytes")
    produced = 0
    try:
        with archive.open(info) as handle:
            while True:
                chunk = handle.read(min(CHUNK_BYTES, cap + 1 - produced))
                if not chunk:
                    return
                produced += len(chunk)
                if produced > cap:
                    raise UnsafeDocument(f"archive member {name!r} expands beyond {cap} bytes")
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise CorruptDocument(f"archive member {name!r} is damaged: {exc}") from exc


def read_member(archive: zipfile.ZipFile, name: str, limits: ParseLimits, max_bytes: int) -> bytes:
    """The expanded bytes of member `name`, read with the same hard cap as `iter_member`."""
    return b"".join(iter_member(archive, name, limits, max_bytes))
