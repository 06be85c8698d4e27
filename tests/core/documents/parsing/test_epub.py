from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tessera.core.documents.parsing.base import CorruptDocument, ParsedDocument, ParseLimits, UnsafeDocument
from tessera.core.documents.parsing.epub import EpubParser
from tessera.core.documents.parsing.registry import parse

LIMITS = ParseLimits()
BOOKS = Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "gutenberg-books"
CONTAINER = b"""<?xml version="1.0"?>
<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container" version="1.0">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""


def xhtml(body: str, doctype: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{doctype}'
        f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>ignored head title</title></head>'
        f"<body>{body}</body></html>"
    ).encode()


def make_epub(
    chapters: dict[str, bytes],
    spine: list[str],
    *,
    title: str = "A Test Book",
    nav: bytes | None = None,
    ncx: bytes | None = None,
    container: bytes = CONTAINER,
) -> bytes:
    manifest = [
        f'<item id="{name.replace(".", "-")}" href="{name}" media-type="application/xhtml+xml"/>' for name in chapters
    ]
    if nav is not None:
        manifest.append('<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
    if ncx is not None:
        manifest.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
    itemrefs = "".join(f'<itemref idref="{ref.replace(".", "-")}"/>' for ref in spine)
    opf = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:test</dc:identifier><dc:title>{title}</dc:title>
    <dc:creator>Ada Author</dc:creator><dc:creator>Bo Coauthor</dc:creator><dc:language>fr</dc:language>
  </metadata>
  <manifest>{"".join(manifest)}</manifest>
  <spine{' toc="ncx"' if ncx is not None else ""}>{itemrefs}</spine>
</package>"""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", container)
        archive.writestr("OEBPS/content.opf", opf)
        for name, data in chapters.items():
            archive.writestr(f"OEBPS/{name}", data)
        if nav is not None:
            archive.writestr("OEBPS/nav.xhtml", nav)
        if ncx is not None:
            archive.writestr("OEBPS/toc.ncx", ncx)
    return buffer.getvalue()


NAV = xhtml(
    '<nav xmlns:epub="http://www.idpf.org/2007/ops" epub:type="toc"><ol>'
    '<li><a href="one.xhtml">Chapter One</a><ol><li><a href="one.xhtml#s1">A Section</a></li></ol></li>'
    '<li><a href="two.xhtml">Chapter Two: Untitled In Text</a></li>'
    "</ol></nav>"
)
CHAPTER_ONE = xhtml(
    "<h2>Chapter <em>One</em></h2><p>First   paragraph,\n wrapped.</p>"
    '<h3 id="s1">A Section</h3><div>Loose text<br/>on two lines</div>'
    "<ul><li>apples</li><li>pears<ul><li>conference</li></ul></li></ul>"
    "<table><tr><th>Fruit</th><th>Count</th></tr><tr><td>apples</td><td>3</td></tr></table>"
    "<blockquote><p>A wise quote.</p></blockquote><pre>code  stays\n  indented</pre>"
)


@pytest.fixture(scope="module")
def book() -> ParsedDocument:
    chapters = {
        "cover.xhtml": xhtml('<div><img src="cover.jpg" alt=""/></div>'),
        "two.xhtml": xhtml("<p>No heading here.</p>"),
        "one.xhtml": CHAPTER_ONE,
    }
    data = make_epub(chapters, ["cover.xhtml", "nav", "one.xhtml", "two.xhtml"], nav=NAV)
    return parse("epub", data, LIMITS)


class TestEpubParser:
    def test_reads_chapters_in_spine_order_with_chapter_headings_at_level_1(self, book: ParsedDocument) -> None:
        assert [(b.kind, b.level, b.text) for b in book.blocks] == [
            ("heading", 1, "Chapter One"),
            ("paragraph", 0, "First paragraph, wrapped."),
            ("heading", 2, "A Section"),
            ("paragraph", 0, "Loose text\non two lines"),
            ("list", 0, "- apples\n- pears\n  - conference"),
            ("table", 0, "Fruit | Count\napples | 3"),
            ("quote", 0, "A wise quote."),
            ("code", 0, "code  stays\n  indented"),
            ("heading", 1, "Chapter Two: Untitled In Text"),
            ("paragraph", 0, "No heading here."),
        ]
        assert all(b.page is None for b in book.blocks)
        assert book.page_count is None

    def test_reads_package_metadata(self, book: ParsedDocument) -> None:
        assert book.title == "A Test Book"
        assert book.metadata == {
            "author": "Ada Author, Bo Coauthor",
            "authors": ["Ada Author", "Bo Coauthor"],
            "language": "fr",
        }

    def test_uses_the_ncx_title_when_there_is_no_nav(self) -> None:
        ncx = b"""<?xml version="1.0"?><ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1"><navMap>
            <navPoint id="p1"><navLabel><text>Prologue</text></navLabel><content src="a.xhtml"/></navPoint>
            <navPoint id="p2"><navLabel><text>Part I</text></navLabel><content src="b.xhtml"/></navPoint>
            </navMap></ncx>"""
        chapters = {"a.xhtml": xhtml("<p>Once.</p>"), "b.xhtml": xhtml("<h1>Part I</h1><p>Then.</p>")}
        parsed = parse("epub", make_epub(chapters, ["a.xhtml", "b.xhtml"], ncx=ncx), LIMITS)
        assert [(b.kind, b.level, b.text) for b in parsed.blocks] == [
            ("heading", 1, "Prologue"),
            ("paragraph", 0, "Once."),
            ("heading", 1, "Part I"),
            ("paragraph", 0, "Then."),
        ]

    def test_html_entities_in_chapters_that_are_not_well_formed_xml(self) -> None:
        chapters = {"a.xhtml": xhtml("<h1>Caf&eacute;</h1><p>a&nbsp;b &amp; c<br>d</p>")}
        parsed = parse("epub", make_epub(chapters, ["a.xhtml"]), LIMITS)
        assert [(b.kind, b.text) for b in parsed.blocks] == [("heading", "Café"), ("paragraph", "a b & c\nd")]

    def test_external_entities_are_never_resolved(self) -> None:
        doctype = '<!DOCTYPE html [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        chapters = {"a.xhtml": xhtml("<h1>Title</h1><p>before &e; after</p>", doctype)}
        parsed = parse("epub", make_epub(chapters, ["a.xhtml"]), LIMITS)
        assert "root:" not in parsed.text
        assert "before" in parsed.text

    def test_internal_entity_expansion_is_not_performed(self) -> None:
        entities = '<!ENTITY a "aaaaaaaaaa">' + "".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)
        )
        chapters = {"a.xhtml": xhtml("<p>x &i; y</p>", f"<!DOCTYPE html [{entities}]>")}
        parsed = parse("epub", make_epub(chapters, ["a.xhtml"]), LIMITS)
        assert len(parsed.text) < 100

    def test_deeply_nested_markup_keeps_its_text(self) -> None:
        # Lists in tables in lists: each subtree must be read once, or this takes 2**40 steps.
        nested = "<ul><li><table><tr><td><blockquote>" * 40 + "deep text"
        parsed = parse("epub", make_epub({"a.xhtml": xhtml(nested)}, ["a.xhtml"]), LIMITS)
        assert parsed.text.endswith("deep text")

    def test_missing_container_is_corrupt(self) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("mimetype", "application/epub+zip")
        with pytest.raises(CorruptDocument, match=r"container\.xml"):
            EpubParser().parse(buffer.getvalue(), LIMITS)

    def test_package_path_outside_the_archive_is_refused(self) -> None:
        container = CONTAINER.replace(b"OEBPS/content.opf", b"../../etc/content.opf")
        with pytest.raises(CorruptDocument, match="no package document"):
            EpubParser().parse(make_epub({}, [], container=container), LIMITS)

    def test_malformed_package_document_is_corrupt(self) -> None:
        data = make_epub({}, [], title="<unclosed")
        with pytest.raises(CorruptDocument, match="package document"):
            EpubParser().parse(data, LIMITS)

    def test_zip_bomb_is_refused(self) -> None:
        chapters = {"a.xhtml": xhtml("<p>" + " " * (20 << 20) + "</p>")}
        with pytest.raises(UnsafeDocument):
            EpubParser().parse(make_epub(chapters, ["a.xhtml"]), LIMITS)


@pytest.fixture(scope="module")
def alice() -> ParsedDocument:
    if not BOOKS.is_dir():
        pytest.skip("../shared/data/gutenberg-books is absent")
    return parse("epub", (BOOKS / "epub" / "pg11.epub").read_bytes(), LIMITS)


class TestAlice:
    def test_chapter_headings_are_level_1(self, alice: ParsedDocument) -> None:
        chapters = [b.text for b in alice.blocks if b.kind == "heading" and b.text.startswith("CHAPTER")]
        assert len(chapters) == 12
        assert chapters[:3] == [
            "CHAPTER I. Down the Rabbit-Hole",
            "CHAPTER II. The Pool of Tears",
            "CHAPTER III. A Caucus-Race and a Long Tale",
        ]
        assert chapters[-1] == "CHAPTER XII. Alice\u2019s Evidence"
        assert all(b.level == 1 for b in alice.blocks if b.kind == "heading" and b.text.startswith("CHAPTER"))

    def test_metadata_and_text(self, alice: ParsedDocument) -> None:
        assert alice.title == "Alice's Adventures in Wonderland"
        assert alice.metadata["author"] == "Lewis Carroll"
        assert alice.metadata["language"] == "en"
        assert "Alice was beginning to get very tired of sitting by her sister on the bank" in alice.text
        assert all(b.page is None for b in alice.blocks)
        first = next(i for i, b in enumerate(alice.blocks) if b.text == "CHAPTER I. Down the Rabbit-Hole")
        assert alice.blocks[first + 1].text.startswith("Alice was beginning")
