"""Split a parsed document into retrieval chunks that follow its structure.

Rules, in order of precedence:

1. A chunk is a contiguous slice of `ParsedDocument.text` (`text[c.start:c.end] == c.text`), so a
   citation can point at exact characters, and chunks come in document order.
2. A chunk never crosses a heading or (with `respect_pages`) a page boundary, unless the piece
   before the boundary is smaller than `min_chunk_tokens`: then it joins the following content, so
   a heading line or a short page never becomes a chunk of its own. A tiny piece at the very end of
   the document joins the content before it instead.
3. Whole blocks are packed greedily up to `chunk_size` tokens. A block that does not fit is split at
   sentence boundaries (at line boundaries for tables, lists and code) and, when one sentence is
   still too long, at token boundaries.
4. Consecutive chunks of one section overlap by about `chunk_overlap` tokens, taken as whole
   sentences (rows) when one fits, else as tokens.

Each chunk carries the heading path of its section: a heading of level L replaces the path entries
at depth L and below (a `title` block, or a heading without a level, counts as level 1). When tiny
pieces were joined to their neighbours, the chunks of that run take the path of its largest piece.

Token counts come from a `TokenCounter`. Each block is counted once and only blocks that must be
split (or that give a chunk its overlap) are split and counted again, so the work stays linear in
the size of the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol

from tessera.core.documents.parsing.base import BlockKind, ParsedDocument


@dataclass(frozen=True)
class ChunkingParams:
    chunk_size: int = 256
    """Maximum tokens in a chunk."""
    chunk_overlap: int = 32
    """Tokens repeated from the end of a chunk at the start of the next one of the same section."""
    min_chunk_tokens: int = 32
    """A heading or page piece smaller than this joins the following content instead of standing alone."""
    respect_pages: bool = True
    """Start a new chunk at every page change (when the blocks carry pages)."""

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must not be negative, got {self.chunk_overlap}")
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        if self.min_chunk_tokens <= 0:
            raise ValueError(f"min_chunk_tokens must be positive, got {self.min_chunk_tokens}")


class TokenCounter(Protocol):
    """Counts tokens the way the embedding model will see them (approximately is fine).

    The chunker cuts text between tokens and adds up the counts of the pieces, so counts must be
    additive across those cuts: `count(a + sep + b) == count(a) + count(b)` when `sep` is whitespace
    or the cut falls between two tokens. Word-piece tokenizers that pre-split on whitespace and
    punctuation satisfy this; wrap a byte-level BPE tokenizer to count per whitespace-separated word.
    """

    def count(self, text: str) -> int:
        """The number of tokens in `text`."""
        ...

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The `(start, end)` character offsets of every token in `text`, in order.

        `len(spans(text)) == count(text)`, and text between two spans is whitespace or empty, so
        cutting at a span boundary never splits a token.
        """
        ...


class RegexTokenCounter:
    """Words and single punctuation marks: a fast approximation of word-piece token counts.

    It undercounts rare words that a real tokenizer splits into several pieces; the retrieval layer
    may swap in the embedder's own tokenizer through the `TokenCounter` protocol.
    """

    _TOKEN: Final = re.compile(r"\w+|[^\w\s]")

    def count(self, text: str) -> int:
        return len(self._TOKEN.findall(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._TOKEN.finditer(text)]


@dataclass
class ChunkDraft:
    ordinal: int
    text: str
    start: int
    end: int
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    token_count: int


# Split levels, coarsest first; group 1 of each pattern is the gap between two pieces.
_SENTENCE = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(\s+)")
_LINE = re.compile(r"([ \t\r\f\v]*\n\s*)")
_PROSE_LEVELS = (_SENTENCE, _LINE)
_SPLIT_LEVELS: dict[BlockKind, tuple[re.Pattern[str], ...]] = {
    "title": _PROSE_LEVELS,
    "heading": _PROSE_LEVELS,
    "paragraph": _PROSE_LEVELS,
    "quote": _PROSE_LEVELS,
    "caption": _PROSE_LEVELS,
    "list": (_LINE, _SENTENCE),
    # Rows stay whole: a table (or code) splits only at line ends, then at tokens for a monster row.
    "table": (_LINE,),
    "code": (_LINE,),
}
_HEADING_KINDS: frozenset[BlockKind] = frozenset({"title", "heading"})


class _Atom:
    """A slice of the text that is packed whole, or split further when it does not fit."""

    __slots__ = ("block", "end", "first", "level", "spans", "start", "tokens")

    def __init__(
        self,
        start: int,
        end: int,
        tokens: int,
        block: int,
        level: int,
        spans: list[tuple[int, int]] | None = None,
        first: int = 0,
    ) -> None:
        self.start = start
        self.end = end
        self.tokens = tokens
        self.block = block
        self.level = level
        """How many split levels produced this atom; at `len(levels)` only token cuts remain."""
        self.spans = spans
        """Absolute token spans, computed once the atom needs cutting at tokens; shared by its parts."""
        self.first = first
        """Index in `spans` of this atom's first token."""


@dataclass
class _Piece:
    """Consecutive blocks of one section on one page."""

    first_block: int
    last_block: int
    path: list[str]
    tokens: int


def chunk_document(
    parsed: ParsedDocument, params: ChunkingParams, counter: TokenCounter | None = None
) -> list[ChunkDraft]:
    """Chunk a finalized `ParsedDocument` (see the module docstring for the rules)."""
    return _Chunker(parsed, params, counter or RegexTokenCounter()).run()


class _Chunker:
    def __init__(self, parsed: ParsedDocument, params: ChunkingParams, counter: TokenCounter) -> None:
        self.text = parsed.text
        self.blocks = parsed.blocks
        self.params = params
        self.counter = counter
        self.levels = [_SPLIT_LEVELS.get(b.kind, _PROSE_LEVELS) for b in self.blocks]
        self.chunks: list[ChunkDraft] = []

    def run(self) -> list[ChunkDraft]:
        if not self.blocks:
            return []
        block_tokens = [self.counter.count(b.text) for b in self.blocks]
        for group in self._groups(self._pieces(block_tokens)):
            host = group[0]
            for piece in group:  # the heading path of the piece holding most of the group
                if piece.tokens >= host.tokens:
                    host = piece
            atoms = [
                _Atom(self.blocks[i].start, self.blocks[i].end, block_tokens[i], i, 0)
                for i in range(group[0].first_block, group[-1].last_block + 1)
            ]
            self._pack(atoms, host.path)
        return self.chunks

    def _pieces(self, block_tokens: list[int]) -> list[_Piece]:
        pieces: list[_Piece] = []
        path: list[str] = []
        previous_page: int | None = None
        for index, block in enumerate(self.blocks):
            is_heading = block.kind in _HEADING_KINDS
            if is_heading:
                level = max(block.level, 1)
                path = [*path[: level - 1], " ".join(block.text.split())]
            new_page = (
                self.params.respect_pages
                and block.page is not None
                and previous_page is not None
                and block.page != previous_page
            )
            if not pieces or is_heading or new_page:
                pieces.append(_Piece(index, index, path, block_tokens[index]))
            else:
                pieces[-1].last_block = index
                pieces[-1].tokens += block_tokens[index]
            if block.page is not None:
                previous_page = block.page
        return pieces

    def _groups(self, pieces: list[_Piece]) -> list[list[_Piece]]:
        """Runs of pieces chunked together: tiny pieces join the content that follows them."""
        groups: list[list[_Piece]] = []
        pending: list[_Piece] = []
        pending_tokens = 0
        for piece in pieces:
            pending.append(piece)
            pending_tokens += piece.tokens
            if pending_tokens >= self.params.min_chunk_tokens:
                groups.append(pending)
                pending, pending_tokens = [], 0
        if pending:
            if groups:  # nothing follows the last tiny piece: it joins what precedes it
                groups[-1].extend(pending)
            else:
                groups.append(pending)
        return groups

    def _pack(self, atoms: list[_Atom], path: list[str]) -> None:
        size = self.params.chunk_size
        min_tokens = self.params.min_chunk_tokens
        stack = atoms[::-1]
        current: list[_Atom] = []
        current_tokens = 0
        new_tokens = 0  # tokens in `current` that are not overlap from the previous chunk
        while stack:
            atom = stack.pop()
            budget = size - current_tokens
            if atom.tokens <= budget:
                current.append(atom)
                current_tokens += atom.tokens
                new_tokens += atom.tokens
                continue
            # The atom must be split anyway, or the chunk so far is too thin to stand alone: fill it.
            if budget > 0 and (atom.tokens > size or new_tokens < min_tokens):
                if atom.level < len(self.levels[atom.block]):
                    stack.extend(reversed(self._split(atom)))
                    continue
                head, rest = self._cut_tokens(atom, budget)
                current.append(head)
                current_tokens += head.tokens
                new_tokens += head.tokens
                stack.append(rest)
                continue
            self._emit(current, current_tokens, path)
            overlap = (
                self.params.chunk_overlap if atom.tokens > size else min(self.params.chunk_overlap, size - atom.tokens)
            )
            # Never repeat the whole chunk: the next one must start later than this one.
            current = self._tail(current, min(overlap, current_tokens - 1))
            current_tokens = sum(a.tokens for a in current)
            new_tokens = 0
            stack.append(atom)
        if current and new_tokens:
            self._emit(current, current_tokens, path)

    def _split(self, atom: _Atom) -> list[_Atom]:
        """The atom's pieces at its next split level (sentences, lines), counted."""
        pattern = self.levels[atom.block][atom.level]
        level = atom.level + 1
        segment = self.text[atom.start : atom.end]
        bounds: list[tuple[int, int]] = []
        position = 0
        for match in pattern.finditer(segment):
            gap_start, gap_end = match.span(1)
            if gap_start > position:
                bounds.append((position, gap_start))
            position = gap_end
        if not bounds:
            return [_Atom(atom.start, atom.end, atom.tokens, atom.block, level)]
        if position < len(segment):
            bounds.append((position, len(segment)))
        count = self.counter.count
        return [_Atom(atom.start + s, atom.start + e, count(segment[s:e]), atom.block, level) for s, e in bounds]

    def _token_spans(self, atom: _Atom) -> list[tuple[int, int]]:
        if atom.spans is None:
            offset = atom.start
            atom.spans = [(s + offset, e + offset) for s, e in self.counter.spans(self.text[atom.start : atom.end])]
            atom.first = 0
            atom.tokens = len(atom.spans)
        return atom.spans

    def _cut_tokens(self, atom: _Atom, count: int) -> tuple[_Atom, _Atom]:
        """The first `count` tokens of the atom and the rest (0 < count < atom.tokens)."""
        spans = self._token_spans(atom)
        count = min(count, atom.tokens - 1)
        cut = atom.first + count
        head = _Atom(atom.start, spans[cut - 1][1], count, atom.block, atom.level, spans, atom.first)
        rest = _Atom(spans[cut][0], atom.end, atom.tokens - count, atom.block, atom.level, spans, cut)
        return head, rest

    def _tail(self, atoms: list[_Atom], budget: int) -> list[_Atom]:
        """The end of a chunk worth repeating: whole sentences or rows up to `budget` tokens, else tokens."""
        if budget <= 0:
            return []
        taken: list[_Atom] = []
        taken_tokens = 0
        work = list(atoms)
        while work:
            atom = work.pop()
            if taken_tokens + atom.tokens <= budget:
                taken.append(atom)
                taken_tokens += atom.tokens
                continue
            if atom.level < len(self.levels[atom.block]):
                work.extend(self._split(atom))
                continue
            if not taken:  # not even one whole sentence fits: repeat the last tokens instead
                spans = self._token_spans(atom)
                first = atom.first + atom.tokens - budget
                taken.append(_Atom(spans[first][0], atom.end, budget, atom.block, atom.level, spans, first))
            break
        taken.reverse()
        return taken

    def _emit(self, atoms: list[_Atom], tokens: int, path: list[str]) -> None:
        start, end = atoms[0].start, atoms[-1].end
        pages = [
            page
            for page in (self.blocks[i].page for i in range(atoms[0].block, atoms[-1].block + 1))
            if page is not None
        ]
        self.chunks.append(
            ChunkDraft(
                ordinal=len(self.chunks),
                text=self.text[start:end],
                start=start,
                end=end,
                page_start=min(pages) if pages else None,
                page_end=max(pages) if pages else None,
                heading_path=list(path),
                token_count=tokens,
            )
        )
