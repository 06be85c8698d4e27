from __future__ import annotations

from tessera.core.notifications.signing import new_secret, signature_header, verify_signature

SECRET = "whsec_test-secret"
BODY = b'{"id":"1","event":"ping","data":{}}'
NOW = 1_900_000_000


def test_a_signature_verifies_with_its_secret_and_body() -> None:
    header = signature_header(SECRET, BODY, NOW)

    assert header.startswith(f"t={NOW},v1=")
    assert verify_signature(SECRET, header, BODY, 300, now=NOW + 10)


def test_another_body_or_secret_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW)

    assert not verify_signature(SECRET, header, BODY + b" ", now=NOW)
    assert not verify_signature("whsec_other", header, BODY, now=NOW)


def test_a_signature_older_or_newer_than_the_tolerance_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, NOW)

    assert not verify_signature(SECRET, header, BODY, 300, now=NOW + 301)
    assert not verify_signature(SECRET, header, BODY, 300, now=NOW - 301)


def test_the_timestamp_is_signed_too() -> None:
    digest = signature_header(SECRET, BODY, NOW).split("v1=")[1]

    assert not verify_signature(SECRET, f"t={NOW + 100},v1={digest}", BODY, now=NOW + 100)


def test_any_of_several_signatures_may_match() -> None:
    good = signature_header(SECRET, BODY, NOW).split("v1=")[1]

    assert verify_signature(SECRET, f"t={NOW},v1={'0' * 64},v1={good}", BODY, now=NOW)


def test_malformed_headers_do_not_verify() -> None:
    for header in ("", "garbage", f"t={NOW}", "v1=abc", f"t=soon,v1={'0' * 64}", f"t={NOW},v1="):
        assert not verify_signature(SECRET, header, BODY, now=NOW), header


def test_secrets_are_random_and_prefixed() -> None:
    first, second = new_secret(), new_secret()

    assert first != second
    assert first.startswith("whsec_")
    assert len(first) > 40
