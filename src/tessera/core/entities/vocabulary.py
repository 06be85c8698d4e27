"""The clinical vocabularies and ConText trigger lists under `data/`, and the token trie that
finds their phrases in a text (case-insensitive, whole words, longest match)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Generic, Literal, TypeVar

from tessera.core.entities.schemas import AttributeValue
from tessera.core.entities.text import Token, phrase_key, surface_tokens

P = TypeVar("P")

# File → entity type. The order breaks ties when one phrase is in two files.
VOCABULARY_FILES: dict[str, str] = {
    "hearing_loss.txt": "HEARING_LOSS",
    "tinnitus.txt": "TINNITUS",
    "hearing_devices.txt": "HEARING_DEVICE",
    "medications.txt": "MEDICATION",
    "procedures.txt": "PROCEDURE",
    "conditions.txt": "CONDITION",
    "symptoms.txt": "SYMPTOM",
    "body_sites.txt": "BODY_SITE",
}
CONTEXT_RULES_FILE = "context_rules.txt"

# Synonyms with no lower-case letter and at most this many letters are abbreviations: they match
# only as written ("CI" the implant, not "ci"; "AIDS", not "aids" the hearing aids).
_ABBREVIATION_MAX_LETTERS = 6
_ATTRIBUTES = re.compile(r"\[([^\]]*)\]\s*$")
_ATTRIBUTE = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")


@dataclass(frozen=True, slots=True)
class Term:
    label: str
    canonical: str
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


Category = Literal["NEGATED", "FAMILY", "HISTORICAL", "HYPOTHETICAL", "UNCERTAIN", "PSEUDO", "TERMINATE"]
Direction = Literal["forward", "backward", "bidirectional", "none"]
MODIFIER_CATEGORIES: tuple[Category, ...] = ("NEGATED", "FAMILY", "HISTORICAL", "HYPOTHETICAL", "UNCERTAIN")


@dataclass(frozen=True, slots=True)
class ContextRule:
    phrase: str
    category: Category
    direction: Direction
    max_words: int | None = None
    terminates: frozenset[str] = frozenset()  # TERMINATE rules: the categories whose scope they end


@dataclass(frozen=True, slots=True)
class PhraseMatch(Generic[P]):
    first: int  # index of the first token
    last: int  # index of the last token (inclusive)
    payload: P

    @property
    def length(self) -> int:
        return self.last - self.first + 1


class _Node(Generic[P]):
    __slots__ = ("children", "payloads")

    def __init__(self) -> None:
        self.children: dict[str, _Node[P]] = {}
        self.payloads: list[tuple[P, tuple[str, ...] | None]] = []  # payload, exact surface or None


class PhraseIndex(Generic[P]):
    """A trie over normalized tokens."""

    def __init__(self) -> None:
        self._root: _Node[P] = _Node()
        self.size = 0

    def add(self, phrase: str, payload: P, *, exact: bool = False) -> bool:
        key = phrase_key(phrase)
        if not key:
            return False
        node = self._root
        for part in key:
            node = node.children.setdefault(part, _Node())
        surface = surface_tokens(phrase) if exact else None
        if any(existing_surface == surface for _, existing_surface in node.payloads):
            return False  # the first file to define a phrase keeps it
        # Exact (abbreviation) entries are tried first: "AIDS" before "aids" the hearing aids.
        if surface is None:
            node.payloads.append((payload, surface))
        else:
            node.payloads.insert(0, (payload, surface))
        self.size += 1
        return True

    def find(self, tokens: Sequence[Token], first: int = 0, stop: int | None = None) -> Iterator[PhraseMatch[P]]:
        """The longest phrase starting at each token of `tokens[first:stop]`."""
        stop = len(tokens) if stop is None else stop
        for start in range(first, stop):
            node = self._root
            best: PhraseMatch[P] | None = None
            for index in range(start, stop):
                child = node.children.get(tokens[index].norm)
                if child is None:
                    break
                node = child
                for payload, surface in node.payloads:
                    if surface is None or surface == tuple(t.text for t in tokens[start : index + 1]):
                        best = PhraseMatch(start, index, payload)
                        break
            if best is not None:
                yield best


def select_longest(matches: Sequence[PhraseMatch[P]]) -> list[PhraseMatch[P]]:
    """Non-overlapping matches, longest first (then leftmost), sorted by position."""
    taken: list[PhraseMatch[P]] = []
    used: set[int] = set()
    for match in sorted(matches, key=lambda m: (-m.length, m.first)):
        span = range(match.first, match.last + 1)
        if any(i in used for i in span):
            continue
        used.update(span)
        taken.append(match)
    return sorted(taken, key=lambda m: m.first)


# --- loading the data files


def _data_text(name: str) -> str:
    return resources.files("tessera.core.entities").joinpath("data", name).read_text(encoding="utf-8")


def _lines(name: str) -> Iterator[str]:
    for raw in _data_text(name).splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


def _is_abbreviation(synonym: str) -> bool:
    letters = [c for c in synonym if c.isalpha()]
    return bool(letters) and not any(c.islower() for c in synonym) and len(letters) <= _ABBREVIATION_MAX_LETTERS


def _plural(word: str) -> str | None:
    if len(word) < 3 or not word.isalpha() or word.endswith("s"):
        return None
    if word.endswith(("x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def parse_vocabulary_line(line: str, label: str) -> tuple[Term, list[str]]:
    """`canonical | synonym ... [key=value ...]` → the term and every phrase that names it."""
    attributes: dict[str, AttributeValue] = {}
    found = _ATTRIBUTES.search(line)
    if found:
        line = line[: found.start()]
        for key, value in _ATTRIBUTE.findall(found.group(1).strip()):
            attributes[key] = {"true": True, "false": False}.get(value.strip(), value.strip())
    names = [part.strip() for part in line.split("|") if part.strip()]
    return Term(label, names[0], attributes), names


@dataclass(frozen=True)
class Vocabulary:
    terms: PhraseIndex[Term]
    rules: PhraseIndex[ContextRule]
    version: str
    term_count: int
    rule_count: int


@cache
def load_vocabulary() -> Vocabulary:
    """Every vocabulary and rule file, parsed once per process."""
    digest = hashlib.sha256()
    terms: PhraseIndex[Term] = PhraseIndex()
    count = 0
    for name, label in VOCABULARY_FILES.items():
        digest.update(_data_text(name).encode())
        for line in _lines(name):
            term, names = parse_vocabulary_line(line, label)
            count += 1
            for synonym in names:
                exact = _is_abbreviation(synonym)
                terms.add(synonym, term, exact=exact)
                if not exact:
                    head, _, last = synonym.rpartition(" ")
                    plural = _plural(last)
                    if plural is not None:
                        terms.add(f"{head} {plural}".strip(), term)
    rules: PhraseIndex[ContextRule] = PhraseIndex()
    digest.update(_data_text(CONTEXT_RULES_FILE).encode())
    rule_count = 0
    for rule in parse_context_rules(_data_text(CONTEXT_RULES_FILE)):
        rules.add(rule.phrase, rule)
        rule_count += 1
    return Vocabulary(terms, rules, digest.hexdigest()[:10], count, rule_count)


def parse_context_rules(source: str) -> list[ContextRule]:
    rules: list[ContextRule] = []
    for raw in source.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [part.strip() for part in line.split("|")]
        if len(parts) < 3:
            raise ValueError(f"context rule needs `phrase | category | direction`: {line!r}")
        phrase, category = parts[0], parts[1]
        if category not in (*MODIFIER_CATEGORIES, "PSEUDO", "TERMINATE"):
            raise ValueError(f"unknown ConText category {category!r} in {line!r}")
        if category == "TERMINATE":
            ended = frozenset(MODIFIER_CATEGORIES) if parts[2] == "all" else frozenset(parts[2].split())
            if not ended <= frozenset(MODIFIER_CATEGORIES):
                raise ValueError(f"unknown category in {line!r}")
            rules.append(ContextRule(phrase, "TERMINATE", "none", None, ended))
            continue
        direction = parts[2]
        if direction not in ("forward", "backward", "bidirectional", "none"):
            raise ValueError(f"unknown direction {direction!r} in {line!r}")
        max_words = int(parts[3]) if len(parts) > 3 and parts[3] else None
        rules.append(ContextRule(phrase, category, direction, max_words))  # type: ignore[arg-type]
    return rules
