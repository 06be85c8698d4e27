"""Use cases behind `/ai/ner/*`: check the text, ask the AI client (in process or remote), shape
the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tessera.core.entities.errors import EmptyText, TextTooLong, UnknownEntityType
from tessera.core.entities.schemas import ENTITY_LABELS, ClinicalContext, EntityExtraction
from tessera.settings import EntitySettings

if TYPE_CHECKING:
    from tessera.core.ai.client import AIClient


def check_text(text: str, settings: EntitySettings) -> None:
    if len(text) > settings.max_text_chars:
        raise TextTooLong(
            f"The text has {len(text)} characters; the limit is {settings.max_text_chars}",
            details={"length": len(text), "max_text_chars": settings.max_text_chars},
        )
    if not text.strip():
        raise EmptyText("The text is empty")


def check_types(types: Sequence[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    wanted = frozenset(t.strip().upper() for t in types)
    unknown = sorted(wanted - ENTITY_LABELS)
    if unknown:
        raise UnknownEntityType(
            f"Unknown entity types: {', '.join(unknown)}",
            details={"unknown": unknown, "supported": sorted(ENTITY_LABELS)},
        )
    return wanted


async def extract_entities(
    ai: AIClient, settings: EntitySettings, *, text: str, language: str = "en", types: Sequence[str] | None = None
) -> EntityExtraction:
    check_text(text, settings)
    wanted = check_types(types)
    extraction = await ai.extract_entities(text, language=language)
    if wanted is not None:
        extraction.entities = [e for e in extraction.entities if e.label in wanted]
    return extraction


async def build_clinical_context(
    ai: AIClient, settings: EntitySettings, *, text: str, language: str = "en"
) -> ClinicalContext:
    check_text(text, settings)
    return await ai.clinical_context(text, language=language)
