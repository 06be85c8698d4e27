"""Anonymisation operators: pure functions from a text and its detected spans to a new text.

Each span gets one operator (`redact`, `mask`, `replace`, `hash`, `pseudonymize`, `keep`). The
result reports, for every span, where it was in the original text and where its replacement is in
the new one. Pseudonyms come in as a ready mapping: the vault (`vault.py`) makes them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.schemas import (
    DEFAULT_OPERATOR_KEY,
    HashOperator,
    KeepOperator,
    MaskOperator,
    Operator,
    OperatorName,
    PseudonymizeOperator,
    RedactOperator,
    ReplaceOperator,
)

FALLBACK_OPERATOR: Operator = ReplaceOperator(type="replace")
"""What a type gets when neither the request nor the organization's policy names an operator."""


@dataclass(frozen=True, slots=True)
class Replacement:
    entity_type: str
    operator: OperatorName
    start: int
    end: int
    new_start: int
    new_end: int


@dataclass(frozen=True, slots=True)
class Anonymized:
    text: str
    items: list[Replacement]


def choose_operator(entity_type: str, *layers: Mapping[str, Operator]) -> Operator:
    """The first layer (request, then policy) that names the type or has a `DEFAULT` decides."""
    for layer in layers:
        found = layer.get(entity_type) or layer.get(DEFAULT_OPERATOR_KEY)
        if found is not None:
            return found
    return FALLBACK_OPERATOR


def pseudonym_key(value: str) -> str:
    """What makes two values "the same" for pseudonyms: case and runs of white space don't count."""
    return " ".join(value.split()).casefold()


def clean_spans(text: str, entities: Sequence[PiiEntity]) -> list[PiiEntity]:
    """Spans inside the text, in order, without overlaps (an earlier, then longer, span wins).

    Detectors promise this already; the AI client may be a remote service, so check it here."""
    kept: list[PiiEntity] = []
    for entity in sorted(entities, key=lambda e: (e.start, -e.end)):
        if not 0 <= entity.start < entity.end <= len(text):
            continue
        if kept and entity.start < kept[-1].end:
            continue
        kept.append(entity)
    return kept


def mask(value: str, operator: MaskOperator) -> str:
    count = len(value) if operator.chars_to_mask is None else min(operator.chars_to_mask, len(value))
    if operator.from_end:
        return value[: len(value) - count] + operator.masking_char * count
    return operator.masking_char * count + value[count:]


def keyed_hash(value: str, key: bytes, hash_type: str) -> str:
    return hmac.new(key, value.encode(), getattr(hashlib, hash_type)).hexdigest()


def replacement_for(
    entity_type: str, value: str, operator: Operator, *, hash_key: bytes, surrogates: Mapping[tuple[str, str], str]
) -> str:
    match operator:
        case RedactOperator():
            return ""
        case MaskOperator():
            return mask(value, operator)
        case ReplaceOperator():
            return operator.new_value if operator.new_value is not None else f"<{entity_type}>"
        case HashOperator():
            return keyed_hash(value, hash_key, operator.hash_type)
        case PseudonymizeOperator():
            return surrogates[(entity_type, pseudonym_key(value))]
        case KeepOperator():
            return value
    raise AssertionError(f"unknown operator {operator!r}")  # pragma: no cover - the union is closed


def apply_operators(
    text: str,
    plan: Sequence[tuple[PiiEntity, Operator]],
    *,
    hash_key: bytes,
    surrogates: Mapping[tuple[str, str], str],
) -> Anonymized:
    """`plan`: clean spans (see `clean_spans`) in text order, each with its operator.

    `hash_key` keys the `hash` operator (per organization); `surrogates` maps (type, `pseudonym_key`)
    to the surrogate for every span whose operator is `pseudonymize`."""
    pieces: list[str] = []
    items: list[Replacement] = []
    cursor = 0  # in the original text
    length = 0  # of the new text so far
    for entity, operator in plan:
        before = text[cursor : entity.start]
        pieces.append(before)
        length += len(before)
        new = replacement_for(
            entity.entity_type, text[entity.start : entity.end], operator, hash_key=hash_key, surrogates=surrogates
        )
        pieces.append(new)
        items.append(
            Replacement(entity.entity_type, operator.type, entity.start, entity.end, length, length + len(new))
        )
        length += len(new)
        cursor = entity.end
    pieces.append(text[cursor:])
    return Anonymized("".join(pieces), items)
