"""HTML (and XHTML): the page's main content as blocks, without navigation and other boilerplate.

selectolax's Lexbor engine parses as a browser would, which makes it safe for hostile input: it
never fetches anything, and a DOCTYPE's entity declarations are not expanded (an XXE payload stays
literal text). The DOM is walked iteratively so deeply nested markup cannot exhaust the stack.
"""

from __future__ import annotations

import codecs
import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

from tessera.core.documents.parsing.base import Block, BlockKind, ParsedDocument, ParseLimits
from tessera.core.documents.parsing.text import decode_text

_BOILERPLATE = (
    "script, style, noscript, template, nav, aside, form, iframe, frame, svg, canvas, object, embed, "
    "button, select, input, textarea, dialog, menu, "
    "[hidden], [aria-hidden=true], [role=navigation], [role=banner], [role=contentinfo], "
    "[role=complementary], [role=search], [role=dialog], [role=alert], "
    "[class*=cookie i], [id*=cookie i], [class*=consent i], [id*=consent i], [class*=gdpr i], [id*=gdpr i]"
)
_SKIP = frozenset({"script", "style", "noscript", "template", "head", "title", "meta", "link", "img", "hr"})
_INLINE = frozenset(
    {
        "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "code", "data", "del", "dfn", "em",
        "font", "i", "ins", "kbd", "label", "mark", "nobr", "q", "rp", "rt", "ruby", "s", "samp", "small",
        "span", "strike", "strong", "sub", "sup", "time", "tt", "u", "var", "wbr",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_DOCTYPE_SUBSET = re.compile(r"<!DOCTYPE[^\[>]*\[.*?\]\s*>", re.IGNORECASE | re.DOTALL)
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""")
_MAX_LIST_DEPTH = 8
_LISTS = frozenset({"ul", "ol"})


class HtmlParser:
    def parse(self, data: bytes, limits: ParseLimits) -> ParsedDocument:
        html = decode_html(data)
        warnings: list[str] = []
        if len(html) > limits.max_text_chars * 4:  # markup is mostly tags: allow it a multiple of the text cap
            html = html[: limits.max_text_chars * 4]
            warnings.append("the HTML was truncated before parsing: it is too large")
        tree = _parse(html)
        title = _meta_title(tree)
        metadata: dict[str, object] = {}
        root_html = tree.css_first("html")
        if root_html is not None and root_html.attributes.get("lang"):
            metadata["language"] = root_html.attributes["lang"]
        for name in ("author", "description", "keywords"):
            meta = tree.css_first(f'meta[name="{name}" i]')
            content = meta.attributes.get("content") if meta is not None else None
            if content:
                metadata[name] = " ".join(content.split())
        blocks = _extract(tree)
        return ParsedDocument(blocks=blocks, title=title, metadata=metadata, warnings=warnings)


def html_to_blocks(html: str) -> list[Block]:
    """The main content of an HTML or XHTML document as blocks (headings, paragraphs, lists, tables…)."""
    return _extract(_parse(html))


def decode_html(data: bytes) -> str:
    """Decode by BOM, then the declared charset (meta or XML declaration), then by detection."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return decode_text(data)[0]
    head = data[:4096]
    declared = _XML_ENCODING.match(head) or _META_CHARSET.search(head)
    if declared:
        name = declared.group(1).decode("ascii").lower()
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            codec = None
        if codec is not None:
            # A page that could be read far enough to find its declaration is ASCII-compatible:
            # a UTF-16 declaration there is wrong (the HTML standard reads it as UTF-8).
            if codec.startswith(("utf-16", "utf-32")):
                codec = "utf-8"
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                pass  # the declaration lies: detect instead
    return decode_text(data)[0]


def _parse(html: str) -> LexborHTMLParser:
    head = _DOCTYPE_SUBSET.sub("<!DOCTYPE html>", html[:8192], count=1)
    return LexborHTMLParser(head + html[8192:])


def _meta_title(tree: LexborHTMLParser) -> str | None:
    node = tree.css_first("title")
    title = " ".join(node.text().split()) if node is not None else ""
    if not title:
        meta = tree.css_first('meta[property="og:title"]')
        title = " ".join((meta.attributes.get("content") or "").split()) if meta is not None else ""
    return title or None


def _main_root(tree: LexborHTMLParser) -> LexborNode | None:
    for selector in ("main", "[role=main]"):
        node = tree.css_first(selector)
        if node is not None and node.text(strip=True):
            return node
    articles = tree.css("article")
    if len(articles) == 1:
        return articles[0]
    return tree.body or tree.root


def _extract(tree: LexborHTMLParser) -> list[Block]:
    root = _main_root(tree)
    if root is None:
        return []
    for node in root.css(_BOILERPLATE):
        node.decompose()
    for node in root.css("header, footer"):
        # A page header is the site's masthead; an article's header usually holds its title.
        if node.tag == "footer" or node.css_first("h1, h2, h3, h4, h5, h6") is None:
            node.decompose()
    return _walk(root)


def _hidden(node: LexborNode) -> bool:
    style = node.attributes.get("style")
    return bool(style) and _HIDDEN_STYLE.search(style or "") is not None


def _walk(root: LexborNode) -> list[Block]:
    blocks: list[Block] = []
    buffer: list[str] = []

    def flush() -> None:
        text = _collapse("".join(buffer))
        buffer.clear()
        if text:
            blocks.append(Block("paragraph", text))

    stack: list[tuple[LexborNode, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            flush()
            continue
        tag = node.tag or ""
        if tag == "-text":
            buffer.append((node.text_content or "").replace("\n", " "))
            continue
        if tag.startswith(("-", "_", "!")) or tag in _SKIP or _hidden(node):
            continue
        if tag == "br":
            buffer.append("\n")
            continue
        leaf = _leaf_block(node, tag)
        if leaf is not None:
            flush()
            blocks.extend(leaf)
            continue
        if tag not in _INLINE:
            flush()
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(list(node.iter(include_text=True))))
    flush()
    return blocks


def _leaf_block(node: LexborNode, tag: str) -> list[Block] | None:
    """Blocks for an element whose whole content is one block; None for containers to walk into."""
    kind: BlockKind
    if tag in _HEADINGS:
        return [Block("heading", _flat_text(node).replace("\n", " "), level=_HEADINGS[tag])]
    if tag == "p":
        kind = "paragraph"
    elif tag == "pre":
        return [Block("code", _flat_text(node, preserve=True))]
    elif tag == "blockquote":
        kind = "quote"
    elif tag in ("figcaption", "caption"):
        kind = "caption"
    elif tag in ("ul", "ol"):
        return [Block("list", "\n".join(_list_lines(node, 0)))]
    elif tag == "dl":
        lines = [
            ("" if child.tag == "dt" else "  ") + _flat_text(child).replace("\n", " ") for child in node.css("dt, dd")
        ]
        return [Block("list", "\n".join(line for line in lines if line.strip()))]
    elif tag == "table":
        return _table_blocks(node)
    else:
        return None
    return [Block(kind, _flat_text(node))]


def _flat_text(node: LexborNode, *, preserve: bool = False, skip: frozenset[str] = frozenset()) -> str:
    """The text under `node`; `<br>` and nested block elements become line breaks."""
    parts: list[str] = []
    stack: list[tuple[LexborNode, bool]] = [(node, False)]
    while stack:
        current, closing = stack.pop()
        if closing:
            parts.append("\n")
            continue
        tag = current.tag or ""
        if tag == "-text":
            text = current.text_content or ""
            parts.append(text if preserve else text.replace("\n", " "))
            continue
        if tag.startswith(("-", "_", "!")) or tag in _SKIP or tag in skip or _hidden(current):
            continue
        if tag == "br":
            parts.append("\n")
            continue
        if current is not node and tag not in _INLINE:
            parts.append("\n")
            stack.append((current, True))
        stack.extend((child, False) for child in reversed(list(current.iter(include_text=True))))
    text = "".join(parts)
    return text.strip("\n") if preserve else _collapse(text)


def _collapse(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _list_lines(node: LexborNode, depth: int) -> list[str]:
    ordered = node.tag == "ol"
    lines: list[str] = []
    number = 0
    for item in node.iter():
        if item.tag != "li":
            continue
        number += 1
        nested = [child for child in item.iter() if child.tag in ("ul", "ol")] if depth < _MAX_LIST_DEPTH else []
        marker = f"{number}." if ordered else "-"
        # Nested lists follow as indented lines instead of running into this item's text.
        text = _flat_text(item, skip=_LISTS if nested else frozenset()).replace("\n", " ")
        if text:
            lines.append(f"{'  ' * depth}{marker} {text}")
        for child in nested:
            lines.extend(_list_lines(child, depth + 1))
    return lines


def _table_blocks(table: LexborNode) -> list[Block]:
    blocks: list[Block] = []
    rows: list[str] = []
    for row in table.css("tr"):
        if (owner := _owning_table(row)) is None or owner.mem_id != table.mem_id:
            continue  # a row of a nested table: its text is in the enclosing cell
        cells = [_flat_text(cell).replace("\n", " ") for cell in row.iter() if cell.tag in ("td", "th")]
        if any(cells):
            rows.append(" | ".join(cells))
    caption = table.css_first("caption")
    if caption is not None and _flat_text(caption):
        blocks.append(Block("caption", _flat_text(caption)))
    if rows:
        blocks.append(Block("table", "\n".join(rows)))
    return blocks


def _owning_table(row: LexborNode) -> LexborNode | None:
    parent = row.parent
    while parent is not None and parent.tag != "table":
        parent = parent.parent
    return parent
