"""`spacy`: general entities from the bundled English spaCy model (PERSON, ORG, GPE, DATE, ...) and
clinical ones from Tessera's rules. Clinical entities win where the two overlap."""

from __future__ import annotations

import threading
import time
from typing import Any

from tessera.core.entities.base import ExtractorStatus
from tessera.core.entities.clinical import ClinicalRules, merge_entities, require_language
from tessera.core.entities.schemas import ClinicalContext, Entity, EntityExtraction
from tessera.core.entities.summary import build_clinical_context
from tessera.core.errors import ProviderUnavailable
from tessera.settings import EntitySettings

# Only the entity recognizer runs: it has its own token-to-vector layer, and sentences, tags and
# lemmas come from elsewhere (our own sentence splitter), so the rest would be wasted time.
_UNUSED_PIPES = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]


class SpacyEntityExtractor:
    name = "spacy"

    def __init__(self, settings: EntitySettings) -> None:
        self.settings = settings
        self._load_lock = threading.Lock()
        # spaCy does not promise that one pipeline may run in two threads at once (the shared
        # vocabulary's string store grows as it reads), and the AI client's pool has two.
        self._run_lock = threading.Lock()
        self._nlp: Any = None
        self._rules: ClinicalRules | None = None
        self._load_seconds: float | None = None
        self._version: str | None = None

    @property
    def model(self) -> str:
        rules = self._rules.version if self._rules else "clinical-rules"
        return f"{self.settings.spacy_model} {self._version or ''}".strip() + f" + {rules}"

    def load(self) -> None:
        with self._load_lock:
            if self._nlp is not None:
                return
            started = time.perf_counter()
            try:
                import spacy

                nlp = spacy.load(self.settings.spacy_model, exclude=_UNUSED_PIPES)
            except (ImportError, OSError) as error:
                raise ProviderUnavailable(f"The spaCy model {self.settings.spacy_model!r} is not installed") from error
            nlp.max_length = max(nlp.max_length, self.settings.max_text_chars + 1)
            nlp("Warm-up: John Smith was seen in Boston on 3 March 2024.")
            self._rules = ClinicalRules()
            self._version = str(nlp.meta.get("version", "")) or None
            self._nlp = nlp
            self._load_seconds = round(time.perf_counter() - started, 3)

    def describe(self) -> ExtractorStatus:
        return ExtractorStatus(
            name=self.name,
            model=self.model,
            version=self._version,
            loaded=self._nlp is not None,
            load_seconds=self._load_seconds,
        )

    def extract(self, text: str, *, language: str = "en") -> EntityExtraction:
        require_language(language)
        self.load()
        assert self._rules is not None
        analysis = self._rules.analyze(text)
        entities = merge_entities(text, analysis.mentions, self._general(text))
        return EntityExtraction(model=self.model, language=language, entities=entities)

    def clinical_context(self, text: str, *, language: str = "en") -> ClinicalContext:
        require_language(language)
        self.load()
        assert self._rules is not None
        analysis = self._rules.analyze(text)
        entities = merge_entities(text, analysis.mentions, self._general(text))
        return build_clinical_context(analysis, entities, self.model)

    def _general(self, text: str) -> list[Entity]:
        with self._run_lock:
            doc = self._nlp(text)
        return [
            Entity(
                text=span.text,
                label=span.label_,
                start=span.start_char,
                end=span.end_char,
                source="spacy",
            )
            for span in doc.ents
            if span.text.strip()
        ]
