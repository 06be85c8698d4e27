from __future__ import annotations

import io
import struct
import zipfile

import pytest

from tessera.core.documents.parsing.base import CorruptDocument, EncryptedDocument, ParseLimits, UnsafeDocument
from tessera.core.documents.parsing.zipsafe import MAX_MEMBERS, open_zip, read_member

LIMITS = ParseLimits()
MIB = 1 << 20


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_central_directory(data: bytes, *, flags: int | None = None, file_size: int | None = None) -> bytes:
    """Forge fields of the first central directory entry, which is what zipfile trusts."""
    raw = bytearray(data)
    at = raw.rindex(b"PK\x01\x02")
    if flags is not None:
        struct.pack_into("<H", raw, at + 8, flags)
    if file_size is not None:
        struct.pack_into("<I", raw, at + 24, file_size)
    return bytes(raw)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    # 200 MiB of zeros, written in chunks so neither the test nor the archive holds them at once.
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as handle,
    ):
        chunk = bytes(MIB)
        for _ in range(200):
            handle.write(chunk)
    return buffer.getvalue()


def test_open_zip_reads_a_normal_archive() -> None:
    with open_zip(make_zip({"a.txt": b"hello", "dir/b.xml": b"<x/>"}), LIMITS) as archive:
        assert read_member(archive, "dir/b.xml", LIMITS, max_bytes=100) == b"<x/>"


@pytest.mark.parametrize("data", [b"", b"not a zip at all", make_zip({"a.txt": b"hello" * 1000})[:-30]])
def test_open_zip_rejects_corrupt_or_truncated_bytes(data: bytes) -> None:
    with pytest.raises(CorruptDocument):
        open_zip(data, LIMITS)


def test_open_zip_rejects_a_zip_bomb_by_its_compression_ratio(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 2 * MIB
    with pytest.raises(UnsafeDocument, match="compression ratio"):
        open_zip(zip_bomb, LIMITS)


def test_open_zip_rejects_more_expanded_bytes_than_allowed(zip_bomb: bytes) -> None:
    limits = ParseLimits(max_expanded_bytes=100 * MIB, max_compression_ratio=1e9)
    with pytest.raises(UnsafeDocument, match="expands to more than"):
        open_zip(zip_bomb, limits)


def test_open_zip_allows_small_members_with_a_high_ratio() -> None:
    data = make_zip({"styles.xml": b"<a/>" * 100_000})  # 400 KB of repeated markup
    with open_zip(data, LIMITS) as archive:
        assert len(read_member(archive, "styles.xml", LIMITS, max_bytes=MIB)) == 400_000


def test_open_zip_rejects_a_forged_declared_size() -> None:
    data = patch_central_directory(make_zip({"a.txt": b"hello"}), file_size=0xFFFF_FFF0)
    with pytest.raises(UnsafeDocument):
        open_zip(data, LIMITS)


def test_open_zip_rejects_too_many_members() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for index in range(MAX_MEMBERS + 1):
            archive.writestr(f"m{index}", b"")
    with pytest.raises(UnsafeDocument, match="members"):
        open_zip(buffer.getvalue(), LIMITS)


def test_open_zip_rejects_encrypted_members() -> None:
    data = patch_central_directory(make_zip({"a.txt": b"hello"}), flags=0x1)
    with pytest.raises(EncryptedDocument):
        open_zip(data, LIMITS)


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "\\windows\\x", "C:/x", "a\\..\\b"])
def test_open_zip_rejects_member_names_that_escape(name: str) -> None:
    with pytest.raises(UnsafeDocument, match="outside the archive"):
        open_zip(make_zip({"ok.txt": b"", name: b"x"}), LIMITS)


def test_open_zip_allows_dots_inside_a_name() -> None:
    with open_zip(make_zip({"a..b/c...txt": b"x"}), LIMITS) as archive:
        assert archive.namelist() == ["a..b/c...txt"]


def test_open_zip_rejects_compression_methods_outside_ooxml_and_epub() -> None:
    with pytest.raises(CorruptDocument, match="compression method"):
        open_zip(make_zip({"a.txt": b"hello"}, compression=zipfile.ZIP_BZIP2), LIMITS)


def test_read_member_stops_at_the_cap() -> None:
    with (
        open_zip(make_zip({"big.xml": b"x" * 10_000}), LIMITS) as archive,
        pytest.raises(UnsafeDocument, match="larger than 1000 bytes"),
    ):
        read_member(archive, "big.xml", LIMITS, max_bytes=1000)


def test_read_member_never_returns_more_than_a_lying_declared_size() -> None:
    # The directory claims 5 bytes; the data holds 10,000. Reading yields at most 5, then the CRC fails.
    data = patch_central_directory(make_zip({"a.xml": b"y" * 10_000}), file_size=5)
    with open_zip(data, LIMITS) as archive, pytest.raises(CorruptDocument, match="damaged"):
        read_member(archive, "a.xml", LIMITS, max_bytes=1000)


def test_read_member_reports_damaged_data() -> None:
    data = bytearray(make_zip({"a.xml": bytes(range(256)) * 200}))
    start = data.index(b"a.xml") + len(b"a.xml")
    data[start + 10 : start + 40] = b"\xff" * 30
    with open_zip(bytes(data), LIMITS) as archive, pytest.raises(CorruptDocument):
        read_member(archive, "a.xml", LIMITS, max_bytes=MIB)


def test_read_member_reports_a_missing_member() -> None:
    with open_zip(make_zip({"a.txt": b""}), LIMITS) as archive, pytest.raises(CorruptDocument, match="missing"):
        read_member(archive, "b.txt", LIMITS, max_bytes=MIB)
