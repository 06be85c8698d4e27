from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

import docx
import pytest
from openpyxl import Workbook  # type: ignore[import-untyped]
from pptx import Presentation
from pptx.util import Inches

from tessera.core.documents.parsing.base import (
    CorruptDocument,
    EncryptedDocument,
    ParsedDocument,
    ParseError,
    ParseLimits,
    UnsafeDocument,
)
from tessera.core.documents.parsing.office import (
    DocxParser,
    PptxParser,
    XlsxParser,
    is_encrypted_ooxml,
    is_ole_compound,
    table_blocks,
)
from tessera.core.documents.parsing.registry import parse

LIMITS = ParseLimits()
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def save(document: object) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)  # type: ignore[attr-defined]
    return buffer.getvalue()


def kinds(parsed: ParsedDocument) -> list[tuple[str, int, str]]:
    return [(b.kind, b.level, b.text) for b in parsed.blocks]


def replace_member(data: bytes, name: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, content if info.filename == name else source.read(info))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def docx_bytes() -> bytes:
    document = docx.Document()
    document.core_properties.title = "Quarterly report"
    document.core_properties.author = "Ada Lovelace"
    document.add_heading("Quarterly report", 0)
    document.add_heading("Introduction", 1)
    document.add_paragraph("Sales grew in every region.")
    document.add_paragraph("North", style="List Bullet")
    document.add_paragraph("South", style="List Bullet 2")
    document.add_paragraph("Numbers follow.")
    table = document.add_table(rows=3, cols=2)
    for row, values in zip(table.rows, [("Region", "Sales"), ("North", "10"), ("South", "20")], strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_heading("Details", 2)
    document.add_paragraph("After the table.")
    return save(document)


class TestDocxParser:
    def test_keeps_headings_lists_and_tables_in_body_order(self, docx_bytes: bytes) -> None:
        parsed = parse("docx", docx_bytes, LIMITS)
        assert kinds(parsed) == [
            ("title", 0, "Quarterly report"),
            ("heading", 1, "Introduction"),
            ("paragraph", 0, "Sales grew in every region."),
            ("list", 0, "- North\n  - South"),
            ("paragraph", 0, "Numbers follow."),
            ("table", 0, "Region | Sales\nNorth | 10\nSouth | 20"),
            ("heading", 2, "Details"),
            ("paragraph", 0, "After the table."),
        ]
        assert all(b.page is None for b in parsed.blocks)
        assert parsed.title == "Quarterly report"
        assert parsed.metadata["author"] == "Ada Lovelace"

    def test_splits_long_tables_repeating_the_header(self) -> None:
        document = docx.Document()
        table = document.add_table(rows=121, cols=2)
        table.rows[0].cells[0].text, table.rows[0].cells[1].text = "id", "name"
        for index, row in enumerate(table.rows[1:], start=1):
            row.cells[0].text, row.cells[1].text = str(index), f"item {index}"
        parsed = DocxParser().parse(save(document), LIMITS)
        tables = [b.text.splitlines() for b in parsed.blocks if b.kind == "table"]
        assert [len(lines) for lines in tables] == [50, 50, 23]
        assert all(lines[0] == "id | name" for lines in tables)
        assert [line for lines in tables for line in lines[1:]] == [f"{i} | item {i}" for i in range(1, 121)]

    def test_truncated_file_is_corrupt(self, docx_bytes: bytes) -> None:
        with pytest.raises(CorruptDocument):
            DocxParser().parse(docx_bytes[: len(docx_bytes) // 2], LIMITS)

    def test_zip_without_word_parts_is_corrupt(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("hello.txt", "not a word file")
        with pytest.raises(CorruptDocument):
            DocxParser().parse(buffer.getvalue(), LIMITS)

    def test_external_entity_is_refused(self, docx_bytes: bytes) -> None:
        evil = _xxe_docx(docx_bytes)
        with pytest.raises(UnsafeDocument, match="DTD"):
            DocxParser().parse(evil, LIMITS)

    def test_python_docx_itself_does_not_resolve_external_entities(self, docx_bytes: bytes) -> None:
        # The DTD scan is the first wall; this checks the second (python-docx's parser) still holds.
        document = docx.Document(io.BytesIO(_xxe_docx(docx_bytes)))
        text = "\n".join(p.text for p in document.paragraphs)
        assert "root:" not in text
        assert "before" in text

    def test_password_protected_file_is_encrypted(self) -> None:
        data = OLE_MAGIC + bytes(504) + "EncryptedInfo".encode("utf-16-le") + "EncryptedPackage".encode("utf-16-le")
        assert is_ole_compound(data)
        assert is_encrypted_ooxml(data)
        with pytest.raises(EncryptedDocument):
            DocxParser().parse(data, LIMITS)

    def test_legacy_binary_word_file_is_not_reported_as_encrypted(self) -> None:
        data = OLE_MAGIC + bytes(504) + "WordDocument".encode("utf-16-le")
        assert not is_encrypted_ooxml(data)
        with pytest.raises(ParseError, match="legacy") as raised:
            DocxParser().parse(data, LIMITS)
        assert not isinstance(raised.value, EncryptedDocument)

    def test_zip_bomb_is_refused_before_python_docx_sees_it(self, docx_bytes: bytes) -> None:
        bomb = replace_member(docx_bytes, "word/document.xml", b"<a/>" + b" " * (8 << 20))
        with pytest.raises(UnsafeDocument, match="compression ratio"):
            DocxParser().parse(bomb, ParseLimits())


def _xxe_docx(docx_bytes: bytes) -> bytes:
    document_xml = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        b"<w:body><w:p><w:r><w:t>before &e; after</w:t></w:r></w:p></w:body></w:document>"
    )
    return replace_member(docx_bytes, "word/document.xml", document_xml)


@pytest.fixture(scope="module")
def pptx_bytes() -> bytes:
    presentation = Presentation()
    presentation.core_properties.title = "Roadmap"
    first = presentation.slides.add_slide(presentation.slide_layouts[1])  # title and content
    first.shapes.title.text = "Plans for 2025"
    body = first.placeholders[1].text_frame
    body.text = "Ship search"
    detail = body.add_paragraph()
    detail.text = "Hybrid ranking"
    detail.level = 1
    first.notes_slide.notes_text_frame.text = "Mention the budget."
    second = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
    second.shapes.title.text = "Numbers"
    box = second.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1))
    box.text_frame.text = "Source: finance team"
    table = second.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, values in enumerate([("Quarter", "Revenue"), ("Q1", "1.2"), ("Q2", "1.5")]):
        for c, value in enumerate(values):
            table.cell(r, c).text = value
    return save(presentation)


class TestPptxParser:
    def test_each_slide_is_a_page_with_its_title_as_heading(self, pptx_bytes: bytes) -> None:
        parsed = parse("pptx", pptx_bytes, LIMITS)
        assert [(b.kind, b.level, b.text, b.page) for b in parsed.blocks] == [
            ("heading", 1, "Plans for 2025", 1),
            ("list", 0, "- Ship search\n  - Hybrid ranking", 1),
            ("paragraph", 0, "Speaker notes: Mention the budget.", 1),
            ("heading", 1, "Numbers", 2),
            ("table", 0, "Quarter | Revenue\nQ1 | 1.2\nQ2 | 1.5", 2),
            ("paragraph", 0, "Source: finance team", 2),
        ]
        assert parsed.page_count == 2
        assert parsed.title == "Roadmap"
        assert parsed.metadata["slides_with_notes"] == [1]

    def test_garbage_is_corrupt(self) -> None:
        with pytest.raises(CorruptDocument):
            PptxParser().parse(b"PK\x03\x04 definitely not a presentation", LIMITS)


@pytest.fixture(scope="module")
def xlsx_bytes() -> bytes:
    workbook = Workbook()
    data = workbook.active
    data.title = "Sales"
    data.append(["Region", "Amount", "Closed"])
    for index in range(1, 121):
        data.append([f"R{index}", index * 1.5, dt.datetime(2024, 1, 1) + dt.timedelta(days=index)])
    workbook.create_sheet("Empty")
    notes = workbook.create_sheet("Notes")
    notes.append([None, "Topic", "Done"])
    notes.append([])
    notes.append([None, "Budget", True])
    workbook.properties.creator = "Finance"
    return save(workbook)


class TestXlsxParser:
    def test_each_sheet_is_a_page_with_its_name_as_heading(self, xlsx_bytes: bytes) -> None:
        parsed = parse("xlsx", xlsx_bytes, LIMITS)
        headings = [(b.text, b.page) for b in parsed.blocks if b.kind == "heading"]
        assert headings == [("Sales", 1), ("Notes", 3)]
        assert parsed.page_count == 3
        assert parsed.metadata["sheet_names"] == ["Sales", "Empty", "Notes"]
        assert parsed.metadata["author"] == "Finance"
        notes = [b for b in parsed.blocks if b.page == 3 and b.kind == "table"]
        assert [b.text for b in notes] == ["Topic | Done\nBudget | TRUE"]

    def test_rows_are_tables_of_at_most_50_lines_repeating_the_header(self, xlsx_bytes: bytes) -> None:
        parsed = XlsxParser().parse(xlsx_bytes, LIMITS)
        tables = [b.text.splitlines() for b in parsed.blocks if b.kind == "table" and b.page == 1]
        assert [len(lines) for lines in tables] == [50, 50, 23]
        assert all(lines[0] == "Region | Amount | Closed" for lines in tables)
        assert tables[0][1] == "R1 | 1.5 | 2024-01-02"
        assert tables[0][2] == "R2 | 3 | 2024-01-03"

    def test_cell_budget_truncates_with_a_warning(self, xlsx_bytes: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
        from tessera.core.documents.parsing import office

        monkeypatch.setattr(office, "MAX_XLSX_CELLS", 30)
        parsed = XlsxParser().parse(xlsx_bytes, LIMITS)
        assert parsed.warnings
        assert re.search(r"too large", parsed.warnings[0])
        assert sum(len(b.text.splitlines()) for b in parsed.blocks if b.kind == "table") == 10

    def test_garbage_is_corrupt(self, xlsx_bytes: bytes) -> None:
        with pytest.raises(CorruptDocument):
            XlsxParser().parse(xlsx_bytes[:-100], LIMITS)


def test_table_blocks_skips_empty_rows_and_keeps_a_lone_header() -> None:
    blocks = table_blocks([["a", "b"], ["", " "], ["1", "two\nlines"]], page=4)
    assert [(b.text, b.page) for b in blocks] == [("a | b\n1 | two lines", 4)]
    assert [b.text for b in table_blocks([["only", "header"]])] == ["only | header"]
    assert table_blocks([]) == []
