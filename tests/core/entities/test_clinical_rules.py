"""The clinical rules on hand-written hearing-care sentences: vocabulary matches, medications with
their regimen, hearing loss type/degree/laterality, devices, and the ConText flags (negation, family
history, history, hypothetical, uncertain), including sections and answers to questions."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.core.entities.clinical import ClinicalRules
from tessera.core.entities.mention import Mention


@pytest.fixture(scope="module")
def rules() -> ClinicalRules:
    return ClinicalRules()


def find(rules: ClinicalRules, text: str, label: str | None = None) -> list[Mention]:
    mentions = rules.analyze(text).mentions
    return [m for m in mentions if label is None or m.label == label]


def one(rules: ClinicalRules, text: str, label: str, surface: str) -> Mention:
    matches = [m for m in find(rules, text, label) if text[m.start : m.end] == surface]
    assert len(matches) == 1, [(m.label, text[m.start : m.end]) for m in find(rules, text)]
    return matches[0]


def flags(mention: Mention) -> set[str]:
    names = ("negated", "family_history", "historical", "hypothetical", "uncertain")
    return {name for name in names if getattr(mention, name)}


class TestVocabularies:
    @pytest.mark.parametrize(
        ("text", "label", "surface", "normalized"),
        [
            ("Complains of dizziness and aural fullness.", "SYMPTOM", "aural fullness", "aural fullness"),
            ("Reports otalgia on the left.", "SYMPTOM", "otalgia", "otalgia"),
            ("Room spinning vertigo for two days.", "SYMPTOM", "vertigo", "vertigo"),
            ("Her ear feels full since the flight.", "SYMPTOM", "ear feels full", "aural fullness"),
            ("History of Ménière's disease.", "CONDITION", "Ménière's disease", "meniere's disease"),
            ("Diagnosed with BPPV last year.", "CONDITION", "BPPV", "benign paroxysmal positional vertigo"),
            ("Impacted earwax was removed.", "CONDITION", "Impacted earwax", "cerumen impaction"),
            ("Swimmer's ear in July.", "CONDITION", "Swimmer's ear", "otitis externa"),
            ("OAEs were absent on the right.", "PROCEDURE", "OAEs", "otoacoustic emissions"),
            ("ABR ordered to rule out retrocochlear pathology.", "PROCEDURE", "ABR", "auditory brainstem response"),
            ("Ear irrigation performed.", "PROCEDURE", "Ear irrigation", "ear irrigation"),
            ("Pure-tone audiometry today.", "PROCEDURE", "Pure-tone audiometry", "audiometry"),
            ("The eardrum is retracted.", "BODY_SITE", "eardrum", "tympanic membrane"),
            ("She hears a ringing in her ears at night.", "TINNITUS", "ringing in her ears", "tinnitus"),
            ("Wears a cochlear implant.", "HEARING_DEVICE", "cochlear implant", "cochlear implant"),
            ("Fitted with a BAHA on a softband.", "HEARING_DEVICE", "BAHA", "bone-anchored hearing aid"),
        ],
    )
    def test_finds_terms_by_synonym_case_insensitively(
        self, rules: ClinicalRules, text: str, label: str, surface: str, normalized: str
    ) -> None:
        assert one(rules, text, label, surface).normalized == normalized

    def test_abbreviations_match_only_in_capitals(self, rules: ClinicalRules) -> None:
        assert [m.normalized for m in find(rules, "History of AIDS.", "CONDITION")] == ["HIV"]
        assert [m.label for m in find(rules, "Her aids whistle.")] == ["HEARING_DEVICE"]
        assert find(rules, "He is ci.", "HEARING_DEVICE") == []

    def test_matches_whole_words_only(self, rules: ClinicalRules) -> None:
        assert find(rules, "The painter earned a fee.") == []

    def test_longest_match_wins(self, rules: ClinicalRules) -> None:
        mentions = find(rules, "Acute otitis media with effusion was seen.")
        assert [(m.label, m.normalized) for m in mentions] == [("CONDITION", "otitis media with effusion")]

    def test_plural_of_a_term_matches(self, rules: ClinicalRules) -> None:
        assert one(rules, "Two strokes since 2010.", "CONDITION", "strokes").normalized == "stroke"
        assert one(rules, "Both eardrums are intact.", "BODY_SITE", "Both eardrums").normalized == "tympanic membrane"

    def test_ototoxic_medications_are_marked(self, rules: ClinicalRules) -> None:
        assert one(rules, "On gentamicin.", "MEDICATION", "gentamicin").attributes["ototoxic"] is True
        assert "ototoxic" not in one(rules, "On metformin.", "MEDICATION", "metformin").attributes


class TestMedications:
    def test_dose_and_frequency(self, rules: ClinicalRules) -> None:
        text = "Started amoxicillin 500 mg twice daily."
        medication = one(rules, text, "MEDICATION", "amoxicillin 500 mg twice daily")
        assert medication.normalized == "amoxicillin"
        assert medication.attributes["name"] == "amoxicillin"
        assert medication.attributes["dose"] == "500 mg"
        assert medication.attributes["dose_value"] == 500.0
        assert medication.attributes["dose_unit"] == "mg"
        assert medication.attributes["frequency"] == "twice daily"

    @pytest.mark.parametrize(
        ("text", "surface", "expected"),
        [
            (
                "Ibuprofen 400mg PO q6h prn pain.",
                "Ibuprofen 400mg PO q6h prn",
                {"dose": "400 mg", "route": "oral", "frequency": "every 6 hours", "as_needed": True},
            ),
            (
                "Amoxil 875 mg by mouth b.i.d. x 10 days.",
                "Amoxil 875 mg by mouth b.i.d. x 10 days",
                {"dose": "875 mg", "route": "oral", "frequency": "twice daily", "duration": "10 days"},
            ),
            (
                "Ciprodex 4 drops in the right ear twice a day for 7 days.",
                "Ciprodex 4 drops in the right ear twice a day for 7 days",
                {"dose": "4 drops", "route": "otic", "laterality": "right", "frequency": "twice daily"},
            ),
            (
                "Takes 81 mg aspirin daily.",
                "81 mg aspirin daily",
                {"dose": "81 mg", "frequency": "once daily", "ototoxic": True},
            ),
            (
                "Furosemide 40 mg every morning.",
                "Furosemide 40 mg every morning",
                {"dose": "40 mg", "frequency": "every morning", "drug_class": "loop diuretic"},
            ),
            (
                "Prednisone 60 mg daily for one week.",
                "Prednisone 60 mg daily for one week",
                {"frequency": "once daily", "duration": "one week"},
            ),
            ("Meclizine 25 mg TID as needed.", "Meclizine 25 mg TID as needed", {"frequency": "three times daily"}),
        ],
    )
    def test_regimen_in_several_phrasings(
        self, rules: ClinicalRules, text: str, surface: str, expected: dict[str, Any]
    ) -> None:
        attributes = one(rules, text, "MEDICATION", surface).attributes
        assert {key: attributes.get(key) for key in expected} == expected

    def test_allergy_is_not_a_current_medication(self, rules: ClinicalRules) -> None:
        assert one(rules, "Allergic to penicillin.", "MEDICATION", "penicillin").attributes["allergy"] is True
        text = "Allergies:\nSulfa, amoxicillin.\nMedications:\nLisinopril 10 mg daily."
        assert one(rules, text, "MEDICATION", "amoxicillin").attributes.get("allergy") is True
        assert "allergy" not in one(rules, text, "MEDICATION", "Lisinopril 10 mg daily").attributes


class TestHearingLoss:
    def test_type_degree_and_laterality(self, rules: ClinicalRules) -> None:
        text = "Bilateral mild to moderate sensorineural hearing loss."
        loss = one(rules, text, "HEARING_LOSS", "Bilateral mild to moderate sensorineural hearing loss")
        assert loss.attributes == {"type": "sensorineural", "degree": "mild to moderate", "laterality": "bilateral"}

    @pytest.mark.parametrize(
        ("text", "surface", "expected"),
        [
            ("Moderately severe mixed hearing loss on the right.", "Moderately severe mixed hearing loss",
             {"type": "mixed", "degree": "moderately severe", "laterality": "right"}),
            ("Mild-to-moderate SNHL AU.", "Mild-to-moderate SNHL",
             {"type": "sensorineural", "degree": "mild to moderate", "laterality": "bilateral"}),
            ("A conductive loss in the left ear.", "conductive loss", {"type": "conductive", "laterality": "left"}),
            ("High-frequency sloping sensorineural hearing loss.", "High-frequency sloping sensorineural hearing loss",
             {"type": "sensorineural", "configuration": "high-frequency sloping"}),
            ("Normal hearing in the right ear.", "Normal hearing", {"degree": "normal", "laterality": "right"}),
            ("Presbycusis.", "Presbycusis", {"type": "sensorineural", "cause": "age-related"}),
            ("Profound sensorineural hearing loss, left ear.", "Profound sensorineural hearing loss",
             {"type": "sensorineural", "degree": "profound", "laterality": "left"}),
        ],
    )  # fmt: skip
    def test_phrasings(self, rules: ClinicalRules, text: str, surface: str, expected: dict[str, Any]) -> None:
        attributes = one(rules, text, "HEARING_LOSS", surface).attributes
        assert {key: attributes.get(key) for key in expected} == expected


class TestDevicesAndTinnitus:
    def test_brand_style_and_generic_words_merge_into_one_device(self, rules: ClinicalRules) -> None:
        device = one(rules, "Wears Phonak RIC hearing aids.", "HEARING_DEVICE", "Phonak RIC hearing aids")
        assert device.normalized == "receiver-in-canal hearing aid"
        assert device.attributes == {"kind": "hearing aid", "brand": "Phonak", "style": "RIC"}

    def test_model_name_between_brand_and_style(self, rules: ClinicalRules) -> None:
        device = one(rules, "Uses Oticon More 1 BTE aids.", "HEARING_DEVICE", "Oticon More 1 BTE aids")
        assert device.attributes["model"] == "More 1"
        assert device.attributes["style"] == "BTE"

    def test_device_laterality(self, rules: ClinicalRules) -> None:
        assert one(rules, "A right CIC.", "HEARING_DEVICE", "CIC").attributes["laterality"] == "right"
        text = "Hearing aids in both ears."
        assert one(rules, text, "HEARING_DEVICE", "Hearing aids").attributes["laterality"] == "bilateral"

    def test_tinnitus_character_pattern_and_laterality(self, rules: ClinicalRules) -> None:
        text = "Constant high-pitched ringing in the left ear."
        tinnitus = one(rules, text, "TINNITUS", "ringing in the left ear")
        assert tinnitus.attributes == {"character": "ringing", "laterality": "left", "pattern": "constant"}

    def test_pulsatile_tinnitus(self, rules: ClinicalRules) -> None:
        tinnitus = one(rules, "Pulsatile tinnitus on the right.", "TINNITUS", "Pulsatile tinnitus")
        assert tinnitus.attributes["pattern"] == "pulsatile"
        assert tinnitus.attributes["laterality"] == "right"


class TestContext:
    @pytest.mark.parametrize(
        ("text", "label", "surface", "expected"),
        [
            ("Denies tinnitus.", "TINNITUS", "tinnitus", {"negated"}),
            ("Patient denies tinnitus, vertigo, or otalgia.", "SYMPTOM", "otalgia", {"negated"}),
            ("No history of otitis media.", "CONDITION", "otitis media", {"negated"}),
            ("Tinnitus: absent.", "TINNITUS", "Tinnitus", {"negated"}),
            ("Tinnitus: none.", "TINNITUS", "Tinnitus", {"negated"}),
            ("Vertigo has resolved.", "SYMPTOM", "Vertigo", {"negated"}),
            ("No dizziness or imbalance.", "SYMPTOM", "imbalance", {"negated"}),
            ("Without otorrhea.", "SYMPTOM", "otorrhea", {"negated"}),
            ("Negative for aural fullness.", "SYMPTOM", "aural fullness", {"negated"}),
            ("She does not wear hearing aids.", "HEARING_DEVICE", "hearing aids", {"negated"}),
            ("I don't have any ringing in my ears.", "TINNITUS", "ringing in my ears", {"negated"}),
            ("Mother has hearing loss.", "HEARING_LOSS", "hearing loss", {"family_history"}),
            ("Family history of otosclerosis.", "CONDITION", "otosclerosis", {"family_history"}),
            ("Hearing loss runs in the family.", "HEARING_LOSS", "Hearing loss", {"family_history"}),
            ("His father wore hearing aids.", "HEARING_DEVICE", "hearing aids", {"family_history"}),
            ("Family history negative for hearing loss.", "HEARING_LOSS", "hearing loss",
             {"family_history", "negated"}),
            ("History of otitis media as a child.", "CONDITION", "otitis media", {"historical"}),
            ("S/p tympanoplasty in 2015.", "PROCEDURE", "tympanoplasty", {"historical"}),
            ("Previous ear surgery.", "PROCEDURE", "surgery", {"historical"}),
            ("Return if vertigo recurs.", "SYMPTOM", "vertigo", {"hypothetical"}),
            ("Call if ear drainage develops.", "SYMPTOM", "ear drainage", {"hypothetical"}),
            ("Possible Meniere's disease.", "CONDITION", "Meniere's disease", {"uncertain"}),
            ("Rule out acoustic neuroma.", "CONDITION", "acoustic neuroma", {"uncertain"}),
        ],
    )  # fmt: skip
    def test_flags(self, rules: ClinicalRules, text: str, label: str, surface: str, expected: set[str]) -> None:
        assert flags(one(rules, text, label, surface)) == expected

    def test_terminator_ends_the_negation(self, rules: ClinicalRules) -> None:
        text = "Denies vertigo but reports tinnitus and aural fullness."
        assert flags(one(rules, text, "SYMPTOM", "vertigo")) == {"negated"}
        assert flags(one(rules, text, "TINNITUS", "tinnitus")) == set()
        assert flags(one(rules, text, "SYMPTOM", "aural fullness")) == set()

    def test_negation_stops_at_the_end_of_the_sentence(self, rules: ClinicalRules) -> None:
        text = "No vertigo. Tinnitus in the right ear."
        assert flags(one(rules, text, "TINNITUS", "Tinnitus")) == set()

    def test_family_scope_ends_at_the_patient(self, rules: ClinicalRules) -> None:
        text = "Mother has hearing loss; the patient has tinnitus."
        assert flags(one(rules, text, "HEARING_LOSS", "hearing loss")) == {"family_history"}
        assert flags(one(rules, text, "TINNITUS", "tinnitus")) == set()

    def test_pseudo_negation_is_not_a_negation(self, rules: ClinicalRules) -> None:
        assert flags(one(rules, "No change in tinnitus.", "TINNITUS", "tinnitus")) == set()
        assert flags(one(rules, "Tinnitus has not improved.", "TINNITUS", "Tinnitus")) == set()

    def test_sections(self, rules: ClinicalRules) -> None:
        text = (
            "FAMILY HISTORY\n\nFather with presbycusis.\nSister: cochlear implant.\n\n"
            "PAST MEDICAL HISTORY\nOtitis media, hypertension.\n\n"
            "ASSESSMENT\nSensorineural hearing loss."
        )
        assert flags(one(rules, text, "HEARING_LOSS", "presbycusis")) == {"family_history"}
        assert flags(one(rules, text, "HEARING_DEVICE", "cochlear implant")) == {"family_history"}
        assert flags(one(rules, text, "CONDITION", "hypertension")) == {"historical"}
        assert flags(one(rules, text, "HEARING_LOSS", "Sensorineural hearing loss")) == set()

    def test_inline_section_covers_its_sentence_only(self, rules: ClinicalRules) -> None:
        text = "FH: hearing loss in grandparents. Patient wears hearing aids."
        assert flags(one(rules, text, "HEARING_LOSS", "hearing loss")) == {"family_history"}
        assert flags(one(rules, text, "HEARING_DEVICE", "hearing aids")) == set()

    @pytest.mark.parametrize(
        ("answer", "expected"),
        [("No.", {"negated"}), ("Nope, never.", {"negated"}), ("Yes, in my left ear.", set()),
         ("I'm not sure.", {"uncertain"}), ("", {"hypothetical"})],
    )  # fmt: skip
    def test_answers_settle_questions(self, rules: ClinicalRules, answer: str, expected: set[str]) -> None:
        text = f"Doctor: Do you have any ringing in your ears?\nPatient: {answer}"
        assert flags(one(rules, text, "TINNITUS", "ringing in your ears")) == expected

    def test_open_questions_are_not_hypothetical(self, rules: ClinicalRules) -> None:
        text = "[doctor] what have you taken for the dizziness ?\n[patient] some meclizine ."
        assert flags(one(rules, text, "SYMPTOM", "dizziness")) == set()

    def test_lowercase_transcript_with_spaced_punctuation(self, rules: ClinicalRules) -> None:
        text = "[doctor] any dizziness ?\n[patient] no . but my ears ring all the time ."
        assert flags(one(rules, text, "SYMPTOM", "dizziness")) == {"negated"}
        tinnitus = one(rules, text, "TINNITUS", "ears ring")
        assert flags(tinnitus) == set()
        assert tinnitus.attributes["pattern"] == "constant"
