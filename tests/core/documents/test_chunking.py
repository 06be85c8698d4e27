from __future__ import annotations

import bisect
import itertools
import random
import re

import pytest

from tessera.core.documents.chunking import (
    ChunkDraft,
    ChunkingParams,
    RegexTokenCounter,
    TokenCounter,
    chunk_document,
)
from tessera.core.documents.parsing.base import Block, BlockKind, ParsedDocument

COUNTER = RegexTokenCounter()
WORDS = [
    *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"),
    *("lambda", "sigma", "omega", "claim", "method", "device", "42", "x-ray"),
]


def document(*blocks: Block) -> ParsedDocument:
    return ParsedDocument(list(blocks)).finalize()


def words(rnd: random.Random, n: int) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(n))


def prose(rnd: random.Random, sentences: int, *, min_words: int = 4, max_words: int = 20) -> str:
    return " ".join(words(rnd, rnd.randint(min_words, max_words)).capitalize() + "." for _ in range(sentences))


def table(rows: int, columns: int = 4) -> str:
    return "\n".join("| " + " | ".join(f"r{r}c{c}" for c in range(columns)) + " |" for r in range(rows))


def boundaries(parsed: ParsedDocument, params: ChunkingParams) -> list[int]:
    """Offsets where a chunk may not continue: each heading, and each page change when pages count."""
    offsets = []
    previous_page = None
    for index, block in enumerate(parsed.blocks):
        new_page = params.respect_pages and None not in (block.page, previous_page) and block.page != previous_page
        if index and (block.kind in ("heading", "title") or new_page):
            offsets.append(block.start)
        if block.page is not None:
            previous_page = block.page
    return offsets


def assert_invariants(
    parsed: ParsedDocument,
    chunks: list[ChunkDraft],
    params: ChunkingParams,
    counter: TokenCounter = COUNTER,
) -> None:
    text = parsed.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == counter.count(chunk.text)
        assert 0 < chunk.token_count <= params.chunk_size
    for before, after in itertools.pairwise(chunks):
        assert before.start < after.start
        assert before.end < after.end
    # Every non-whitespace character lies in some chunk.
    covered_to = 0
    for chunk in chunks:
        assert not text[covered_to : chunk.start].strip(), f"uncovered text before chunk {chunk.ordinal}"
        covered_to = max(covered_to, chunk.end)
    assert not text[covered_to:].strip()
    # A chunk crosses a heading or page boundary only to carry a tiny piece along.
    starts = [c.start for c in chunks]
    for offset in boundaries(parsed, params):
        # Starts and ends both increase, so walking back from `offset` stops at the first chunk ending before it.
        for chunk in reversed(chunks[: bisect.bisect_left(starts, offset)]):
            if chunk.end <= offset:
                break
            tiny_before = counter.count(text[chunk.start : offset]) < params.min_chunk_tokens
            tiny_tail = counter.count(text[offset:]) < params.min_chunk_tokens
            assert tiny_before or tiny_tail, f"chunk {chunk.ordinal} crosses the boundary at {offset}"


def chunk(parsed: ParsedDocument, params: ChunkingParams | None = None) -> list[ChunkDraft]:
    params = params or ChunkingParams()
    chunks = chunk_document(parsed, params)
    assert_invariants(parsed, chunks, params)
    return chunks


class TestParams:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"chunk_size": 0}, "chunk_size must be positive"),
            ({"chunk_size": -5}, "chunk_size must be positive"),
            ({"chunk_overlap": -1}, "chunk_overlap must not be negative"),
            ({"chunk_size": 32, "chunk_overlap": 32}, r"chunk_overlap \(32\) must be smaller than chunk_size \(32\)"),
            ({"chunk_size": 32, "chunk_overlap": 40}, "must be smaller than chunk_size"),
            ({"min_chunk_tokens": 0}, "min_chunk_tokens must be positive"),
        ],
    )
    def test_invalid_params_raise_value_error(self, options: dict[str, int], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            ChunkingParams(**options)

    def test_defaults_are_valid(self) -> None:
        params = ChunkingParams()
        assert (params.chunk_size, params.chunk_overlap, params.min_chunk_tokens) == (256, 32, 32)
        assert params.respect_pages


class TestRegexTokenCounter:
    def test_counts_words_and_punctuation(self) -> None:
        assert COUNTER.count("Hello, world! x-ray 42") == 8  # Hello , world ! x - ray 42
        assert COUNTER.count("   ") == 0

    def test_spans_match_count_and_cover_every_token(self) -> None:
        text = "Don't panic: 3.14 is π."
        spans = COUNTER.spans(text)
        assert len(spans) == COUNTER.count(text)
        assert "".join(text[s:e] for s, e in spans) == text.replace(" ", "")


class TestStructure:
    def test_empty_document_has_no_chunks(self) -> None:
        assert chunk(document()) == []

    def test_small_document_is_one_chunk(self) -> None:
        parsed = document(Block("paragraph", "Just a few words."))
        [only] = chunk(parsed)
        assert (only.start, only.end, only.text, only.heading_path) == (0, len(parsed.text), parsed.text, [])
        assert (only.page_start, only.page_end) == (None, None)

    def test_heading_paths_follow_nesting_and_reset_at_a_new_chapter(self) -> None:
        rnd = random.Random(1)
        parsed = document(
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Intro", level=1),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Background", level=2),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Prior   art", level=3),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Scope", level=2),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Methods", level=1),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Deep dive", level=3),
            Block("paragraph", prose(rnd, 6)),
        )
        chunks = chunk(parsed)
        assert [c.heading_path for c in chunks] == [
            [],
            ["Intro"],
            ["Intro", "Background"],
            ["Intro", "Background", "Prior art"],
            ["Intro", "Scope"],
            ["Methods"],
            ["Methods", "Deep dive"],
        ]
        # A heading opens the first chunk of its section.
        assert chunks[1].text.startswith("Intro\n\n")
        assert chunks[3].text.startswith("Prior   art\n\n")

    def test_title_counts_as_a_top_level_heading(self) -> None:
        rnd = random.Random(2)
        parsed = document(
            Block("title", "The Book"),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Part", level=2),
            Block("paragraph", prose(rnd, 6)),
        )
        assert [c.heading_path for c in chunk(parsed)] == [["The Book"], ["The Book", "Part"]]

    def test_chunks_never_cross_headings_or_pages(self) -> None:
        rnd = random.Random(3)
        blocks = []
        for page in range(1, 6):
            blocks.append(Block("heading", f"Section {page}", level=1, page=page))
            blocks.append(Block("paragraph", prose(rnd, 8), page=page))
            blocks.append(Block("paragraph", prose(rnd, 8), page=page + 1))
        parsed = document(*blocks)
        chunks = chunk(parsed, ChunkingParams(chunk_size=512))
        assert len(chunks) == 10
        for c in chunks:
            assert c.page_start == c.page_end
            assert c.text.count("Section") <= 1

    def test_ignoring_pages_packs_across_them(self) -> None:
        rnd = random.Random(4)
        parsed = document(*(Block("paragraph", prose(rnd, 4), page=page) for page in range(1, 7)))
        chunks = chunk(parsed, ChunkingParams(chunk_size=512, respect_pages=False))
        assert len(chunks) == 1
        assert (chunks[0].page_start, chunks[0].page_end) == (1, 6)
        assert len(chunk(parsed, ChunkingParams(chunk_size=512))) == 6


class TestTinyPieces:
    def test_a_heading_alone_joins_the_following_section(self) -> None:
        rnd = random.Random(5)
        parsed = document(
            Block("heading", "Chapter 1", level=1),
            Block("heading", "1.1 Scope", level=2),
            Block("paragraph", prose(rnd, 8)),
        )
        [only] = chunk(parsed)
        assert only.text.startswith("Chapter 1\n\n1.1 Scope\n\n")
        assert only.heading_path == ["Chapter 1", "1.1 Scope"]

    def test_a_heading_before_a_huge_paragraph_stays_with_its_first_sentences(self) -> None:
        rnd = random.Random(6)
        parsed = document(Block("heading", "Claims", level=1), Block("paragraph", prose(rnd, 80)))
        chunks = chunk(parsed, ChunkingParams(chunk_size=128, chunk_overlap=16))
        assert len(chunks) > 3
        assert chunks[0].text.startswith("Claims\n\n")
        assert chunks[0].token_count > 100

    def test_short_pages_merge_and_report_their_page_span(self) -> None:
        parsed = document(*(Block("paragraph", f"Page {page} says hello.", page=page) for page in range(1, 21)))
        chunks = chunk(parsed, ChunkingParams(min_chunk_tokens=12))
        # Each page has 5 tokens: three pages make a piece of at least 12; the last two join the ones before.
        assert [(c.page_start, c.page_end) for c in chunks] == [(1, 3), (4, 6), (7, 9), (10, 12), (13, 15), (16, 20)]

    def test_a_tiny_last_piece_joins_the_content_before_it(self) -> None:
        rnd = random.Random(7)
        parsed = document(
            Block("heading", "Body", level=1),
            Block("paragraph", prose(rnd, 6)),
            Block("heading", "Footnote", level=1),
            Block("paragraph", "See above."),
        )
        [only] = chunk(parsed)
        assert only.text.endswith("Footnote\n\nSee above.")
        assert only.heading_path == ["Body"]

    def test_a_document_of_only_tiny_pieces_is_one_chunk(self) -> None:
        parsed = document(Block("heading", "A", level=1), Block("heading", "B", level=2), Block("paragraph", "c"))
        [only] = chunk(parsed)
        assert only.text == parsed.text


class TestSplitting:
    def test_a_big_paragraph_splits_at_sentences_with_overlap(self) -> None:
        rnd = random.Random(8)
        params = ChunkingParams(chunk_size=64, chunk_overlap=16, min_chunk_tokens=8)
        parsed = document(Block("paragraph", prose(rnd, 60, min_words=3, max_words=10)))
        chunks = chunk(parsed, params)
        assert len(chunks) > 5
        for before, after in itertools.pairwise(chunks):
            assert after.start < before.end, "consecutive chunks of a section overlap"
            assert 0 < COUNTER.count(parsed.text[after.start : before.end]) <= params.chunk_overlap
            # Both ends fall on sentence boundaries.
            assert before.text.endswith(".")
            assert parsed.text[after.start - 2 : after.start] == ". "

    def test_no_overlap_when_overlap_is_zero(self) -> None:
        rnd = random.Random(9)
        params = ChunkingParams(chunk_size=64, chunk_overlap=0, min_chunk_tokens=8)
        parsed = document(Block("paragraph", prose(rnd, 60)))
        chunks = chunk(parsed, params)
        for before, after in itertools.pairwise(chunks):
            assert after.start > before.end

    def test_a_sentence_longer_than_a_chunk_splits_at_tokens(self) -> None:
        rnd = random.Random(10)
        params = ChunkingParams(chunk_size=50, chunk_overlap=10, min_chunk_tokens=5)
        parsed = document(Block("paragraph", words(rnd, 400)))
        chunks = chunk(parsed, params)
        assert all(c.token_count == 50 for c in chunks[:-1])
        for before, after in itertools.pairwise(chunks):
            assert COUNTER.count(parsed.text[after.start : before.end]) == 10

    def test_whole_blocks_move_to_the_next_chunk_rather_than_split(self) -> None:
        rnd = random.Random(11)
        paragraphs = [prose(rnd, 3, min_words=10, max_words=12) for _ in range(12)]
        parsed = document(*(Block("paragraph", p) for p in paragraphs))
        chunks = chunk(parsed, ChunkingParams(chunk_size=120, chunk_overlap=0))
        assert len(chunks) > 2
        for c in chunks:
            assert c.text.startswith(tuple(paragraphs))
            assert c.text.endswith(tuple(paragraphs))

    def test_a_big_table_splits_between_rows(self) -> None:
        rows = table(200)
        parsed = document(Block("heading", "Results", level=1), Block("table", rows))
        chunks = chunk(parsed, ChunkingParams(chunk_size=100, chunk_overlap=20, min_chunk_tokens=8))
        assert len(chunks) > 10
        row_set = set(rows.splitlines())
        for c in chunks:
            lines = c.text.splitlines()
            if lines[0] == "Results":
                lines = lines[2:]
            assert set(lines) <= row_set, "every line in a chunk is a whole row"

    def test_a_table_that_fits_stays_whole(self) -> None:
        rnd = random.Random(12)
        rows = table(10)
        parsed = document(
            Block("paragraph", prose(rnd, 10)),
            Block("table", rows),
            Block("paragraph", prose(rnd, 10)),
        )
        chunks = chunk(parsed, ChunkingParams(chunk_size=200, chunk_overlap=0))
        assert sum(rows in c.text for c in chunks) == 1

    def test_a_row_longer_than_a_chunk_splits_at_tokens(self) -> None:
        parsed = document(Block("table", "| " + " | ".join(f"cell{i}" for i in range(300)) + " |\n| a | b |"))
        chunks = chunk(parsed, ChunkingParams(chunk_size=64, chunk_overlap=8, min_chunk_tokens=4))
        assert chunks[-1].text.endswith("| a | b |")


class WhitespaceCounter:
    """A different tokenizer, to show the chunker depends only on the protocol."""

    _TOKEN = re.compile(r"\S+")

    def count(self, text: str) -> int:
        return len(self._TOKEN.findall(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


def test_a_custom_token_counter_is_used() -> None:
    rnd = random.Random(13)
    parsed = document(Block("paragraph", prose(rnd, 40)))
    params = ChunkingParams(chunk_size=40, chunk_overlap=5, min_chunk_tokens=5)
    counter = WhitespaceCounter()
    chunks = chunk_document(parsed, params, counter)
    assert_invariants(parsed, chunks, params, counter)
    assert max(c.token_count for c in chunks) > 30


KINDS: list[BlockKind] = ["paragraph"] * 6 + ["heading", "heading", "table", "list", "code", "quote", "caption"]


def random_block(rnd: random.Random, page: int | None) -> Block:
    kind = rnd.choice(KINDS)
    if kind == "heading":
        return Block(kind, words(rnd, rnd.randint(1, 6)), level=rnd.randint(1, 4), page=page)
    if kind == "table":
        return Block(kind, table(rnd.randint(1, 60), rnd.randint(1, 8)), page=page)
    if kind in ("list", "code"):
        return Block(kind, "\n".join(prose(rnd, rnd.randint(1, 3)) for _ in range(rnd.randint(1, 20))), page=page)
    shape = rnd.random()
    if shape < 0.15:  # unpunctuated run, as OCR or a PDF without full stops produces
        text = words(rnd, rnd.randint(1, 700))
    elif shape < 0.25:  # hard-wrapped lines
        text = "\n".join(words(rnd, rnd.randint(1, 12)) for _ in range(rnd.randint(1, 40)))
    else:
        text = prose(rnd, rnd.randint(1, 40), min_words=1, max_words=rnd.choice([10, 30, 120]))
    return Block(kind, text, page=page)


@pytest.mark.parametrize("seed", range(40))
def test_invariants_hold_on_random_documents(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(5):
        chunk_size = rnd.choice([8, 16, 40, 64, 128, 256, 512])
        params = ChunkingParams(
            chunk_size=chunk_size,
            chunk_overlap=rnd.randint(0, chunk_size - 1),
            min_chunk_tokens=rnd.randint(1, 64),
            respect_pages=rnd.random() < 0.8,
        )
        paged = rnd.random() < 0.7
        page = 1
        blocks = []
        for _ in range(rnd.randint(0, 60)):
            if paged and rnd.random() < 0.3:
                page += 1
            blocks.append(random_block(rnd, page if paged else None))
        parsed = document(*blocks)
        chunks = chunk(parsed, params)
        for c in chunks:
            if paged and c.text:
                assert c.page_start is not None
                assert c.page_end is not None
                assert c.page_start <= c.page_end
