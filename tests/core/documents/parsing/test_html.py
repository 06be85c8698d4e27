from __future__ import annotations

from tessera.core.documents.parsing.base import ParsedDocument, ParseLimits
from tessera.core.documents.parsing.html import html_to_blocks
from tessera.core.documents.parsing.registry import parse

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>  Tea Guide | Example  </title>
  <meta name="author" content="Ann Example">
  <style>body { color: red }</style>
  <script>var tracking = "should never be indexed";</script>
</head>
<body>
  <header class="site"><a href="/">Example.com</a><nav><ul><li>Home</li><li>Shop</li></ul></nav></header>
  <div id="cookie-consent">We use cookies. <button>Accept</button></div>
  <main>
    <article>
      <header><h1>Brewing Tea</h1><p>by Ann</p></header>
      <p>Good tea needs <b>fresh</b> water<br>and patience.</p>
      <h2>Steps</h2>
      <ol><li>Boil water</li><li>Steep<ul><li>green: 2 min</li><li>black: 4 min</li></ul></li></ol>
      <h3>Timing</h3>
      <table>
        <caption>Steeping times</caption>
        <thead><tr><th>Tea</th><th>Minutes</th></tr></thead>
        <tbody><tr><td>Green</td><td>2</td></tr><tr><td>Black</td><td>4</td></tr></tbody>
      </table>
      <pre>while steeping:
    wait()</pre>
      <blockquote><p>Tea is liquid wisdom.</p></blockquote>
      <p style="display: none">hidden text</p>
      <form><input name="q"><label>Search the site</label></form>
      <footer>Share this article</footer>
    </article>
  </main>
  <aside>Related: coffee</aside>
  <footer>Copyright 2024</footer>
</body>
</html>
"""


def page(source: str | bytes) -> ParsedDocument:
    return parse("html", source.encode() if isinstance(source, str) else source, ParseLimits())


def test_main_content_blocks_in_order() -> None:
    document = page(PAGE)
    assert [(b.kind, b.level, b.text) for b in document.blocks] == [
        ("heading", 1, "Brewing Tea"),
        ("paragraph", 0, "by Ann"),
        ("paragraph", 0, "Good tea needs fresh water\nand patience."),
        ("heading", 2, "Steps"),
        ("list", 0, "1. Boil water\n2. Steep\n  - green: 2 min\n  - black: 4 min"),
        ("heading", 3, "Timing"),
        ("caption", 0, "Steeping times"),
        ("table", 0, "Tea | Minutes\nGreen | 2\nBlack | 4"),
        ("code", 0, "while steeping:\n    wait()"),
        ("quote", 0, "Tea is liquid wisdom."),
    ]


def test_boilerplate_is_removed() -> None:
    text = page(PAGE).text
    for boilerplate in ("Example.com", "Home", "cookies", "Related", "Copyright", "Share this", "tracking", "hidden"):
        assert boilerplate not in text
    assert "Search the site" not in text


def test_title_and_metadata() -> None:
    document = page(PAGE)
    assert document.title == "Tea Guide | Example"
    assert document.metadata == {"language": "en", "author": "Ann Example"}


def test_body_is_used_without_main_and_page_header_is_dropped() -> None:
    document = page(
        "<html><body><header>Site name</header><nav>Menu</nav>"
        "<div>Loose text <i>inline</i><div>Inner block</div>tail</div><footer>Foot</footer></body></html>"
    )
    assert [b.text for b in document.blocks] == ["Loose text inline", "Inner block", "tail"]


def test_declared_charset_is_honoured() -> None:
    source = '<html><head><meta charset="windows-1252"><title>Caf\u00e9</title></head><body><p>na\u00efve \u2014 ok</p>'
    document = page(source.encode("cp1252"))
    assert document.title == "Caf\u00e9"
    assert document.text == "na\u00efve \u2014 ok"


def test_undeclared_legacy_encoding_is_detected() -> None:
    source = (
        "<html><body><p>"
        + "D\u00e9j\u00e0 vu, tr\u00e8s r\u00e9ussi, \u00e0 bient\u00f4t. " * 10
        + "</p></body></html>"
    )
    assert "D\u00e9j\u00e0 vu" in page(source.encode("latin-1")).text


def test_external_entities_are_not_resolved() -> None:
    source = (
        '<?xml version="1.0"?>\n<!DOCTYPE html [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>before &xxe; after</p></body></html>'
    )
    document = page(source)
    assert document.text == "before &xxe; after"
    assert "root:" not in document.text


def test_deep_nesting_does_not_overflow_the_stack() -> None:
    depth = 20_000
    source = "<div>" * depth + "<p>deep</p>" + "</div>" * depth
    assert "deep" in page(source).text


def test_html_to_blocks_for_an_epub_chapter() -> None:
    xhtml = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
        "<head><title>Chapter</title></head><body><h2>CHAPTER I.</h2><p>Down the rabbit-hole.</p></body></html>"
    )
    blocks = html_to_blocks(xhtml)
    assert [(b.kind, b.level, b.text) for b in blocks] == [
        ("heading", 2, "CHAPTER I."),
        ("paragraph", 0, "Down the rabbit-hole."),
    ]


def test_nested_table_rows_stay_in_their_cell() -> None:
    blocks = html_to_blocks(
        "<table><tr><td>outer</td><td><table><tr><td>inner</td><td>cell</td></tr></table></td></tr></table>"
    )
    assert [(b.kind, b.text) for b in blocks] == [("table", "outer | inner cell")]


def test_definition_lists() -> None:
    blocks = html_to_blocks("<dl><dt>Oolong</dt><dd>Partly oxidised tea.</dd></dl>")
    assert [(b.kind, b.text) for b in blocks] == [("list", "Oolong\n  Partly oxidised tea.")]
