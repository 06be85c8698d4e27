"""`Mention`: the working form of an entity while the rules run (mutable, cheap), turned into the
`Entity` schema at the end."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from tessera.core.entities.schemas import AttributeValue, Entity


@dataclass(slots=True)
class Mention:
    start: int
    end: int
    label: str
    normalized: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    negated: bool = False
    family_history: bool = False
    historical: bool = False
    hypothetical: bool = False
    uncertain: bool = False
    priority: int = 0  # on overlap: higher first, then longer
    # Other characters the mention stands for, which general entities must not claim either (the
    # frequencies of "25, 30 and 45 dB at 500, 1000 and 2000 Hz" belong to the three thresholds).
    covers: tuple[tuple[int, int], ...] = ()

    @property
    def length(self) -> int:
        return self.end - self.start

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end

    def to_entity(self, text: str) -> Entity:
        return Entity(
            text=text[self.start : self.end],
            label=self.label,
            start=self.start,
            end=self.end,
            source="clinical",
            normalized=self.normalized,
            attributes={key: value for key, value in self.attributes.items() if value is not None},
            negated=self.negated,
            family_history=self.family_history,
            historical=self.historical,
            hypothetical=self.hypothetical,
            uncertain=self.uncertain,
        )


def select_mentions(candidates: list[Mention]) -> list[Mention]:
    """Non-overlapping mentions: higher priority first, then longer, then leftmost."""
    starts: list[int] = []
    chosen: list[Mention] = []  # sorted by start, never overlapping
    for mention in sorted(candidates, key=lambda m: (-m.priority, -m.length, m.start)):
        index = bisect.bisect_left(starts, mention.start)
        if index > 0 and chosen[index - 1].end > mention.start:
            continue
        if index < len(chosen) and chosen[index].start < mention.end:
            continue
        starts.insert(index, mention.start)
        chosen.insert(index, mention)
    return chosen
