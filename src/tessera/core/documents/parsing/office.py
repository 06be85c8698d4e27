"""DOCX, PPTX and XLSX parsers (python-docx, python-pptx, openpyxl).

Every file first goes through `zipsafe.open_zip` and a scan that refuses any XML part with a DTD
(OPC, ECMA-376 Part 2, forbids DTDs in package parts), so the libraries only ever see archives that
passed the bomb checks and XML that cannot declare entities. The libraries are imported inside the
parsers: each is only needed when its type is parsed.

Layout decisions:
- DOCX: body order is kept by walking the body XML, so tables sit between the paragraphs around them.
- PPTX: each slide is page n; the title placeholder is a level-1 heading; body placeholders become
  lists. Speaker notes become a paragraph starting with "Speaker notes:" on the slide's page (the
  text says what it is, so a citation of it reads right), and `metadata["slides_with_notes"]`
  lists the slides that have them.
- XLSX: each sheet is page n (its 1-based index) with its name as a level-1 heading.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from tessera.core.documents.parsing.base import (
    Block,
    BlockKind,
    CorruptDocument,
    EncryptedDocument,
    ParsedDocument,
    ParseError,
    ParseLimits,
    UnsafeDocument,
)
from tessera.core.documents.parsing.zipsafe import iter_member, open_zip

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument
    from docx.oxml.xmlchemy import BaseOxmlElement
    from docx.text.paragraph import Paragraph
    from pptx.shapes.base import BaseShape

TABLE_ROWS_PER_BLOCK = 50
MAX_XLSX_CELLS = 5_000_000
"""Cells (padding included) read from a workbook before the rest is dropped with a warning."""

_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# An encrypted OOXML file is an OLE compound file holding this stream (MS-OFFCRYPTO 2.3.4.4).
_ENCRYPTED_PACKAGE_STREAM = "EncryptedPackage".encode("utf-16-le")
_DOCTYPE_PATTERNS = tuple("<!DOCTYPE".encode(encoding) for encoding in ("utf-8", "utf-16-le", "utf-16-be"))
_XML_LEAD = b"\xef\xbb\xbf\xff\xfe \t\r\n\x00"
_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)
_LIST_STYLE = re.compile(r"^list\b(?:.*\s([2-9])$)?", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")


def is_ole_compound(data: bytes) -> bool:
    """True for an OLE compound file: a legacy .doc/.xls/.ppt, or a password-protected OOXML file."""
    return data.startswith(_OLE_MAGIC)


def is_encrypted_ooxml(data: bytes) -> bool:
    return is_ole_compound(data) and _ENCRYPTED_PACKAGE_STREAM in data


def table_blocks(rows: Iterable[Sequence[str]], page: int | None = None) -> list[Block]:
    """Rows as "table" blocks of at most `TABLE_ROWS_PER_BLOCK` lines, cells joined by " | ".

    The first non-empty row is the header; every block starts with it, so a block read alone
    (one chunk, one citation) still says what its columns are.
    """
    lines = []
    for row in rows:
        cells = [_WHITESPACE.sub(" ", cell).strip() for cell in row]
        if any(cells):
            lines.append(" | ".join(cells))
    if not lines:
        return []
    header, body = lines[0], lines[1:]
    if not body:
        return [Block("table", header, page=page)]
    per_block = TABLE_ROWS_PER_BLOCK - 1
    return [
        Block("table", "\n".join([header, *body[i : i + per_block]]), page=page) for i in range(0, len(body), per_block)
    ]


def _open_package(data: bytes, limits: ParseLimits) -> None:
    """Refuse what the Office libraries must never see; they reopen the bytes themselves afterwards."""
    if is_ole_compound(data):
        if is_encrypted_ooxml(data):
            raise EncryptedDocument("the file is password-protected: remove the password and upload it again")
        raise ParseError("legacy binary Office format (.doc/.xls/.ppt) is not supported: save it as .docx/.xlsx/.pptx")
    with open_zip(data, limits) as archive:
        _reject_doctypes(archive, limits)


def _reject_doctypes(archive: zipfile.ZipFile, limits: ParseLimits) -> None:
    overlap = max(len(p) for p in _DOCTYPE_PATTERNS) - 1
    for info in archive.infolist():
        if info.is_dir():
            continue
        chunks = iter_member(archive, info.filename, limits, limits.max_expanded_bytes)
        try:
            first = next(chunks, b"")
            # Parts are typed by [Content_Types].xml, not by extension: sniff every member for XML.
            if first.lstrip(_XML_LEAD)[:1] != b"<":
                continue
            window = b""
            for chunk in _prepend(first, chunks):
                window = window[-overlap:] + chunk
                if any(pattern in window for pattern in _DOCTYPE_PATTERNS):
                    raise UnsafeDocument(f"XML part {info.filename!r} declares a DTD, which Office files never do")
        finally:
            chunks.close()


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _vendor_failure(kind: str, exc: Exception) -> CorruptDocument:
    """What the library raised on a malformed file, as our error: the libraries raise anything from
    KeyError to AttributeError on broken input, so the parsers catch `Exception` at this boundary."""
    return CorruptDocument(f"unreadable {kind} file: {type(exc).__name__}: {exc}")


def _core_metadata(props: Any, *, author_attr: str = "author") -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for key, attr in (
        ("title", "title"),
        ("author", author_attr),
        ("subject", "subject"),
        ("keywords", "keywords"),
        ("language", "language"),
        ("created", "created"),
        ("modified", "modified"),
    ):
        value = getattr(props, attr, None)
        if isinstance(value, dt.datetime | dt.date):
            metadata[key] = value.isoformat()
        elif isinstance(value, str) and value.strip():
            metadata[key] = value.strip()
    return metadata


# --- DOCX -------------------------------------------------------------------------------------


class DocxParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        import docx

        _open_package(data, limits)
        try:
            document = docx.Document(io.BytesIO(data))
            metadata = _core_metadata(document.core_properties)
            blocks: list[Block] = []
            warnings: list[str] = []
            chars = 0
            for block in _docx_blocks(document):
                blocks.append(block)
                chars += len(block.text)
                if chars > limits.max_text_chars:
                    warnings.append(f"text longer than {limits.max_text_chars} characters: the rest was skipped")
                    break
        except Exception as exc:
            raise _vendor_failure("DOCX", exc) from exc
        return ParsedDocument(blocks=blocks, title=metadata.get("title"), metadata=metadata, warnings=warnings)


def _docx_blocks(document: DocxDocument) -> Iterator[Block]:
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    paragraph_tag, table_tag = qn("w:p"), qn("w:tbl")
    # Content controls and custom XML wrap ordinary body content: look inside them.
    wrapper_tags = {qn("w:sdt"), qn("w:sdtContent"), qn("w:customXml")}
    list_items: list[str] = []

    def flush_list() -> Iterator[Block]:
        if list_items:
            yield Block("list", "\n".join(list_items))
            list_items.clear()

    def walk(parent: BaseOxmlElement) -> Iterator[Block]:
        for child in parent.iterchildren():
            if child.tag == paragraph_tag:
                paragraph = Paragraph(child, document)
                text = paragraph.text.strip()
                if not text:
                    continue
                list_depth = _docx_list_depth(paragraph)
                if list_depth is not None:
                    list_items.append("  " * list_depth + "- " + _WHITESPACE.sub(" ", text))
                    continue
                yield from flush_list()
                yield _docx_paragraph_block(paragraph, text)
            elif child.tag == table_tag:
                yield from flush_list()
                yield from table_blocks(_docx_table_rows(child, document))
            elif child.tag in wrapper_tags:
                yield from walk(child)
        yield from flush_list()

    yield from walk(document.element.body)


def _docx_style_chain(paragraph: Paragraph) -> Iterator[Any]:
    style: Any = paragraph.style
    for _ in range(10):  # base styles can form a cycle in a hostile file
        if style is None:
            return
        yield style
        style = style.base_style


def _docx_paragraph_block(paragraph: Paragraph, text: str) -> Block:
    for style in _docx_style_chain(paragraph):
        name = (style.name or "").strip()
        if name.lower() == "title":
            return Block("title", text)
        match = _HEADING_STYLE.match(name)
        if match:
            return Block("heading", _WHITESPACE.sub(" ", text), level=int(match.group(1)))
    return Block("paragraph", text)


def _docx_list_depth(paragraph: Paragraph) -> int | None:
    """Indent depth of a list item, None for a paragraph that is not one."""
    from docx.oxml.ns import qn

    ppr = paragraph._p.pPr
    num_pr = ppr.find(qn("w:numPr")) if ppr is not None else None
    if num_pr is not None:
        ilvl = num_pr.find(qn("w:ilvl"))
        value = ilvl.get(qn("w:val")) if ilvl is not None else None
        return min(int(value), 8) if value is not None and value.isdigit() else 0
    for style in _docx_style_chain(paragraph):
        match = _LIST_STYLE.match((style.name or "").strip())
        if match:
            # "List Bullet 2", "List Number 3": the suffix is the nesting level.
            return int(match.group(1)) - 1 if match.group(1) else 0
    return None


def _docx_table_rows(table: BaseOxmlElement, document: DocxDocument) -> Iterator[list[str]]:
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    for row in table.iterchildren(qn("w:tr")):
        yield [
            " ".join(Paragraph(p, document).text for p in cell.iter(qn("w:p"))) for cell in row.iterchildren(qn("w:tc"))
        ]


# --- PPTX -------------------------------------------------------------------------------------


class PptxParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        from pptx import Presentation

        _open_package(data, limits)
        try:
            presentation = Presentation(io.BytesIO(data))
            metadata = _core_metadata(presentation.core_properties)
            blocks: list[Block] = []
            warnings: list[str] = []
            with_notes: list[int] = []
            slides = list(presentation.slides)
            for number, slide in enumerate(slides, start=1):
                if number > limits.max_pages:
                    warnings.append(f"only the first {limits.max_pages} of {len(slides)} slides were read")
                    break
                title_shape = slide.shapes.title
                if title_shape is not None and title_shape.has_text_frame:
                    title = _WHITESPACE.sub(" ", title_shape.text_frame.text).strip()
                    blocks.append(Block("heading", title, level=1, page=number))
                others = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
                for shape in _reading_order(others):
                    blocks.extend(_pptx_shape_blocks(shape, number))
                if slide.has_notes_slide:
                    frame = slide.notes_slide.notes_text_frame
                    notes = frame.text.strip() if frame is not None else ""
                    if notes:
                        blocks.append(Block("paragraph", f"Speaker notes: {notes}", page=number))
                        with_notes.append(number)
        except Exception as exc:
            raise _vendor_failure("PPTX", exc) from exc
        if with_notes:
            metadata["slides_with_notes"] = with_notes
        return ParsedDocument(
            blocks=blocks,
            title=metadata.get("title"),
            page_count=len(slides),
            metadata=metadata,
            warnings=warnings,
        )


def _reading_order(shapes: Iterable[BaseShape]) -> list[BaseShape]:
    # z-order is creation order, not reading order: read top to bottom, then left to right.
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _pptx_shape_blocks(shape: BaseShape, page: int, depth: int = 0) -> Iterator[Block]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE, PP_PLACEHOLDER

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP and depth < 20:
        for member in _reading_order(shape.shapes):  # type: ignore[attr-defined]
            yield from _pptx_shape_blocks(member, page, depth + 1)
    elif shape.has_table:
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]  # type: ignore[attr-defined]
        yield from table_blocks(rows, page=page)
    elif shape.has_text_frame:
        items = [
            (paragraph.level, _WHITESPACE.sub(" ", "".join(run.text for run in paragraph.runs)).strip())
            for paragraph in shape.text_frame.paragraphs  # type: ignore[attr-defined]
        ]
        items = [(level, text) for level, text in items if text]
        if not items:
            return
        is_body = shape.is_placeholder and shape.placeholder_format.type in (
            PP_PLACEHOLDER.BODY,
            PP_PLACEHOLDER.OBJECT,
        )
        kind: BlockKind = "list" if is_body or any(level > 0 for level, _ in items) else "paragraph"
        if kind == "list":
            yield Block(kind, "\n".join("  " * level + "- " + text for level, text in items), page=page)
        else:
            yield Block(kind, "\n".join(text for _, text in items), page=page)


# --- XLSX -------------------------------------------------------------------------------------


class XlsxParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        _open_package(data, limits)
        try:
            return _parse_workbook(data, limits)
        except Exception as exc:
            raise _vendor_failure("XLSX", exc) from exc


def _parse_workbook(data: bytes, limits: ParseLimits) -> ParsedDocument:
    from openpyxl import load_workbook  # type: ignore[import-untyped]

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    try:
        metadata = _core_metadata(workbook.properties, author_attr="creator")
        sheets = list(workbook.worksheets)
        metadata["sheet_names"] = [sheet.title for sheet in sheets]
        blocks: list[Block] = []
        warnings: list[str] = []
        cells = chars = 0
        truncated = False
        for index, sheet in enumerate(sheets, start=1):
            if index > limits.max_pages:
                warnings.append(f"only the first {limits.max_pages} of {len(sheets)} sheets were read")
                break
            # The stored dimension can claim 16,384 columns and pad every row to it: size rows by their cells.
            sheet.reset_dimensions()
            rows: list[list[str]] = []
            for values in sheet.iter_rows(values_only=True):
                cells += len(values)
                if cells > MAX_XLSX_CELLS or chars > limits.max_text_chars:
                    truncated = True
                    break
                row = [_cell_text(value) for value in values]
                if any(row):
                    rows.append(row)
                    chars += sum(len(cell) + 3 for cell in row)
            rows = _drop_empty_columns(rows)
            if rows:
                blocks.append(Block("heading", sheet.title, level=1, page=index))
                blocks.extend(table_blocks(rows, page=index))
            if truncated:
                warnings.append(f"workbook too large: reading stopped in sheet {sheet.title!r}")
                break
    finally:
        workbook.close()
    return ParsedDocument(
        blocks=blocks,
        title=metadata.get("title"),
        page_count=len(sheets),
        metadata=metadata,
        warnings=warnings,
    )


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _WHITESPACE.sub(" ", str(value)).strip()


def _drop_empty_columns(rows: list[list[str]]) -> list[list[str]]:
    width = max((len(row) for row in rows), default=0)
    used = [c for c in range(width) if any(c < len(row) and row[c] for row in rows)]
    return [[row[c] if c < len(row) else "" for c in used] for row in rows]
