"""Sniff a document's type from its bytes.

Binary formats are recognised by their magic bytes only: a file called `report.pdf` that is not a
PDF is not parsed as one. The file name only helps to tell text-like subtypes apart (CSV, Markdown,
HTML and plain text can all be the same bytes), and to let a damaged Office or EPUB file fail in
its parser with a reason instead of being refused as an unknown type.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import PurePosixPath, PureWindowsPath

from tessera.core.documents.parsing.registry import DOCUMENT_TYPES
from tessera.core.documents.parsing.text import decode_text, sniff_dialect

_TEXT_SAMPLE = 65_536
_PDF_MAGIC = re.compile(rb"%PDF-\d")
_PDF_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\b")
_ZIP_TYPES_BY_EXTENSION = {".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx", ".epub": "epub"}
_ZIP_MARKERS = (("word/document.xml", "docx"), ("ppt/presentation.xml", "pptx"), ("xl/workbook.xml", "xlsx"))
_OTHER_BINARY_MAGIC = (
    b"GIF8",
    b"BM",
    b"RIFF",
    b"\xd0\xcf\x11\xe0",  # OLE2: legacy .doc/.xls/.ppt, .msg
    b"\x1f\x8b",  # gzip
    b"7z\xbc\xaf",
    b"Rar!",
    b"\x7fELF",
    b"MZ",
    b"\x00\x00\x01\x00",  # .ico
    b"OggS",
    b"fLaC",
    b"ID3",
)
_LABELS = {
    "pdf": "PDF",
    "docx": "Word",
    "pptx": "PowerPoint",
    "xlsx": "Excel",
    "csv": "CSV/TSV",
    "epub": "EPUB",
    "html": "HTML",
    "markdown": "Markdown",
    "text": "plain text",
    "png": "PNG",
    "jpeg": "JPEG",
    "tiff": "TIFF",
    "eml": "e-mail",
}


def describe_accepted() -> str:
    """The accepted formats in words, for the message of a 415 response."""
    parts = [f"{_LABELS.get(t.name, t.name)} ({', '.join(t.extensions)})" for t in DOCUMENT_TYPES.values()]
    return "Accepted formats: " + ", ".join(parts) + "."


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    # Clients send Windows paths too; only the last component's suffix matters.
    return PurePosixPath(PureWindowsPath(filename).name).suffix.lower()


def detect_type(data: bytes, filename: str | None = None) -> str | None:
    """The registry type name of `data`, or None when it is not a supported format."""
    head = data[:1024]
    extension = _extension(filename)
    if _is_pdf(data, head):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"PK\x03\x04"):
        return _detect_zip(data, extension)
    if head.startswith(_OTHER_BINARY_MAGIC):
        return None
    return _detect_text(data[:_TEXT_SAMPLE], extension)


def _is_pdf(data: bytes, head: bytes) -> bool:
    """Readers accept junk before `%PDF-` (within 1 KiB); then it must also look like PDF inside, so a
    note that merely mentions "%PDF-1.7" near its start stays text."""
    magic = _PDF_MAGIC.search(head)
    if magic is None:
        return False
    return magic.start() == 0 or _PDF_OBJECT.search(data, 0, 65_536) is not None


def _detect_zip(data: bytes, extension: str) -> str | None:
    # EPUB requires an uncompressed `mimetype` first member, so its content sits at a fixed offset.
    if data[30:38] == b"mimetype" and b"application/epub+zip" in data[38:100]:
        return "epub"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        # A damaged Office/EPUB file should end as a failed document with a reason, not a 415.
        return _ZIP_TYPES_BY_EXTENSION.get(extension)
    for marker, type_name in _ZIP_MARKERS:
        if marker in names:
            return type_name
    if "META-INF/container.xml" in names:
        return "epub"
    return None


_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):[ \t]")
_KNOWN_MAIL_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "received",
        "return-path",
        "reply-to",
        "sender",
        "in-reply-to",
        "references",
        "delivered-to",
        "content-type",
        "x-mailer",
    }
)
_LEADING_NOISE = re.compile(r"^(?:\s+|<!--.*?-->|<\?xml[^>]*\?>)+", re.DOTALL)
_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>]", re.IGNORECASE)
_TAG = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*[\s/>]")
_ATX_HEADING = re.compile(r"^#{1,6}[ \t]+\S", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(?:```|~~~)", re.MULTILINE)
_MD_LINK = re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")
_MD_LIST = re.compile(r"^[ \t]{0,3}[-*+][ \t]+\S", re.MULTILINE)


def _is_binary(sample: bytes) -> bool:
    if sample.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return False
    if b"\x00" in sample:
        return True
    controls = sum(sample.count(bytes([c])) for c in (*range(1, 9), *range(14, 27), *range(28, 32)))
    return controls > max(len(sample) // 100, 2)


def _detect_text(sample: bytes, extension: str) -> str | None:
    if not sample or _is_binary(sample):
        return None
    text, _ = decode_text(sample)
    if _is_email(text, extension):
        return "eml"
    start = _LEADING_NOISE.sub("", text[:4096].lstrip("\ufeff"), count=1)
    if _HTML_START.match(start):
        return "html"
    hinted = next((t.name for t in DOCUMENT_TYPES.values() if extension in t.extensions), None)
    if hinted == "html":
        return "html" if _TAG.search(start[:1024]) else "text"
    if hinted in ("csv", "markdown", "text"):
        return hinted
    if _looks_like_markdown(text):
        return "markdown"
    if _looks_like_csv(text):
        return "csv"
    return "text"


def _is_email(text: str, extension: str) -> bool:
    known = 0
    lines = text.split("\n", 200)[:200]
    if lines and lines[0].startswith("From "):  # mbox separator line before the headers
        lines = lines[1:]
    for line in lines:
        if not line.strip():
            break
        if line[0] in " \t":
            continue  # a folded header continues
        match = _HEADER_LINE.match(line)
        if match is None:
            return False
        known += match.group(1).lower() in _KNOWN_MAIL_HEADERS
    return known >= (1 if extension == ".eml" else 2)


def _looks_like_markdown(text: str) -> bool:
    headings = len(_ATX_HEADING.findall(text))
    fences = len(_FENCE.findall(text))
    others = len(_MD_LINK.findall(text)) + len(_MD_LIST.findall(text))
    return headings >= 2 or fences >= 2 or (headings >= 1 and others >= 1)


def _looks_like_csv(text: str) -> bool:
    """Several lines that split into the same number (≥ 2) of short fields.

    Prose with one comma per line (verse, "It was the best of times,") also splits consistently,
    so fields that read like sentences do not count.
    """
    lines = [line for line in text.split("\n", 30)[:30] if line.strip()]
    if len(lines) > 5:
        lines = lines[:-1]  # the sample may have cut the last line
    if len(lines) < 3:
        return False
    dialect = sniff_dialect("\n".join(lines))
    try:
        rows = list(csv.reader(lines, dialect))
    except csv.Error:
        return False
    widths = [len(row) for row in rows]
    width = max(set(widths), key=widths.count)
    if width < 2 or widths.count(width) < 0.9 * len(rows):
        return False
    cells = [cell for row in rows for cell in row]
    wordy = sum(cell.strip().count(" ") >= 3 for cell in cells)
    trailing_empty = sum(not row[-1].strip() for row in rows if row)
    return wordy < 0.5 * len(cells) and trailing_empty < 0.5 * len(rows)
