"""Audiological measurements in prose: thresholds in several phrasings with their ear, speech
scores, speech reception thresholds, pure-tone averages and tympanometry."""

from __future__ import annotations

from typing import Any

import pytest

from tessera.core.entities.clinical import ClinicalRules


@pytest.fixture(scope="module")
def rules() -> ClinicalRules:
    return ClinicalRules()


def measured(rules: ClinicalRules, text: str, label: str, *keys: str) -> list[tuple[Any, ...]]:
    return [tuple(m.attributes.get(key) for key in keys) for m in rules.analyze(text).mentions if m.label == label]


def thresholds(rules: ClinicalRules, text: str) -> list[tuple[Any, ...]]:
    return measured(rules, text, "AUDIOGRAM_THRESHOLD", "ear", "frequency_hz", "db_hl")


class TestAudiogramThresholds:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Left ear 40 dB HL at 2 kHz.", [("left", 2000, 40.0)]),
            ("40 dB HL at 2000 Hz in the right ear.", [("right", 2000, 40.0)]),
            ("Right ear: 2 kHz: 40 dB, 4 kHz: 55 dB.", [("right", 2000, 40.0), ("right", 4000, 55.0)]),
            (
                "Thresholds of 25, 30, 45 and 60 dB at 500, 1000, 2000, 4000 Hz.",
                [(None, 500, 25.0), (None, 1000, 30.0), (None, 2000, 45.0), (None, 4000, 60.0)],
            ),
            (
                "In the left ear, thresholds at 1, 2 and 4 kHz were 30, 45 and 60 dB HL respectively.",
                [("left", 1000, 30.0), ("left", 2000, 45.0), ("left", 4000, 60.0)],
            ),
            (
                "R: 500 Hz 25 dB, 1 kHz 30 dB, 2 kHz 45 dB.",
                [("right", 500, 25.0), ("right", 1000, 30.0), ("right", 2000, 45.0)],
            ),
            ("AC thresholds AD 25/45 dB at .5/2 kHz.", [("right", 500, 25.0), ("right", 2000, 45.0)]),
            ("A 50 dB notch at 4k bilaterally.", [("both", 4000, 50.0)]),
            (
                "Left ear 40 dB HL at 2 kHz and right ear 30 dB HL at 2 kHz.",
                [("left", 2000, 40.0), ("right", 2000, 30.0)],
            ),
            (
                "30 dB at 1 kHz in the right ear and 45 dB at 1 kHz in the left ear.",
                [("right", 1000, 30.0), ("left", 1000, 45.0)],
            ),
            ("Hearing is 65 dB HL across 2, 3 and 4 kHz on the right.",
             [("right", 2000, 65.0), ("right", 3000, 65.0), ("right", 4000, 65.0)]),
        ],
    )  # fmt: skip
    def test_phrasings(self, rules: ClinicalRules, text: str, expected: list[tuple[Any, ...]]) -> None:
        assert thresholds(rules, text) == expected

    def test_ear_from_a_heading_line(self, rules: ClinicalRules) -> None:
        text = "Right ear:\n250 Hz: 20\n500 Hz: 25 dB\nLeft ear:\n250 Hz: 35\n"
        assert thresholds(rules, text) == [("right", 250, 20.0), ("right", 500, 25.0), ("left", 250, 35.0)]

    def test_same_frequencies_again(self, rules: ClinicalRules) -> None:
        text = "Right ear 25, 35 and 50 dB HL at 500, 1000 and 2000 Hz; left ear 20, 30 and 45 dB HL at the same."
        assert thresholds(rules, text)[3:] == [("left", 500, 20.0), ("left", 1000, 30.0), ("left", 2000, 45.0)]

    def test_bone_conduction(self, rules: ClinicalRules) -> None:
        text = "Bone conduction thresholds of 10 and 15 dB at 1 and 2 kHz on the left."
        assert measured(rules, text, "AUDIOGRAM_THRESHOLD", "conduction") == [("bone",), ("bone",)]

    @pytest.mark.parametrize(
        "text",
        [
            "The hearing aid gain is 20 dB at 2 kHz.",
            "Noise exposure of 95 dB at work.",
            "Blood pressure 140/90, pulse 72.",
            "Seen 3 times in 2 weeks for 40 minutes.",
        ],
    )
    def test_no_thresholds_where_there_are_none(self, rules: ClinicalRules, text: str) -> None:
        assert thresholds(rules, text) == []

    def test_out_of_range_values_are_not_thresholds(self, rules: ClinicalRules) -> None:
        assert thresholds(rules, "Threshold 150 dB at 2 kHz, 40 dB at 50 Hz.") == []


class TestSpeechAndAverages:
    def test_word_recognition_per_ear_with_presentation_level(self, rules: ClinicalRules) -> None:
        text = "Word recognition scores were 92% in the right ear and 76% in the left ear at 70 dB HL."
        assert measured(rules, text, "SPEECH_DISCRIMINATION", "ear", "score_percent", "presentation_level_db") == [
            ("right", 92.0, 70.0),
            ("left", 76.0, 70.0),
        ]

    def test_abbreviated_ears(self, rules: ClinicalRules) -> None:
        text = "WRS: R 88%, L 64%."
        assert measured(rules, text, "SPEECH_DISCRIMINATION", "ear", "score_percent") == [
            ("right", 88.0),
            ("left", 64.0),
        ]

    def test_speech_reception_threshold_and_pure_tone_average(self, rules: ClinicalRules) -> None:
        text = "SRT 25 dB HL right, 35 dB HL left. PTA of 45 dB in the left ear."
        assert measured(rules, text, "SPEECH_RECEPTION_THRESHOLD", "ear", "db_hl") == [
            ("right", 25.0),
            ("left", 35.0),
        ]
        assert measured(rules, text, "PURE_TONE_AVERAGE", "ear", "db_hl") == [("left", 45.0)]


class TestTympanometry:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Type A tympanograms bilaterally.", [("both", "A")]),
            ("Tympanometry: right type A, left type B.", [("right", "A"), ("left", "B")]),
            ("Tympanometry showed type As on the left and type C on the right.", [("left", "As"), ("right", "C")]),
            ("Flat tympanogram in the right ear.", [("right", "B")]),
            ("Tympanometry: type A. Type Ad on the left.", [(None, "A"), ("left", "Ad")]),
        ],
    )
    def test_types_and_ears(self, rules: ClinicalRules, text: str, expected: list[tuple[Any, ...]]) -> None:
        assert measured(rules, text, "TYMPANOMETRY", "ear", "type") == expected

    def test_values(self, rules: ClinicalRules) -> None:
        text = "Tympanometry: left type C with peak pressure -250 daPa, compliance 0.4 ml, ear canal volume 1.1 ml."
        assert measured(
            rules, text, "TYMPANOMETRY", "ear", "type", "pressure_dapa", "compliance_ml", "ear_canal_volume_ml"
        ) == [("left", "C", -250.0, 0.4, 1.1)]

    def test_values_per_ear_under_a_bilateral_type(self, rules: ClinicalRules) -> None:
        text = "Tympanometry: Type A bilaterally with compliance 0.6 ml right and 0.5 ml left."
        assert measured(rules, text, "TYMPANOMETRY", "ear", "type", "compliance_ml") == [
            ("both", "A", None),
            ("right", "A", 0.6),
            ("left", "A", 0.5),
        ]

    def test_type_without_tympanometry_context_is_ignored(self, rules: ClinicalRules) -> None:
        assert measured(rules, "Type A personality; type 2 diabetes.", "TYMPANOMETRY", "type") == []
