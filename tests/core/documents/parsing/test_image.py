from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageDraw, ImageFont

from tessera.core.documents.parsing import ocr
from tessera.core.documents.parsing.base import CorruptDocument, ParseLimits, UnsafeDocument
from tessera.core.documents.parsing.registry import parse

NEEDS_TESSERACT = pytest.mark.skipif(not ocr.tesseract_available(), reason="Tesseract is not installed")
NO_OCR = ParseLimits(ocr=False)


def text_image(text: str, size: tuple[int, int] = (1400, 260)) -> Image.Image:
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).text((40, 60), text, fill=0, font=ImageFont.load_default(size=56))
    return image


def encoded(image: Image.Image, format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def tiff(pages: list[Image.Image]) -> bytes:
    return encoded(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def bomb_png(width: int, height: int) -> bytes:
    """A 1-bit all-white PNG: a few kB on disk, `width * height` pixels once decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_image_without_ocr_needs_ocr() -> None:
    document = parse("png", encoded(text_image("Hello"), "PNG"), NO_OCR)
    assert document.blocks == []
    assert document.needs_ocr_pages == [1]
    assert document.page_count == 1
    assert document.metadata == {"format": "PNG", "width": 1400, "height": 260, "frames": 1}


def test_tiff_frames_are_pages() -> None:
    pages = [text_image("one"), text_image("two"), text_image("three")]
    document = parse("tiff", tiff(pages), NO_OCR)
    assert document.page_count == 3
    assert document.needs_ocr_pages == [1, 2, 3]


@NEEDS_TESSERACT
def test_png_is_ocred() -> None:
    document = parse("png", encoded(text_image("The quick brown fox\njumps over the lazy dog."), "PNG"), ParseLimits())
    assert document.ocr_pages == [1]
    assert document.needs_ocr_pages == []
    assert document.text == "The quick brown fox jumps over the lazy dog."
    assert [block.page for block in document.blocks] == [1]


@NEEDS_TESSERACT
def test_each_tiff_frame_is_ocred_as_its_page() -> None:
    document = parse("tiff", tiff([text_image("First page here"), text_image("Second page here")]), ParseLimits())
    assert document.ocr_pages == [1, 2]
    assert [(block.page, block.text) for block in document.blocks] == [(1, "First page here"), (2, "Second page here")]


@NEEDS_TESSERACT
def test_jpeg_is_ocred() -> None:
    data = encoded(text_image("Invoice number 12345").convert("RGB"), "JPEG", quality=85)
    assert "Invoice number 12345" in parse("jpeg", data, ParseLimits()).text


def test_decompression_bomb_is_unsafe() -> None:
    data = bomb_png(20_000, 20_000)
    assert len(data) < 200_000
    with pytest.raises(UnsafeDocument, match="too large"):
        parse("png", data, ParseLimits())


def test_image_over_the_pixel_limit_is_unsafe() -> None:
    with pytest.raises(UnsafeDocument, match="limit is 1,000"):
        parse("png", encoded(text_image("x", (100, 100)), "PNG"), ParseLimits(max_image_pixels=1_000))


def test_later_tiff_frame_over_the_pixel_limit_is_unsafe() -> None:
    pages = [Image.new("L", (10, 10), 255), Image.new("L", (400, 400), 255)]
    with pytest.raises(UnsafeDocument, match="frame 2"):
        parse("tiff", tiff(pages), ParseLimits(max_image_pixels=10_000, ocr=False))


def test_too_many_frames_is_unsafe() -> None:
    pages = [Image.new("L", (8, 8), 255) for _ in range(3)]
    with pytest.raises(UnsafeDocument, match="3 frames"):
        parse("tiff", tiff(pages), ParseLimits(max_pages=2))


def test_truncated_png_is_corrupt() -> None:
    data = encoded(text_image("Hello"), "PNG")
    with pytest.raises(CorruptDocument):
        parse("png", data[: len(data) // 2], NO_OCR)


def test_garbage_is_corrupt() -> None:
    with pytest.raises(CorruptDocument):
        parse("png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, NO_OCR)
