"""Tessera's own PII recognisers, and the context rules applied to every recogniser's results.

Presidio with a small spaCy model finds about half of the identifiers in ordinary text: it has no
street-address, postcode, age or title recogniser, reads house numbers and postcodes as dates,
and misses names that follow a title or a cue ("my name is ..."). The recognisers here fill
those gaps with patterns, context words and vocabularies of common words (street types, titles,
occupations, country names, nationalities: `data/*.txt`). Nothing is learnt from a dataset.

Each recogniser is a Presidio `EntityRecognizer`, so it runs inside `AnalyzerEngine` and its
name travels with its results. `refine()` then applies the rules that need every result at
once (a frequency is not a date, an audiogram value is not a phone number, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, ClassVar

import tldextract
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import EmailRecognizer
from spacy.lang.en.stop_words import STOP_WORDS

DATA_DIR = Path(__file__).with_name("data")

FLAGS_KEY = "tessera_flags"
"""`recognition_metadata` key of a result's flags (e.g. `over_89` on an AGE)."""


# ---------------------------------------------------------------------------------------------
# vocabularies


@cache
def vocabulary(name: str) -> tuple[str, ...]:
    """The entries of `data/<name>.txt`: one a line, `#` starts a comment, blank lines skipped."""
    entries: list[str] = []
    for line in (DATA_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        entry = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if entry:
            entries.append(entry)
    return tuple(entries)


@cache
def folded_vocabulary(name: str) -> frozenset[str]:
    return frozenset(entry.rstrip("*").casefold() for entry in vocabulary(name))


def _alternation(entries: Iterable[str]) -> str:
    """A regex matching any of the literal entries, longest first ("Streets" before "Street").

    Written as a trie ("st(?:r(?:eet|a(?:ße|sse))|...)"): Python's `re` tries the branches of a
    flat alternation one by one at every position, and the vocabularies have hundreds of entries."""
    trie: dict[str, Any] = {}
    for entry in {entry.rstrip("*") for entry in entries if entry.rstrip("*")}:
        node = trie
        for char in entry:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_pattern(trie)


def _trie_pattern(node: dict[str, Any]) -> str:
    ends_here = "" in node
    branches = []
    for char in sorted(key for key in node if key):
        piece = r"\s+" if char == " " else re.escape(char)
        branches.append(piece + _trie_pattern(node[char]))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends_here:
        return f"(?:{body})?" if len(branches) == 1 else body + "?"
    return body


GAZETTEER_TOKEN = re.compile(r"[^\W\d_][\w'\u2019\-]*\.?|&")


def phrase_matches(
    text: str, phrases: frozenset[str], max_words: int, *, fold: bool = False
) -> Iterator[tuple[int, int]]:
    """Spans of `text` equal to one of `phrases` (words separated by single spaces), longest first at
    each position; a set lookup per word n-gram instead of one regex alternation of every phrase.
    Without `fold` the phrases are capitalised, so only capitalised words can start one."""
    tokens = [(match.start(), match.end()) for match in GAZETTEER_TOKEN.finditer(text)]
    # run[k]: how many tokens from k on follow each other with one space between them
    run = [1] * len(tokens)
    for k in range(len(tokens) - 2, -1, -1):
        if tokens[k + 1][0] - tokens[k][1] == 1 and text[tokens[k][1]] == " ":
            run[k] = run[k + 1] + 1
    index = 0
    while index < len(tokens):
        found = 0
        if fold or not text[tokens[index][0]].islower():
            for size in range(min(max_words, run[index]), 0, -1):
                start, end = tokens[index][0], tokens[index + size - 1][1]
                candidate = text[start:end]
                for form in (candidate, candidate.rstrip(".")):
                    if (form.casefold() if fold else form) in phrases:
                        found = size
                        yield start, start + len(form)
                        break
                if found:
                    break
        index += max(found, 1)


STOP = frozenset(word.casefold() for word in STOP_WORDS) | {"i'm", "it's", "i", "im", "let's", "that's"}
# Name particles and connectors allowed inside place and street names.
PARTICLES = frozenset(
    [
        "de",
        "del",
        "della",
        "der",
        "den",
        "des",
        "di",
        "do",
        "dos",
        "das",
        "du",
        "da",
        "la",
        "le",
        "les",
        "van",
        "von",
        "ten",
        "ter",
        "el",
        "al",
        "y",
        "e",
        "i",
        "of",
        "the",
        "and",
        "on",
        "am",
        "an",
        "im",
        "auf",
        "bei",
        "nad",
        "pod",
        "ob",
        "upon",
        "sur",
        "sous",
        "saint",
        "san",
        "santa",
        "sankt",
        "st",
    ]
)


def _is_capitalised(word: str) -> bool:
    letters = [char for char in word if char.isalpha()]
    return bool(letters) and letters[0].isupper()


@lru_cache(maxsize=8)
def _is_lower_text(text: str) -> bool:
    """Text written without capitals (chat, notes): capitalisation cannot mark names in it."""
    words = re.findall(r"[^\W\d_]+", text)
    if len(words) < 3:
        return False
    capitalised = sum(1 for word in words if word[0].isupper())
    return capitalised / len(words) < 0.04


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Word lists the recognisers share, taken from the spaCy model (see `presidio._lexicon`).

    `english_words`: lower-case nouns, verbs, adjectives and adverbs; `common_words`: the part of
    them that is rarely a name (never seen capitalised by the model, or not a noun)."""

    english_words: frozenset[str] = frozenset()
    common_words: frozenset[str] = frozenset()

    @staticmethod
    def _forms(word: str) -> tuple[str, ...]:
        folded = word.casefold().strip(".'\u2019")
        if folded.endswith("ies"):
            return folded, folded[:-3] + "y"
        if folded.endswith("es"):
            return folded, folded[:-2], folded[:-1]
        if folded.endswith("s"):
            return folded, folded[:-1]
        return (folded,)

    def is_english_word(self, word: str) -> bool:
        return any(form in self.english_words for form in self._forms(word))

    def is_common_word(self, word: str) -> bool:
        return any(form in self.common_words for form in self._forms(word))


# ---------------------------------------------------------------------------------------------
# recogniser base


class TesseraRecognizer(EntityRecognizer):
    """A recogniser written as `find(text, nlp_artifacts)`; results outside `entities` are dropped."""

    ENTITIES: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__(supported_entities=list(self.ENTITIES), name=type(self).__name__, supported_language="en")

    def load(self) -> None:
        """Vocabularies load on first use (they are cached for the process)."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        wanted = set(entities) if entities else set(self.ENTITIES)
        return [result for result in self.find(text, nlp_artifacts) if result.entity_type in wanted]

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        raise NotImplementedError

    def result(
        self, entity_type: str, start: int, end: int, score: float, *, flags: Sequence[str] = ()
    ) -> RecognizerResult:
        metadata: dict[str, Any] = {
            RecognizerResult.RECOGNIZER_NAME_KEY: type(self).__name__,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        if flags:
            metadata[FLAGS_KEY] = list(flags)
        return RecognizerResult(entity_type, start, end, score, recognition_metadata=metadata)


def _trim(text: str, start: int, end: int, chars: str = " \t\r\n,;:") -> tuple[int, int]:
    while start < end and text[start] in chars:
        start += 1
    while end > start and text[end - 1] in chars:
        end -= 1
    return start, end


# ---------------------------------------------------------------------------------------------
# shared pieces of patterns

WORD = r"[^\W\d_][\w'\u2019\-]*"
CAP_WORD = r"(?:[A-ZÀ-ÖØ-ÞĀ-\u017fΆ-ΏΑ-Ω∆Ѐ-Я][\w'\u2019\-]*)"
HOUSE_NUMBER = r"\d{1,6}(?:[A-Za-z](?![\w]))?(?:\s?[-/]\s?\d{1,5}[A-Za-z]?)?"
ORDINAL = r"\d{1,3}(?:st|nd|rd|th)"
UNIT = (
    r"(?:(?i:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|bldg|building|block|blk|lot|dept|department|"
    r"box|bus|door|stair|piso|étage|etg|lgh)\.?|#)\s*#?\s*[\w\-]{1,6}\b\.?"
)
PO_BOX = (
    r"(?i:p\.?\s?o\.?\s?box|post\s+office\s+box|postfach|apartado(?:\s+postal)?|caixa\s+postal|"
    r"bo[iî]te\s+postale|locked\s+bag|private\s+bag|gpo\s+box|postboks|box)\s*#?\s*\d{1,6}\b"
)
MILITARY = (
    r"(?:(?:(?:PSC|CMR|Unit)\s+\d{3,5},?\s+Box\s+\d{1,5}|(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+)"
    r"(?:[,\s]*(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5})?|(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5})"
)
POSTCODE = (
    r"(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # UK
    r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # Canada
    r"|\d{4}\s?[A-Z]{2}"  # Netherlands
    r"|\d{5}-\d{4}"  # US ZIP+4
    r"|\d{5}-\d{3}"  # Brazil
    r"|\d{3}\s\d{2}"  # Sweden, Czechia, Slovakia, Greece
    r"|\d{2}-\d{3}"  # Poland
    r"|\d{4}-\d{3}"  # Portugal
    r"|[A-Z]{1,2}-\d{4,5}"  # D-12345, L-1234
    r"|\d{3,6})"
)

COUNTRY_WORDS = frozenset(entry.casefold() for entry in vocabulary("countries"))


@cache
def _street_types() -> str:
    return _alternation(vocabulary("street_types"))


@cache
def _street_prefixes() -> str:
    return _alternation(vocabulary("street_prefixes"))


@cache
def _street_compounds() -> str:
    return _alternation(vocabulary("street_compounds"))


# ---------------------------------------------------------------------------------------------
# street addresses


@dataclass(frozen=True, slots=True)
class _Core:
    start: int
    end: int
    score: float


PHONE_LABELS = frozenset(
    [
        "office",
        "fax",
        "mobile",
        "cell",
        "phone",
        "tel",
        "telephone",
        "desk",
        "home",
        "work",
        "direct",
        "main",
        "mob",
        "ph",
    ]
)
STRONG_STREET_TYPES = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Place|Pl|Square|Sq|Terrace|Close|Crescent|"
    r"Court|Ct|Highway|Hwy|Parkway|Pkwy|Alley|Row|Mews|Gardens|Grove|Loop|Trail|Flats|Hills|Squares|Straße|Strasse|Gasse|Weg"
)


PHONE_SHAPE = re.compile(r"(?:\+|00)?[\d()]{1,6}(?:[ .\-]?\(?\d{1,5}\)?){1,6}")


def _is_phone_like(segment: str) -> bool:
    """Digits in groups (7 or more), with at most phone labels around them: "416 60 039 office"."""
    words = re.findall(r"[^\W\d_]+", segment)
    if any(word.casefold() not in PHONE_LABELS | {"x", "ext"} for word in words):
        return False
    return len(re.findall(r"\d", segment)) >= 7


class StreetAddressRecognizer(TesseraRecognizer):
    """Postal addresses: US/UK style (`12 Baker Street, Apt 3`), continental style (`Hauptstraße 5`,
    `Via Roma 12`, `12 rue de la Paix`, `Erzsébet tér 19.`), PO boxes, US military addresses, and
    the city, region, postcode and country lines that follow a street line in an address block."""

    ENTITIES = ("STREET_ADDRESS",)

    CUES = re.compile(
        r"(?i:\baddress(?:es)?\b|\blives?\s+(?:at|on|in)\b|\bliving\s+(?:at|on)\b|\blocated\s+(?:at|on|in)\b|"
        r"\bresid(?:e|es|ing)\s+(?:at|on)\b|\bmoved\s+to\b|\bmeet\s+(?:me|you|us)\s+at\b|\bsen[dt]\b[^.\n]{0,30}\bto\b|"
        r"\bdeliver(?:ed|y)?\s+to\b|\bship(?:ped)?\s+to\b|\bside\s+of\b|\bcorner\s+of\b|\bstay(?:ing)?\s+at\b|"
        r"\barrived\s+at\b|\breturn\s+(?:it\s+)?to\b|\bit'?s\s+in\b|\bit\s+is\s+in\b|\bvisit\s+us\s+at\b|"
        r"\boffices?\b[^.\n]{0,20}\bat\b)"
    )

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        super().__init__()
        self.lexicon = lexicon or Lexicon()
        types, prefixes, compounds = _street_types(), _street_prefixes(), _street_compounds()
        self.compound_endings = (*(entry.casefold() for entry in vocabulary("street_compounds")), "str.")
        name_word = rf"(?:{WORD}\.?|{ORDINAL})"
        gap = r"[ \t]+"
        self.english = re.compile(
            rf"(?<![\w.,/\-+])(?P<num>{HOUSE_NUMBER})(?:{gap}{HOUSE_NUMBER})?{gap}"
            rf"(?P<name>(?:{name_word}{gap}){{0,4}})(?P<type>(?i:{types}))\.?(?![\w])"
        )
        self.continental = re.compile(
            rf"(?<![\w.,/\-+])(?:(?P<lead>{HOUSE_NUMBER}){gap})?"
            rf"(?:(?P<prefix>(?i:{prefixes}))(?:\.|/)?{gap}(?P<pname>(?:{name_word}{gap}){{1,4}}?)"
            rf"|(?P<cname>(?:{CAP_WORD}{gap}){{0,3}}?)(?P<compound>{WORD}(?i:{compounds}|str\.)){gap}"
            rf"|(?P<tname>(?:{CAP_WORD}{gap}){{1,3}}?)(?P<type>(?i:{types}))\.?{gap})"
            rf"(?P<num>\d{{1,5}}[A-Za-z]?(?:[-/]\d{{1,4}}[A-Za-z]?)?"
            rf"(?:[ \t][A-Z](?:[ \t]\d{{1,4}})?(?=[,\n]|$))?)\.?(?![\w])"
        )
        # "12 rue de la Paix", "770 26 rue des Lilas"
        self.number_first = re.compile(
            rf"(?<![\w.,/\-+])(?P<num>{HOUSE_NUMBER})(?:{gap}{HOUSE_NUMBER})?,?{gap}(?P<prefix>(?i:{prefixes}))\.?"
            rf"(?P<name>(?:{gap}{WORD}){{1,5}})"
        )
        # "20789 Allika 46": house number, name, number
        self.numbered = re.compile(
            rf"(?<![\w.,/\-+])(?P<lead>\d{{1,6}}){gap}(?P<name>(?:{WORD}{gap}){{1,3}}?)(?P<num>\d{{1,5}}[A-Za-z]?)\.?"
            rf"(?=[ \t]*(?:$|,|;|(?:{UNIT}))|\s*\Z)",
            re.MULTILINE,
        )
        self.cued = re.compile(
            rf"(?P<name>(?:{CAP_WORD}{gap}(?:and{gap})?){{1,3}}?)(?P<num>\d{{1,5}}[A-Za-z]?)\.?(?![\w])"
        )
        self.named_street = re.compile(
            rf"(?<![\w])(?i:on|at|along|off|in|and){gap}(?P<street>(?:{CAP_WORD}{gap}){{1,3}}(?:{STRONG_STREET_TYPES})\.?)(?![\w])"
        )
        self.po_box = re.compile(rf"(?<![\w])(?:(?P<lead>\d{{1,6}}){gap})?(?:{PO_BOX}|{MILITARY})")
        self.unit = re.compile(rf"[ \t]*,?[ \t]*(?:{UNIT})")
        self.corner = re.compile(rf"{gap}(?:and|&){gap}(?:(?:{WORD}|\d{{1,5}})\.?(?:{gap}|$)){{1,4}}")

    # -- cores

    def _name_ok(self, words: Sequence[str], *, lower: bool, need_capital: bool) -> bool:
        for word in words:
            folded = word.casefold().rstrip(".")
            if folded in STOP and folded not in PARTICLES:
                return False
        return not (need_capital and not lower and words and not any(_is_capitalised(word) for word in words))

    def _compound_ok(self, word: str) -> bool:
        folded = word.casefold()
        ending = next((ending for ending in self.compound_endings if folded.endswith(ending)), "")
        if len(folded) - len(ending) < 3:
            return False
        return folded not in STOP and not self.lexicon.is_english_word(folded)

    def _cores(self, text: str) -> Iterator[_Core]:
        lower = _is_lower_text(text)
        for match in self.english.finditer(text):
            words = match.group("name").split()
            if not self._name_ok(words, lower=lower, need_capital=True):
                continue
            if not words and match.group("type").casefold() in {"st", "dr", "pl", "ter", "way", "park", "union"}:
                continue
            yield _Core(match.start(), match.end(), 0.85)
        for match in self.continental.finditer(text):
            name = match.group("pname") or match.group("cname") or match.group("tname") or ""
            if not self._name_ok(name.split(), lower=lower, need_capital=bool(match.group("prefix"))):
                continue
            if match.group("compound") and not self._compound_ok(match.group("compound")):
                continue
            score = 0.8 if (match.group("lead") or match.group("prefix") or match.group("compound")) else 0.7
            yield _Core(match.start(), match.end(), score)
        for match in self.number_first.finditer(text):
            words = match.group("name").split()
            kept = []
            for word in words:
                if word.casefold().strip(".,") in STOP and word.casefold().strip(".,") not in PARTICLES:
                    break
                kept.append(word)
            if (kept and _is_capitalised(kept[-1])) or (kept and lower):
                end = match.start("name") + len(match.group("name")) - len(match.group("name").lstrip())
                end = text.index(kept[-1], end) + len(kept[-1])
                yield _Core(match.start(), end, 0.8)
        for match in self.numbered.finditer(text):
            words = match.group("name").split()
            if any(word.casefold() in STOP for word in words):
                continue
            if not lower and not all(_is_capitalised(word) for word in words):
                continue
            yield _Core(match.start(), match.end(), 0.7)
        for match in self.po_box.finditer(text):
            yield _Core(match.start(), match.end(), 0.85)
        for match in self.named_street.finditer(text):
            words = match.group("street").split()
            if self._name_ok(words[:-1], lower=lower, need_capital=True):
                yield _Core(match.start("street"), match.end("street"), 0.6)
        for cue in self.CUES.finditer(text):
            window_end = min(len(text), cue.end() + 40)
            cued = self.cued.search(text, cue.end(), window_end)
            if cued is None or text[cue.end() : cued.start()].strip(" :,\t") != "":
                continue
            if any(word.casefold() in STOP and word != "and" for word in cued.group("name").split()):
                continue
            yield _Core(cued.start(), cued.end(), 0.6)

    # -- what follows a street line

    def _token_ok(self, token: str, lower_line: bool) -> bool:
        bare = token.strip(",;()[]").rstrip(".")
        if not bare:
            return True
        if "@" in bare or ":" in bare or "http" in bare.casefold():
            return False
        if any(char.isdigit() for char in bare):
            return len(bare) <= 10 and re.fullmatch(r"[\w\-]+", bare) is not None
        folded = bare.casefold()
        if folded in PHONE_LABELS:
            return False
        if re.fullmatch(r"[A-Z]{2,3}", bare):
            return True  # a state or region code: "IL", "OR", "CA"
        if folded in STOP and folded not in PARTICLES and folded not in COUNTRY_WORDS:
            return False
        if folded == "nan":  # a missing value printed by data generators
            return True
        return _is_capitalised(bare) or lower_line or folded in PARTICLES

    def _extend_line(self, text: str, position: int, line_end: int, lower: bool) -> int:
        """Tokens after `position` on the same line that still belong to the address."""
        end = position
        while True:
            unit = self.unit.match(text, end, line_end)
            if unit is None or unit.end() <= end:
                break
            end = unit.end()
        base = end
        tokens = list(re.finditer(r"\S+", text[base:line_end]))
        for token in tokens:
            raw = token.group()
            if not self._token_ok(raw, lower):
                break
            if any(char.isdigit() for char in raw):
                phone = PHONE_SHAPE.match(text, base + token.start(), line_end)
                if (
                    phone is not None
                    and sum(char.isdigit() for char in phone.group()) >= 7
                    and not re.fullmatch(POSTCODE, phone.group().strip())
                ):
                    break  # a phone number follows the address
            token_end = base + token.end()
            if raw[-1] in "?!" or (raw.endswith(".") and len(raw.rstrip(".")) > 3):
                return token_end - 1
            end = token_end if not raw.endswith(",") else token_end - 1
            if raw.endswith("."):
                return end
        return end

    def _line_ok(self, line: str, lower: bool) -> bool:
        stripped = re.sub(r"^[>?\s]+", "", line).strip()
        if not stripped:
            return False
        if len(stripped) > 60 or re.search(r"[@:]|https?|www\.", stripped) or _is_phone_like(stripped):
            return False
        tokens = stripped.split()
        if len(tokens) > 7:
            return False
        if self.unit.fullmatch(" " + stripped):
            return True
        return all(self._token_ok(token, lower) for token in tokens)

    @staticmethod
    def _looks_like_place(line: str) -> bool:
        stripped = re.sub(r"^[>?\s]+", "", line).strip(" ,")
        if re.search(rf"\b{POSTCODE}\b", stripped):
            return True
        folded = stripped.casefold()
        return any(folded.startswith(country) for country in COUNTRY_WORDS if len(country) > 3) or bool(
            re.fullmatch(r"[A-Z]{2}", stripped)
        )

    def _extend(self, text: str, start: int, end: int) -> tuple[int, bool]:
        """The end of the address that starts with the street line `start:end`, and whether more
        than the street line was taken."""
        lower = _is_lower_text(text)
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end
        first = end
        corner = self.corner.match(text, end, line_end)
        if corner is not None and re.search(r"(?i)corner\s+of", text[max(0, start - 30) : start]):
            end = corner.end()
        end = self._extend_line(text, end, line_end, lower)
        if text[end:line_end].strip(" \t,.") != "":
            return end, end > first  # the sentence goes on after the address
        lines_taken = 0
        position = line_end
        while position < len(text) and lines_taken < 6:
            next_end = text.find("\n", position + 1)
            next_end = len(text) if next_end == -1 else next_end
            line = text[position + 1 : next_end]
            if not re.sub(r"^[>?\s]+", "", line).strip():
                # one blank line inside a block, if a place line follows it
                after_end = text.find("\n", next_end + 1)
                after_end = len(text) if after_end == -1 else after_end
                after = text[next_end + 1 : after_end]
                if next_end < len(text) and self._line_ok(after, lower) and self._looks_like_place(after):
                    position = next_end
                    continue
                break
            if not self._line_ok(line, lower):
                # the line may still start with the rest of the address ("KNIVSTA, nan 18237 after the concert")
                line_start = position + 1 + (len(line) - len(re.sub(r"^[>?\s]+", "", line)))
                partial = self._extend_line(text, line_start, next_end, lower)
                segment = text[line_start:partial]
                if partial > line_start and segment.strip() and self._looks_like_place(segment):
                    end = partial
                break
            end = position + 1 + len(line.rstrip(" \t.,"))
            lines_taken += 1
            position = next_end
        return end, end > first

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        cores = sorted(self._cores(text), key=lambda core: (core.start, -core.end))
        merged: list[_Core] = []
        for core in cores:
            if merged and core.start <= merged[-1].end:
                last = merged[-1]
                merged[-1] = _Core(last.start, max(last.end, core.end), max(last.score, core.score))
            else:
                merged.append(core)
        spans: list[tuple[int, int, float]] = []
        for core in merged:
            end, extended = self._extend(text, core.start, core.end)
            start, end = _trim(text, core.start, end)
            score = max(core.score, 0.88) if extended else core.score
            if spans and start <= spans[-1][1]:
                previous = spans[-1]
                spans[-1] = (previous[0], max(previous[1], end), max(previous[2], score))
            else:
                spans.append((start, end, score))
        for start, end, score in spans:
            words = _words(text, start, end)
            while len(words) > 1 and text[words[-1][0] : words[-1][1]].casefold() in PARTICLES:
                words.pop()
            yield self.result("STREET_ADDRESS", start, words[-1][1], score)


# ---------------------------------------------------------------------------------------------
# postcodes


class PostcodeRecognizer(TesseraRecognizer):
    """ZIP and postal codes after a label ("ZIP: 8592", "postcode SW1A 1AA"), after a US state code
    ("Springfield, IL 62704"), and UK and Canadian postcodes anywhere (their shape is distinctive)."""

    ENTITIES = ("ZIP_CODE",)

    LABELLED = re.compile(
        r"(?i:\b(?:zip(?:\s*code)?|post(?:al)?\s*code|postcode|plz|cep|code\s+postal|c[óo]digo\s+postal|"
        r"postleitzahl|postnummer|postinumero)\b)\s*(?:[:#=]|\bis\b|\bof\b)?\s*(?:\bis\b\s*)?"
        rf"(?P<code>(?i:{POSTCODE}))(?![\w-])"
    )
    AFTER_STATE = re.compile(r",\s*[A-Z]{2}\s+(?P<code>\d{5}(?:-\d{4})?)(?![\w-])")
    AFTER_PLACE = re.compile(
        r"(?<![\w])(?i:in|at|from|to)[ \t]+(?:[^\W\d_][\w'\u2019\-]*[ \t]+){1,4}"
        r"(?P<code>\d{4,5}(?:-\d{3,4})?|\d{3}[ \t]\d{2}|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d)"
        r"(?=[ \t]+(?:in|for|to|and|on|at|,)\b|[,.;)]|$)",
        re.MULTILINE,
    )
    DISTINCTIVE = re.compile(
        r"(?<![\w-])(?P<code>(?:[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}|[A-Z]\d[A-Z]\s\d[A-Z]\d))(?![\w-])"
    )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        for pattern, score in (
            (self.LABELLED, 0.9),
            (self.AFTER_STATE, 0.7),
            (self.AFTER_PLACE, 0.6),
            (self.DISTINCTIVE, 0.55),
        ):
            for match in pattern.finditer(text):
                yield self.result("ZIP_CODE", match.start("code"), match.end("code"), score)


# ---------------------------------------------------------------------------------------------
# ages

NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_NUMBER_WORD = (
    r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-](?:one|two|three|four|five|six|seven|"
    r"eight|nine))?|one\s+hundred(?:\s+and\s+\w+)?|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|"
    r"eighteen|nineteen|one|two|three|four|five|six|seven|eight|nine)"
)
_AGE_VALUE = rf"(?P<age>\d{{1,3}}|{_NUMBER_WORD})"


def _age_value(text: str) -> int | None:
    folded = text.casefold().replace("-", " ")
    if folded.isdigit():
        return int(folded)
    words = folded.split()
    if words[:2] == ["one", "hundred"]:
        return 100
    total = 0
    for word in words:
        if word in TENS:
            total += TENS[word]
        elif word in NUMBER_WORDS:
            total += NUMBER_WORDS[word]
        else:
            return None
    return total


class AgeRecognizer(TesseraRecognizer):
    """Ages: "74 year old", "a 45-year-old", "aged 61", "age: 61", "the age of 61", "26 y/o",
    "turned 63", "45 yo male", "63 years of age". Over 89 the result carries the flag `over_89`
    (HIPAA Safe Harbor: such ages must be aggregated)."""

    ENTITIES = ("AGE",)

    PATTERNS = (
        re.compile(
            rf"(?i)(?<![\w.]){_AGE_VALUE}(?:\s*|-)(?:years?|yrs?|yr)(?:\s*|-)(?:old\b|of\s+age\b)",
        ),
        re.compile(rf"(?i)(?<![\w.]){_AGE_VALUE}\s*(?:y/o|y\.o\.?|yo\b|y\.?o\.?a\b)"),
        re.compile(
            rf"(?i)\b(?:aged?|age\s+of|ages?\s*[:=])\s*(?:is\s+|was\s+|of\s+)?{_AGE_VALUE}\b(?!\s*(?:%|percent))"
        ),
        re.compile(
            rf"(?i)\b(?:turn(?:ed|s|ing)?|just\s+turned)\s+{_AGE_VALUE}\b(?!\s*(?:%|percent|\w*\s*(?:times|minutes|degrees)))"
        ),
        re.compile(rf"(?i)(?<![\w.]){_AGE_VALUE}(?:st|nd|rd|th)?\s+birthday\b"),
        re.compile(r"(?<![\w.])(?P<age>\d{1,3})\s?(?:M|F|yo[MF])\b(?=\s*(?:with|presents|patient|pt|,|\.|$))"),
        re.compile(
            r"(?i)\b(?:i\s+am|i'm|im|he\s+is|he's|she\s+is|she's|they\s+are|who\s+is|is\s+now|now|aged?\s+about)\s+"
            r"(?P<age>\d{1,3})(?=\s*(?:[.,!?;)]|$|\band\b|\bbut\b|\btoday\b|\bnow\b|\bthis\s+year\b))"
        ),
        re.compile(
            rf"(?i)\b(?:in\s+(?:his|her|their)\s+)(?P<age>(?:early\s+|mid\s+|late\s+)?(?:\d0s|{_NUMBER_WORD}ies))\b"
        ),
    )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        for pattern in self.PATTERNS:
            for match in pattern.finditer(text):
                raw = match.group("age")
                value = _age_value(raw) if not raw.casefold().endswith("s") else _decade_value(raw)
                if value is None or not 0 < value <= 125:
                    continue
                flags = ("over_89",) if value > 89 else ()
                yield self.result("AGE", match.start("age"), match.end("age"), 0.85, flags=flags)


def _decade_value(text: str) -> int | None:
    digits = re.search(r"\d0s", text)
    if digits:
        return int(digits.group()[:2])
    word = re.sub(r"(?i)^(early|mid|late)\s+", "", text).casefold()
    stem = word[:-3] + "y" if word.endswith("ies") else word
    return TENS.get(stem)


# ---------------------------------------------------------------------------------------------
# titles


OCCUPATION_ENDING = r"[^\W\d_]{3,}(?:ologist|ographer|grapher|ician|iatrist|ist|smith|wright|maker|monger)s?"


class TitleRecognizer(TesseraRecognizer):
    """Honorifics before a name (Mr., Dr, Prof., Frau, ...) and job titles where they stand as a
    line of a signature block, after a name ("Ann Lee, the packager, said") or after a cue
    ("works as a nurse", "Job title: ...")."""

    ENTITIES = ("TITLE",)

    def __init__(self) -> None:
        super().__init__()
        honorifics = _alternation(vocabulary("honorifics"))
        self.honorific = re.compile(rf"(?<![\w.])(?P<title>(?i:{honorifics}))(?P<dot>\.?)(?=\s+(?P<next>{WORD}))")
        occupations = _alternation(vocabulary("occupations"))
        self.occupation_line = re.compile(
            rf"^(?P<title>(?:[^\W\d_][\w'\u2019\-]*,?\s+(?:&\s+)?){{0,6}}(?:(?i:{occupations})s?|{OCCUPATION_ENDING}))$",
            re.IGNORECASE,
        )
        self.apposition = re.compile(
            rf"(?<=[\w.]),\s+(?:the\s+|our\s+|a\s+|an\s+)?(?P<title>(?:[^\W\d_][\w\-]*\s+){{0,3}}?(?i:{occupations}))"
            r"(?=\s*[,;)]|\s+(?:at|of|for|in)\s)"
        )
        self.cued = re.compile(
            r"(?i:\b(?:works?|worked|working|employed|hired)\s+as\s+(?:an?\s+|the\s+)?|\bjob\s+title\s*[:\-]?\s*(?:is\s+)?|"
            r"\bposition\s*:\s*|\boccupation\s*[:\-]?\s*(?:is\s+)?|\bprofession\s*[:\-]?\s*(?:is\s+)?)"
            rf"(?P<title>(?:[^\W\d_][\w\-]*\s+){{0,4}}?(?i:{occupations}))\b"
        )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        lower = _is_lower_text(text)
        for match in self.honorific.finditer(text):
            following = match.group("next")
            title = match.group("title")
            if following.casefold() in STOP:
                continue
            if not lower and not _is_capitalised(following):
                continue
            if not match.group("dot") and len(title) > 3 and not _is_capitalised(title):
                continue  # "doctor" or "sister" in running text
            yield self.result("TITLE", match.start("title"), match.end("dot") or match.end("title"), 0.8)
        if "\n" in text.strip():
            offset = 0
            for line in text.split("\n"):
                stripped = line.strip().lstrip(">").strip()
                start = offset + line.find(stripped) if stripped else offset
                offset += len(line) + 1
                if not stripped or len(stripped.split()) > 7:
                    continue
                if self.occupation_line.match(stripped) is None:
                    continue
                words = [word.strip(",&").casefold() for word in stripped.split()]
                if any(word in STOP and word not in {"and", "of", "&", ""} for word in words):
                    continue
                yield self.result("TITLE", start, start + len(stripped), 0.7)
        for pattern in (self.apposition, self.cued):
            for match in pattern.finditer(text):
                words = match.group("title").split()
                if any(word.casefold() in STOP and word.casefold() not in {"and", "of"} for word in words):
                    continue
                yield self.result("TITLE", match.start("title"), match.end("title"), 0.6)


# ---------------------------------------------------------------------------------------------
# identifiers announced by their label


@dataclass(frozen=True, slots=True)
class _IdCue:
    entity_type: str
    pattern: str


ID_CUES: tuple[_IdCue, ...] = (
    _IdCue(
        "MEDICAL_RECORD_NUMBER",
        r"medical\s+record(?:\s+(?:number|no\.?|num|#))?|\bMRN\b|\bchart\s+(?:number|no\.?|#)|"
        r"patient\s+(?:id|number|no\.?|#)|hospital\s+(?:number|no\.?)|health\s+record\s+(?:number|no\.?)",
    ),
    _IdCue(
        "INSURANCE_NUMBER",
        r"(?:insurance|member(?:ship)?|policy|subscriber|medicare|medicaid|beneficiary|plan|group|health\s+plan)\s+"
        r"(?:id|number|no\.?|num|#)|insurance\s+card\s+(?:number|no\.?)|insurance\s*(?:number|id)?",
    ),
    _IdCue("US_SSN", r"social\s+security(?:\s+(?:number|no\.?|#))?|\bSSN\b|\bSS#"),
    _IdCue(
        "US_DRIVER_LICENSE",
        r"driver'?s'?\s+licen[cs]e(?:\s+(?:number|no\.?|#))?|driving\s+licen[cs]e(?:\s+(?:number|no\.?))?|\bDL\b\s*(?:#|no\.?|number)?",
    ),
    _IdCue("US_PASSPORT", r"passport(?:\s+(?:number|no\.?|#))?"),
    _IdCue("UK_NINO", r"national\s+insurance(?:\s+(?:number|no\.?))?|\bNI\s+(?:number|no\.?)|\bNINO\b"),
    _IdCue("UK_NHS", r"\bNHS\s+(?:number|no\.?|#)"),
    _IdCue(
        "NATIONAL_ID",
        r"national\s+(?:id|identity)(?:\s+(?:card|number|no\.?))*|identity\s+(?:card\s+)?(?:number|no\.?)|"
        r"\bID\s+(?:number|no\.?|#)|personal\s+(?:id|identification)\s+(?:number|no\.?)|tax\s+(?:id|number)|"
        r"\bTIN\b|\bNIF\b|\bNIE\b|\bBSN\b|personnummer|henkilötunnus|\bPESEL\b|\bSIN\b",
    ),
    _IdCue("US_BANK_NUMBER", r"(?:bank\s+)?account\s+(?:number|no\.?|#)|routing\s+(?:number|no\.?)"),
)


class LabelledIdRecognizer(TesseraRecognizer):
    """Identifiers named by their label: "MRN 00123456", "member ID: XJ4471-02", "my driver's license
    number is 2270-66-1551", "SSN 123456789", "passport no. 533380006"."""

    ENTITIES = tuple(dict.fromkeys(cue.entity_type for cue in ID_CUES))

    def __init__(self) -> None:
        super().__init__()
        self.types = {f"t{index}": cue.entity_type for index, cue in enumerate(ID_CUES)}
        self.cues = re.compile("|".join(rf"(?P<t{index}>(?i:{cue.pattern}))" for index, cue in enumerate(ID_CUES)))
        self.identifier = re.compile(
            r"(?:[:#=\-]|\bis\b|\bwas\b|\bof\b|\bnumber\b|\bno\.?|\bon\s+file\b|\bread[s]?\b|\s)*"
            r"(?P<id>(?=[A-Za-z0-9\- ]*\d)[A-Za-z0-9](?:[A-Za-z0-9]|[\- ](?=[A-Za-z0-9])){3,24})"
        )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        for match in self.cues.finditer(text):
            entity_type = self.types[str(match.lastgroup)]
            found = self.identifier.match(text, match.end(), min(len(text), match.end() + 60))
            if found is None:
                continue
            start, end = found.start("id"), found.end("id")
            value = text[start:end]
            # a trailing word glued by a space is not part of the number
            parts = value.split(" ")
            while len(parts) > 1 and not any(char.isdigit() for char in parts[-1]):
                if entity_type == "UK_NINO" and re.fullmatch(r"[A-Da-d]", parts[-1]):
                    break
                parts.pop()
            value = " ".join(parts)
            digits = sum(char.isdigit() for char in value)
            if digits < 4 or len(value) < 5:
                continue
            if entity_type == "US_SSN" and digits != 9:
                continue
            yield self.result(entity_type, start, start + len(value), 0.85)


# ---------------------------------------------------------------------------------------------
# dates

MONTHS = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)"
)
WEEKDAYS = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:1[89]\d\d|20\d\d)"
_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:\s?(?i:am|pm|a\.m\.|p\.m\.))?"

DATE_PATTERNS: tuple[tuple[re.Pattern[str], float], ...] = (
    (
        re.compile(
            rf"(?<![\w/.-]){_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
            rf"(?:[ T]{_TIME}(?:Z|[+-]\d\d:?\d\d)?)?(?![\w/-])"
        ),
        0.9,
    ),
    (
        re.compile(
            rf"(?<![\w/.-])(?:{_DAY}|{_MONTH})([/.\-])(?:{_DAY}|{_MONTH})\1(?:{_YEAR}|\d\d)(?:,?\s+{_TIME})?(?![\w/-]|[.\-/]\d)"
        ),
        0.75,
    ),
    (re.compile(rf"(?<![\w/.-]){_YEAR}([/.])(?:{_MONTH})\1(?:{_DAY})(?![\w/.-])"), 0.75),
    (
        re.compile(
            rf"(?<![\w])(?:{WEEKDAYS},?\s+)?(?:{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?)?{MONTHS}\.?"
            rf"(?:\s+{_DAY}(?:st|nd|rd|th)?)?(?:,?\s+{_YEAR})?(?:,?\s+(?:at\s+)?{_TIME})?(?![\w])"
        ),
        0.7,
    ),
    (re.compile(rf"(?<![\w]){WEEKDAYS}(?![\w])"), 0.6),
    (re.compile(rf"(?<![\w:.]){_TIME}(?![\w:])"), 0.5),
)
DOB_CUE = re.compile(
    r"(?i:\b(?:date\s+of\s+birth|birth\s*date|birthday|d\.?o\.?b\.?|born(?:\s+on|\s+in)?|b\.)\s*[:\-]?\s*(?:is\s+|was\s+|of\s+)?"
    r"(?:it'?s\s+)?)"
)
YEAR_CUE = re.compile(
    rf"(?i:\b(?:in|since|during|from|until|till|by|of|year|circa|around|before|after|early|late|mid|summer|winter|"
    rf"spring|autumn|fall|class\s+of)\s+(?:the\s+year\s+)?)(?P<year>{_YEAR})(?![\w\-/])"
)


class DateTimeRecognizer(TesseraRecognizer):
    """Dates and times in the usual numeric and written forms, years after a cue ("in 1977",
    "Act of 2001"), and dates of birth after their label (flag `date_of_birth`)."""

    ENTITIES = ("DATE_TIME",)

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        found: list[tuple[int, int, float]] = []
        for pattern, score in DATE_PATTERNS:
            for match in pattern.finditer(text):
                span = match.group()
                if pattern.pattern.startswith("(?<![\\w])(?:(?:Monday") and span in {"Sun", "Sat", "Wed", "Mon"}:
                    continue
                if re.fullmatch(r"(?i)may|mar|jun|sun|sat|wed", span.strip(".")):
                    continue  # "may", "sun" alone are common words
                found.append((match.start(), match.end(), score))
        for match in YEAR_CUE.finditer(text):
            found.append((match.start("year"), match.end("year"), 0.55))
        for start, end, score in found:
            before = text[max(0, start - 40) : start]
            cue = DOB_CUE.search(before)
            is_birth = cue is not None and cue.end() >= len(before) - 2
            yield self.result(
                "DATE_TIME",
                start,
                end,
                0.95 if is_birth else score,
                flags=("date_of_birth",) if is_birth else (),
            )


# ---------------------------------------------------------------------------------------------
# phone numbers

PHONE_CONTEXT = re.compile(
    r"(?i:\b(?:phone|telephone|tel|mobile|cell|cellphone|fax|office|desk|home|work|call(?:ed|ing)?|ring|reach|"
    r"contact|number|numbers|whatsapp|sms|text|dial|answering|extension|ext|landline|hotline|pager|bleep|"
    r"mob|ph|m|t|f|o)\b)"
)
UNITS_AFTER = re.compile(
    r"^\s*(?:dB|db|dBHL|dB\s?HL|Hz|hz|kHz|khz|mg|mcg|µg|g|kg|ml|mL|l|L|mmHg|mmol|bpm|%|cm|mm|m|km|°|degrees|"
    r"units|IU|x|times|years?|days?|hours?|minutes?|mins?|seconds?|secs?)\b"
)
AUDIOLOGY = re.compile(r"(?i:\b(?:dB|Hz|kHz|audiogram|audiometr\w*|thresholds?|PTA|tympanometr\w*|frequenc\w+)\b)")


class PhoneNumberRecognizer(TesseraRecognizer):
    """Phone numbers in international and national formats (7 to 15 digits in groups): high scores
    for +country codes and North American shapes, otherwise only near a phone word. Runs of
    numbers followed by a unit ("20 30 45 dB", "500 1000 2000 Hz") are measurements."""

    ENTITIES = ("PHONE_NUMBER",)

    PATTERN = re.compile(
        r"(?<![\w+\-./])(?P<phone>(?:\+|00)?(?:\d{1,4}[ \t.\-]?)?(?:\(0\)[ \t]?)?(?:\(\d{1,5}\)[ \t.\-]?)?"
        r"\d{1,5}(?:[ \t.\-]\d{1,5}){0,5}(?:[ \t]?(?:x|ext\.?|#)[ \t]?\d{1,5})?)(?![\w]|[.\-/]\d)"
    )
    NORTH_AMERICAN = re.compile(
        r"(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?"
    )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        for match in self.PATTERN.finditer(text):
            phone = match.group("phone").rstrip(" .-")
            start = match.start("phone")
            end = start + len(phone)
            digits = sum(char.isdigit() for char in phone.split("x")[0].split("ext")[0])
            if not 7 <= digits <= 15:
                continue
            if UNITS_AFTER.match(text, end) and not text[end:].startswith(("x", "-")):
                continue
            if re.fullmatch(r"\d+", phone) and digits > 11:
                continue  # long unbroken runs are card or account numbers
            if re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", phone):
                continue  # an IP address
            before = text[max(0, start - 45) : start]
            after = text[end : end + 15]
            cued = bool(PHONE_CONTEXT.search(before) or PHONE_CONTEXT.search(after))
            sentence = text[max(0, start - 80) : end + 40]
            if AUDIOLOGY.search(sentence) and not re.search(r"(?i)\b(?:phone|tel|call|mobile|fax)\b", before):
                continue
            if re.fullmatch(r"\d+", phone) and not cued:
                continue  # an unbroken run of digits is an order, account or record number unless called a phone
            if phone.startswith(("+", "00")) or self.NORTH_AMERICAN.fullmatch(phone):
                score = 0.85 if cued else 0.7
            elif cued:
                score = 0.75
            elif re.search(r"[\s.\-]", phone) and digits >= 9 and not re.fullmatch(r"\d{4}[\s.\-]\d{4}", phone):
                score = 0.45
            else:
                continue
            yield self.result("PHONE_NUMBER", start, end, score)


# ---------------------------------------------------------------------------------------------
# card numbers


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


class CardNumberRecognizer(TesseraRecognizer):
    """Payment card numbers: 13 to 19 digits (plain or in groups) with a known issuer prefix and a
    valid Luhn check digit."""

    ENTITIES = ("CREDIT_CARD",)

    PATTERN = re.compile(r"(?<![\w\-.])(?P<card>\d(?:[ \-]?\d){11,18})(?![\w]|[\-.]\d)")
    ISSUER = re.compile(r"^(?:4|5[0-8]|2[2-7]|3[0-9]|6|1800|2131|9[0-9])")
    CONTEXT = re.compile(
        r"(?i:\b(?:card|cc|credit|debit|visa|mastercard|amex|american\s+express|discover|jcb|diners|maestro|unionpay)\b)"
    )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        for match in self.PATTERN.finditer(text):
            raw = match.group("card")
            digits = re.sub(r"\D", "", raw)
            if not 12 <= len(digits) <= 19 or not self.ISSUER.match(digits):
                continue
            groups = re.split(r"[ \-]", raw)
            regular = len(groups) == 1 or all(len(group) in (4, 5, 6) for group in groups[:-1])
            if not regular:
                continue
            cued = bool(self.CONTEXT.search(text[max(0, match.start() - 60) : match.end() + 20]))
            if not luhn_valid(digits) or len(digits) == 12:
                # Maestro cards may be 12 digits; a failed check digit may be a typo: both only near "card"
                if not cued or (len(digits) > 12 and not luhn_valid(digits)):
                    continue
                yield self.result("CREDIT_CARD", match.start(), match.end(), 0.7)
                continue
            yield self.result("CREDIT_CARD", match.start(), match.end(), 1.0 if cued else 0.9)


# ---------------------------------------------------------------------------------------------
# names, places, nationalities, organisations

NAME_WORD = r"(?:[A-ZÀ-ÖØ-ÞĀ-\u017fΆ-ΏΑ-ΩЀ-Я][\w'\u2019]*(?:-[A-ZÀ-ÖØ-ÞĀ-\u017f][\w'\u2019]*)?)"
NAME_PARTICLE = r"(?:van|von|de|der|den|ten|ter|da|di|du|del|della|la|le|bin|ibn|al|el|dos|das|do|y|mc|mac)"
NAME_SEQUENCE = rf"{NAME_WORD}(?:[ \t]+(?:{NAME_PARTICLE}[ \t]+)?(?:[A-Z]\.?(?=[ \t])|{NAME_WORD})){{0,3}}"
NON_NAMES = frozenset(
    ["god", "lord", "allah", "jesus", "santa", "mom", "mum", "dad", "grandma", "grandpa", "sir", "madam", "bot", "user"]
)
FORM_LABELS = frozenset(
    [
        "name",
        "phone",
        "date",
        "when",
        "where",
        "address",
        "email",
        "e-mail",
        "website",
        "fax",
        "mobile",
        "desk",
        "title",
        "subject",
        "re",
        "note",
        "bot",
        "user",
        "agent",
        "customer",
        "q",
        "a",
        "patient",
        "doctor",
        "office",
        "home",
        "work",
        "tel",
        "time",
        "location",
        "city",
        "country",
        "zip",
        "dob",
        "age",
        "sex",
        "gender",
        "id",
        "from",
        "to",
        "cc",
        "bcc",
        "sent",
        "company",
        "job",
        "position",
        "department",
        "answer",
        "question",
        "reply",
        "comment",
        "summary",
        "clinician",
        "provider",
        "physician",
        "nurse",
        "visit",
        "subjective",
        "objective",
        "assessment",
        "plan",
        "diagnosis",
        "history",
        "allergies",
        "medications",
        "impression",
        "findings",
        "referral",
        "insurance",
        "guardian",
        "signature",
        "reason",
        "complaint",
        "notes",
        "result",
    ]
)
# A name followed by one of these words is a street, an organisation or a building, not a person.
NOT_PERSON_HEADS = frozenset(
    [
        "university",
        "college",
        "school",
        "hospital",
        "clinic",
        "church",
        "cathedral",
        "museum",
        "library",
        "bridge",
        "river",
        "lake",
        "mountain",
        "mount",
        "island",
        "islands",
        "park",
        "stadium",
        "airport",
        "station",
        "hotel",
        "restaurant",
        "cafe",
        "bar",
        "club",
        "orchestra",
        "band",
        "foundation",
        "institute",
        "center",
        "centre",
        "court",
        "award",
        "prize",
        "act",
        "law",
        "day",
        "week",
        "street",
        "road",
        "avenue",
        "lane",
        "drive",
        "suite",
        "apt",
        "apartment",
        "unit",
        "flat",
        "floor",
        "room",
        "st",
        "saint",
        "san",
        "santa",
        "sankt",
        "port",
        "fort",
        "mount",
        "lake",
        "cape",
    ]
)
SURNAME_ENDING = re.compile(
    r"(?:sson|dóttir|dottir|ová|ski|ska|sky|ský|cki|cka|wicz|ović|ević|vić|vič|ić|enko|escu|eanu|poulos|opoulou|"
    r"akis|idis|shvili|adze|oğlu|oglu|nen|sen|ssen|ov|ova|ev|eva|yev|yeva|yan|ian|ez|es|ini|elli|etti|ucci|ato)$"
)


@cache
def given_names() -> frozenset[str]:
    return frozenset(name.casefold() for name in vocabulary("given_names") if not name.endswith("*"))


@cache
def surnames() -> frozenset[str]:
    return frozenset(name.casefold() for name in vocabulary("surnames"))


@cache
def ambiguous_given_names() -> frozenset[str]:
    return frozenset(name[:-1].casefold() for name in vocabulary("given_names") if name.endswith("*"))


@cache
def place_names() -> frozenset[str]:
    return frozenset(
        place.casefold() for place in (*vocabulary("countries"), *vocabulary("regions"), *vocabulary("cities"))
    )


@cache
def street_and_org_words() -> frozenset[str]:
    """Words that end an organisation's or a street's name, not a person's ("Hill" and "Key" may)."""
    strong_types = {word.casefold() for word in STRONG_STREET_TYPES.split("|")}
    return (
        frozenset(word.casefold() for word in (*vocabulary("org_suffixes"), *vocabulary("street_prefixes")))
        | strong_types
        | NOT_PERSON_HEADS
    )


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(start + match.start(), start + match.end()) for match in re.finditer(r"\S+", text[start:end])]


HUMAN_VERBS = (
    r"lives|lived|spent|shouted|yelled|whispered|said|says|told|tells|asked|asks|replied|answered|began|started|"
    r"wrote|writes|works|worked|studied|studies|married|died|was\s+born|smiled|laughed|cried|wants|wanted|likes|liked|"
    r"loves|loved|thinks|thought|knows|knew|feels|felt|had\s+given|has\s+given|gave|is\s+from|was\s+from|grew\s+up|"
    r"moved|visited|called|emailed|texted|phoned|will\s+be\s+talking|is\s+very|was\s+very"
)


class PersonRecognizer(TesseraRecognizer):
    """Names the model misses or mistypes: a capitalised sequence that starts with a common given
    name ("Tomomi Nishiyama") or ends in a common surname ending ("Yefremova", "Ásgeirsdóttir");
    names after a title ("Dr. Kyle Kuefer"), after "my name is" / "Name:" / "I'm", after "by",
    "named", "called", "my son", ...; speaker labels ("Koppány: ..."); the name line of a contact
    block; and given names in text written all in lower case."""

    ENTITIES = ("PERSON",)

    KIN = (
        r"kid|son|daughter|wife|husband|partner|friend|boss|brother|sister|mother|father|mom|mum|dad|uncle|aunt|"
        r"cousin|nephew|niece|grandson|granddaughter|grandmother|grandfather|grandma|grandpa|colleague|neighbou?r|"
        r"fianc[ée]e?|boyfriend|girlfriend|child|baby|patient|client|doctor|dentist|therapist|manager|teacher"
    )

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        super().__init__()
        self.lexicon = lexicon or Lexicon()
        honorifics = _alternation(vocabulary("honorifics"))
        self.after_title = re.compile(rf"(?<![\w.])(?i:{honorifics})\.?[ \t]+(?P<name>{NAME_SEQUENCE})")
        self.strong_cue = re.compile(
            r"(?i:\b(?:my\s+name\s+is|name\s+is|name's|(?:full\s+|first\s+|last\s+|patient\s+)?names?\s*:|patient\s*:|"
            r"call\s+me|this\s+is|i\s+am|i'm|under\s+the\s+name(?:\s+of)?|account\s+is\s+under|"
            r"(?:it'?s|it\s+is)\s+under(?:\s+my\s+\w+'?s?\s+name)?|name\s+on\s+the\s+account\s+is|change\s+it\s+to|"
            r"signed|regards,?|sincerely,?|dear|hi|hello|hey|thanks|thank\s+you|ask\s+for|speak\s+(?:to|with)|"
            r"talk\s+to|(?:first|last|full|sur|given|maiden)\s*name\s*\?|your\s+name\s*\?)(?![\w]))[\s:,]+"
        )
        self.weak_cue = re.compile(
            rf"(?i:\b(?:by|named|called|starring|featuring|feat\.|with|add|met|meet|marry|married|tribute\s+to|"
            rf"assistant\s+to|according\s+to|(?:my|our|his|her|their|your)\s+(?:{self.KIN}))(?![\w]))[ \t]+"
        )
        self.name_pattern = re.compile(NAME_SEQUENCE)
        self.sequence = re.compile(rf"(?<![\w'\u2019\-]){NAME_SEQUENCE}")
        self.lower_word = re.compile(r"(?<![\w'\u2019\-])[^\W\d_][\w'\u2019]*")
        # "Trivo lives on ...", "Danial, can I ...", "..., Mark!": an unknown capitalised word acting as a person
        self.subject = re.compile(
            rf"(?:^|(?<=[.!?;:\n\"\u201c]))[ \t]*(?P<name>{NAME_WORD})"
            rf"(?:[ \t]+(?:{HUMAN_VERBS})\b|,[ \t]+(?:can|could|would|will|"
            r"do|did|are|have|please)\b)",
            re.MULTILINE,
        )
        self.vocative = re.compile(rf",[ \t]+(?P<name>{NAME_WORD})[ \t]*[!?]")
        self.speaker = re.compile(
            rf"(?m)^[ \t>]*(?P<name>{NAME_WORD}(?:[ \t]+{NAME_WORD})?)[ \t]*:[ \t]*(?P<quote>[\"\u201c'])?"
        )
        self.possessive = re.compile(
            rf"(?<![\w'\u2019\-])(?P<name>{NAME_SEQUENCE})"
            rf"['\u2019]s[ \t]+(?:(?:new|old|late|little|eldest|youngest|own)[ \t]+)?"
            rf"(?:{self.KIN}|killers?|murderers?|family|address|phone|email|e-mail|account|birthday|house|home|car|"
            r"funeral|wedding|death|estate|will|signature|number|children|grandchildren)\b"
        )

    # -- what a word says about being a name

    def _given(self, word: str, *, before_surname: bool) -> bool:
        folded = word.casefold().strip(".")
        if folded in given_names() or ("-" in folded and folded.split("-")[0] in given_names()):
            return True
        return before_surname and folded in ambiguous_given_names()

    def _surname_like(self, word: str) -> bool:
        bare = word.strip(".'\u2019")
        return (
            len(bare) >= 5
            and SURNAME_ENDING.search(bare.casefold()) is not None
            and not self.lexicon.is_common_word(bare)
            and bare.casefold() not in place_names()
        )

    def _known_surname(self, word: str) -> bool:
        folded = word.casefold().strip(".")
        return (
            folded in surnames()
            and folded not in STOP
            and not self.lexicon.is_common_word(folded)
            and folded not in place_names()
        )

    def _person_span(self, text: str, start: int, end: int) -> tuple[int, int, float] | None:
        """The part of a capitalised sequence that is a person's name, and how sure that is."""
        if re.match(r"[ \t]+\d", text[end:]):
            return None  # "Jana Nerudy 894": a street named after a person
        if text[start:end].endswith(("'s", "\u2019s")):
            end -= 2
        words = _words(text, start, end)
        tokens = [text[a:b] for a, b in words]
        folded = [token.casefold().strip(".") for token in tokens]
        if any(token in street_and_org_words() for token in folded[1:]) or folded[0] in NOT_PERSON_HEADS:
            return None
        initial = any(re.fullmatch(r"[A-Z]\.?", token) for token in tokens[1:-1])
        if 3 <= len(tokens) <= 4 and initial and not any(self.lexicon.is_common_word(t) for t in tokens if len(t) > 2):
            return words[0][0], words[-1][1], 0.72  # "Faina D. Yefremova"
        for index, token in enumerate(tokens):
            rest = len(tokens) - index - 1
            if self._given(token, before_surname=rest > 0):
                if folded[index] not in given_names() and all(
                    self.lexicon.is_common_word(later) for later in tokens[index + 1 :]
                ):
                    return None  # "Rose Cottage", "Georgia Street"
                if index and not all(
                    self.lexicon.is_english_word(earlier) or earlier.casefold() in STOP for earlier in tokens[:index]
                ):
                    return None  # preceded by other unknown capitalised words: not clearly a name
                if rest == 0 and (folded[index] in place_names() or folded[index] in STOP):
                    return None
                return words[index][0], words[-1][1], 0.75 if rest else 0.62
        surname = self._surname_like(tokens[-1]) or self._known_surname(tokens[-1])
        if (
            len(tokens) <= 3
            and surname
            and all(not self.lexicon.is_common_word(token) or len(token.strip(".")) == 1 for token in tokens)
        ):
            return words[0][0], words[-1][1], 0.64 if len(tokens) > 1 else 0.6
        if len(tokens) == 1 and len(tokens[0]) > 2 and not tokens[0].isupper():
            token = tokens[0]
            sentence_start = re.search(r"(?:^|[.!?:;\n\"\u201c(>]\s*)$", text[:start]) is not None
            unknown = not self.lexicon.is_english_word(token) and token.casefold() not in place_names() | STOP
            if not sentence_start and unknown and not re.search(r"[A-Z].*[A-Z]", token[1:]):
                return start, end, 0.5  # an unknown capitalised word mid-sentence: most often a name
        if len(tokens) == 2 and all(
            not self.lexicon.is_english_word(token)
            and token.casefold() not in place_names()
            and token.casefold() not in STOP
            and not token.isupper()
            for token in tokens
        ):
            return words[0][0], words[-1][1], 0.58  # two unknown capitalised words: most often a name
        return None

    def _find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        lower = _is_lower_text(text)
        for match in self.after_title.finditer(text):
            start, end = match.span("name")
            if text[start:end].split()[0].casefold() in STOP:
                continue
            yield self.result("PERSON", start, end, 0.85)
        yield from self._cued(text, lower)
        for match in self.sequence.finditer(text):
            span = self._person_span(text, match.start(), match.end())
            if span is not None:
                yield self.result("PERSON", span[0], span[1], span[2])
        if lower:
            yield from self._lowercase_names(text)
        yield from self._speakers(text)
        yield from self._contact_block_names(text, lower)
        partnership = re.compile(
            rf"(?P<org>{WORD},[ \t]+{WORD},?[ \t]+(?:and|&)[ \t]+{WORD})"
            if lower
            else rf"(?P<org>{CAP_WORD},[ \t]+{CAP_WORD},?[ \t]+(?:and|&)[ \t]+{CAP_WORD})"
        )
        for match in partnership.finditer(text):
            if _name_list_kind(text, match, self.lexicon) == "people":
                for start, end in _words(text, match.start("org"), match.end("org")):
                    word = text[start:end].rstrip(",")
                    if word not in {"and", "&"} and not self.lexicon.is_common_word(word):
                        yield self.result("PERSON", start, start + len(word), 0.6)
        for pattern in (self.subject, self.vocative, self.possessive):
            for match in pattern.finditer(text):
                word = match.group("name")
                if word.casefold() in STOP | FORM_LABELS | NON_NAMES or self.lexicon.is_common_word(word):
                    continue
                if word.casefold() in place_names() or word.casefold() in folded_vocabulary("nrp"):
                    continue
                yield self.result("PERSON", match.start("name"), match.end("name"), 0.6)

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        found = list(self._find(text, nlp_artifacts))
        yield from found
        yield from self._mentions(text, found, nlp_artifacts)

    COORDINATED = re.compile(
        rf"(?<![\w'\u2019\-])(?P<a>{NAME_WORD})[ \t]+(?:and|&|or)[ \t]+(?P<b>{NAME_WORD})(?![\w'\u2019\-])"
    )

    def _mentions(
        self, text: str, found: Sequence[RecognizerResult], nlp_artifacts: NlpArtifacts | None
    ) -> Iterator[RecognizerResult]:
        """Other mentions of a person already found: the same first or last name alone elsewhere
        ("Joakim Westgård ... starring Westgård"), and the other half of "Usamov and Bowers"."""
        spans = [(result.start, result.end) for result in found if result.score >= 0.6]
        if nlp_artifacts is not None and nlp_artifacts.tokens is not None:
            spans += [
                (entity.start_char, entity.end_char)
                for entity in nlp_artifacts.tokens.ents
                if entity.label_ == "PERSON"
            ]
        parts: set[str] = set()
        for start, end in spans:
            tokens = [token.strip(".,'\u2019") for token in text[start:end].split()]
            tokens = [token for token in tokens if len(token) > 2 and token.casefold() not in STOP]
            if tokens:
                parts.update({tokens[0], tokens[-1]})
        parts = {
            part for part in parts if not self.lexicon.is_common_word(part) and part.casefold() not in place_names()
        }
        if parts:
            pattern = re.compile(rf"(?<![\w\-])(?:{_alternation(parts)})(?![\w\-])")
            for match in pattern.finditer(text):
                if not any(start <= match.start() < end for start, end in spans):
                    yield self.result("PERSON", match.start(), match.end(), 0.6)
        for match in self.COORDINATED.finditer(text):
            a, b = match.span("a"), match.span("b")
            a_person = any(start <= a[0] < end for start, end in spans)
            b_person = any(start <= b[0] < end for start, end in spans)
            if a_person == b_person:
                continue
            other = b if a_person else a
            word = text[other[0] : other[1]]
            if word.casefold() in STOP or word.casefold() in place_names() or self.lexicon.is_common_word(word):
                continue
            if word.casefold() in street_and_org_words():
                continue
            yield self.result("PERSON", other[0], other[1], 0.6)

    def _cued(self, text: str, lower: bool) -> Iterator[RecognizerResult]:
        for cue in self.strong_cue.finditer(text):
            match = self.name_pattern.match(text, cue.end())
            self_intro = re.match(r"(?i)(?:i\s+am|i'm|this\s+is)", cue.group().strip()) is not None
            if match is None and not self_intro and (lower or "name" in cue.group().casefold()):
                match = re.compile(r"[^\W\d_][\w'\u2019\-]*(?:[ \t]+[^\W\d_][\w'\u2019\-]*){0,2}").match(
                    text, cue.end()
                )
            if match is None:
                continue
            kept: list[tuple[int, int]] = []
            for start, end in _words(text, match.start(), match.end()):
                word = text[start:end].casefold().strip(".,")
                if word in STOP or word in FORM_LABELS or (kept and self.lexicon.is_english_word(word) and lower):
                    break
                kept.append((start, end))
            if not kept:
                continue
            start, end = _trim(text, kept[0][0], kept[-1][1], " \t\r\n,;:.?!")
            known = any(self._given(text[a:b], before_surname=True) for a, b in kept)
            if (
                self_intro
                and not known
                and (len(kept) < 2 or any(self.lexicon.is_english_word(text[a:b]) for a, b in kept))
            ):
                continue
            if end > start:
                yield self.result("PERSON", start, end, 0.6 if self_intro else 0.75)
        for cue in self.weak_cue.finditer(text):
            match = self.name_pattern.match(text, cue.end())
            if match is None:
                continue
            words = _words(text, match.start(), match.end())
            tokens = [text[a:b] for a, b in words]
            if any(token.casefold().strip(".") in street_and_org_words() for token in tokens):
                continue
            if tokens[0].casefold() in STOP or tokens[0].casefold() in place_names():
                continue
            known = any(self._given(token, before_surname=True) or self._surname_like(token) for token in tokens)
            if len(tokens) < 2 and not known:
                continue
            if not known and all(self.lexicon.is_english_word(token) for token in tokens):
                continue
            yield self.result("PERSON", words[0][0], words[-1][1], 0.62)

    def _lowercase_names(self, text: str) -> Iterator[RecognizerResult]:
        words = list(self.lower_word.finditer(text))
        for index, word in enumerate(words):
            folded = word.group().casefold()
            if folded not in given_names() or folded in STOP:
                continue
            end = word.end()
            if index + 1 < len(words):
                following = words[index + 1]
                gap = text[word.end() : following.start()]
                nxt = following.group().casefold()
                if gap in (" ", "\t") and nxt not in STOP and not self.lexicon.is_english_word(nxt):
                    end = following.end()
            yield self.result("PERSON", word.start(), end, 0.6)

    def _speakers(self, text: str) -> Iterator[RecognizerResult]:
        labels = [
            match
            for match in self.speaker.finditer(text)
            if match.group("name").casefold() not in FORM_LABELS
            and not any(word.casefold() in FORM_LABELS for word in match.group("name").split())
        ]
        for match in labels:
            name = match.group("name")
            if name.casefold() in folded_vocabulary("occupations") or re.fullmatch(OCCUPATION_ENDING, name):
                continue
            if match.group("quote") or len(labels) >= 2 or self._given(name.split()[0], before_surname=True):
                if self.lexicon.is_english_word(name) and not self._given(name.split()[0], before_surname=True):
                    continue
                yield self.result("PERSON", match.start("name"), match.end("name"), 0.7)

    def _contact_block_names(self, text: str, lower: bool) -> Iterator[RecognizerResult]:
        """The first line of a contact or address block ("Maureen Thibault\\n\\n41086 ...")."""
        if text.count("\n") < 1:
            return
        for line in _block_lines(text):
            if line.index > 1 and not line.after_label:
                continue
            tokens = line.text.split()
            if not 2 <= len(tokens) <= 4:
                continue
            pattern = r"[^\W\d_][\w'\u2019\-]*\.?" if lower else rf"{NAME_WORD}|[A-Z]\.?"
            if not all(re.fullmatch(pattern, token) for token in tokens):
                continue
            if any(token.casefold().strip(".") in street_and_org_words() for token in tokens):
                continue
            if sum(self.lexicon.is_english_word(token) for token in tokens) > 1:
                continue
            score = 0.7 if self._given(tokens[0], before_surname=True) else 0.6
            yield self.result("PERSON", line.start, line.end, score)
            for other in _block_lines(text):
                if other.index > line.index and other.text == line.text:
                    yield self.result("PERSON", other.start, other.end, score)


@dataclass(frozen=True, slots=True)
class _Line:
    index: int  # among the non-empty lines
    start: int
    end: int
    text: str
    after_label: bool  # the previous line ended with ":" ("Name:\\nJane Doe")


def _block_lines(text: str) -> Iterator[_Line]:
    """Non-empty lines with quoting marks (">", "???") and surrounding blanks trimmed."""
    offset = 0
    index = 0
    previous = ""
    for raw in text.split("\n"):
        line_start = offset
        offset += len(raw) + 1
        stripped = raw.strip()
        lead = re.match(r"^[>?\s]*", stripped)
        body = stripped[lead.end() :] if lead else stripped
        if not body.strip():
            continue
        start = line_start + raw.find(body)
        end = start + len(body.rstrip())
        index += 1
        yield _Line(index, start, end, text[start:end], previous.endswith(":"))
        previous = body.rstrip()


class LocationRecognizer(TesseraRecognizer):
    """Countries (in English and their own languages), states and large cities from vocabularies,
    and capitalised place names after a cue ("grew up in ...", "flew to ...", "Where: ...")."""

    ENTITIES = ("LOCATION",)

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        super().__init__()
        self.lexicon = lexicon or Lexicon()
        places = [*vocabulary("countries"), *vocabulary("regions"), *vocabulary("cities")]
        self.places = frozenset(places) | frozenset(place.upper() for place in places if len(place) > 3)
        self.longest_place = max(len(place.split()) for place in places)
        self.cue = re.compile(
            r"(?i:\b(?:moved\s+(?:here\s+)?(?:from|to)|grew\s+up\s+in|born\s+in|originally\s+from|(?:i'?m|i\s+am|we'?re|we\s+are|"
            r"he\s+is|she\s+is|they\s+are|who\s+is|is|was)\s+from|comes?\s+from|came\s+from|living\s+in|lives?\s+in|lived\s+in|"
            r"based\s+in|located\s+in|visit(?:ed|ing)?|trip\s+to|flew\s+to|fly(?:ing)?\s+to|travel(?:l)?ed\s+to|going\s+to|"
            r"coming\s+to|headed\s+to|moving\s+to|relocat\w+\s+to|returned\s+to|arrived\s+(?:at|in)|(?:i'?m|i\s+am)\s+in|"
            r"stay(?:ing)?\s+in|home\s+(?:city|town)|hometown|city\s+of|town\s+of|village\s+of|serving(?:\s+southern|"
            r"\s+northern|\s+eastern|\s+western)?|where\s*:|city\s*:|town\s*:|country\s*:|location\s*:|"
            r"place\s+of\s+birth\s*:?)[ \t]+)"
        )
        self.weak_cue = re.compile(r"(?<![\w])(?:in|near)[ \t]+")
        capitalised = r"[A-ZÀ-ÖØ-ÞĀ-\u017fΆ-ΏΑ-Ω∆Ѐ-Я][\w'\u2019.\-]*"
        connector = r"(?:de|del|da|do|dos|la|le|les|sur|am|an|im|upon|en|di|y|i|nad|pod|bei|ob)"
        self.place = re.compile(
            rf"(?P<place>{capitalised}(?:[ \t]+(?:{connector}[ \t]+)?{capitalised}){{0,4}}"
            rf"(?:[ \t]+\([^()\n]{{1,30}}\))?)"
        )
        self.lower_place = re.compile(r"(?P<place>[^\W\d_][\w'\u2019\-]*(?:[ \t]+[^\W\d_][\w'\u2019\-]*){0,2})")

    def _place(self, text: str, position: int, lower: bool) -> tuple[int, int] | None:
        match = self.place.match(text, position) or (self.lower_place.match(text, position) if lower else None)
        if match is None:
            return None
        words = _words(text, match.start("place"), match.end("place"))
        for index, (start, end) in enumerate(words):
            if re.fullmatch(rf"(?:{MONTHS}|{WEEKDAYS})\.?,?", text[start:end]):
                words = words[:index]
                break
        while words and text[words[-1][0] : words[-1][1]].casefold().strip(".,") in STOP | {"country", "club"}:
            words.pop()
        if lower:
            kept = []
            for start, end in words:
                if text[start:end].casefold().strip(".,") in STOP:
                    break
                kept.append((start, end))
            words = kept
        if not words or text[words[0][0] : words[0][1]].casefold() in STOP:
            return None
        if text[words[-1][0] : words[-1][1]].casefold().strip(".,") in folded_vocabulary("org_suffixes"):
            return None
        first = text[words[0][0] : words[0][1]].casefold()
        person = first in given_names() or first.split("-")[0] in given_names()
        if len(words) >= 2 and person and first not in place_names():
            return None  # "came from Jean-Pierre Dubois": a person
        return _trim(text, words[0][0], words[-1][1], " \t\r\n,;:.?!")

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        lower = _is_lower_text(text)
        for start, end in phrase_matches(text, self.places, self.longest_place):
            yield self.result("LOCATION", start, end, 0.6)
        for cue in self.cue.finditer(text):
            span = self._place(text, cue.end(), lower)
            if span is not None:
                yield self.result("LOCATION", span[0], span[1], 0.72)
        for cue in self.weak_cue.finditer(text):
            span = self._place(text, cue.end(), False)
            if span is None:
                continue
            words = text[span[0] : span[1]].split()
            # an unknown capitalised word after "in"/"from" that is not a common word: a place name
            if len(words) > 3 or any(self.lexicon.is_english_word(word) for word in words):
                continue
            if words[0].casefold() in given_names() or re.fullmatch(MONTHS + r"|" + WEEKDAYS, words[0]):
                continue
            yield self.result("LOCATION", span[0], span[1], 0.56)


NRP_NAME_HEADS = frozenset(
    [
        "union",
        "channel",
        "commission",
        "parliament",
        "council",
        "court",
        "airlines",
        "airways",
        "empire",
        "republic",
        "federation",
        "kingdom",
        "sea",
        "ocean",
        "revolution",
        "war",
        "army",
        "navy",
        "church",
        "league",
        "cup",
        "open",
        "championship",
        "grand",
        "prix",
    ]
)


class NrpRecognizer(TesseraRecognizer):
    """Nationalities, religious and political groups from a vocabulary (Presidio's NRP)."""

    ENTITIES = ("NRP",)

    def __init__(self) -> None:
        super().__init__()
        entries = vocabulary("nrp")
        anycase = {entry.casefold() for entry in entries if not entry.endswith("*")}
        self.anycase = frozenset(anycase | {f"{entry}s" for entry in anycase} | {f"{entry}es" for entry in anycase})
        capital = {entry.rstrip("*") for entry in entries if entry.endswith("*")}
        self.capital = frozenset(capital | {f"{entry}s" for entry in capital})

    LANGUAGE_CUE = re.compile(
        r"(?i:\b(?:speak|speaks|spoke|speaking|studying|study|studied|learn|learning|teach|teaching|"
        r"in|into|translated|fluent|native)\s+$)"
    )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        found = [(start, end, 0.72) for start, end in phrase_matches(text, self.anycase, 2, fold=True)]
        found += [(start, end, 0.55) for start, end in phrase_matches(text, self.capital, 1)]
        for start, end, score in found:
            following = text[end:].split()[:1]
            if following and following[0].casefold().strip(".,") in NRP_NAME_HEADS:
                continue  # part of a name: "European Union", "English Channel"
            if self.LANGUAGE_CUE.search(text[max(0, start - 25) : start]):
                continue  # a language: "studying English"
            yield self.result("NRP", start, end, score)


LEADING_WORDS = frozenset(
    ["the", "a", "an", "our", "my", "your", "their", "his", "her", "its", "this", "that", "these", "those"]
)
ORG_NAME = rf"(?:{CAP_WORD}|[A-Z][a-z]+[A-Z]\w*)(?:[ \t]+(?:{CAP_WORD}|&)){{0,3}}"
PEOPLE_NOUNS = frozenset(
    [
        "founders",
        "cofounders",
        "co-founders",
        "members",
        "children",
        "kids",
        "sons",
        "daughters",
        "partners",
        "authors",
        "people",
        "guests",
        "speakers",
        "attendees",
        "witnesses",
        "patients",
        "doctors",
        "friends",
        "siblings",
        "brothers",
        "sisters",
        "parents",
        "grandchildren",
        "students",
        "players",
        "team",
        "winners",
        "nominees",
        "candidates",
        "suspects",
        "victims",
    ]
)
ORG_CONTEXT_AFTER = re.compile(
    r"[ \t]+(?i:orchestra|band|choir|ensemble|quartet|trio|group|llp|llc|law|legal|associates|partners|& co|and co|"
    r"inc|ltd|company|firm|foundation|agency|studio|studios)\b"
)
ORG_CONTEXT_BEFORE = re.compile(r"(?i:\b(?:at|for|with|from|joined|by|of|the|employed|works?)[ \t]+)$")


def _name_list_kind(text: str, match: re.Match[str], lexicon: Lexicon) -> str | None:
    """What "Hawkins, Richardson and Santana" is: an organisation (a firm's name, said where an
    organisation is expected), a list of people, or nothing of either."""
    names = re.split(r",?\s+(?:and|&)\s+|,\s+", match.group("org"))
    if any(name.casefold() in STOP for name in names) or sum(lexicon.is_common_word(name) for name in names) > 1:
        return None
    before = text[: match.start("org")]
    if names[0].casefold() in given_names() or re.search(r",[ \t]*$", before):
        return "people"  # "Kevin, Brittany and Terri", "Ann, Bob, Kevin and Terri"
    line_start = before.rfind("\n") + 1
    line_end = text.find("\n", match.end("org"))
    line = text[line_start : len(text) if line_end == -1 else line_end]
    if line.strip(" \t>?").strip() == match.group("org").strip():
        return "organization"  # a line of its own in a contact block
    if ORG_CONTEXT_AFTER.match(text, match.end("org")) or ORG_CONTEXT_BEFORE.search(before):
        return "organization"
    colon = re.search(r"(\w+)\s*:\s*$", before)
    if colon is not None:
        return "people" if colon.group(1).casefold() in PEOPLE_NOUNS or colon.group(1).isdigit() else "organization"
    return "people"


class OrganizationRecognizer(TesseraRecognizer):
    """Organisation names ending in a company word ("Civic Impulse LLC", "Allstate Insurance Group"),
    partnership names ("Hawkins, Richardson and Santana"), names in an employment or company
    context ("a year at ...", "... is a design agency", "the ... website"), and the organisation
    line of a contact block (name, organisation, address)."""

    ENTITIES = ("ORGANIZATION",)

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        super().__init__()
        self.lexicon = lexicon or Lexicon()
        suffixes = _alternation(vocabulary("org_suffixes"))
        self.suffixed = re.compile(
            rf"(?P<org>{CAP_WORD}(?:[ \t\-]+(?:{CAP_WORD}|&|and|of|the|for|de)){{0,4}}[ \t]+(?i:{suffixes})(?![\w])\.?)"
        )
        self.lower_suffixed = re.compile(rf"(?P<org>(?:{WORD}[ \t]+){{1,3}}(?i:{suffixes})(?![\w])\.?)")
        self.partnership = re.compile(rf"(?P<org>{CAP_WORD},[ \t]+{CAP_WORD},?[ \t]+(?:and|&)[ \t]+{CAP_WORD})")
        self.lower_partnership = re.compile(rf"(?P<org>{WORD},[ \t]+{WORD},?[ \t]+(?:and|&)[ \t]+{WORD})")
        self.described = re.compile(
            rf"(?P<org>{ORG_NAME})[ \t]+(?:is|was)[ \t]+(?:an?|the)[ \t]+(?:[\w\-()]+[ \t]+){{0,4}}?"
            r"(?:company|agency|firm|startup|start-up|business|corporation|organi[sz]ation|non-profit|nonprofit|"
            r"charity|brand|manufacturer|provider|retailer|bank|publisher|studio|label|consultancy|insurer|employer|"
            r"brainchild|multinational|conglomerate|chain|platform|institution|supplier|developer|maker|carrier|"
            r"airline|broadcaster|newspaper|magazine|network|group|501\(c\)\(?3\)?)"
        )
        self.cued = re.compile(
            r"(?i:\b(?:(?:a|one|the\s+following|next|first)\s+year\s+at|work(?:s|ed|ing)?\s+(?:at|for)|employed\s+(?:at|by)|"
            r"job\s+at|career\s+at|joined|later\s+became|became|founded|co-founded|acquired\s+by|to\s+support|"
            r"interned?\s+at|hired\s+by|employee\s+of|(?:is|are|was)\s+from|speaker\s+from|ceo\s+of|"
            r"founder\s+of)[ \t]+)"
            rf"(?P<org>{ORG_NAME})"
        )
        self.website = re.compile(rf"(?i:\bthe)[ \t]+(?P<org>{ORG_NAME})[ \t]+(?i:website|site|app|team|staff)\b")
        self.known = frozenset(name.casefold() for name in vocabulary("organizations"))
        self.longest_known = max(len(name.split()) for name in vocabulary("organizations"))
        self.subject = re.compile(
            rf"(?<![\w])(?P<org>{ORG_NAME})[ \t]+(?:invested|acquired|announced|reported|hired|launched|employs|"
            r"is\s+hiring|has\s+offices)\b"
        )

    def _plausible(self, text: str, start: int, end: int) -> bool:
        words = text[start:end].split()
        if not words or words[0].casefold() in STOP:
            return False
        if words[0].casefold() in given_names() and len(words) <= 2:
            return False  # a person ("from Anna Berg")
        if text[start:end].casefold() in place_names():
            return False
        return not (
            len(words) == 1 and self.lexicon.is_english_word(words[0]) and not re.search(r"[a-z][A-Z]", words[0])
        )

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        lower = _is_lower_text(text)
        for match in (self.lower_suffixed if lower else self.suffixed).finditer(text):
            words = _words(text, match.start("org"), match.end("org"))
            while len(words) > 1 and text[words[0][0] : words[0][1]].casefold() in LEADING_WORDS:
                words = words[1:]
            if len(words) < 2:
                continue
            yield self.result("ORGANIZATION", words[0][0], words[-1][1], 0.78)
        for match in (self.lower_partnership if lower else self.partnership).finditer(text):
            if _name_list_kind(text, match, self.lexicon) == "organization":
                yield self.result("ORGANIZATION", match.start("org"), match.end("org"), 0.75)
        for pattern, score in ((self.described, 0.75), (self.cued, 0.72), (self.website, 0.65), (self.subject, 0.62)):
            for match in pattern.finditer(text):
                start, end = match.span("org")
                if self._plausible(text, start, end):
                    yield self.result("ORGANIZATION", start, end, score)
        yield from self._contact_block_organizations(text, lower)
        for start, end in phrase_matches(text, self.known, self.longest_known, fold=True):
            name = text[start:end]
            if not name[0].isupper():
                continue
            sentence_start = re.search(r"(?:^|[.!?:\n\"\u201c]\s*)$", text[:start]) is not None
            if sentence_start and self.lexicon.is_common_word(name):
                continue  # "Target blood pressure ...", "Shell ..."
            yield self.result("ORGANIZATION", start, end, 0.65)

    def _contact_block_organizations(self, text: str, lower: bool) -> Iterator[RecognizerResult]:
        """In a contact block, a short capitalised line between the name and the address."""
        lines = list(_block_lines(text))
        if len(lines) < 3:
            return
        for previous, line, following in zip(lines, lines[1:], lines[2:], strict=False):
            tokens = line.text.split()
            if not 1 <= len(tokens) <= 5 or line.index > 4:
                continue
            if re.search(r"[\d@:/]", line.text) or line.text.endswith((".", "?", "!")):
                continue
            if not lower and not _is_capitalised(tokens[0]):
                continue
            if tokens[-1].casefold() in folded_vocabulary("occupations") or re.fullmatch(OCCUPATION_ENDING, tokens[-1]):
                continue  # a job title line
            before_address = re.search(r"\d", following.text) or following.text.casefold().startswith(
                ("the corner", "p.o", "po box")
            )
            if not before_address and not re.search(r"\d", previous.text) and line.index != 2:
                continue
            if line.index == 1 or any(other.text == line.text for other in lines if other.index == 1):
                continue
            if StreetAddressRecognizer._looks_like_place(following.text) and not re.search(r"\d", following.text):
                continue  # a city line before the country line
            yield self.result("ORGANIZATION", line.start, line.end, 0.58)


# ---------------------------------------------------------------------------------------------
# the spaCy model's entities, re-scored

SPACY_SCORES = {"PERSON": 0.7, "LOCATION": 0.6, "NRP": 0.6, "ORGANIZATION": 0.55, "DATE_TIME": 0.5}
SPACY_LABELS = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
# Abbreviations the model takes for organisations.
NOT_ORGANIZATIONS = frozenset(
    [
        "asap",
        "atm",
        "iban",
        "ssn",
        "pin",
        "id",
        "dob",
        "mrn",
        "fyi",
        "eta",
        "faq",
        "ok",
        "ps",
        "tbd",
        "n/a",
        "usb",
        "pdf",
        "url",
        "ip",
        "otp",
        "cvv",
        "sms",
        "gps",
        "diy",
        "rsvp",
        "aka",
        "btw",
        "tv",
        "pta",
        "ent",
        "icu",
        "er",
        "gp",
        "bp",
        "hr",
        "ecg",
        "ekg",
        "mri",
        "ct",
        "cpr",
        "bmi",
        "nhs",
        "dl",
        "vat",
        "tin",
        "nino",
        "ein",
        "itin",
        "swift",
        "bic",
        "ni",
        "mrn",
        "ssn",
    ]
)


class SpacyEntityRecognizer(TesseraRecognizer):
    """The spaCy model's named entities mapped to Presidio's names (as Presidio's own mapping does),
    with a score per type that reflects how reliable the small English model is for it, and
    without what it often gets wrong: abbreviations taken for organisations ("ASAP", "IBAN") and
    capitalised common words taken for names ("Wisdom", "Guilty Pleasures")."""

    ENTITIES = tuple(dict.fromkeys(SPACY_LABELS.values()))

    def __init__(self, lexicon: Lexicon | None = None) -> None:
        super().__init__()
        self.lexicon = lexicon or Lexicon()

    PLACE_WORDS_BEFORE = re.compile(
        r"(?i:\b(?:in|at|from|to|near|of|across|around|via|through|into|towards?|outside|inside|within|between|"
        r"visit(?:ed|ing)?|leave|left|reach(?:ed)?|city|town|village|country|state|county|region|province|"
        r"north|south|east|west|northern|southern|eastern|western|central)\s+(?:the\s+)?)$"
    )

    def _person_not_place(self, text: str, start: int, end: int) -> bool:
        """A capitalised name the model calls a place, with nothing around it that says place
        ("Valida spent a year at ..."): the small model often takes rare first names for towns."""
        span = text[start:end]
        words = span.split()
        if len(words) > 2 or span.casefold() in place_names() or span.isupper():
            return False
        if any(self.lexicon.is_english_word(word) for word in words):
            return False
        if self.PLACE_WORDS_BEFORE.search(text[max(0, start - 30) : start]):
            return False
        after = text[end : end + 3]
        return not after.startswith((",", "\n")) and not re.match(r"\s*\(", after)

    def find(self, text: str, nlp_artifacts: NlpArtifacts | None) -> Iterator[RecognizerResult]:
        if nlp_artifacts is None or nlp_artifacts.tokens is None:
            return
        for entity in nlp_artifacts.tokens.ents:
            entity_type = SPACY_LABELS.get(entity.label_)
            if entity_type is None:
                continue
            start, end = _trim(text, entity.start_char, entity.end_char, " \t\r\n,;:")
            while text[start:end].casefold().startswith(("the ", "ex-")):
                start += 4 if text[start:end].casefold().startswith("the ") else 3
            if text[start:end].endswith(("'s", "\u2019s")):
                end -= 2
            end = min(end, start + len(text[start:end].split("\n")[0].rstrip()))
            words = _words(text, start, end)
            while len(words) > 1 and re.fullmatch(r"[\d\-/]+", text[words[-1][0] : words[-1][1]]):
                words.pop()
            if words:
                end = words[-1][1]
            span = text[start:end]
            if end <= start:
                continue
            if entity_type == "ORGANIZATION" and span.casefold() in NOT_ORGANIZATIONS:
                continue
            if entity_type == "PERSON" and span.split()[0].casefold().rstrip(".") in NOT_PERSON_HEADS | NON_NAMES:
                continue
            score = SPACY_SCORES[entity_type]
            if entity_type == "LOCATION" and self._person_not_place(text, start, end):
                entity_type, score = "PERSON", 0.5
            if entity_type == "PERSON" and re.match(r"[ \t]+\d{1,5}\b(?![ \t]*(?:years?|yrs?|y/?o))", text[end:]):
                score = 0.5  # "Joaquin Suarez 2906": a street named after a person
            tokens = span.split()
            if (
                entity_type == "PERSON"
                and len(tokens) > 1
                and all(self.lexicon.is_english_word(token) for token in tokens)
                and not any(token.casefold() in given_names() | ambiguous_given_names() for token in tokens)
            ):
                continue  # "Guilty Pleasures"
            if (
                entity_type == "NRP"
                and self.lexicon.is_english_word(span)
                and span.casefold() not in folded_vocabulary("nrp")
            ):
                continue
            if entity_type in {"PERSON", "ORGANIZATION", "LOCATION"}:
                common = [self.lexicon.is_common_word(token) or token in {"&", "and", "of", "the"} for token in tokens]
                names = [token.casefold() in given_names() for token in tokens]
                if all(common) and not any(names) and span.casefold() not in place_names():
                    continue
            yield self.result(entity_type, start, end, score)


# ---------------------------------------------------------------------------------------------
# e-mail, with the public suffix list that ships inside tldextract (never fetched)

_OFFLINE_TLD = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser, validating domains against tldextract's bundled suffix list
    instead of downloading the current one on first use."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_TLD(pattern_text).fqdn != ""


def tessera_recognizers(lexicon: Lexicon | None = None) -> list[EntityRecognizer]:
    """Tessera's recognisers, in the order they run."""
    lexicon = lexicon or Lexicon()
    return [
        SpacyEntityRecognizer(lexicon),
        StreetAddressRecognizer(lexicon),
        PostcodeRecognizer(),
        AgeRecognizer(),
        TitleRecognizer(),
        LabelledIdRecognizer(),
        DateTimeRecognizer(),
        PhoneNumberRecognizer(),
        CardNumberRecognizer(),
        PersonRecognizer(lexicon),
        LocationRecognizer(lexicon),
        NrpRecognizer(),
        OrganizationRecognizer(lexicon),
    ]


# ---------------------------------------------------------------------------------------------
# context rules over every recogniser's results

FREQUENCY = re.compile(
    r"(?i)^(?:(?:once|twice|thrice|\w+\s+times?)\s+(?:a|per|each|every)\s+(?:day|week|month|year|night|morning|evening)|"
    r"(?:every|each)\s+(?:other\s+)?(?:\d+\s+|few\s+)?(?:day|days|week|weeks|month|months|morning|night|evening|hour|hours|"
    r"afternoon)|daily|nightly|weekly|monthly|yearly|annually|hourly|fortnightly|biweekly|"
    r"(?:a|per)\s+(?:day|week|month|year)|at\s+(?:bedtime|night)|(?:in\s+the\s+)?mornings?|(?:in\s+the\s+)?evenings?|"
    r"(?:once|twice)\s+daily|q\.?\d+h|b\.?i\.?d\.?|t\.?i\.?d\.?|q\.?i\.?d\.?|q\.?d\.?|q\.?h\.?s\.?|p\.?r\.?n\.?)$"
)
DURATION = re.compile(
    r"(?i)^(?:for\s+|about\s+|over\s+|almost\s+|nearly\s+|the\s+(?:past|last|next|first|second)\s+|(?:past|last|next|"
    r"first|recent)\s+|a\s+couple\s+of\s+|a\s+few\s+|several\s+|many\s+|some\s+|each\s+|every\s+|this\s+|that\s+|these\s+|"
    r"those\s+|one\s+|two\s+|three\s+|four\s+|five\s+|six\s+|seven\s+|eight\s+|nine\s+|ten\s+|\d+\+?\s*|a\s+|an\s+|"
    r"the\s+|half\s+(?:a|an)\s+|-)*(?:\w+[\s-])?(?:seconds?|minutes?|mins?|hours?|hrs?|days?|nights?|weeks?|months?|years?|"
    r"yrs?|decades?|centur(?:y|ies)|moment|while|time|today|tonight|tomorrow|yesterday|now|recently|currently|"
    r"morning|evening|afternoon|night|weekend|season|quarter|semester)(?:\s+(?:ago|old|later|earlier|before|after|"
    r"long|running|straight|prior|from\s+now))?$"
)
HAS_DATE_ANCHOR = re.compile(
    rf"(?i:\b(?:{MONTHS}|{WEEKDAYS})\b|\b(?:christmas|easter|thanksgiving|new\s+year'?s?|halloween|ramadan|diwali|hanukkah)\b)"
    rf"|\b{_YEAR}\b|\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d{{1,4}}|\d{{1,2}}:\d{{2}}"
)


def _has(results: Sequence[RecognizerResult], entity_type: str, start: int, end: int) -> bool:
    return any(other.entity_type == entity_type and max(other.start, start) < min(other.end, end) for other in results)


def _recognizer(result: RecognizerResult) -> str:
    metadata = result.recognition_metadata or {}
    return str(metadata.get(RecognizerResult.RECOGNIZER_NAME_KEY, ""))


def refine(text: str, results: Sequence[RecognizerResult]) -> list[RecognizerResult]:
    """Drop what the context shows is not PII; adjust what another result explains.

    - a DATE_TIME must name a date: frequencies ("daily", "twice a day"), durations and relative
      phrases ("3 weeks", "last night") are not dates, and a bare number is a date only when it is
      a plausible year; numbers inside an address, phone, postcode, card or age are not dates;
    - numbers followed by a unit ("2000 Hz", "40 dB", "500 mg") are measurements, not dates or
      phone numbers; in a sentence about hearing tests (dB, Hz, audiogram, thresholds) digit
      groups are audiogram values unless a phone word announces them;
    - a PHONE_NUMBER is not part of a date.
    """
    kept: list[RecognizerResult] = []
    for result in results:
        span = text[result.start : result.end]
        name = _recognizer(result)
        if result.entity_type in {"DATE_TIME", "PHONE_NUMBER", "ZIP_CODE", "AGE"} and UNITS_AFTER.match(
            text, result.end
        ):
            unit = UNITS_AFTER.match(text, result.end)
            if unit is not None and not re.match(r"\s*(?:years?|x)\b", unit.group()):
                continue
        if result.entity_type == "PHONE_NUMBER":
            sentence = text[max(0, result.start - 80) : result.end + 40]
            before = text[max(0, result.start - 45) : result.start]
            if AUDIOLOGY.search(sentence) and not re.search(r"(?i)\b(?:phone|tel|call|mobile|fax|cell)\b", before):
                continue
        if result.entity_type == "DATE_TIME":
            stripped = span.strip(" .,;:()")
            if FREQUENCY.match(stripped) or (DURATION.match(stripped) and not HAS_DATE_ANCHOR.search(stripped)):
                continue
            if not HAS_DATE_ANCHOR.search(stripped):
                continue
            if re.fullmatch(r"\d+", stripped):
                if not re.fullmatch(_YEAR, stripped):
                    continue
                if AUDIOLOGY.search(text[max(0, result.start - 80) : result.end + 40]):
                    continue  # "250 500 1000 2000 4000 Hz": test frequencies
                if name == "SpacyEntityRecognizer":
                    result.score = min(result.score, 0.45)
            if any(
                _has(results, other, result.start, result.end)
                for other in ("STREET_ADDRESS", "PHONE_NUMBER", "ZIP_CODE", "CREDIT_CARD", "AGE", "US_SSN")
            ) and not re.search(r"[/:\-]|[A-Za-z]{3}", stripped):
                continue
            if _has(results, "AGE", result.start, result.end):
                continue
        if result.entity_type in {"PERSON", "ORGANIZATION", "LOCATION"} and name == "SpacyEntityRecognizer":
            if re.search(r"\d", span) and result.entity_type != "ORGANIZATION":
                continue
            if re.fullmatch(r"[\W\d_]+", span):
                continue
        if (
            result.entity_type == "PHONE_NUMBER"
            and _has(results, "DATE_TIME", result.start, result.end)
            and re.fullmatch(rf"{_YEAR}-\d\d-\d\d.*", span.strip())
        ):
            continue
        kept.append(result)
    return _coordinated_names(text, _unit_designators(text, kept))


# "Mrs. Jane Roe Apt. 675 …": the model reads the designator as part of the name.
UNIT_DESIGNATOR = re.compile(r"(?:Apt|Apartment|Suite|Ste|Flat)\.?[ \t]*#?[ \t]*\d{1,5}[A-Za-z]?\b")
_TRAILING_DESIGNATOR = re.compile(r"[ \t]+(?:Apt|Apartment|Suite|Ste|Flat)\.?$")


def _rule_result(entity_type: str, start: int, end: int, score: float, rule: str) -> RecognizerResult:
    return RecognizerResult(
        entity_type, start, end, score, recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: rule}
    )


def _unit_designators(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """An apartment or suite number ("Apt. 675", "Suite 541") right after a name or next to an
    address is part of an address: the name ends before it, and it is a STREET_ADDRESS itself."""
    for match in UNIT_DESIGNATOR.finditer(text):
        if _has(results, "STREET_ADDRESS", match.start(), match.end()):
            continue
        before = [r for r in results if r.entity_type == "PERSON" and r.start < match.start() < r.end <= match.end()]
        for person in before:
            trailing = _TRAILING_DESIGNATOR.search(text, person.start, match.start() + len(match.group().split()[0]))
            if trailing is not None:
                person.end = trailing.start()
        beside = any(r.entity_type == "STREET_ADDRESS" and 0 <= r.start - match.end() <= 3 for r in results) or any(
            r.entity_type == "PERSON" and 0 <= match.start() - r.end <= 2 for r in results
        )
        if beside:
            results.append(_rule_result("STREET_ADDRESS", match.start(), match.end(), 0.7, "UnitDesignatorRule"))
    return [r for r in results if r.end > r.start]


_LIST_ITEM = rf"{NAME_WORD}(?:[ \t]+{NAME_WORD}){{0,2}}"
COORDINATED = re.compile(rf"(?<![\w'\u2019]){_LIST_ITEM}(?:,[ \t]+{_LIST_ITEM})*,?[ \t]+(?:and|&)[ \t]+{_LIST_ITEM}")
_NAME_TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "NRP")
# A list item counts as evidence of its kind from this score (the default reporting threshold is 0.4).
LIST_EVIDENCE = 0.4


def _coordinated_names(text: str, results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Names in one list are of one kind: in "Kónya, Becker and Vasquez" or "Efimiya, Mary, Ariana,
    Isabel and Jodi", where most items are people (or most are organisations), the others are too.
    A list item read as another kind is retyped, and an item nothing found is added."""
    for match in COORDINATED.finditer(text):
        # Items start with a capital, so the lower-case "and" between them is never one.
        items = [
            (match.start() + item.start(), match.start() + item.end())
            for item in re.finditer(_LIST_ITEM, match.group())
        ]
        if len(items) < 2:
            continue
        best: list[RecognizerResult | None] = []
        for start, end in items:
            found = [r for r in results if r.entity_type in _NAME_TYPES and r.start < end and start < r.end]
            best.append(max(found, key=lambda r: r.score) if found else None)
        kinds = [r.entity_type if r is not None and r.score >= LIST_EVIDENCE else None for r in best]
        counts = {kind: kinds.count(kind) for kind in ("PERSON", "ORGANIZATION")}
        kind = max(counts, key=lambda k: counts[k])
        others = sum(1 for k in kinds if k is not None and k != kind)
        if (counts[kind] < 2 and not (len(items) == 2 and counts[kind] == 1)) or counts[kind] <= others:
            continue
        for (start, end), item_best, found_kind in zip(items, best, kinds, strict=True):
            if found_kind == kind:
                continue
            if item_best is not None and not (start <= item_best.start and item_best.end <= end):
                continue  # a longer name or address that reaches past the item: not this rule's call
            if all(word.casefold() in STOP for word in text[start:end].split()):
                continue
            results = [r for r in results if not (r.entity_type in _NAME_TYPES and start <= r.start and r.end <= end)]
            results.append(_rule_result(kind, start, end, 0.65, "CoordinatedNamesRule"))
    return results
