"""PDF through pypdfium2 (PDFium): the text layer page by page, OCR for pages that have none.

A PDF's text layer is a list of positioned lines with no paragraphs or headings, so structure is
rebuilt from cheap signals PDFium already has: each line's font size (larger than the body text =
heading; the sizes in use rank the levels), its baseline and edges (a wider line gap, a short last
line or an indent ends a paragraph), and lines repeated at the top or bottom of many pages (running
headers, page numbers) are dropped. Per line that is a handful of calls into PDFium, never a Python
loop over characters, which keeps text PDFs in the thousands of pages a second.

PDFium is not thread-safe: every call into it holds `_PDFIUM_LOCK`. OCR runs outside the lock.
"""

from __future__ import annotations

import ctypes
import itertools
import re
import statistics
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]
from PIL import Image

from tessera.core.documents.parsing import ocr
from tessera.core.documents.parsing.base import (
    Block,
    BlockKind,
    CorruptDocument,
    EncryptedDocument,
    ParsedDocument,
    ParseLimits,
    UnsafeDocument,
)
from tessera.core.documents.parsing.text import (
    heading_rank,
    is_bare_heading,
    join_heading,
    join_wrapped,
    levels_from_ranks,
    looks_like_title,
)

_PDFIUM_LOCK = threading.RLock()

OCR_DPI = 300
_MAX_RENDER_PIXELS = 40_000_000
"""A page is rendered for OCR at 300 dpi, or smaller if that would exceed this (a hostile
MediaBox can ask for a poster-sized bitmap)."""
_MIN_TEXT_CHARS = 16
"""Fewer letters and digits than this on a page with an image: treat the page as a scan."""

_LINE = re.compile(r"[^\r\n]+")
_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\x02": "-",  # PDFium's marker for a hyphen at a line break
        "\xad": "-",
        "\x00": "",
        "\ufffe": "",
        "\uffff": "",
    }
)
_NEEDS_TRANSLATION = re.compile("[\ufb00-\ufb06\x02\xad\x00\ufffe\uffff]")
_PAGE_NUMBER = re.compile(
    r"^(?:page\s+)?\d{1,5}(?:\s*(?:of|/)\s*\d{1,5})?$|^[-\u2013—]\s*\d{1,5}\s*[-\u2013—]$|^(?-i:[ivxlcdm]{1,7})$",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"\d+")
_BOLD_FONT = re.compile(rb"bold|black|heavy|semibold|demi", re.IGNORECASE)
_TERMINAL = ".!?:;\"'”\u2019)]…"
_BULLET = re.compile(r"^(?:[•◦▪●○■□‣\u2043∙·\uf0b7\uf0a7\uf0d8]\s*|[-\u2013*]\s+(?=[\w(\"'“\u2018]))")
_PDF_DATE = re.compile(r"^D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?([Zz]|[+-]\d{2}'?\d{2}'?)?")


@dataclass(slots=True)
class _Line:
    text: str
    size: float = 0.0
    bold: bool = False
    x: float = 0.0
    """Left edge (origin of the first character)."""
    y: float = 0.0
    """Baseline; PDF y grows upwards."""
    right: float = 0.0
    kind: str = "body"
    level: int = 0


@dataclass
class _Page:
    number: int
    lines: list[_Line] = field(default_factory=list)
    geometry: bool = True
    """False when PDFium's text and character indices disagree: fall back to text-only rules."""


class PdfParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        with _PDFIUM_LOCK:
            document = _open(data)
        try:
            return _parse_open(document, limits)
        finally:
            with _PDFIUM_LOCK:
                document.close()


def _open(data: bytes) -> Any:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        code = getattr(error, "err_code", None)
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise EncryptedDocument("the PDF is password-protected") from error
        if code == pdfium_c.FPDF_ERR_SUCCESS:
            raise CorruptDocument("the PDF has no pages") from error
        raise CorruptDocument("the PDF is damaged or truncated and cannot be read") from error


def _parse_open(document: Any, limits: ParseLimits) -> ParsedDocument:
    warnings: list[str] = []
    with _PDFIUM_LOCK:
        page_count = len(document)
        metadata = _metadata(document)
    if page_count > limits.max_pages:
        raise UnsafeDocument(f"the PDF has {page_count:,} pages; the limit is {limits.max_pages:,}")

    can_ocr = limits.ocr and ocr.tesseract_available()
    pages: list[_Page] = []
    ocr_blocks: dict[int, list[Block]] = {}
    needs_ocr: list[int] = []
    ocr_pages: list[int] = []
    failed: list[int] = []
    total_chars = 0
    for index in range(page_count):
        number = index + 1
        image: Image.Image | None = None
        with _PDFIUM_LOCK:
            try:
                page, scanned, image = _extract_page(document, index, render=can_ocr)
            except pdfium.PdfiumError:
                failed.append(number)
                continue
        pages.append(page)
        total_chars += sum(len(line.text) for line in page.lines)
        if scanned:
            if image is None:
                needs_ocr.append(number)
            else:
                try:
                    text = ocr.ocr_image(image, limits.ocr_languages, limits.ocr_timeout_seconds)
                except ocr.OcrError as error:
                    warnings.append(f"page {number}: {error}")
                    needs_ocr.append(number)
                else:
                    ocr_blocks[number] = ocr.ocr_text_to_blocks(text, number)
                    ocr_pages.append(number)
                    total_chars += len(text)
        if total_chars > limits.max_text_chars:
            warnings.append(f"text extraction stopped after page {number}: over {limits.max_text_chars:,} characters")
            break
    if failed:
        if len(failed) == page_count:
            raise CorruptDocument("no page of the PDF could be read")
        warnings.append(f"{len(failed)} page(s) could not be read: {_page_list(failed)}")
    if needs_ocr and not can_ocr:
        reason = ocr.OCR_UNAVAILABLE_REASON if limits.ocr else "OCR is disabled"
        warnings.append(f"{len(needs_ocr)} page(s) have no text layer and were not OCRed: {reason}")

    blocks = _build_blocks(pages, ocr_blocks)
    title = metadata.pop("title", None)
    return ParsedDocument(
        blocks=blocks,
        title=title,
        page_count=page_count,
        metadata=metadata,
        needs_ocr_pages=needs_ocr,
        ocr_pages=ocr_pages,
        warnings=warnings,
    )


def _page_list(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:20])
    return shown + (", …" if len(numbers) > 20 else "")


# --- extraction (caller holds the lock) ----------------------------------------------------------


def _extract_page(document: Any, index: int, *, render: bool) -> tuple[_Page, bool, Image.Image | None]:
    """The page's lines; whether it looks scanned; its rendering for OCR when asked and scanned."""
    page = document[index]
    try:
        textpage = page.get_textpage()
        try:
            result = _read_lines(textpage, index + 1)
        finally:
            textpage.close()
        scanned = _looks_scanned(page, result.lines)
        image = _render(page) if scanned and render else None
        if scanned:
            result.lines = []  # a stray page number or stamp on a scan: OCR (or nothing) stands for the page
        return result, scanned, image
    finally:
        page.close()


def _read_lines(textpage: Any, number: int) -> _Page:
    count = textpage.count_chars()
    page = _Page(number)
    if count <= 0:
        return page
    text = textpage.get_text_range()
    translate = _NEEDS_TRANSLATION.search(text) is not None
    # Character indices only match text offsets when PDFium neither dropped nor inserted characters.
    page.geometry = len(text) == count
    raw = textpage.raw
    origin_x, origin_y = ctypes.c_double(), ctypes.c_double()
    box = pdfium_c.FS_RECTF()
    for match in _LINE.finditer(text):
        segment = match.group()
        stripped = segment.strip()
        if not stripped:
            continue
        line = _Line(stripped.translate(_LIGATURES) if translate else stripped)
        if page.geometry:
            first = match.start() + len(segment) - len(segment.lstrip())
            last = match.end() - 1 - (len(segment) - len(segment.rstrip()))
            line.size = pdfium_c.FPDFText_GetFontSize(raw, first)
            line.bold = _is_bold(raw, first)
            if pdfium_c.FPDFText_GetCharOrigin(raw, first, origin_x, origin_y):
                line.x, line.y = origin_x.value, origin_y.value
            if pdfium_c.FPDFText_GetLooseCharBox(raw, last, box):
                line.right = box.right
            if line.bold and last != first:
                line.bold = _is_bold(raw, last)
        page.lines.append(line)
    return page


def _is_bold(textpage: Any, index: int) -> bool:
    weight = pdfium_c.FPDFText_GetFontWeight(textpage, index)
    if weight > 0:
        return bool(weight >= 600)
    # No weight for fonts without a descriptor (the standard 14, some Type 3): go by the name.
    name = ctypes.create_string_buffer(128)
    pdfium_c.FPDFText_GetFontInfo(textpage, index, name, len(name), None)
    return _BOLD_FONT.search(name.value) is not None


def _looks_scanned(page: Any, lines: list[_Line]) -> bool:
    """Next to no text (a page number, a scanner's stamp) on a page that shows an image."""
    if len(lines) >= 8:
        return False
    return sum(ch.isalnum() for line in lines for ch in line.text) < _MIN_TEXT_CHARS and _has_image(page)


def _has_image(page: Any) -> bool:
    return next(iter(page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=3)), None) is not None


def _render(page: Any) -> Image.Image:
    width, height = page.get_size()
    scale = OCR_DPI / 72
    if width * height * scale * scale > _MAX_RENDER_PIXELS:
        scale = (_MAX_RENDER_PIXELS / max(width * height, 1.0)) ** 0.5
    image: Image.Image = page.render(scale=scale, grayscale=True).to_pil()
    return image


def _metadata(document: Any) -> dict[str, Any]:
    raw = document.get_metadata_dict(skip_empty=True)
    metadata: dict[str, Any] = {}
    for key, name in (("Title", "title"), ("Author", "author"), ("Subject", "subject"), ("Keywords", "keywords")):
        value = " ".join(str(raw.get(key, "")).split())
        if value:
            metadata[name] = value
    for key, name in (("CreationDate", "created"), ("ModDate", "modified")):
        if raw.get(key):
            metadata[name] = _iso_date(str(raw[key]))
    for key, name in (("Creator", "creator"), ("Producer", "producer")):
        if str(raw.get(key, "")).strip():
            metadata[name] = str(raw[key]).strip()
    language = _language(document)
    if language:
        metadata["language"] = language
    title = metadata.get("title")
    if title and (title.lower() in ("untitled", "untitled document") or re.search(r"\.(?:docx?|pdf|tex|dvi)$", title)):
        del metadata["title"]  # an authoring tool's file name, not a title
    return metadata


def _language(document: Any) -> str | None:
    size = pdfium_c.FPDFCatalog_GetLanguage(document.raw, None, 0)
    if size <= 2:
        return None
    buffer = ctypes.create_string_buffer(size)
    pdfium_c.FPDFCatalog_GetLanguage(document.raw, buffer, size)
    return buffer.raw[: size - 2].decode("utf-16-le", errors="ignore").strip() or None


def _iso_date(value: str) -> str:
    match = _PDF_DATE.match(value)
    if not match:
        return value
    year, month, day, hour, minute, second, zone = match.groups()
    iso = f"{year}-{month or '01'}-{day or '01'}"
    if hour:
        iso += f"T{hour}:{minute or '00'}:{second or '00'}"
        if zone:
            iso += "Z" if zone in "Zz" else f"{zone[:3]}:{zone.replace(chr(39), '')[3:5] or '00'}"
    return iso


# --- structure -----------------------------------------------------------------------------------


def _build_blocks(pages: list[_Page], ocr_blocks: dict[int, list[Block]]) -> list[Block]:
    _drop_running_lines(pages)
    by_size = _classify_lines(pages)
    blocks: list[Block] = []
    for page in pages:
        blocks.extend(_page_blocks(page))
        blocks.extend(ocr_blocks.get(page.number, ()))
    if not by_size:
        blocks = _pattern_headings(blocks)
    return blocks


def _running_key(text: str) -> str:
    return _DIGITS.sub("#", " ".join(text.lower().split()))


def _edges(lines: list[_Line]) -> set[int]:
    """Indices of the lines where a running header or footer can be (two at each end on a full page)."""
    width = 1 if len(lines) < 8 else 2
    return set(range(min(width, len(lines)))) | set(range(max(len(lines) - width, 0), len(lines)))


def _drop_running_lines(pages: list[_Page]) -> None:
    """Remove page numbers and lines repeated at the top or bottom of many pages."""
    seen: Counter[str] = Counter()
    for page in pages:
        seen.update({_running_key(page.lines[i].text) for i in _edges(page.lines)})
    text_pages = sum(1 for page in pages if page.lines)
    threshold = max(3, int(0.4 * text_pages))
    running = {key for key, count in seen.items() if count >= threshold}
    for page in pages:
        edges = _edges(page.lines)
        page.lines = [
            line
            for i, line in enumerate(page.lines)
            if not (i in edges and (_PAGE_NUMBER.match(line.text) or _running_key(line.text) in running))
        ]


def _size_key(size: float) -> float:
    return round(size * 2) / 2


def _classify_lines(pages: list[_Page]) -> bool:
    """Mark heading and title lines by font size (and bold body text); False if sizes say nothing."""
    weights: Counter[float] = Counter()
    bold_weight = 0
    for page in pages:
        if page.geometry:
            for line in page.lines:
                weights[_size_key(line.size)] += len(line.text)
                bold_weight += len(line.text) if line.bold else 0
    if not weights:
        return False
    body = weights.most_common(1)[0][0]
    body_is_bold = bold_weight * 2 > sum(weights.values())
    first_page = next((p.number for p in pages if p.lines), 0)

    candidates: list[tuple[_Page, _Line]] = []
    pages_by_size: defaultdict[float, set[int]] = defaultdict(set)
    for page in pages:
        if not page.geometry:
            continue
        for line in page.lines:
            size = _size_key(line.size)
            if size < body * 1.15 or size - body < 1 or len(line.text) > 200:
                continue
            if sum(c.isalpha() for c in line.text[:40]) >= 2:
                candidates.append((page, line))
                pages_by_size[size].add(page.number)
    later_sizes = {s for s, numbers in pages_by_size.items() if numbers - {first_page}}
    first_only = set(pages_by_size) - later_sizes
    title_size = (
        max(first_only) if len(pages) > 1 and first_only and max(first_only) > max(later_sizes, default=0) else None
    )
    heading_sizes = sorted(later_sizes if len(pages) > 1 else set(pages_by_size), reverse=True)
    levels = {size: min(rank, 6) for rank, size in enumerate(heading_sizes, start=1)}
    for _, line in candidates:
        size = _size_key(line.size)
        if size == title_size:
            line.kind = "title"
        elif size in levels:
            line.kind, line.level = "heading", levels[size]
    if not body_is_bold:
        bold_level = min(len(levels) + 1, 6)
        for page in pages:
            for line in page.lines:
                if (
                    line.bold
                    and line.kind == "body"
                    and _size_key(line.size) == body
                    and len(line.text) <= 100
                    and line.text[-1] not in ",;"
                    and sum(c.isalpha() for c in line.text) >= 2
                ):
                    line.kind, line.level = "bold", bold_level
    return bool(levels) or title_size is not None


@dataclass(frozen=True, slots=True)
class _Layout:
    """A page's body text geometry, against which each line break is judged. Right margins and line
    pitches are kept per font size: a page that mixes sizes has a different measure for each."""

    geometry: bool
    left_margin: float = 0.0
    right_margins: dict[float, float] = field(default_factory=dict)
    pitches: dict[float, float] = field(default_factory=dict)
    """Typical baseline distance between two lines of one paragraph."""
    typical_chars: int = 0


def _layout(page: _Page) -> _Layout:
    lines = page.lines
    typical_chars = sorted(len(line.text) for line in lines)[int(len(lines) * 0.9)]
    body = [line for line in lines if line.kind == "body"]
    if not (page.geometry and body):
        return _Layout(False, typical_chars=typical_chars)
    rights: defaultdict[float, list[float]] = defaultdict(list)
    pitches: defaultdict[float, list[float]] = defaultdict(list)
    for line in body:
        rights[_size_key(line.size)].append(line.right)
    for a, b in itertools.pairwise(body):
        if _size_key(a.size) == _size_key(b.size) and 0 < a.y - b.y < 4 * max(a.size, 1.0):
            pitches[_size_key(a.size)].append(a.y - b.y)
    lefts = sorted(line.x for line in body)
    return _Layout(
        True,
        left_margin=lefts[len(lefts) // 10],
        right_margins={size: sorted(values)[int(len(values) * 0.9)] for size, values in rights.items()},
        pitches={size: statistics.median(values) for size, values in pitches.items()},
        typical_chars=typical_chars,
    )


def _demote_long_headings(lines: list[_Line]) -> None:
    """Consecutive heading lines are one wrapped heading, but a run too long for a heading is a
    paragraph set in a large font (a slide, a pull quote)."""
    start = 0
    while start < len(lines):
        end = start + 1
        while end < len(lines) and _continues_heading(lines[end - 1], lines[end]):
            end += 1
        run = lines[start:end]
        if run[0].kind in ("heading", "bold") and (len(run) > 4 or sum(len(line.text) for line in run) > 200):
            for line in run:
                line.kind, line.level = "body", 0
        start = end


def _continues_heading(previous: _Line, line: _Line) -> bool:
    """Whether `line` is the next line of the same (wrapped) heading as `previous`."""
    same = (previous.kind, previous.level) == (line.kind, line.level)
    return same and 0 < previous.y - line.y <= 1.6 * max(line.size, 1.0)


def _page_blocks(page: _Page) -> list[Block]:
    if not page.lines:
        return []
    _demote_long_headings(page.lines)
    layout = _layout(page)
    blocks: list[Block] = []
    current: list[_Line] = []

    def flush() -> None:
        if not current:
            return
        text = _join(current)
        if not _BULLET.match(current[0].text):
            blocks.append(Block("paragraph", text, page=page.number))
        elif blocks and blocks[-1].kind == "list":
            blocks[-1].text += "\n" + text  # consecutive bullets make one list block
        else:
            blocks.append(Block("list", text, page=page.number))
        current.clear()

    previous: _Line | None = None
    for line in page.lines:
        if line.kind == "body":
            if previous is None or previous.kind != "body" or _breaks(previous, line, layout):
                flush()
            current.append(line)
        else:
            flush()
            kind: BlockKind = "title" if line.kind == "title" else "heading"
            if previous is not None and blocks and _continues_heading(previous, line):
                blocks[-1].text = join_wrapped([blocks[-1].text, line.text])
            else:
                blocks.append(Block(kind, line.text, level=line.level if kind == "heading" else 0, page=page.number))
        previous = line
    flush()
    return blocks


def _breaks(previous: _Line, line: _Line, layout: _Layout) -> bool:
    """Whether `line` starts a new paragraph after `previous`."""
    if _BULLET.match(line.text):
        return True
    ends_sentence = previous.text[-1] in _TERMINAL
    if not layout.geometry:
        short = len(previous.text) < 0.75 * layout.typical_chars
        return (short and ends_sentence) or len(previous.text) < 0.5 * layout.typical_chars
    if _size_key(previous.size) != _size_key(line.size):
        return True
    size = max(previous.size, 1.0)
    key = _size_key(previous.size)
    gap = previous.y - line.y
    pitch = layout.pitches.get(key, 0.0)
    if gap <= 0 or (pitch and gap > 1.3 * pitch) or gap > 2.5 * size:
        return True  # a wider gap, or a new column
    slack = layout.right_margins.get(key, previous.right) - previous.right
    if slack > 6 * size or (slack > 1.5 * size and ends_sentence):
        return True
    indent = line.x - layout.left_margin
    return size * 0.8 < indent < size * 5 and previous.x - layout.left_margin < size * 0.5 and ends_sentence


def _join(lines: list[_Line]) -> str:
    return join_wrapped([line.text for line in lines])


def _pattern_headings(blocks: list[Block]) -> list[Block]:
    """Without font sizes to go by, fall back to the plain-text patterns ("CHAPTER I.")."""
    ranks: dict[int, int] = {}
    merged: set[int] = set()
    for index, block in enumerate(blocks):
        if block.kind != "paragraph":
            continue
        rank = heading_rank(block.text, set_apart=False)
        if rank is None:
            continue
        if is_bare_heading(block.text) and index + 1 < len(blocks):
            following = blocks[index + 1]
            if following.kind == "paragraph" and looks_like_title(following.text):
                block.text = join_heading(block.text, following.text)
                merged.add(index + 1)
        ranks[index] = rank
    levels = levels_from_ranks(list(ranks.values()))
    for index, rank in ranks.items():
        blocks[index].kind, blocks[index].level = "heading", levels[rank]
    return [block for index, block in enumerate(blocks) if index not in merged]
