"""The moderator protocol: text in, the categories it falls under out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

CATEGORIES = ("harassment", "hate", "self_harm", "sexual", "sexual_minors", "violence")


@dataclass(frozen=True)
class Policy:
    """An organization's adjustments to the moderator: categories it does not check, its own
    blocked words or phrases per category, and phrases that never flag (e.g. "kill switch")."""

    disabled: frozenset[str] = frozenset()
    blocked: dict[str, tuple[str, ...]] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    categories: dict[str, float]
    """Category → score (0 to 1) for every category that matched, whether or not it flags."""
    matches: dict[str, list[str]] = field(default_factory=dict)
    """Category → the phrases that matched (rules only), for the flag log."""


class Moderator(Protocol):
    name: str

    async def check(self, text: str, policy: Policy) -> Verdict: ...
