"""What every parser returns, the parser protocol and the limits parsers enforce.

Parsers are synchronous and CPU-bound: the pipeline runs them in a worker thread. A parser gets
the raw bytes (never a path chosen by a client) and returns a `ParsedDocument`: an ordered list
of structural blocks. `ParsedDocument.text` joins the blocks into the document's extracted text,
and every block knows its character span in it, so chunks and citations can point at exact text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

BlockKind = Literal["title", "heading", "paragraph", "list", "table", "code", "quote", "caption"]
BLOCK_SEPARATOR = "\n\n"


@dataclass
class Block:
    kind: BlockKind
    text: str
    level: int = 0
    """Heading depth, 1 = top (chapter); 0 for everything that is not a heading."""
    page: int | None = None
    """1-based page (PDF page, slide, sheet index) where the format has pages; None otherwise."""
    start: int = 0
    """Character offset of `text` in `ParsedDocument.text`; set by `ParsedDocument.finalize`."""
    end: int = 0


@dataclass
class Attachment:
    """A file carried inside another (an e-mail attachment); it becomes a child document."""

    filename: str
    data: bytes
    content_type: str | None = None


@dataclass
class ParsedDocument:
    blocks: list[Block]
    title: str | None = None
    page_count: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Format metadata worth keeping: author, subject, created, language (as the file states it), sheet names…"""
    attachments: list[Attachment] = field(default_factory=list)
    needs_ocr_pages: list[int] = field(default_factory=list)
    """Pages (1-based; [1] for a single image) with no text that could not be OCRed here."""
    ocr_pages: list[int] = field(default_factory=list)
    """Pages whose text came from OCR."""
    warnings: list[str] = field(default_factory=list)
    text: str = ""

    def finalize(self) -> ParsedDocument:
        """Drop empty blocks, join the rest with blank lines and record each block's span."""
        parts: list[str] = []
        position = 0
        kept: list[Block] = []
        for block in self.blocks:
            cleaned = block.text.strip()
            if not cleaned:
                continue
            if parts:
                parts.append(BLOCK_SEPARATOR)
                position += len(BLOCK_SEPARATOR)
            block.text = cleaned
            block.start = position
            block.end = position + len(cleaned)
            parts.append(cleaned)
            position = block.end
            kept.append(block)
        self.blocks = kept
        self.text = "".join(parts)
        if self.title is None:
            self.title = next((b.text for b in kept if b.kind in ("title", "heading")), None)
        return self


@dataclass(frozen=True)
class ParseLimits:
    """Caps that keep a hostile file from exhausting the worker."""

    max_pages: int = 5_000
    max_expanded_bytes: int = 512 * 1024 * 1024
    """Total uncompressed size allowed inside a ZIP-based file (DOCX, PPTX, XLSX, EPUB)."""
    max_compression_ratio: float = 200.0
    """Uncompressed / compressed size of a ZIP member above which it counts as a bomb."""
    max_image_pixels: int = 100_000_000
    max_attachments: int = 50
    max_text_chars: int = 50_000_000
    ocr: bool = True
    """Try OCR on pages without a text layer and on images (where Tesseract is installed)."""
    ocr_languages: str = "eng"
    ocr_timeout_seconds: float = 60.0


class ParseError(Exception):
    """The file cannot be parsed; `reason` is shown to the user on the failed document."""

    code = "parse_failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CorruptDocument(ParseError):
    code = "corrupt_document"


class EncryptedDocument(ParseError):
    code = "encrypted_document"


class UnsafeDocument(ParseError):
    """A decompression bomb, an oversized image, an XML entity attack and the like."""

    code = "unsafe_document"


class Parser(Protocol):
    """Turns the bytes of one detected type into blocks."""

    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument: ...
