"""The structured context of a hearing-care visit note (rules only, the `fake` extractor): chief
complaint, symptoms present and absent, medications, history, hearing per ear, devices, tinnitus;
and both results survive a JSON round trip (what the HTTP AI client does)."""

from __future__ import annotations

import pytest

from tessera.core.entities.fake import RulesOnlyExtractor
from tessera.core.entities.schemas import ClinicalContext, EntityExtraction
from tessera.settings import EntitySettings

VISIT_NOTE = """CHIEF COMPLAINT
Ringing in both ears and trouble hearing in restaurants.

HISTORY OF PRESENT ILLNESS
72-year-old retired machinist seen for a hearing aid evaluation. He reports gradual decline in hearing over
five years, worse on the right. Constant high-pitched ringing in both ears, worse at night. Denies vertigo,
otalgia or otorrhea. History of noise exposure in the military. Tinnitus again this week.

PAST MEDICAL HISTORY
Hypertension, type 2 diabetes.

MEDICATIONS
Lisinopril 20 mg daily, metformin 500 mg twice daily, aspirin 81 mg daily.
Stopped taking furosemide last year.

ALLERGIES
Penicillin.

FAMILY HISTORY
Father and brother had hearing loss.

AUDIOMETRY
Right ear thresholds of 25, 35, 50 and 65 dB HL at 500, 1000, 2000 and 4000 Hz; left ear 20, 30, 45 and 60 dB HL
at the same frequencies. Word recognition 76% right and 84% left. Tympanometry: Type A bilaterally.

ASSESSMENT
Bilateral mild sloping to severe sensorineural hearing loss.

PLAN
Recommend bilateral receiver-in-canal hearing aids. Return if sudden hearing loss or dizziness develops.
"""


@pytest.fixture(scope="module")
def context() -> ClinicalContext:
    return RulesOnlyExtractor(EntitySettings(extractor="fake")).clinical_context(VISIT_NOTE)


def names(findings: list[object]) -> list[str]:
    return [getattr(f, "name") for f in findings]  # noqa: B009


def test_chief_complaint_comes_from_the_chief_complaint_section(context: ClinicalContext) -> None:
    stated = [c for c in context.chief_complaint_candidates if c.basis == "stated"]
    assert [c.name for c in stated][:2] == ["tinnitus", "difficulty hearing in noise"]
    assert stated[0].evidence == "Ringing in both ears and trouble hearing in restaurants."


def test_symptoms_present_and_absent(context: ClinicalContext) -> None:
    present = {f.name: f for f in context.symptoms.present}
    assert {"tinnitus", "difficulty hearing in noise", "difficulty hearing"} <= set(present)
    tinnitus = [f for f in context.symptoms.present if f.name == "tinnitus"]
    assert sum(f.mentions for f in tinnitus) == 3
    assert set(names(context.symptoms.absent)) == {"vertigo", "otalgia", "otorrhea"}
    assert "dizziness" in names(context.symptoms.possible)


def test_conditions_history_and_family(context: ClinicalContext) -> None:
    assert names(context.conditions.present) == ["sensorineural hearing loss"]
    assert {"noise exposure", "hypertension", "type 2 diabetes"} <= set(names(context.history.past))
    assert names(context.history.family) == ["hearing loss"]
    assert "sudden sensorineural hearing loss" in names(context.conditions.possible)


def test_medications_with_regimen_current_first(context: ClinicalContext) -> None:
    medications = {m.name: m for m in context.medications}
    assert [m.name for m in context.medications][:3] == ["lisinopril", "metformin", "aspirin"]
    assert (medications["metformin"].dose, medications["metformin"].frequency) == ("500 mg", "twice daily")
    assert medications["aspirin"].ototoxic is True
    assert medications["furosemide"].historical is True
    assert context.medications[-1].name == "furosemide"
    assert context.allergies == ["penicillin"]
    assert "penicillin" not in medications


def test_hearing_per_ear(context: ClinicalContext) -> None:
    right, left = context.hearing.right, context.hearing.left
    assert right.thresholds == {500: 25.0, 1000: 35.0, 2000: 50.0, 4000: 65.0}
    assert left.thresholds == {500: 20.0, 1000: 30.0, 2000: 45.0, 4000: 60.0}
    assert right.computed_pure_tone_average == 43.8
    assert right.degree_from_thresholds == "moderate"
    assert left.degree_from_thresholds == "mild"
    assert (right.speech_discrimination_percent, left.speech_discrimination_percent) == (76.0, 84.0)
    for ear in (right, left):
        assert ear.loss_type == "sensorineural"
        assert ear.loss_degree == "mild to severe"
        assert ear.loss_configuration == "sloping"
        assert ear.tympanometry is not None
        assert ear.tympanometry.type == "A"


def test_devices_and_tinnitus(context: ClinicalContext) -> None:
    devices = context.hearing.devices
    assert [(d.name, d.style, d.laterality, d.hypothetical) for d in devices] == [
        ("receiver-in-canal hearing aid", "RIC", "bilateral", True),
    ]
    tinnitus = context.hearing.tinnitus
    assert tinnitus is not None
    assert (tinnitus.present, tinnitus.laterality, tinnitus.character, tinnitus.pattern) == (
        True,
        "bilateral",
        "ringing",
        "constant",
    )


def test_tinnitus_only_denied_is_absent() -> None:
    context = RulesOnlyExtractor(EntitySettings(extractor="fake")).clinical_context("Denies tinnitus.")
    assert context.hearing.tinnitus is not None
    assert context.hearing.tinnitus.present is False
    assert RulesOnlyExtractor(EntitySettings(extractor="fake")).clinical_context("Otalgia.").hearing.tinnitus is None


def test_dialogue_chief_complaint_follows_what_brings_you_in() -> None:
    transcript = (
        "Doctor: What brings you in today?\nPatient: My ears have been ringing and I feel dizzy.\n"
        "Doctor: Any ear pain?\nPatient: No."
    )
    context = RulesOnlyExtractor(EntitySettings(extractor="fake")).clinical_context(transcript)
    assert [(c.name, c.basis) for c in context.chief_complaint_candidates] == [
        ("tinnitus", "stated"),
        ("dizziness", "stated"),
    ]
    assert names(context.symptoms.absent) == ["otalgia"]


def test_results_round_trip_through_json(context: ClinicalContext) -> None:
    assert ClinicalContext.model_validate_json(context.model_dump_json()) == context
    extraction = RulesOnlyExtractor(EntitySettings(extractor="fake")).extract(VISIT_NOTE)
    assert EntityExtraction.model_validate_json(extraction.model_dump_json()) == extraction
    for entity in extraction.entities:
        assert VISIT_NOTE[entity.start : entity.end] == entity.text
