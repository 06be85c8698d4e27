from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest

from tessera.core.documents.parsing.detect import describe_accepted, detect_type
from tessera.core.documents.parsing.registry import DOCUMENT_TYPES

BOOKS = Path(__file__).parents[4] / ".." / "shared" / "data" / "gutenberg-books"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< >>\nendobj\n"


def zip_of(members: dict[str, bytes], *, epub_mimetype_first: bool = False) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if epub_mimetype_first:
            archive.writestr(zipfile.ZipInfo("mimetype"), b"application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PDF, "pdf"),
        (b"\r\n\x00junk before the header\n" + PDF, "pdf"),
        (PNG, "png"),
        (JPEG, "jpeg"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),
    ],
)
def test_binary_formats_by_magic(data: bytes, expected: str) -> None:
    assert detect_type(data) == expected


def test_text_mentioning_the_pdf_magic_is_not_a_pdf() -> None:
    assert detect_type(b"Notes: every PDF starts with %PDF-1.7 and a binary comment.\n", "notes.txt") == "text"


def test_extension_never_overrides_magic() -> None:
    assert detect_type(PNG, "report.pdf") == "png"
    assert detect_type(b"GIF89a\x01\x00\x01\x00", "picture.png") is None
    assert detect_type(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "old.doc") is None


@pytest.mark.parametrize(
    ("member", "expected"),
    [("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx")],
)
def test_office_files_by_their_members(member: str, expected: str) -> None:
    data = zip_of({"[Content_Types].xml": b"<Types/>", member: b"<x/>"})
    assert detect_type(data) == expected
    assert detect_type(data, "renamed.zip") == expected


def test_epub_by_mimetype_or_container() -> None:
    assert detect_type(zip_of({"OEBPS/a.xhtml": b"<html/>"}, epub_mimetype_first=True)) == "epub"
    assert detect_type(zip_of({"META-INF/container.xml": b"<container/>"})) == "epub"


def test_real_epub() -> None:
    path = BOOKS / "epub" / "pg11.epub"
    if not path.exists():
        pytest.skip("../shared/data/gutenberg-books is absent")
    assert detect_type(path.read_bytes(), None) == "epub"


def test_other_zip_is_unsupported() -> None:
    assert detect_type(zip_of({"notes.txt": b"hello"}), "archive.zip") is None


def test_damaged_zip_takes_its_type_from_the_extension() -> None:
    truncated = zip_of({"word/document.xml": random.Random(0).randbytes(5000)})[:2000]
    assert detect_type(truncated, "report.docx") == "docx"
    assert detect_type(truncated, r"C:\Users\ann\report.DOCX") == "docx"
    assert detect_type(truncated, "report.zip") is None
    assert detect_type(truncated) is None


EMAIL = (
    b"Received: from mx.example.com by mail.example.org\r\n"
    b"From: Ann <ann@example.com>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: Quarterly numbers\r\n"
    b"\tcontinued subject\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
)


def test_email_by_headers() -> None:
    assert detect_type(EMAIL) == "eml"
    assert detect_type(b"From ann@example.com Mon Jan  1 10:00:00 2024\n" + EMAIL) == "eml"


def test_a_text_with_one_header_like_line_is_not_an_email() -> None:
    assert detect_type(b"Subject: my notes\n\nSome text.") == "text"
    assert detect_type(b"Subject: my notes\n\nSome text.", "message.eml") == "eml"
    assert detect_type(b"Note: From: somewhere\nTo: here\nplain prose follows") == "text"


@pytest.mark.parametrize(
    "html",
    [
        b"<!DOCTYPE html><html><body>x</body></html>",
        b"\xef\xbb\xbf  <!-- generated -->\n<html lang='en'><head><title>t</title></head></html>",
        b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" '
        b'"http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml"></html>',
        b"<HEAD><TITLE>old</TITLE></HEAD><BODY>x</BODY>",
    ],
)
def test_html_by_content(html: bytes) -> None:
    assert detect_type(html) == "html"
    assert detect_type(html, "page.txt") == "html"


def test_html_fragment_by_extension() -> None:
    assert detect_type(b"<div><p>fragment</p></div>", "part.html") == "html"
    assert detect_type(b"no markup at all", "part.html") == "text"


def test_text_subtypes_by_extension() -> None:
    assert detect_type(b"a,b\n1,2\n", "data.csv") == "csv"
    assert detect_type(b"a\tb\n1\t2\n", "data.TSV") == "csv"
    assert detect_type(b"Just a title\n\nand text", "notes.md") == "markdown"
    assert detect_type(b"# Heading\n\n# Another", "notes.txt") == "text"


def test_csv_is_sniffed_without_an_extension() -> None:
    data = b"id;name;price\n1;tea;2.50\n2;milk;1.20\n3;bread;3.10\n4;jam;4.00\n"
    assert detect_type(data) == "csv"
    assert detect_type(data, "export.dat") == "csv"


def test_prose_with_commas_is_not_csv() -> None:
    verse = (
        b"It was the best of times,\nit was the worst of times,\nit was the age of wisdom,\n"
        b"it was the age of foolishness,\n"
    )
    assert detect_type(verse) == "text"
    assert (
        detect_type(b"Hello, world. This is text, with commas, in it.\nAnother line, also prose.\nAnd a third, ok.")
        == "text"
    )


def test_markdown_is_sniffed_without_an_extension() -> None:
    assert detect_type(b"# Title\n\nSome [link](https://example.com) here.\n\n## Part\n") == "markdown"
    assert detect_type(b"Intro\n\n```python\nprint(1)\n```\n") == "markdown"
    assert detect_type(b"# just one hash line and nothing else markdown-like") == "text"


def test_text_encodings() -> None:
    assert detect_type("caf\u00e9 cr\u00e8me".encode("utf-16")) == "text"
    assert detect_type("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("cp1252")) == "text"


def test_binary_and_empty_are_unsupported() -> None:
    assert detect_type(b"") is None
    assert detect_type(b"\x00\x01\x02\x03binary\x00\x00") is None
    assert detect_type(bytes(range(1, 32)) * 10) is None


def test_gutenberg_text_that_file1_calls_csv_is_text() -> None:
    path = BOOKS / "txt" / "pg98.txt"
    if not path.exists():
        pytest.skip("../shared/data/gutenberg-books is absent")
    assert detect_type(path.read_bytes()) == "text"
    assert detect_type((BOOKS / "pdf" / "alices_adventures_in_wonderland.pdf").read_bytes(), "alice.txt") == "pdf"


def test_describe_accepted_names_every_type() -> None:
    message = describe_accepted()
    for document_type in DOCUMENT_TYPES.values():
        assert all(extension in message for extension in document_type.extensions)
    assert "PDF" in message
    assert "Word" in message
