"""Sentences and token estimates: what the extractive model, the verifier and budgets work on."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Words after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "fig",
        "figs",
        "et",
        "al",
        "vs",
        "no",
        "nos",
        "st",
        "approx",
        "cf",
        "etc",
        "inc",
        "ltd",
        "jr",
        "sr",
        "eq",
        "eqs",
        "ref",
        "refs",
        "vol",
        "pp",
        "ca",
        "resp",
        "dept",
        "univ",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
    ]
)
# A sentence ends at . ! ? (closing quotes, brackets and citation markers such as " [2]" stay with
# it), at a blank line, or before a list item.
_BOUNDARY = re.compile(
    r"[.!?…]+[\"'\u201d\u2019)\]]*(?:\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\])*\s+|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)"
)
_CITATION = re.compile(r"\s*\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


def sentences(text: str) -> list[Span]:
    """Sentence spans of `text` (offsets into it, surrounding whitespace excluded)."""
    spans: list[Span] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        candidate = text[start:end]
        word = re.search(r"([\w.]+)[.]\s*$", _CITATION.sub("", candidate).rstrip())
        if word and word.group(1).lower().rstrip(".") in _ABBREVIATIONS:
            continue
        if word and len(word.group(1)) == 1 and word.group(1).isalpha():  # an initial: "J. Smith"
            continue
        _add(spans, text, start, end)
        start = end
    _add(spans, text, start, len(text))
    return spans


def _add(spans: list[Span], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    offset = start + (len(piece) - len(piece.lstrip()))
    spans.append(Span(offset, offset + len(stripped), stripped))


def citations_in(sentence: str) -> list[int]:
    """Source numbers cited as [1] or [1, 3] in a sentence, in order, without repeats."""
    found: dict[int, None] = {}
    for match in _CITATION.finditer(sentence):
        for number in match.group(1).split(","):
            found.setdefault(int(number), None)
    return list(found)


def strip_citations(sentence: str) -> str:
    return _CITATION.sub("", sentence).strip()


def estimate_tokens(text: str) -> int:
    """Tokens a BPE model would count, estimated (about 1.3 per word or punctuation mark)."""
    return math.ceil(len(_TOKEN.findall(text)) * 1.3)


def truncate_tokens(text: str, tokens: int) -> str:
    """The longest prefix of whole sentences (or words) within about `tokens` tokens."""
    if estimate_tokens(text) <= tokens:
        return text
    kept = ""
    for span in sentences(text):
        candidate = text[: span.end]
        if estimate_tokens(candidate) > tokens:
            break
        kept = candidate
    if kept:
        return kept
    words = text.split()
    return " ".join(words[: max(1, int(tokens / 1.3))])
