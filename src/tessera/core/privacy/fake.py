"""`fake`: a PII detector made of regular expressions, for tests and machines without the spaCy model.

It finds e-mail addresses, phone numbers, US social security numbers, credit card numbers (Luhn
checked), IPv4 addresses and names after a title ("Dr Jane Doe"). It is deterministic, instant
and language-blind; it is not meant to catch real-world PII (use `presidio` for that).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.schemas import DENY_LIST
from tessera.settings import PrivacySettings

# Jane, Mary-Ann, O'Neil, McDonald
_NAME = r"(?:[A-Z]')?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:-[A-Z][a-z]+)?"


def _luhn(digits: str) -> bool:
    numbers = [int(d) for d in digits if d.isdigit()]
    if not 13 <= len(numbers) <= 19:
        return False
    total = 0
    for index, number in enumerate(reversed(numbers)):
        if index % 2:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def _octets(value: str) -> bool:
    return all(0 <= int(part) <= 255 for part in value.split("."))


@dataclass(frozen=True, slots=True)
class _Pattern:
    entity_type: str
    regex: re.Pattern[str]
    score: float
    # The regex group holding the entity (0: the whole match), and a check of the matched text.
    group: int = 0
    valid: Callable[[str], bool] | None = None


PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "EMAIL_ADDRESS", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), 1.0
    ),
    _Pattern("US_SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), 0.85),
    _Pattern("CREDIT_CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), 1.0, valid=_luhn),
    _Pattern(
        "PHONE_NUMBER",
        re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?!\w)"),
        0.75,
    ),
    _Pattern("IP_ADDRESS", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)"), 0.6, valid=_octets),
    _Pattern(
        "PERSON",
        re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.? +({_NAME}(?: +{_NAME}){{0,2}})\b"),
        0.85,
        group=1,
    ),
)


class PatternDetector:
    """Regular expressions only (registered as `fake`); honours entities, allow and deny lists and
    the score threshold as the protocol asks."""

    name = "fake"

    def __init__(self, settings: PrivacySettings) -> None:
        self.settings = settings

    def supported_entities(self, language: str = "en") -> list[str]:
        return sorted({p.entity_type for p in PATTERNS} | {DENY_LIST})

    def analyze(
        self,
        text: str,
        *,
        language: str = "en",
        entities: Sequence[str] | None = None,
        allow: Sequence[str] = (),
        deny: Sequence[str] = (),
        score_threshold: float | None = None,
    ) -> list[PiiEntity]:
        threshold = self.settings.score_threshold if score_threshold is None else score_threshold
        wanted = set(entities) if entities is not None else None
        found: list[PiiEntity] = []
        for pattern in PATTERNS:
            if wanted is not None and pattern.entity_type not in wanted:
                continue
            for match in pattern.regex.finditer(text):
                start, end = match.span(pattern.group)
                value = text[start:end]
                if pattern.valid is None or pattern.valid(value):
                    found.append(PiiEntity(pattern.entity_type, start, end, pattern.score, "PatternDetector", value))
        for term in {t.strip() for t in deny if t.strip()}:
            for match in re.finditer(rf"(?<!\w){re.escape(term)}(?!\w)", text, flags=re.IGNORECASE):
                found.append(PiiEntity(DENY_LIST, match.start(), match.end(), 1.0, "DenyList", match.group()))
        allowed = {a.strip().casefold() for a in allow if a.strip()}
        kept = [e for e in found if e.score >= threshold and e.text.strip().casefold() not in allowed]
        return _without_overlaps(kept)


def _without_overlaps(entities: list[PiiEntity]) -> list[PiiEntity]:
    """Where spans overlap, the higher score wins, then the longer span."""
    starts: list[int] = []  # the chosen spans, sorted by start (they never overlap each other)
    chosen: list[PiiEntity] = []
    for entity in sorted(entities, key=lambda e: (-e.score, -(e.end - e.start), e.start)):
        at = bisect.bisect_left(starts, entity.start)
        if at < len(chosen) and chosen[at].start < entity.end:
            continue
        if at > 0 and chosen[at - 1].end > entity.start:
            continue
        starts.insert(at, entity.start)
        chosen.insert(at, entity)
    return chosen
