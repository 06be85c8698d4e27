from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from tessera.core.documents.parsing.base import CorruptDocument, ParsedDocument, ParseLimits
from tessera.core.documents.parsing.registry import parse
from tessera.core.documents.parsing.text import CSV_ROWS_PER_BLOCK, CsvParser, decode_text

BOOKS = Path(__file__).parents[4] / ".." / "shared" / "data" / "gutenberg-books"
LIMITS = ParseLimits()


def text(source: str) -> ParsedDocument:
    return parse("text", source.encode(), LIMITS)


def markdown(source: str) -> ParsedDocument:
    return parse("markdown", source.encode(), LIMITS)


def kinds(document: ParsedDocument) -> list[tuple[str, int, str]]:
    return [(b.kind, b.level, b.text) for b in document.blocks]


def headings(document: ParsedDocument) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in document.blocks if b.kind == "heading"]


WRAPPED = """It was a bright cold day in April, and the clocks were striking thirteen.
Winston Smith, his chin nuzzled into his breast in an effort to escape the
vile wind, slipped quickly through the glass doors of Victory Mansions,
though not quickly enough to prevent a swirl of gritty dust from entering
along with him."""


class TestDecodeText:
    def test_utf8_and_crlf(self) -> None:
        assert decode_text("caf\u00e9\r\nbar\rbaz".encode()) == ("caf\u00e9\nbar\nbaz", "utf-8")

    @pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-32"])
    def test_byte_order_marks(self, codec: str) -> None:
        decoded, _ = decode_text("na\u00efve \u2014 text".encode(codec))
        assert decoded == "na\u00efve \u2014 text"

    def test_legacy_encoding_is_detected(self) -> None:
        source = "Le c\u0153ur a ses raisons que la raison ne conna\u00eet point. " * 20
        decoded, encoding = decode_text(source.encode("cp1252"))
        assert decoded == source
        assert codecs.lookup(encoding).name != "utf-8"


class TestPlainText:
    def test_paragraphs_split_on_blank_lines_and_wrapped_lines_join(self) -> None:
        document = text("\n\n".join([WRAPPED, WRAPPED, WRAPPED]))
        assert len(document.blocks) == 3
        assert all(b.kind == "paragraph" for b in document.blocks)
        assert "\n" not in document.blocks[0].text
        assert "escape the vile wind" in document.blocks[0].text

    def test_hyphenated_words_are_rejoined(self) -> None:
        source = (
            WRAPPED
            + "\n\n"
            + (
                "The committee examined the long and complicated proposal in great de-\n"
                "tail before it voted, and then it adjourned for a very well deserved\n"
                "lunch at the usual place across the road from the old town hall."
            )
        )
        document = text(source + "\n\n" + WRAPPED)
        assert "in great detail before" in document.text

    def test_verse_keeps_its_lines(self) -> None:
        verse = "How doth the little crocodile\n  Improve his shining tail,\nAnd pour the waters of the Nile\n"
        document = text("\n\n".join([WRAPPED, verse, WRAPPED]))
        assert document.blocks[1].text == verse.strip()

    def test_chapter_and_title_line_become_one_heading(self) -> None:
        document = text(
            f"CHAPTER I.\nDown the Rabbit-Hole\n\n\n{WRAPPED}\n\n\n\nCHAPTER II.\n\nThe Pool of Tears\n\n{WRAPPED}"
        )
        assert headings(document) == [(1, "CHAPTER I. Down the Rabbit-Hole"), (1, "CHAPTER II. The Pool of Tears")]
        assert document.title == "CHAPTER I. Down the Rabbit-Hole"

    def test_first_sentence_is_not_taken_for_a_chapter_title(self) -> None:
        document = text(f"Chapter 3\n\n\nIt was raining.\n\n{WRAPPED}")
        assert headings(document) == [(1, "Chapter 3")]
        assert document.blocks[1].text == "It was raining."

    def test_books_are_level_one_and_their_chapters_level_two(self) -> None:
        source = "\n\n\n\n".join(
            [
                "Book the First--Recalled to Life",
                "I. The Period",
                WRAPPED,
                "II. The Mail",
                WRAPPED,
                "Book the Second--the Golden Thread",
                "I. Five Years Later",
                WRAPPED,
            ]
        )
        assert headings(text(source)) == [
            (1, "Book the First--Recalled to Life"),
            (2, "I. The Period"),
            (2, "II. The Mail"),
            (1, "Book the Second--the Golden Thread"),
            (2, "I. Five Years Later"),
        ]

    def test_all_caps_line_set_apart_is_a_heading(self) -> None:
        document = text(f"PREFACE\n\n\n{WRAPPED}\n\nSHOUTING IN THE MIDDLE\n\n{WRAPPED}")
        assert headings(document) == [(1, "PREFACE")]

    def test_underlined_headings(self) -> None:
        document = text(f"Title\n=====\n\n{WRAPPED}\n\nSection\n-------\n\n{WRAPPED}")
        assert headings(document) == [(1, "Title"), (2, "Section")]

    def test_list_lines(self) -> None:
        document = text(f"{WRAPPED}\n\n- apples\n- pears\n  and quinces\n\n{WRAPPED}")
        assert kinds(document)[1] == ("list", 0, "- apples\n- pears\nand quinces")

    def test_text_over_the_limit_is_truncated_with_a_warning(self) -> None:
        document = parse("text", b"x" * 100, ParseLimits(max_text_chars=10))
        assert document.text == "x" * 10
        assert document.warnings


@pytest.fixture(scope="module")
def alice() -> ParsedDocument:
    path = BOOKS / "txt" / "pg11.txt"
    if not path.exists():
        pytest.skip("../shared/data/gutenberg-books is absent")
    return parse("text", path.read_bytes(), LIMITS)


class TestAliceText:
    def test_chapters_are_level_one_headings(self, alice: ParsedDocument) -> None:
        found = headings(alice)
        # This copy has Gutenberg's header stripped, and CHAPTER I's heading with it.
        assert found[0] == (1, "CHAPTER II. The Pool of Tears")
        assert (1, "CHAPTER XI. Who Stole the Tarts?") in found
        assert len(found) == 11
        assert {level for level, _ in found} == {1}

    def test_paragraphs_are_unwrapped(self, alice: ParsedDocument) -> None:
        first = alice.blocks[0]
        assert first.kind == "paragraph"
        assert first.text.startswith("Alice was beginning to get very tired of sitting by her sister on the bank,")
        assert "\n" not in first.text

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("pg1342.txt", (1, "Chapter 3")),
            ("pg98.txt", (1, "Book the Second--the Golden Thread")),
            ("pg345.txt", (1, "CHAPTER II. JONATHAN HARKER'S JOURNAL--_continued_")),
        ],
    )
    def test_other_books_headings(self, name: str, expected: tuple[int, str]) -> None:
        path = BOOKS / "txt" / name
        if not path.exists():
            pytest.skip("../shared/data/gutenberg-books is absent")
        assert expected in headings(parse("text", path.read_bytes(), LIMITS))


class TestMarkdown:
    SOURCE = """---
title: "The Guide"
author: Ford
---

Intro with a [link](https://example.com) and ![a logo](logo.png).

Setext Title
============

## Install

```bash
pip install tessera
# not a heading
```

- one
- two
  continued
- three

| Name | Qty |
|------|----:|
| tea  | 2   |
| milk | 1   |

> quoted
> text

Sub heading
-----------

    indented code

Closing paragraph
across two lines.
"""

    def test_blocks(self) -> None:
        document = markdown(self.SOURCE)
        assert kinds(document) == [
            ("paragraph", 0, "Intro with a link and a logo."),
            ("heading", 1, "Setext Title"),
            ("heading", 2, "Install"),
            ("code", 0, "pip install tessera\n# not a heading"),
            ("list", 0, "- one\n- two\n  continued\n- three"),
            ("table", 0, "Name | Qty\ntea | 2\nmilk | 1"),
            ("quote", 0, "quoted\ntext"),
            ("heading", 2, "Sub heading"),
            ("code", 0, "indented code"),
            ("paragraph", 0, "Closing paragraph across two lines."),
        ]

    def test_front_matter_gives_title_and_metadata(self) -> None:
        document = markdown(self.SOURCE)
        assert document.title == "The Guide"
        assert document.metadata["author"] == "Ford"

    def test_atx_headings_with_closing_hashes(self) -> None:
        assert headings(markdown("# One #\n\n### Three ###\n\nText")) == [(1, "One"), (3, "Three")]

    def test_thematic_break_after_a_blank_line_is_not_a_heading(self) -> None:
        document = markdown("Para one.\n\n---\n\nPara two.")
        assert kinds(document) == [("paragraph", 0, "Para one."), ("paragraph", 0, "Para two.")]

    def test_unclosed_fence_runs_to_the_end(self) -> None:
        assert kinds(markdown("```\ncode\nmore")) == [("code", 0, "code\nmore")]


class TestCsv:
    def test_blocks_repeat_the_header(self) -> None:
        rows = "\n".join(f"{n};item {n};{n * 1.5}" for n in range(120))
        document = parse("csv", f"id;name;price\n{rows}\n".encode(), LIMITS)
        assert [b.kind for b in document.blocks] == ["table"] * 3
        for block in document.blocks:
            lines = block.text.split("\n")
            assert lines[0] == "id | name | price"
            assert len(lines) <= CSV_ROWS_PER_BLOCK + 1
        assert document.blocks[0].text.split("\n")[1] == "0 | item 0 | 0.0"
        assert document.metadata["columns"] == ["id", "name", "price"]
        assert document.metadata["row_count"] == 120
        assert document.metadata["delimiter"] == ";"

    def test_tsv_and_quoted_fields(self) -> None:
        source = 'name\tnote\n"Smith, J."\t"two\nlines"\nDoe\tplain\n'
        document = CsvParser().parse(source.encode(), LIMITS).finalize()
        assert document.text == "name | note\nSmith, J. | two lines\nDoe | plain"

    def test_header_only(self) -> None:
        document = parse("csv", b"a,b,c\n", LIMITS)
        assert document.text == "a | b | c"
        assert document.metadata["row_count"] == 0

    def test_empty_file_has_no_blocks(self) -> None:
        assert parse("csv", b"", LIMITS).blocks == []

    def test_oversized_field_is_corrupt(self) -> None:
        with pytest.raises(CorruptDocument):
            parse("csv", b'a,b\n"' + b"x" * 200_000 + b'",1\n', LIMITS)
