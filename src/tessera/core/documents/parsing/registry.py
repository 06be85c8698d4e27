"""Parsers keyed by detected type. Types are sniffed from the bytes (see detect.py), never taken
from the extension or the client's content type alone."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from tessera.core.documents.parsing.base import ParsedDocument, ParseLimits, Parser


@dataclass(frozen=True)
class DocumentType:
    name: str
    media_type: str
    extensions: tuple[str, ...]
    parser: str
    """`module:Class` of the parser, imported on first use so start-up stays light."""


_P = "tessera.core.documents.parsing"
DOCUMENT_TYPES: dict[str, DocumentType] = {
    t.name: t
    for t in (
        DocumentType("pdf", "application/pdf", (".pdf",), f"{_P}.pdf:PdfParser"),
        DocumentType(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            (".docx",),
            f"{_P}.office:DocxParser",
        ),
        DocumentType(
            "pptx",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            (".pptx",),
            f"{_P}.office:PptxParser",
        ),
        DocumentType(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (".xlsx",),
            f"{_P}.office:XlsxParser",
        ),
        DocumentType("csv", "text/csv", (".csv", ".tsv"), f"{_P}.text:CsvParser"),
        DocumentType("epub", "application/epub+zip", (".epub",), f"{_P}.epub:EpubParser"),
        DocumentType("html", "text/html", (".html", ".htm", ".xhtml"), f"{_P}.html:HtmlParser"),
        DocumentType("markdown", "text/markdown", (".md", ".markdown"), f"{_P}.text:MarkdownParser"),
        DocumentType("text", "text/plain", (".txt", ".text", ".log", ".rst"), f"{_P}.text:PlainTextParser"),
        DocumentType("png", "image/png", (".png",), f"{_P}.image:ImageParser"),
        DocumentType("jpeg", "image/jpeg", (".jpg", ".jpeg"), f"{_P}.image:ImageParser"),
        DocumentType("tiff", "image/tiff", (".tif", ".tiff"), f"{_P}.image:ImageParser"),
        DocumentType("eml", "message/rfc822", (".eml",), f"{_P}.email:EmailParser"),
    )
}

_loaded: dict[str, Parser] = {}


def get_parser(type_name: str) -> Parser:
    """The parser for a detected type; KeyError for a type without one."""
    parser = _loaded.get(type_name)
    if parser is None:
        module_name, class_name = DOCUMENT_TYPES[type_name].parser.split(":")
        parser = getattr(importlib.import_module(module_name), class_name)()
        _loaded[type_name] = parser
    return parser


def parse(type_name: str, data: bytes, limits: ParseLimits) -> ParsedDocument:
    """Parse `data` of a detected type and finalize it (text joined, block spans set)."""
    return get_parser(type_name).parse(data, limits).finalize()


def accepted_media_types() -> list[str]:
    return sorted({t.media_type for t in DOCUMENT_TYPES.values()})
