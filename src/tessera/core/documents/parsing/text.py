"""Plain text, Markdown and CSV/TSV.

Plain text carries no markup, so structure is inferred: paragraphs from blank lines, hard-wrapped
lines rejoined, and book headings ("CHAPTER I.", "Book the Second", all-caps lines set apart by
blank lines) recognised by pattern. The patterns are shared with the PDF parser, whose text layer
has the same problem.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from charset_normalizer import CharsetMatch, CharsetMatches, from_bytes

from tessera.core.documents.parsing.base import Block, CorruptDocument, ParsedDocument, ParseLimits

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode text of unknown encoding: a BOM wins, then strict UTF-8, then charset-normalizer's guess.

    Returns the text with newlines normalised to "\\n" and the encoding used.
    """
    text: str | None = None
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            text, encoding = data.decode(name, errors="replace"), name
            break
    if text is None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            matches = from_bytes(data)
            best = matches.best()
            if best is not None:
                best = _prefer_cp1252(matches, best)
                text, encoding = str(best), best.encoding
            else:
                text, encoding = data.decode("utf-8", errors="replace"), "utf-8"
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n")
    return _CONTROL_CHARS.sub("", text), encoding


def _prefer_cp1252(matches: CharsetMatches, best: CharsetMatch) -> CharsetMatch:
    """Short Western European text fits several single-byte code pages about equally well, and
    charset-normalizer then picks cp1250, cp1257 or mac_latin2 for French or Spanish. cp1252 (and
    Latin-1, its subset) is far more common in the wild, so it wins when it scores nearly as well."""
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western is None or western is best:
        return best
    close = western.chaos <= best.chaos + 0.2 and western.coherence >= best.coherence - 0.05
    return western if close else best


def _cap_text(text: str, limits: ParseLimits, warnings: list[str]) -> str:
    if len(text) > limits.max_text_chars:
        warnings.append(f"text truncated to the first {limits.max_text_chars:,} characters")
        return text[: limits.max_text_chars]
    return text


# --- headings in unmarked text (shared with pdf.py) -------------------------------------------

_NUMBER = (
    r"(?:(?-i:[IVXLCDM]+)|\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|the\s+\w+)"
)
_PART_HEADING = re.compile(rf"^(?:book|part|volume|vol\.)\s+{_NUMBER}(?![\w'\u2019])", re.IGNORECASE)
_CHAPTER_HEADING = re.compile(
    rf"^(?:chapter|chap\.|letter|adventure|stave|canto|act|scene|section|epilogue|prologue)\s+{_NUMBER}(?![\w'\u2019])",
    re.IGNORECASE,
)
_NUMBERED_TITLE = re.compile(r"^(?-i:[IVXLC]+)\.\s+[A-Z\"'“\u2018]")
_BARE_NUMERAL = re.compile(r"^(?-i:[IVXLC]+)\.?$")
_LONE_HEADING_WORD = re.compile(
    r"^(?:prologue|epilogue|preface|foreword|introduction|afterword|contents|appendix|glossary|index)[.:]?$",
    re.IGNORECASE,
)
_BARE_REMAINDER = re.compile(r"^[\s.:—\u2013-]*$")
MAX_HEADING_CHARS = 80

# Ranks, not levels: the ranks a document actually uses are compressed into levels 1, 2, … so a
# novel with chapters only gets chapters at level 1, and one with books gets books 1, chapters 2.
RANK_PART, RANK_CHAPTER, RANK_SECTION, RANK_CAPS = 0, 1, 2, 3


def heading_rank(line: str, *, set_apart: bool) -> int | None:
    """The rank of a line that looks like a book heading, or None.

    `set_apart` says the line stands alone after more than one blank line (or at the start of the
    text): Gutenberg-style files set headings apart that way, and the weaker patterns (a bare
    Roman numeral, an all-caps line) are only trusted with it.
    """
    line = line.strip()
    if not line or len(line) > MAX_HEADING_CHARS:
        return None
    if _PART_HEADING.match(line):
        return RANK_PART
    if _CHAPTER_HEADING.match(line) or (_LONE_HEADING_WORD.match(line) and set_apart):
        return RANK_CHAPTER
    if not set_apart:
        return None
    if _NUMBERED_TITLE.match(line):
        return RANK_CHAPTER
    if _BARE_NUMERAL.match(line):
        return RANK_SECTION
    letters = [c for c in line if c.isalpha()]
    if len(letters) >= 3 and all(c.isupper() for c in letters) and line[0] not in "\"'“\u2018(_[*":
        return RANK_CAPS
    return None


def is_bare_heading(line: str) -> bool:
    """'CHAPTER I.' or 'Chapter 3' with no title after the number: a title line may follow it."""
    line = line.strip()
    match = _CHAPTER_HEADING.match(line) or _PART_HEADING.match(line)
    return match is not None and _BARE_REMAINDER.match(line[match.end() :]) is not None


def looks_like_title(line: str) -> bool:
    """A short line in Title Case or capitals, not a sentence: "Down the Rabbit-Hole"."""
    line = line.strip()
    if not line or len(line) > 70 or line[-1] in ",;:":
        return False
    letters = [c for c in line if c.isalpha()]
    all_caps = bool(letters) and all(c.isupper() for c in letters)
    if line[-1] == "." and not all_caps:
        return False
    words = [w for w in re.findall(r"[^\W\d_][\w'\u2019-]*", line) if len(w) >= 4]
    return bool(words) and sum(w[0].isupper() for w in words) * 2 >= len(words)


def join_heading(heading: str, title: str) -> str:
    heading, title = heading.strip(), title.strip()
    return f"{heading} {title}" if heading[-1] in ".:—\u2013-" else f"{heading}. {title}"


def levels_from_ranks(ranks: list[int]) -> dict[int, int]:
    return {rank: level for level, rank in enumerate(sorted(set(ranks)), start=1)}


# --- paragraphs ----------------------------------------------------------------------------------

_LIST_ITEM = re.compile(r"^\s*(?:[-*+•◦▪‣\u2043]|\d{1,3}[.)]|[a-zA-Z][.)])\s+\S")


def join_wrapped(lines: list[str]) -> str:
    """Join lines that were wrapped for width: drop the hyphen of a word split across lines
    ("exam-" + "ple"), and keep a dash at the line end attached to the next word."""
    parts = [lines[0].strip()]
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        last = parts[-1]
        if len(last) >= 2 and last[-1] in "-\u00ad" and last[-2].isalpha() and line[0].islower():
            parts[-1] = last[:-1]
            parts.append(line)
        elif last.endswith(("\u2014", "--")):
            parts.append(line)
        else:
            parts.append(" " + line)
    return "".join(parts)


@dataclass
class _Paragraph:
    lines: list[str]
    blank_before: int


def _paragraphs(text: str) -> Iterator[_Paragraph]:
    lines: list[str] = []
    blank = 0
    for line in text.split("\n"):
        if line.strip():
            lines.append(line.rstrip())
        elif lines:
            yield _Paragraph(lines, blank)
            lines, blank = [], 1
        else:
            blank += 1
    if lines:
        yield _Paragraph(lines, blank)


def _wrap_width(text: str) -> int | None:
    """The column at which the text was hard-wrapped, if it was (Gutenberg wraps near 70)."""
    lengths = sorted(len(line) for line in text.split("\n", 20_000)[:20_000] if line.strip())
    if len(lengths) < 10:
        return None
    width = lengths[int(len(lengths) * 0.9)]
    return width if 30 <= width <= 100 else None


def _paragraph_text(lines: list[str], wrap_width: int | None) -> str:
    """Rejoin hard-wrapped prose; keep the line breaks of verse, lists and indented blocks."""
    if wrap_width is None or len(lines) == 1:
        return "\n".join(lines)
    out: list[list[str]] = [[lines[0]]]
    for previous, line in itertools.pairwise(lines):
        wrapped = len(previous) >= 0.6 * wrap_width and not line.startswith((" ", "\t")) and not _LIST_ITEM.match(line)
        if wrapped:
            out[-1].append(line)
        else:
            out.append([line])
    return "\n".join(join_wrapped(group) if len(group) > 1 else group[0] for group in out)


def _setext_level(lines: list[str]) -> int | None:
    if len(lines) == 2 and len(lines[0].strip()) <= MAX_HEADING_CHARS:
        underline = lines[1].strip()
        if len(underline) >= 3 and len(underline) >= 0.5 * len(lines[0].strip()):
            if set(underline) == {"="}:
                return 1
            if set(underline) == {"-"}:
                return 2
    return None


class PlainTextParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        text, encoding = decode_text(data)
        warnings: list[str] = []
        text = _cap_text(text, limits, warnings)
        width = _wrap_width(text)
        paragraphs = list(_paragraphs(text))

        # First pass: find heading candidates and their ranks; levels depend on the ranks in use.
        candidates: dict[int, tuple[str, int]] = {}
        merged_titles: set[int] = set()
        for index, paragraph in enumerate(paragraphs):
            if index in merged_titles:
                continue
            set_apart = paragraph.blank_before >= 2 or index == 0
            lines = paragraph.lines
            rank = heading_rank(lines[0], set_apart=set_apart) if len(lines) <= 2 else None
            if rank is None:
                setext = _setext_level(lines)
                if setext is not None:
                    candidates[index] = (lines[0].strip(), RANK_CHAPTER if setext == 1 else RANK_SECTION)
                continue
            heading = lines[0].strip()
            if len(lines) == 2:
                # "CHAPTER I.\nDown the Rabbit-Hole": the title line belongs to the heading.
                if not (is_bare_heading(heading) and looks_like_title(lines[1])):
                    continue
                heading = join_heading(heading, lines[1])
            elif is_bare_heading(heading) and index + 1 < len(paragraphs):
                following = paragraphs[index + 1]
                if len(following.lines) == 1 and looks_like_title(following.lines[0]):
                    heading = join_heading(heading, following.lines[0])
                    merged_titles.add(index + 1)
            candidates[index] = (heading, rank)

        levels = levels_from_ranks([rank for _, rank in candidates.values()])
        blocks: list[Block] = []
        for index, paragraph in enumerate(paragraphs):
            if index in merged_titles:
                continue
            if index in candidates:
                heading, rank = candidates[index]
                blocks.append(Block("heading", heading, level=min(levels[rank], 6)))
            elif all(_LIST_ITEM.match(line) or line.startswith((" ", "\t")) for line in paragraph.lines) and (
                _LIST_ITEM.match(paragraph.lines[0])
            ):
                blocks.append(Block("list", "\n".join(line.strip() for line in paragraph.lines)))
            else:
                blocks.append(Block("paragraph", _paragraph_text(paragraph.lines, width)))
        return ParsedDocument(blocks=blocks, metadata={"encoding": encoding}, warnings=warnings)


# --- Markdown ------------------------------------------------------------------------------------

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_MATTER_FIELD = re.compile(r"^(title|author|date|description|lang|language):[ \t]*(.+?)[ \t]*$", re.M)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_MD_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_TABLE_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _inline(text: str) -> str:
    """Links and images keep their text: URLs only add noise to search and embeddings."""
    return _LINK.sub(r"\1", _IMAGE.sub(r"\1", text))


def _table_row(line: str) -> str:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return " | ".join(_inline(cell.strip()) for cell in cells)


class MarkdownParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        text, encoding = decode_text(data)
        warnings: list[str] = []
        text = _cap_text(text, limits, warnings)
        metadata: dict[str, object] = {"encoding": encoding}
        title: str | None = None
        front = _FRONT_MATTER.match(text)
        if front:
            for key, value in _FRONT_MATTER_FIELD.findall(front.group(1)):
                metadata[key] = value.strip("\"'")
            title = str(metadata["title"]) if "title" in metadata else None
            text = text[front.end() :]
        return ParsedDocument(
            blocks=list(_markdown_blocks(text.split("\n"))), title=title, metadata=metadata, warnings=warnings
        )


def _markdown_blocks(lines: list[str]) -> Iterator[Block]:
    paragraph: list[str] = []

    def flush() -> Iterator[Block]:
        if paragraph:
            yield Block("paragraph", _inline(join_wrapped(paragraph)))
            paragraph.clear()

    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            yield from flush()
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
            yield from flush()
            marker = fence.group(1)
            body: list[str] = []
            i += 1
            while i < n and not (lines[i].strip().startswith(marker) and set(lines[i].strip()) == {marker[0]}):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or the end of the file for an unclosed one)
            yield Block("code", "\n".join(body))
            continue
        atx = _ATX.match(line)
        if atx:
            yield from flush()
            yield Block("heading", _inline(atx.group(2) or ""), level=len(atx.group(1)))
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and paragraph and not _MD_LIST_ITEM.match(paragraph[0]):
            level = 1 if setext.group(1)[0] == "=" else 2
            yield Block("heading", _inline(join_wrapped(paragraph)), level=level)
            paragraph.clear()
            i += 1
            continue
        if _THEMATIC_BREAK.match(line):
            yield from flush()
            i += 1
            continue
        if "|" in line and i + 1 < n and _TABLE_DELIMITER.match(lines[i + 1]) and "-" in lines[i + 1]:
            yield from flush()
            rows = [_table_row(line)]
            i += 2
            while i < n and lines[i].strip() and "|" in lines[i]:
                rows.append(_table_row(lines[i]))
                i += 1
            yield Block("table", "\n".join(rows))
            continue
        if _QUOTE.match(line):
            yield from flush()
            quoted: list[str] = []
            while i < n and lines[i].strip() and (_QUOTE.match(lines[i]) or quoted):
                quoted.append(_QUOTE.sub("", lines[i], count=1))
                i += 1
            yield Block("quote", _inline("\n".join(q.strip() for q in quoted)))
            continue
        if _MD_LIST_ITEM.match(line):
            yield from flush()
            items: list[str] = []
            while i < n:
                current = lines[i]
                if _MD_LIST_ITEM.match(current):
                    items.append(current.rstrip())
                elif current.strip() and (current.startswith((" ", "\t")) or not _blocks_start(current)):
                    if items and not current.startswith((" ", "\t")) and not lines[i - 1].strip():
                        break  # a blank line then unindented text: the list is over
                    items.append(current.rstrip())
                elif (
                    not current.strip()
                    and i + 1 < n
                    and (lines[i + 1].startswith((" ", "\t")) or _MD_LIST_ITEM.match(lines[i + 1]))
                ):
                    pass  # a loose list: blank lines between items
                else:
                    break
                i += 1
            yield Block("list", _inline("\n".join(items)))
            continue
        if line.startswith(("    ", "\t")) and not paragraph:
            code: list[str] = []
            while i < n and (lines[i].startswith(("    ", "\t")) or not lines[i].strip()):
                code.append(lines[i][4:] if lines[i].startswith("    ") else lines[i][1:])
                i += 1
            yield Block("code", "\n".join(code).strip("\n"))
            continue
        paragraph.append(line)
        i += 1
    yield from flush()


def _blocks_start(line: str) -> bool:
    return bool(_ATX.match(line) or _FENCE.match(line) or _QUOTE.match(line) or _THEMATIC_BREAK.match(line))


# --- CSV / TSV -----------------------------------------------------------------------------------

CSV_ROWS_PER_BLOCK = 50
_SNIFF_DELIMITERS = ",;\t|"


def sniff_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The delimiter of a CSV sample; tab, then comma when the sniffer cannot tell."""
    cut = sample.rfind("\n")
    sample = sample[:cut] if cut > 0 else sample
    try:
        return csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS)
    except csv.Error:
        first = sample.split("\n", 1)[0]
        return csv.excel_tab if first.count("\t") > first.count(",") else csv.excel


def _cell(value: str) -> str:
    return " ".join(value.split())


class CsvParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        text, encoding = decode_text(data)
        warnings: list[str] = []
        text = _cap_text(text, limits, warnings)
        dialect = sniff_dialect(text[:65_536])
        rows: list[str] = []
        header: list[str] | None = None
        try:
            for record in csv.reader(io.StringIO(text, newline=""), dialect):
                if not any(cell.strip() for cell in record):
                    continue
                if header is None:
                    header = [_cell(cell) for cell in record]
                    continue
                rows.append(" | ".join(_cell(cell) for cell in record))
        except csv.Error as error:  # a field beyond csv.field_size_limit, a NUL byte
            raise CorruptDocument(f"unreadable CSV: {error}") from error
        if header is None:
            return ParsedDocument(blocks=[], metadata={"encoding": encoding}, warnings=warnings)
        # Every block repeats the header so that each chunk cut from it says what its columns are.
        header_line = " | ".join(header)
        blocks = [
            Block("table", "\n".join([header_line, *rows[start : start + CSV_ROWS_PER_BLOCK]]))
            for start in range(0, max(len(rows), 1), CSV_ROWS_PER_BLOCK)
        ]
        metadata: dict[str, object] = {
            "encoding": encoding,
            "columns": header,
            "row_count": len(rows),
            "delimiter": dialect.delimiter,
        }
        return ParsedDocument(blocks=blocks, metadata=metadata, warnings=warnings)
