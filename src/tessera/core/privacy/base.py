"""The PII detector protocol: text in, the spans that identify a person out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PiiEntity:
    """One detected span: `text[start:end]` is of `entity_type` (Presidio's names: PERSON,
    EMAIL_ADDRESS, PHONE_NUMBER, STREET_ADDRESS, DATE_TIME, ...), found by `recognizer`."""

    entity_type: str
    start: int
    end: int
    score: float
    recognizer: str
    text: str
    flags: tuple[str, ...] = ()
    """Extra facts about the span, e.g. `over_89` on an AGE (HIPAA), `date_of_birth` on a DATE_TIME."""


class PiiDetector(Protocol):
    name: str

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
        """Non-overlapping spans sorted by start. CPU-bound: callers run it in a worker thread.

        `entities` limits the types reported; `allow` lists terms never reported (e.g. the
        organization's own name); `deny` lists terms always reported (as `DENY_LIST`)."""
        ...

    def supported_entities(self, language: str = "en") -> list[str]: ...
