"""EPUB parser: a ZIP (checked by zipsafe) of XHTML chapters listed by an OPF package document.

Chapters are read in spine order. Heading levels are made book-relative: the tag level of the
headings that the table of contents lists at its top level (h2 in Project Gutenberg books, h1 in many
others) becomes level 1, so chapter headings are level 1 whatever tag the publisher chose. A chapter
without a heading gets its table-of-contents title (EPUB 3 nav, else NCX) as a level-1 heading.
The nav document and pages without text (covers) are skipped. EPUB has no pages: page=None.

XML is parsed with lxml without DTD loading, network access or entity substitution; the XHTML walker
(`markup_blocks`) is shared with the e-mail parser for HTML bodies.
"""

from __future__ import annotations

import html.entities
import posixpath
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from lxml import etree  # type: ignore[import-untyped]
from lxml import html as lxml_html

from tessera.core.documents.parsing.base import (
    Block,
    BlockKind,
    CorruptDocument,
    ParsedDocument,
    ParseLimits,
)
from tessera.core.documents.parsing.office import table_blocks
from tessera.core.documents.parsing.zipsafe import open_zip, read_member

MAX_XML_BYTES = 16 << 20
"""Cap for container.xml, the OPF, the NCX and the nav document."""
MAX_CHAPTER_BYTES = 64 << 20

_DC = "{http://purl.org/dc/elements/1.1/}"
_CHAPTER_TYPES = frozenset({"application/xhtml+xml", "text/html"})
_NCX_TYPE = "application/x-dtbncx+xml"
_OPS = "{http://www.idpf.org/2007/ops}"
_BR = "\ue000"  # private-use marker for <br>, so whitespace collapsing does not eat it
_WHITESPACE = re.compile(r"\s+")
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_LISTS = frozenset({"ul", "ol", "menu"})
_SKIP = frozenset({"head", "script", "style", "template", "svg", "title", "meta", "link", "noscript", "iframe"})
_BLOCKS = frozenset(
    {
        "html", "body", "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "figure",
        "address", "center", "form", "fieldset", "details", "summary", "hgroup", "dl", "dt", "dd", "li", "tr",
        "td", "th", "tbody", "thead", "tfoot", "hr",
    }
)  # fmt: skip
_MAX_DEPTH = 100  # deeper than any real book; about 4 Python frames a level stays far below the recursion limit


def _xml_parser() -> Any:
    # A new parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def parse_xml(data: bytes, what: str) -> Any:
    """Parse a package XML file (container, OPF, NCX); CorruptDocument when it is not well-formed."""
    try:
        return etree.fromstring(data, parser=_xml_parser())
    except etree.XMLSyntaxError as exc:
        raise CorruptDocument(f"{what} is not well-formed XML: {exc}") from exc


def parse_html(data: bytes, encoding: str | None = None) -> Any | None:
    """Parse tag soup with libxml2's HTML parser (which never reads DTDs or entity declarations).

    `encoding` overrides what the markup declares, for text that was already decoded and re-encoded.
    """
    parser = lxml_html.HTMLParser(no_network=True, remove_comments=True, remove_pis=True, encoding=encoding)
    try:
        return lxml_html.document_fromstring(data, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None


def parse_xhtml(data: bytes) -> Any | None:
    """XHTML as XML; chapters that are not well-formed (common in the wild) fall back to the HTML parser."""
    try:
        return etree.fromstring(data, parser=_xml_parser())
    except etree.XMLSyntaxError:
        return parse_html(data)


def _tag(node: Any) -> str | None:
    """Lower-case local name of an element; None for comments, PIs and entity references."""
    tag = node.tag
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2].lower()


def _clean(raw: str) -> str:
    lines = (line.strip() for line in _WHITESPACE.sub(" ", raw).split(_BR))
    return "\n".join(line for line in lines if line)


def _owner(node: Any, tags: frozenset[str]) -> Any:
    parent = node.getparent()
    while parent is not None and _tag(parent) not in tags:
        parent = parent.getparent()
    return parent


class _Walker:
    """Turns an element tree into blocks: block-level elements end paragraphs, inline ones join them."""

    def __init__(self, skip: frozenset[str] = _SKIP, depth: int = 0) -> None:
        self.blocks: list[Block] = []
        self._buffer: list[str] = []
        self._kind: BlockKind = "paragraph"
        self._skip = skip
        self._depth = depth
        """Elements above this one, counted across nested walkers so recursion stays bounded."""

    def flush(self) -> None:
        text = _clean("".join(self._buffer))
        self._buffer.clear()
        if text:
            self.blocks.append(Block(self._kind, text))

    def children(self, element: Any) -> None:
        if element.text and _tag(element) is not None:
            self._buffer.append(element.text)
        for child in element:
            self.visit(child)
            if child.tail:
                self._buffer.append(child.tail)

    def visit(self, node: Any) -> None:
        tag = _tag(node)
        if tag is None:
            if isinstance(node, etree._Entity):
                # Never substituted: a known HTML name maps to its character, anything else is dropped.
                codepoint = html.entities.name2codepoint.get(node.name)
                self._buffer.append(chr(codepoint) if codepoint else "")
            return
        if tag in self._skip:
            return
        if tag == "br":
            self._buffer.append(_BR)
            return
        if self._depth > _MAX_DEPTH:
            self._buffer.append(" ".join(node.itertext()))
            return
        self._depth += 1
        try:
            self._element(node, tag)
        finally:
            self._depth -= 1

    def _element(self, node: Any, tag: str) -> None:
        if tag in _HEADINGS:
            self.flush()
            self.blocks.append(Block("heading", _flatten(node, " ", depth=self._depth), level=_HEADINGS[tag]))
        elif tag in _LISTS:
            self.flush()
            lines = _list_lines(node, 0, self._depth)
            if lines:
                self.blocks.append(Block("list", "\n".join(lines)))
        elif tag == "table":
            self.flush()
            self.blocks.extend(table_blocks(_table_rows(node, self._depth)))
        elif tag == "pre":
            self.flush()
            self.blocks.append(Block("code", "".join(node.itertext()).strip("\n")))
        elif tag in ("blockquote", "figcaption", "caption"):
            self.flush()
            outer, self._kind = self._kind, "quote" if tag == "blockquote" else "caption"
            self.children(node)
            self.flush()
            self._kind = outer
        elif tag in _BLOCKS:
            self.flush()
            self.children(node)
            self.flush()
        else:
            self.children(node)


def markup_blocks(root: Any) -> list[Block]:
    """Blocks of an (X)HTML tree's body, headings carrying their h1 to h6 level."""
    body = next((el for el in root.iter() if _tag(el) == "body"), root)
    walker = _Walker()
    walker.children(body)
    walker.flush()
    return walker.blocks


def _flatten(element: Any, line_break: str = "\n", skip: frozenset[str] = _SKIP, *, depth: int) -> str:
    walker = _Walker(skip, depth)
    walker.children(element)
    walker.flush()
    return line_break.join(block.text for block in walker.blocks).replace("\n", line_break)


def _list_lines(list_element: Any, indent: int, depth: int) -> list[str]:
    lines: list[str] = []
    for item in list_element:
        if _tag(item) != "li":
            continue
        text = _flatten(item, " ", _SKIP | _LISTS, depth=depth + 1)
        if text:
            lines.append("  " * indent + "- " + text)
        for nested in _nested_lists(item):
            if depth < _MAX_DEPTH:
                lines.extend(_list_lines(nested, min(indent + 1, 10), depth + 2))
            else:  # absurdly deep: keep the words, drop the structure
                lines.append("  " * indent + "- " + _WHITESPACE.sub(" ", " ".join(nested.itertext())).strip())
    return lines


def _nested_lists(item: Any) -> list[Any]:
    """Lists inside a list item, not looking into tables or other lists: the item's text already holds
    those (each subtree is read once, which keeps nested markup from costing exponential time)."""
    found: list[Any] = []
    stack = list(reversed(item))
    while stack:
        node = stack.pop()
        tag = _tag(node)
        if tag in _LISTS:
            found.append(node)
        elif tag is not None and tag != "table" and tag not in _SKIP:
            stack.extend(reversed(node))
    return found


def _table_rows(table: Any, depth: int) -> list[list[str]]:
    table_tag = frozenset({"table"})
    return [
        [_flatten(cell, " ", depth=depth + 2) for cell in row if _tag(cell) in ("td", "th")]
        for row in table.iter()
        if _tag(row) == "tr" and _owner(row, table_tag) is table
    ]


# --- EPUB package -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    path: str | None
    media_type: str
    properties: frozenset[str]


def _resolve(base_dir: str, href: str) -> str | None:
    """Archive path of `href` relative to `base_dir`; None for remote links or paths leaving the archive."""
    target = unquote(href.split("#", 1)[0]).strip()
    if not target or "://" in target or target.startswith("/"):
        return None
    path = posixpath.normpath(posixpath.join(base_dir, target))
    return None if path == ".." or path.startswith("../") else path


def _exists(archive: zipfile.ZipFile, path: str) -> bool:
    try:
        archive.getinfo(path)
    except KeyError:
        return False
    return True


def _text(element: Any) -> str:
    return _WHITESPACE.sub(" ", "".join(element.itertext())).strip()


class EpubParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        with open_zip(data, limits) as archive:
            return _parse_epub(archive, limits)


def _parse_epub(archive: zipfile.ZipFile, limits: ParseLimits) -> ParsedDocument:
    container = parse_xml(read_member(archive, "META-INF/container.xml", limits, MAX_XML_BYTES), "container.xml")
    rootfile = next((el for el in container.iter() if _tag(el) == "rootfile" and el.get("full-path")), None)
    opf_path = _resolve("", rootfile.get("full-path")) if rootfile is not None else None
    if opf_path is None:
        raise CorruptDocument("container.xml names no package document")
    opf = parse_xml(read_member(archive, opf_path, limits, MAX_XML_BYTES), "the package document")
    opf_dir = posixpath.dirname(opf_path)

    titles = [_text(el) for el in opf.iter(f"{_DC}title")]
    creators = [name for name in (_text(el) for el in opf.iter(f"{_DC}creator")) if name]
    languages = [lang for lang in (_text(el) for el in opf.iter(f"{_DC}language")) if lang]
    metadata: dict[str, Any] = {}
    if creators:
        metadata["author"] = ", ".join(creators)
        metadata["authors"] = creators
    if languages:
        metadata["language"] = languages[0]

    manifest = {
        item.get("id"): _Item(
            _resolve(opf_dir, item.get("href") or ""),
            (item.get("media-type") or "").strip().lower(),
            frozenset((item.get("properties") or "").split()),
        )
        for item in opf.iter()
        if _tag(item) == "item" and item.get("id")
    }
    spine = next((el for el in opf.iter() if _tag(el) == "spine"), None)
    toc_titles, top_labels = _read_toc(archive, limits, manifest, spine)
    warnings: list[str] = []

    chapters: list[tuple[str, list[Block]]] = []
    seen: set[str] = set()
    chars = 0
    for itemref in spine.iter() if spine is not None else ():
        item = manifest.get(itemref.get("idref")) if _tag(itemref) == "itemref" else None
        if item is None or item.path is None or item.path in seen:
            continue
        seen.add(item.path)
        if item.media_type not in _CHAPTER_TYPES or "nav" in item.properties or not _exists(archive, item.path):
            continue
        root = parse_xhtml(read_member(archive, item.path, limits, MAX_CHAPTER_BYTES))
        if root is None:
            warnings.append(f"chapter {item.path!r} could not be read and was skipped")
            continue
        blocks = markup_blocks(root)
        if not blocks:
            continue  # a cover or an image-only page
        chapters.append((item.path, blocks))
        chars += sum(len(b.text) for b in blocks)
        if chars > limits.max_text_chars:
            warnings.append(f"text longer than {limits.max_text_chars} characters: the rest of the book was skipped")
            break

    _rebase_heading_levels([blocks for _, blocks in chapters], top_labels)
    # After rebasing, so these added headings neither vote on nor get moved from level 1.
    for path, blocks in chapters:
        if not _has_heading(blocks) and toc_titles.get(path):
            blocks.insert(0, Block("heading", toc_titles[path], level=1))
    if not chapters:
        warnings.append("the book has no text")
    return ParsedDocument(
        blocks=[block for _, blocks in chapters for block in blocks],
        title=titles[0] if titles and titles[0] else None,
        metadata=metadata,
        warnings=warnings,
    )


def _rebase_heading_levels(chapters: list[list[Block]], top_labels: set[str]) -> None:
    """Make the tag level of chapter headings level 1 and shift the others with it (never below 1).

    Chapter headings are those the table of contents lists at its top level; without a usable table
    of contents, the level most chapters start at.
    """
    headings = [b for blocks in chapters for b in blocks if b.kind == "heading"]
    levels = Counter(b.level for b in headings if _label_key(b.text) in top_labels)
    if not levels:
        levels = Counter(
            min(b.level for b in blocks if b.kind == "heading") for blocks in chapters if _has_heading(blocks)
        )
    if not levels:
        return
    base = min(levels, key=lambda level: (-levels[level], level))
    for block in headings:
        block.level = max(1, block.level - base + 1)


def _label_key(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _has_heading(blocks: list[Block]) -> bool:
    return any(b.kind == "heading" for b in blocks)


def _read_toc(
    archive: zipfile.ZipFile, limits: ParseLimits, manifest: dict[str, _Item], spine: Any
) -> tuple[dict[str, str], set[str]]:
    """The first table-of-contents title per chapter file (EPUB 3 nav first, then the NCX for the rest),
    and the `_label_key`s of the top-level entries."""
    titles: dict[str, str] = {}
    top_labels: set[str] = set()
    nav_path = next((i.path for i in manifest.values() if "nav" in i.properties and i.path), None)
    if nav_path is not None and _exists(archive, nav_path):
        root = parse_xhtml(read_member(archive, nav_path, limits, MAX_XML_BYTES))
        if root is not None:
            nav_dir = posixpath.dirname(nav_path)
            navs = [el for el in root.iter() if _tag(el) == "nav"]
            toc = next((el for el in navs if "toc" in (el.get(f"{_OPS}type") or "")), navs[0] if navs else root)
            for link in toc.iter():
                if _tag(link) != "a" or not link.get("href"):
                    continue
                path, label = _resolve(nav_dir, link.get("href")), _text(link)
                if path and label:
                    titles.setdefault(path, label)
                    if sum(1 for el in link.iterancestors() if _tag(el) == "li") == 1:
                        top_labels.add(_label_key(label))
    ncx_id = spine.get("toc") if spine is not None else None
    ncx = manifest.get(ncx_id or "") or next((i for i in manifest.values() if i.media_type == _NCX_TYPE), None)
    if ncx is not None and ncx.path and _exists(archive, ncx.path):
        root = parse_xml(read_member(archive, ncx.path, limits, MAX_XML_BYTES), "the NCX table of contents")
        ncx_dir = posixpath.dirname(ncx.path)
        for point in root.iter():
            if _tag(point) != "navpoint":
                continue
            label_element = next((el for el in point if _tag(el) == "navlabel"), None)
            content = next((el for el in point if _tag(el) == "content"), None)
            if label_element is not None and content is not None and content.get("src"):
                target, text = _resolve(ncx_dir, content.get("src")), _text(label_element)
                if target and text:
                    titles.setdefault(target, text)
                    if _tag(point.getparent()) == "navmap":
                        top_labels.add(_label_key(text))
    return titles, top_labels
