from __future__ import annotations

import hashlib
import io
import re
import struct
import threading
from pathlib import Path

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image, ImageDraw, ImageFont

from tessera.core.documents.parsing import ocr
from tessera.core.documents.parsing.base import (
    Block,
    CorruptDocument,
    EncryptedDocument,
    ParsedDocument,
    ParseLimits,
    UnsafeDocument,
)
from tessera.core.documents.parsing.pdf import PdfParser
from tessera.core.documents.parsing.registry import parse

BOOKS = Path(__file__).parents[4] / ".." / "shared" / "data" / "gutenberg-books"
ALICE_PDF = BOOKS / "pdf" / "alices_adventures_in_wonderland.pdf"
NEEDS_TESSERACT = pytest.mark.skipif(not ocr.tesseract_available(), reason="Tesseract is not installed")

# --- a minimal PDF writer: enough to control fonts, sizes and positions exactly ---------------------

Line = tuple[str, float, float, float, str]
"""(font resource "F1" regular / "F2" bold, size, x, y, text)"""


def _pdf_string(text: str) -> bytes:
    out = bytearray(b"(")
    for byte in text.encode("cp1252"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte >= 128:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    return bytes(out + b")")


def text_content(lines: list[Line]) -> bytes:
    ops = [b"BT /%s %g Tf 1 0 0 1 %g %g Tm %s Tj ET" % (f.encode(), s, x, y, _pdf_string(t)) for f, s, x, y, t in lines]
    return b"\n".join(ops)


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)


_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def build_pdf(
    contents: list[bytes],
    *,
    info: dict[str, str] | None = None,
    image: tuple[int, int, bytes] | None = None,
    user_password: str | None = None,
) -> bytes:
    """A PDF with one page per content stream (US Letter), Helvetica as F1 and Helvetica-Bold as F2.

    `image` (width, height, JPEG bytes) is available to every page as /Im1. `user_password` encrypts
    the file with the standard security handler (RC4, 40-bit, revision 2) from the PDF spec.
    """
    n_pages = len(contents)
    first_page = 5 if image is None else 6
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % (first_page + 2 * i) for i in range(n_pages)), n_pages),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    }
    streams: dict[int, tuple[bytes, bytes]] = {}
    xobject = b""
    if image is not None:
        width, height, jpeg = image
        streams[5] = (
            b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Filter /DCTDecode" % (width, height),
            jpeg,
        )
        xobject = b" /XObject << /Im1 5 0 R >>"
    for i, content in enumerate(contents):
        page, stream = first_page + 2 * i, first_page + 2 * i + 1
        objects[page] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R /F2 4 0 R >>%s >> >>" % (stream, xobject)
        )
        streams[stream] = (b"", content)
    next_number = first_page + 2 * n_pages
    info_number = encrypt_number = None
    if info:
        info_number = next_number
        entries = b" ".join(b"/%s %s" % (k.encode(), _pdf_string(v)) for k, v in info.items())
        objects[info_number] = b"<< %s >>" % entries
        next_number += 1
    file_id = hashlib.md5(b"tessera-test").digest()
    key = b""
    if user_password is not None:
        permissions = -44
        owner_key = hashlib.md5((b"owner-secret" + _PAD)[:32]).digest()[:5]
        o_value = _rc4(owner_key, (user_password.encode() + _PAD)[:32])
        key = hashlib.md5(
            (user_password.encode() + _PAD)[:32] + o_value + struct.pack("<i", permissions) + file_id
        ).digest()[:5]
        u_value = _rc4(key, _PAD)
        encrypt_number = next_number
        objects[encrypt_number] = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>" % (
            o_value.hex().encode(),
            u_value.hex().encode(),
            permissions,
        )
        next_number += 1

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in range(1, next_number):
        offsets[number] = out.tell()
        if number in streams:
            extra, data = streams[number]
            if key and number != encrypt_number:
                object_key = hashlib.md5(key + struct.pack("<i", number)[:3] + b"\x00\x00").digest()[:10]
                data = _rc4(object_key, data)
            out.write(b"%d 0 obj\n<< %s /Length %d >>\nstream\n" % (number, extra, len(data)))
            out.write(data + b"\nendstream\nendobj\n")
        else:
            out.write(b"%d 0 obj\n%s\nendobj\n" % (number, objects[number]))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % next_number)
    for number in range(1, next_number):
        out.write(b"%010d 00000 n \n" % offsets[number])
    trailer = b"/Size %d /Root 1 0 R /ID [<%s> <%s>]" % (next_number, file_id.hex().encode(), file_id.hex().encode())
    if info_number:
        trailer += b" /Info %d 0 R" % info_number
    if encrypt_number:
        trailer += b" /Encrypt %d 0 R" % encrypt_number
    out.write(b"trailer\n<< %s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref))
    return out.getvalue()


def body_lines(texts: list[str], *, top: float, size: float = 11, pitch: float = 14, x: float = 72) -> list[Line]:
    return [("F1", size, x, top - i * pitch, text) for i, text in enumerate(texts)]


def parsed(data: bytes, limits: ParseLimits | None = None) -> ParsedDocument:
    return parse("pdf", data, limits or ParseLimits())


def headings(document: ParsedDocument) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in document.blocks if b.kind == "heading"]


def heading_path(document: ParsedDocument, block: Block) -> list[str]:
    path: list[tuple[int, str]] = []
    for candidate in document.blocks:
        if candidate is block:
            return [text for _, text in path]
        if candidate.kind == "heading":
            path = [(level, text) for level, text in path if level < candidate.level] + [
                (candidate.level, candidate.text)
            ]
    raise AssertionError("block not in document")


# --- text layer ------------------------------------------------------------------------------------

LONG = "The quick brown fox jumps over the lazy dog while the cat watches it from the wall"


def report_pdf() -> bytes:
    page_one = [
        ("F1", 24, 72, 720, "Annual Report of the Society"),
        ("F1", 18, 72, 680, "1 Introduction"),
        *body_lines([LONG, LONG, "and that ends the first paragraph."], top=650),
        *body_lines([LONG, "and a second paragraph after a wider gap."], top=590),
    ]
    page_two = [
        ("F1", 18, 72, 720, "2 Methods"),
        ("F1", 14, 72, 690, "2.1 Data sources"),
        *body_lines([LONG, "with an exam-", "ple of a word hyphenated across lines."], top=660),
    ]
    return build_pdf([text_content(page_one), text_content(page_two)], info={"Title": "Report", "Author": "Ada"})


def test_font_sizes_give_title_and_heading_levels() -> None:
    document = parsed(report_pdf())
    assert [b.text for b in document.blocks if b.kind == "title"] == ["Annual Report of the Society"]
    assert headings(document) == [(1, "1 Introduction"), (1, "2 Methods"), (2, "2.1 Data sources")]


def test_blocks_carry_their_page_numbers() -> None:
    document = parsed(report_pdf())
    pages = {b.text: b.page for b in document.blocks if b.kind == "heading"}
    assert pages == {"1 Introduction": 1, "2 Methods": 2, "2.1 Data sources": 2}
    assert all(block.page in (1, 2) for block in document.blocks)
    assert document.page_count == 2


def test_wrapped_lines_are_joined_into_paragraphs() -> None:
    document = parsed(report_pdf())
    paragraphs = [b.text for b in document.blocks if b.kind == "paragraph"]
    assert paragraphs[0] == f"{LONG} {LONG} and that ends the first paragraph."
    assert paragraphs[1] == f"{LONG} and a second paragraph after a wider gap."


def test_words_hyphenated_across_lines_are_rejoined() -> None:
    document = parsed(report_pdf())
    assert "an example of a word hyphenated" in document.text
    assert "exam-" not in document.text


def test_metadata_title_and_author() -> None:
    document = parsed(report_pdf())
    assert document.title == "Report"
    assert document.metadata["author"] == "Ada"
    assert "title" not in document.metadata


def test_running_headers_and_page_numbers_are_dropped() -> None:
    pages = [
        text_content(
            [
                ("F1", 9, 72, 760, "ACME Corp - Confidential"),
                *body_lines([f"Body text of page {n} is here.", LONG], top=700),
                ("F1", 9, 300, 40, f"Page {n} of 4"),
            ]
        )
        for n in range(1, 5)
    ]
    document = parsed(build_pdf(pages))
    assert "Confidential" not in document.text
    assert "of 4" not in document.text
    assert "Body text of page 3 is here." in document.text


def test_chapter_patterns_are_headings_when_all_text_is_one_size() -> None:
    page = text_content(
        [
            *body_lines(["CHAPTER I."], top=720),
            *body_lines(["Down the Rabbit-Hole"], top=690),
            *body_lines([LONG, "and so on."], top=660),
        ]
    )
    document = parsed(build_pdf([page]))
    assert headings(document) == [(1, "CHAPTER I. Down the Rabbit-Hole")]


def test_bold_lines_at_body_size_are_headings_below_the_sized_ones() -> None:
    page = text_content(
        [
            ("F1", 16, 72, 740, "Findings"),
            ("F2", 11, 72, 720, "Summary of findings"),
            *body_lines([LONG, "and the paragraph ends here."], top=700),
            ("F2", 11, 72, 660, "Next steps"),
            *body_lines([LONG, "and another one."], top=640),
        ]
    )
    document = parsed(build_pdf([page]))
    assert headings(document) == [(1, "Findings"), (2, "Summary of findings"), (2, "Next steps")]


def test_a_long_run_of_large_text_is_a_paragraph_not_a_heading() -> None:
    page = text_content(
        [
            *body_lines(["The quick brown fox jumps over the lazy dog"] * 5, top=720, size=16, pitch=20),
            *body_lines([LONG, LONG, "the end."], top=600),
        ]
    )
    document = parsed(build_pdf([page]))
    assert headings(document) == []
    assert [b.kind for b in document.blocks] == ["paragraph", "paragraph"]


def test_bullets_become_a_list_block() -> None:
    page = text_content(
        [
            *body_lines(["Things to bring:"], top=720),
            *body_lines(["\u2022 a towel", "\u2022 a guide"], top=700),
        ]
    )
    document = parsed(build_pdf([page]))
    assert [b.text for b in document.blocks if b.kind == "list"] == ["\u2022 a towel\n\u2022 a guide"]


def test_concurrent_parses_give_the_same_result() -> None:
    data = report_pdf()
    expected = parsed(data).text
    results: list[str] = []

    def work() -> None:
        for _ in range(5):
            results.append(parsed(data).text)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 20


# --- failures --------------------------------------------------------------------------------------


def test_garbage_after_the_magic_is_corrupt() -> None:
    with pytest.raises(CorruptDocument):
        PdfParser().parse(b"%PDF-1.7\nthis is not a pdf at all", ParseLimits())


def test_truncated_pdf_is_corrupt() -> None:
    data = report_pdf()
    with pytest.raises(CorruptDocument, match="damaged or truncated"):
        PdfParser().parse(data[: len(data) // 2], ParseLimits())


def test_password_protected_pdf_is_encrypted() -> None:
    data = build_pdf([text_content(body_lines(["Top secret text."], top=700))], user_password="sesame")
    # The fixture is a real encrypted PDF: it opens with its password.
    unlocked = pdfium.PdfDocument(data, password="sesame")
    assert "Top secret text." in unlocked[0].get_textpage().get_text_range()
    unlocked.close()
    with pytest.raises(EncryptedDocument, match="password"):
        PdfParser().parse(data, ParseLimits())


def test_too_many_pages_is_unsafe() -> None:
    data = build_pdf([text_content(body_lines([f"page {n}"], top=700)) for n in range(3)])
    with pytest.raises(UnsafeDocument, match="3 pages"):
        PdfParser().parse(data, ParseLimits(max_pages=2))


# --- pages without a text layer ------------------------------------------------------------------------


def scanned_pdf() -> bytes:
    image = Image.new("L", (1700, 500), 255)
    font = ImageFont.load_default(size=64)
    ImageDraw.Draw(image).text((80, 120), "The quick brown fox jumps\nover the lazy dog.", fill=0, font=font)
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=90)
    # 1700x500 px shown at 408x120 pt: about 300 dpi, as a scanner would produce.
    return build_pdf([b"q 408 0 0 120 72 600 cm /Im1 Do Q"], image=(1700, 500, jpeg.getvalue()))


def test_page_without_text_is_reported_when_ocr_is_off() -> None:
    document = parsed(scanned_pdf(), ParseLimits(ocr=False))
    assert document.needs_ocr_pages == [1]
    assert document.ocr_pages == []
    assert document.blocks == []
    assert any("OCR is disabled" in warning for warning in document.warnings)


def test_blank_page_with_a_page_number_is_not_a_scan() -> None:
    document = parsed(build_pdf([text_content([("F1", 9, 300, 40, "7")])]), ParseLimits(ocr=False))
    assert document.needs_ocr_pages == []
    assert document.blocks == []


@NEEDS_TESSERACT
def test_page_without_text_is_ocred() -> None:
    document = parsed(scanned_pdf())
    assert document.ocr_pages == [1]
    assert document.needs_ocr_pages == []
    assert "quick brown fox jumps over the lazy dog" in document.text
    assert all(block.page == 1 for block in document.blocks)


# --- the Alice acceptance file -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice() -> ParsedDocument:
    if not ALICE_PDF.exists():
        pytest.skip("../shared/data/gutenberg-books is absent")
    return parse("pdf", ALICE_PDF.read_bytes(), ParseLimits(ocr=False))


def test_alice_chapters_are_level_one_headings(alice: ParsedDocument) -> None:
    found = headings(alice)
    for chapter in ("1 Down the Rabbit-Hole", "2 The Pool of Tears", "7 A Mad Tea-Party", "12 Alice\u2019s Evidence"):
        assert (1, chapter) in found
    assert {level for level, _ in found} == {1}
    english_pages = {b.page for b in alice.blocks if b.kind == "heading" and b.page != 3}  # page 3: Slovak contents
    assert len(english_pages) == 12


def test_alice_heading_paths_contain_chapter_titles(alice: ParsedDocument) -> None:
    block = next(b for b in alice.blocks if b.text.startswith("\u2018Curiouser and curiouser!\u2019"))
    assert heading_path(alice, block) == ["2 The Pool of Tears"]
    assert block.page == 6


def test_alice_blocks_have_pages_and_no_page_numbers(alice: ParsedDocument) -> None:
    assert alice.page_count == 76
    assert all(block.page is not None and 1 <= block.page <= 76 for block in alice.blocks)
    assert not any(block.text.isdigit() and block.kind == "paragraph" and block.page != 3 for block in alice.blocks)
    first = next(b for b in alice.blocks if b.text.startswith("Alice was beginning"))
    assert first.page == 2
    assert "\n" not in first.text
    assert first.text.endswith("\u2018without pictures or conversations?\u2019")


def test_alice_title_and_no_ocr_needed(alice: ParsedDocument) -> None:
    assert alice.title is not None
    assert alice.title.startswith("Alice\u2019s Adventures in Wonderland")
    assert alice.needs_ocr_pages == []  # the Slovak pages are blank apart from their numbers


def _shingles(text: str) -> set[tuple[str, ...]]:
    text = text.translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))
    words = re.findall(r"[a-z]+", text.lower())
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def test_alice_pdf_text_matches_the_gutenberg_text(alice: ParsedDocument) -> None:
    txt = BOOKS / "txt" / "pg11.txt"
    if not txt.exists():
        pytest.skip("../shared/data/gutenberg-books is absent")
    reference = _shingles(parse("text", txt.read_bytes(), ParseLimits()).text)
    english = _shingles(" ".join(b.text for b in alice.blocks if b.page not in (1, 3)))
    # Lost or split words, wrong joins and stray page numbers would each break several 5-word runs.
    assert len(reference & english) / len(reference) > 0.99
