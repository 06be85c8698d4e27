"""The data files parse, name no phrase twice, and the trie matches as documented; the registry
offers what the settings allow."""

from __future__ import annotations

from typing import get_args

import pytest

from tessera.core.entities import vocabulary
from tessera.core.entities.registry import ENTITY_EXTRACTORS, EntityExtractorName, get_entity_extractor
from tessera.core.entities.schemas import CLINICAL_LABELS
from tessera.core.entities.text import MAX_SENTENCE_CHARS, phrase_key, split_sentences, tokenize
from tessera.settings import EntitySettings


def test_every_vocabulary_file_loads_with_a_known_label() -> None:
    loaded = vocabulary.load_vocabulary()
    assert loaded.term_count > 700
    assert loaded.rule_count > 350
    assert set(vocabulary.VOCABULARY_FILES.values()) <= set(CLINICAL_LABELS)


def test_no_phrase_names_two_terms() -> None:
    seen: dict[tuple[object, ...], str] = {}
    clashes = []
    for name, label in vocabulary.VOCABULARY_FILES.items():
        for line in vocabulary._lines(name):
            term, synonyms = vocabulary.parse_vocabulary_line(line, label)
            for synonym in synonyms:
                exact = vocabulary._is_abbreviation(synonym)
                key = (phrase_key(synonym), exact and synonym)
                if key in seen and seen[key] != term.canonical:
                    clashes.append(f"{synonym!r}: {seen[key]} / {term.canonical}")
                seen.setdefault(key, term.canonical)
    assert clashes == []


def test_no_context_rule_is_written_twice() -> None:
    rules = vocabulary.parse_context_rules(vocabulary._data_text(vocabulary.CONTEXT_RULES_FILE))
    keys = [phrase_key(rule.phrase) for rule in rules]
    assert len(keys) == len(set(keys))


def test_bad_context_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown ConText category"):
        vocabulary.parse_context_rules("no | NEGATION | forward")
    with pytest.raises(ValueError, match="unknown direction"):
        vocabulary.parse_context_rules("no | NEGATED | sideways")


def test_attributes_are_read_from_brackets() -> None:
    term, names = vocabulary.parse_vocabulary_line("cisplatin | platinol [class=platinum chemo ototoxic=true]", "X")
    assert names == ["cisplatin", "platinol"]
    assert term.attributes == {"class": "platinum chemo", "ototoxic": True}


def test_hyphens_and_possessives_normalize() -> None:
    assert phrase_key("Ear-wax") == phrase_key("ear wax")
    assert phrase_key("ringing in my ears") == phrase_key("ringing in the ears")
    assert [t.norm for t in tokenize("Don\u2019t")] == ["don't"]


def test_sentences_split_at_line_breaks_but_not_inside_wrapped_prose() -> None:
    text = "Denies vertigo, otalgia\nor otorrhea. Dr. Smith saw him.\nHypertension\nDiabetes\n[patient] no ."
    assert [s.slice(text) for s in split_sentences(text)] == [
        "Denies vertigo, otalgia\nor otorrhea.",
        "Dr. Smith saw him.",
        "Hypertension",
        "Diabetes",
        "[patient] no .",
    ]


def test_registry_offers_every_extractor_the_settings_allow() -> None:
    assert set(get_args(EntityExtractorName)) == set(ENTITY_EXTRACTORS)
    assert set(get_args(EntitySettings.model_fields["extractor"].annotation)) == set(ENTITY_EXTRACTORS)


def test_registry_builds_one_extractor_per_settings() -> None:
    settings = EntitySettings(extractor="fake")
    first = get_entity_extractor(settings)
    assert get_entity_extractor(EntitySettings(extractor="fake")) is first
    first.load()
    status = first.describe()
    assert (status.name, status.loaded) == ("fake", True)
    assert status.model.startswith("clinical-rules ")


def test_unpunctuated_text_is_cut_into_bounded_sentences() -> None:
    text = "the patient says the ringing comes and goes " * 500
    sentences = split_sentences(text)
    assert len(sentences) > 10
    assert all(s.end - s.start <= MAX_SENTENCE_CHARS for s in sentences)
    assert " ".join(s.slice(text) for s in sentences).split() == text.split()
