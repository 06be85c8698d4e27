"""Entity extractors by name, built once per process from the `entities` settings section."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from tessera.core.entities.base import EntityExtractor
from tessera.settings import EntitySettings

EntityExtractorName = Literal["spacy", "fake"]


def _spacy(settings: EntitySettings) -> EntityExtractor:
    from tessera.core.entities.spacy_extractor import SpacyEntityExtractor  # spaCy loads only when chosen

    return SpacyEntityExtractor(settings)


def _fake(settings: EntitySettings) -> EntityExtractor:
    from tessera.core.entities.fake import RulesOnlyExtractor

    return RulesOnlyExtractor(settings)


ENTITY_EXTRACTORS: dict[EntityExtractorName, Callable[[EntitySettings], EntityExtractor]] = {
    "spacy": _spacy,
    "fake": _fake,
}

_lock = threading.Lock()
_extractors: dict[str, EntityExtractor] = {}


def get_entity_extractor(settings: EntitySettings) -> EntityExtractor:
    """The configured extractor, built on first use and shared by every request of the process.
    Its models still load lazily: call `load()` (or `load_entity_extractor`) to load them now."""
    key = f"{settings.extractor}:{settings.spacy_model}"  # max_text_chars is checked by callers
    with _lock:
        extractor = _extractors.get(key)
        if extractor is None:
            extractor = ENTITY_EXTRACTORS[settings.extractor](settings)
            _extractors[key] = extractor
        return extractor


def load_entity_extractor(settings: EntitySettings) -> EntityExtractor:
    """The configured extractor with its models loaded (for warm-up and status boards)."""
    extractor = get_entity_extractor(settings)
    extractor.load()
    return extractor
