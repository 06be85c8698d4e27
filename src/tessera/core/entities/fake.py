"""`fake`: the clinical rules without a statistical model. Offline, instant and deterministic, so
tests and local development use it; it finds no general entities (people, places, dates)."""

from __future__ import annotations

import threading
import time

from tessera.core.entities.base import ExtractorStatus
from tessera.core.entities.clinical import ClinicalRules, merge_entities, require_language
from tessera.core.entities.schemas import ClinicalContext, EntityExtraction
from tessera.core.entities.summary import build_clinical_context
from tessera.settings import EntitySettings


class RulesOnlyExtractor:
    name = "fake"

    def __init__(self, settings: EntitySettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._rules: ClinicalRules | None = None
        self._load_seconds: float | None = None

    @property
    def model(self) -> str:
        return self.rules.version

    @property
    def rules(self) -> ClinicalRules:
        if self._rules is None:
            self.load()
        assert self._rules is not None
        return self._rules

    def load(self) -> None:
        with self._lock:
            if self._rules is None:
                started = time.perf_counter()
                self._rules = ClinicalRules()
                self._load_seconds = round(time.perf_counter() - started, 3)

    def describe(self) -> ExtractorStatus:
        return ExtractorStatus(
            name=self.name,
            model=self.model if self._rules else "clinical-rules",
            version=self._rules.vocabulary.version if self._rules else None,
            loaded=self._rules is not None,
            load_seconds=self._load_seconds,
        )

    def extract(self, text: str, *, language: str = "en") -> EntityExtraction:
        require_language(language)
        analysis = self.rules.analyze(text)
        entities = merge_entities(text, analysis.mentions, [])
        return EntityExtraction(model=self.model, language=language, entities=entities)

    def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        require_language(language)
        analysis = self.rules.analyze(text)
        entities = merge_entities(text, analysis.mentions, [])
        return build_clinical_context(analysis, entities, self.model)
