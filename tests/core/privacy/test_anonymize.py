"""The anonymisation operators and the pattern detector on their own: every operator, the offsets
of each replacement in both texts, how operators are chosen, and the `fake` detector's patterns,
allow and deny lists and threshold."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from tessera.core.privacy.anonymize import (
    FALLBACK_OPERATOR,
    apply_operators,
    choose_operator,
    clean_spans,
    pseudonym_key,
)
from tessera.core.privacy.base import PiiEntity
from tessera.core.privacy.fake import PatternDetector
from tessera.core.privacy.registry import get_pii_detector
from tessera.core.privacy.schemas import (
    HashOperator,
    KeepOperator,
    MaskOperator,
    Operator,
    PseudonymizeOperator,
    RedactOperator,
    ReplaceOperator,
)
from tessera.settings import PrivacySettings

TEXT = "Write to jane@example.com or call 212-555-0187."
EMAIL = PiiEntity("EMAIL_ADDRESS", 9, 25, 1.0, "test", "jane@example.com")
PHONE = PiiEntity("PHONE_NUMBER", 34, 46, 0.75, "test", "212-555-0187")
KEY = b"k" * 32


def run(text: str, plan: list[tuple[PiiEntity, Operator]], surrogates: dict[tuple[str, str], str] | None = None):  # type: ignore[no-untyped-def]
    result = apply_operators(text, plan, hash_key=KEY, surrogates=surrogates or {})
    for item in result.items:  # every reported span points at its replacement
        assert item.new_start <= item.new_end <= len(result.text)
    return result


def test_fixture_offsets_are_right() -> None:
    assert TEXT[EMAIL.start : EMAIL.end] == EMAIL.text
    assert TEXT[PHONE.start : PHONE.end] == PHONE.text


def test_redact_removes_the_value() -> None:
    result = run(TEXT, [(EMAIL, RedactOperator(type="redact")), (PHONE, RedactOperator(type="redact"))])

    assert result.text == "Write to  or call ."
    assert [(i.start, i.end, i.new_start, i.new_end) for i in result.items] == [(9, 25, 9, 9), (34, 46, 18, 18)]


def test_replace_puts_a_type_tag_or_the_given_value() -> None:
    result = run(
        TEXT, [(EMAIL, ReplaceOperator(type="replace")), (PHONE, ReplaceOperator(type="replace", new_value="[tel]"))]
    )

    assert result.text == "Write to <EMAIL_ADDRESS> or call [tel]."
    email, phone = result.items
    assert result.text[email.new_start : email.new_end] == "<EMAIL_ADDRESS>"
    assert result.text[phone.new_start : phone.new_end] == "[tel]"
    assert (phone.start, phone.end) == (34, 46)


@pytest.mark.parametrize(
    ("operator", "masked"),
    [
        (MaskOperator(type="mask"), "****************"),
        (MaskOperator(type="mask", chars_to_mask=4), "****@example.com"),
        (MaskOperator(type="mask", chars_to_mask=3, masking_char="#", from_end=True), "jane@example.###"),
        (MaskOperator(type="mask", chars_to_mask=500), "****************"),
    ],
)
def test_mask_overwrites_characters(operator: MaskOperator, masked: str) -> None:
    result = run(TEXT, [(EMAIL, operator)])

    assert result.text == f"Write to {masked} or call 212-555-0187."
    assert result.text[result.items[0].new_start : result.items[0].new_end] == masked


@pytest.mark.parametrize("hash_type", ["sha256", "sha512"])
def test_hash_is_keyed(hash_type: str) -> None:
    operator = HashOperator(type="hash", hash_type=hash_type)
    result = run(TEXT, [(EMAIL, operator)])
    other_key = apply_operators(TEXT, [(EMAIL, operator)], hash_key=b"o" * 32, surrogates={})

    digest = hmac.new(KEY, b"jane@example.com", getattr(hashlib, hash_type)).hexdigest()
    assert result.text == f"Write to {digest} or call 212-555-0187."
    assert digest not in other_key.text
    assert hashlib.new(hash_type, b"jane@example.com").hexdigest() not in result.text  # salted, not a bare hash


def test_pseudonymize_uses_the_given_surrogates() -> None:
    text = "Dr Jane Doe met Dr JANE  DOE."
    first = PiiEntity("PERSON", 3, 11, 0.85, "test", "Jane Doe")
    second = PiiEntity("PERSON", 19, 28, 0.85, "test", "JANE  DOE")
    operator = PseudonymizeOperator(type="pseudonymize")

    result = run(text, [(first, operator), (second, operator)], {("PERSON", "jane doe"): "PERSON_1"})

    assert result.text == "Dr PERSON_1 met Dr PERSON_1."
    assert [(i.new_start, i.new_end) for i in result.items] == [(3, 11), (19, 27)]


def test_keep_leaves_the_value_and_reports_it() -> None:
    result = run(TEXT, [(EMAIL, KeepOperator(type="keep"))])

    assert result.text == TEXT
    assert result.items[0].operator == "keep"


def test_offsets_shift_with_every_earlier_replacement() -> None:
    plan: list[tuple[PiiEntity, Operator]] = [
        (EMAIL, ReplaceOperator(type="replace", new_value="E")),
        (PHONE, ReplaceOperator(type="replace", new_value="a much longer phone replacement")),
    ]

    result = run(TEXT, plan)

    for item, (entity, operator) in zip(result.items, plan, strict=True):
        assert TEXT[item.start : item.end] == entity.text
        assert result.text[item.new_start : item.new_end] == operator.new_value  # type: ignore[union-attr]
    assert result.text.endswith("call a much longer phone replacement.")


def test_clean_spans_drops_overlaps_and_spans_outside_the_text() -> None:
    spans = [
        PiiEntity("PHONE_NUMBER", 34, 46, 0.7, "t", ""),
        PiiEntity("EMAIL_ADDRESS", 9, 25, 1.0, "t", ""),
        PiiEntity("URL", 14, 25, 0.5, "t", ""),  # inside the e-mail address
        PiiEntity("PERSON", 40, 90, 0.9, "t", ""),  # past the end
        PiiEntity("PERSON", 5, 5, 0.9, "t", ""),  # empty
    ]

    assert [(e.start, e.end) for e in clean_spans(TEXT, spans)] == [(9, 25), (34, 46)]


def test_operator_choice_request_then_policy_then_replace() -> None:
    redact, mask = RedactOperator(type="redact"), MaskOperator(type="mask")
    request: dict[str, Operator] = {"PERSON": redact}
    policy: dict[str, Operator] = {"EMAIL_ADDRESS": mask, "DEFAULT": KeepOperator(type="keep")}

    assert choose_operator("PERSON", request, policy) is redact
    assert choose_operator("EMAIL_ADDRESS", request, policy) is mask
    assert choose_operator("PHONE_NUMBER", request, policy).type == "keep"
    assert choose_operator("EMAIL_ADDRESS", {"DEFAULT": redact}, policy) is redact  # the request's DEFAULT first
    assert choose_operator("PHONE_NUMBER", {}, {}) is FALLBACK_OPERATOR


def test_pseudonym_key_ignores_case_and_spacing() -> None:
    assert pseudonym_key("  John\n Smith ") == pseudonym_key("JOHN SMITH") == "john smith"


# ---------------------------------------------------------------------------------------------
# the `fake` detector

DETECTOR = PatternDetector(PrivacySettings(detector="fake"))
NOTE = (
    "Dr Jane Doe saw Mrs Mary-Ann O'Neil today. Reach her at mary.oneil@example.org, (212) 555-0187 "
    "or +1 212 555 0100. SSN 078-05-1120, card 4111 1111 1111 1111, host 10.0.0.12."
)


def found(text: str, **kwargs: object) -> list[tuple[str, str]]:
    return [(e.entity_type, e.text) for e in DETECTOR.analyze(text, **kwargs)]  # type: ignore[arg-type]


def test_pattern_detector_finds_each_type() -> None:
    assert found(NOTE) == [
        ("PERSON", "Jane Doe"),
        ("PERSON", "Mary-Ann O'Neil"),
        ("EMAIL_ADDRESS", "mary.oneil@example.org"),
        ("PHONE_NUMBER", "(212) 555-0187"),
        ("PHONE_NUMBER", "+1 212 555 0100"),
        ("US_SSN", "078-05-1120"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("IP_ADDRESS", "10.0.0.12"),
    ]
    for entity in DETECTOR.analyze(NOTE):
        assert NOTE[entity.start : entity.end] == entity.text


def test_pattern_detector_checks_card_numbers_and_addresses() -> None:
    assert found("card 4111 1111 1111 1112, host 300.1.1.1") == []


def test_pattern_detector_applies_entities_allow_deny_and_threshold() -> None:
    assert found(NOTE, entities=["US_SSN"]) == [("US_SSN", "078-05-1120")]
    assert ("PERSON", "Jane Doe") not in found(NOTE, allow=["jane doe"])
    assert found("Project Nightingale starts; project nightingale ends.", deny=["Project Nightingale"]) == [
        ("DENY_LIST", "Project Nightingale"),
        ("DENY_LIST", "project nightingale"),
    ]
    # Deny-list hits count whatever the types asked for.
    assert found("Nightingale and 078-05-1120", entities=["US_SSN"], deny=["Nightingale"]) == [
        ("DENY_LIST", "Nightingale"),
        ("US_SSN", "078-05-1120"),
    ]
    assert {t for t, _ in found(NOTE, score_threshold=0.8)} == {"PERSON", "EMAIL_ADDRESS", "US_SSN", "CREDIT_CARD"}


def test_fake_is_registered() -> None:
    detector = get_pii_detector(PrivacySettings(detector="fake"))

    assert detector.name == "fake"
    assert "EMAIL_ADDRESS" in detector.supported_entities()
