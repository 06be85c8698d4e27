"""Tokens, sentences and note sections: the units the clinical rules work on.

Our own, rather than spaCy's, so the clinical rules behave the same with or without the statistical
model (the `fake` extractor has none) and so visit notes split where clinicians expect: at line
breaks, bullets and headings, not only at full stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A word (letters or digits, with inner apostrophes: "don't", "meniere's"), a line break, or any
# other single character. Hyphens are tokens that phrase matching skips, so "ear-wax" = "ear wax".
_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*|\n|[^\w\s]")
SKIPPED = frozenset({"-", "\u2013", "\u2014"})  # hyphen, en dash, em dash
# Possessives and articles are interchangeable inside phrases: "ringing in my ears" matches
# "ringing in the ears".
_DETERMINERS = frozenset({"the", "my", "his", "her", "their", "your", "our"})


@dataclass(frozen=True, slots=True)
class Token:
    start: int
    end: int
    text: str
    norm: str  # lower case, curly apostrophes straightened, determiners collapsed to "the"

    @property
    def is_word(self) -> bool:
        return self.text[0].isalnum() or self.text[0] == "_"


def normalize_word(word: str) -> str:
    lowered = word.lower().replace("\u2019", "'")
    return "the" if lowered in _DETERMINERS else lowered


def tokenize(text: str) -> list[Token]:
    """Every token but hyphens and dashes (joined words match their spaced form)."""
    return [
        Token(m.start(), m.end(), m.group(), normalize_word(m.group()))
        for m in _TOKEN.finditer(text)
        if m.group() not in SKIPPED
    ]


def surface_tokens(phrase: str) -> tuple[str, ...]:
    return tuple(m.group() for m in _TOKEN.finditer(phrase) if m.group() not in SKIPPED)


def phrase_key(phrase: str) -> tuple[str, ...]:
    return tuple(normalize_word(m.group()) for m in _TOKEN.finditer(phrase) if m.group() not in SKIPPED)


# --- sentences

_ABBREVIATIONS = frozenset({
    "dr", "mr", "mrs", "ms", "st", "vs", "approx", "appt", "apt", "e.g", "i.e", "etc", "al", "fig", "jr", "sr",
    "prof", "inc", "no", "p.o", "b.i.d", "t.i.d", "q.i.d", "q.d", "a.m", "p.m", "hx", "pt", "pts", "sx", "dx", "tx",
    "rx", "yo", "y.o", "yrs", "hrs", "mins", "lt", "rt", "bilat", "ca", "cf",
})  # fmt: skip
MAX_SENTENCE_CHARS = 600
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_WORD_BEFORE = re.compile(r"(\S+?)[.!?]*$")


@dataclass(frozen=True, slots=True)
class Sentence:
    start: int
    end: int

    def slice(self, text: str) -> str:
        return text[self.start : self.end]


def split_sentences(text: str) -> list[Sentence]:
    """Sentences: blocks of lines, cut again after `.`, `!` or `?` followed by a space (not after
    `Dr.`, `e.g.` or `b.i.d.`; after a single letter only before a capital: `type B. Right ear`).
    A line break ends a sentence unless the text is hard-wrapped prose (see `_breaks_at`).
    Leading and trailing whitespace is trimmed; empty ones are dropped."""
    sentences: list[Sentence] = []
    for block_start, block_end in _blocks(text):
        block = text[block_start:block_end]
        cut = 0
        for match in _SENTENCE_END.finditer(block):
            if match.group()[0] == "." and not _may_end_at(block, match.start(), match.end()):
                continue
            _add(sentences, text, block_start + cut, block_start + match.end())
            cut = match.end()
        _add(sentences, text, block_start + cut, block_end)
    return sentences


_LIST_ITEM = re.compile(r"\s*(?:[-*\u2022>#]|\d{1,2}[.)]\s|\[|[A-Za-z][\w /'-]{0,30}:)")
_WRAP_WIDTH = 40


def _blocks(text: str) -> list[tuple[int, int]]:
    blocks: list[tuple[int, int]] = []
    start = 0
    lines = text.split("\n")
    position = 0
    for index, line in enumerate(lines[:-1]):
        position += len(line) + 1
        if _breaks_at(line, lines[index + 1]):
            blocks.append((start, position - 1))
            start = position
    blocks.append((start, len(text)))
    return blocks


def _breaks_at(line: str, following: str) -> bool:
    """Whether a line break ends a sentence: after a blank line, a full stop, colon or semicolon, a
    heading in capitals or a short line ("Hypertension"), and before a bullet, a numbered item, a
    speaker (`[patient]`, `Doctor:`) or a `Label:`; not inside hard-wrapped prose."""
    before = line.strip()
    after = following.strip()
    if not before or not after:
        return True
    if before[-1] in ".!?:;" or not any(c.islower() for c in before):
        return True
    if _LIST_ITEM.match(following):
        return True
    return len(before) < _WRAP_WIDTH and (after[0].isupper() or after[0].isdigit())


def _may_end_at(line: str, period: int, after: int) -> bool:
    found = _WORD_BEFORE.search(line[max(0, period - 24) : period])
    if found is None:
        return True
    word = found.group(1).lower().lstrip("([\"'")
    if word in _ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha():
        following = line[after:].lstrip()
        return not following or following[0].isupper()
    return True


def _add(sentences: list[Sentence], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    # An unpunctuated transcript can be one "sentence" of thousands of words; the per-sentence rules
    # compare what is inside a sentence pairwise, so cut it at a comma or a space.
    while end - start > MAX_SENTENCE_CHARS:
        window = text[start : start + MAX_SENTENCE_CHARS]
        cut = max(window.rfind(", "), window.rfind("; "))
        cut = cut + 1 if cut > MAX_SENTENCE_CHARS // 2 else window.rfind(" ")
        cut = cut if cut > 0 else MAX_SENTENCE_CHARS
        _add(sentences, text, start, start + cut)
        start += cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        sentences.append(Sentence(start, end))


# --- sections

SectionKind = Literal["family", "historical", "complaint", "allergies", "other"]

_FAMILY_HEADINGS = ("family history", "fh", "fhx", "family hx", "family medical history")
_HISTORY_HEADINGS = (
    "past medical history", "pmh", "pmhx", "medical history", "past history", "past surgical history", "psh",
    "surgical history", "past medical and surgical history", "past otologic history", "previous medical history",
    "prior history",
)  # fmt: skip
_COMPLAINT_HEADINGS = (
    "chief complaint", "cc", "reason for visit", "reason for referral", "presenting complaint",
    "reason for appointment", "chief concern", "primary concern", "reason for consultation", "reason for consult",
    "presenting problem", "main complaint",
)  # fmt: skip
_ALLERGY_HEADINGS = ("allergies", "allergy", "drug allergies", "medication allergies", "allergies to medications")
_OTHER_HEADINGS = (
    "history of present illness", "hpi", "subjective", "objective", "assessment", "plan", "assessment and plan",
    "a/p", "impression", "impression and plan", "ros", "review of systems", "physical exam", "physical examination",
    "exam", "examination", "vitals", "vital signs", "results", "audiometry", "audiometric results", "audiogram",
    "audiologic results", "test results", "otoscopy", "tympanometry", "immittance", "speech audiometry",
    "medications", "current medications", "meds", "medication", "social history", "sh", "labs", "imaging",
    "diagnosis", "diagnoses", "procedures", "recommendations", "instructions", "patient instructions", "follow up",
    "follow-up", "counseling", "hearing aids", "amplification", "history", "case history", "interval history",
    "summary", "findings", "treatment", "disposition", "note", "notes",
)  # fmt: skip
_SECTION_NAMES: dict[str, SectionKind] = {
    **dict.fromkeys(_OTHER_HEADINGS, "other"),
    **dict.fromkeys(_ALLERGY_HEADINGS, "allergies"),
    **dict.fromkeys(_COMPLAINT_HEADINGS, "complaint"),
    **dict.fromkeys(_HISTORY_HEADINGS, "historical"),
    **dict.fromkeys(_FAMILY_HEADINGS, "family"),
}
_HEADER = re.compile(r"^\s*(?:[-*•#]+\s*)?([A-Za-z][A-Za-z /&-]{0,60}?)\s*(?::|$)")


@dataclass(frozen=True, slots=True)
class Section:
    kind: SectionKind
    start: int
    end: int
    header_end: int


def find_sections(text: str, sentences: list[Sentence]) -> list[Section]:
    """Sections opened by a known heading at the start of a sentence (`Family history:`,
    `PAST MEDICAL HISTORY`). A heading alone on its line runs to the next heading; a heading
    followed by text (`FH: mother has hearing loss.`) covers that sentence only."""
    headers: list[tuple[int, int, SectionKind, int | None]] = []  # start, header end, kind, inline end
    for sentence in sentences:
        piece = sentence.slice(text)
        match = _HEADER.match(piece)
        if match is None:
            continue
        name = " ".join(match.group(1).lower().split())
        kind = _SECTION_NAMES.get(name)
        if kind is None:
            continue
        rest_of_line = text[sentence.start + match.end() :].split("\n", 1)[0]
        has_colon = match.group().rstrip().endswith(":")
        if not has_colon and rest_of_line.strip():
            continue  # "Allergies are seasonal." is not a heading
        inline_end = sentence.end if rest_of_line.strip() else None
        headers.append((sentence.start, sentence.start + match.end(), kind, inline_end))
    sections: list[Section] = []
    for index, (start, header_end, kind, inline_end) in enumerate(headers):
        next_start = headers[index + 1][0] if index + 1 < len(headers) else len(text)
        sections.append(Section(kind, start, inline_end if inline_end is not None else next_start, header_end))
    return sections
