"""Unit tests for inori_operator.signing: the signature receivers verify, byte for byte."""

from __future__ import annotations

import pytest

from inori_operator import signing

# Computed once, independently, with hmac.new(key, body, hashlib.sha256).hexdigest().
GOLDEN_BODY = (
    b'{"event": "record.status_changed", "timestamp": "2026-12-04T10:00:00Z",'
    b' "data": {"recordId": "r-123"}}'
)
GOLDEN_SECRET = b"whsec-test"
GOLDEN_SIGNATURE = "e935ba3736e32d4d6609e8694d4f6ef415454ddfa26a87de36e6ab3c503bffb7"

# RFC 4231, test case 2.
RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_HMAC_SHA256 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def headers(secret: bytes | None = GOLDEN_SECRET) -> dict[str, str]:
    return signing.delivery_headers(
        body=GOLDEN_BODY,
        event_type="record.status_changed",
        delivery_id="d-1",
        secret=secret,
        user_agent="inori-operator/0.1.0",
    )


@pytest.mark.parametrize(
    ("body", "secret", "expected"),
    [
        (GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_SIGNATURE),
        (RFC4231_DATA, RFC4231_KEY, RFC4231_HMAC_SHA256),
    ],
    ids=["delivery body", "RFC 4231 case 2"],
)
def test_the_signature_matches_a_golden_vector(body: bytes, secret: bytes, expected: str) -> None:
    assert signing.sign(body, secret) == expected


def test_the_signature_is_lowercase_hex_of_sha256_length() -> None:
    signature = signing.sign(GOLDEN_BODY, GOLDEN_SECRET)
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


def test_an_empty_secret_is_refused_because_it_signs_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        signing.sign(GOLDEN_BODY, b"")


def test_an_empty_body_can_still_be_signed() -> None:
    assert len(signing.sign(b"", GOLDEN_SECRET)) == 64


@pytest.mark.parametrize(
    ("body", "secret"),
    [
        (GOLDEN_BODY + b" ", GOLDEN_SECRET),
        (GOLDEN_BODY.replace(b": ", b":"), GOLDEN_SECRET),
        (GOLDEN_BODY, GOLDEN_SECRET + b"x"),
        (GOLDEN_BODY, b"whsec-tesT"),
    ],
    ids=["trailing byte", "re-serialised body", "longer secret", "other secret"],
)
def test_any_change_to_the_body_or_secret_changes_the_signature(body: bytes, secret: bytes) -> None:
    assert signing.sign(body, secret) != GOLDEN_SIGNATURE


def test_a_correct_signature_verifies() -> None:
    assert signing.verify(GOLDEN_BODY, GOLDEN_SECRET, GOLDEN_SIGNATURE)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        GOLDEN_SIGNATURE[:-1],
        GOLDEN_SIGNATURE[:-1] + "0",
        GOLDEN_SIGNATURE.upper(),
        "sha256=" + GOLDEN_SIGNATURE,
        GOLDEN_SIGNATURE + "\n",
        "é" * 64,
    ],
    ids=["empty", "truncated", "one digit off", "uppercase", "prefixed", "trailing newline", "non-ascii"],
)
def test_a_wrong_signature_does_not_verify(signature: str) -> None:
    assert not signing.verify(GOLDEN_BODY, GOLDEN_SECRET, signature)


def test_verifying_with_an_empty_secret_fails_loudly() -> None:
    with pytest.raises(ValueError):
        signing.verify(GOLDEN_BODY, b"", GOLDEN_SIGNATURE)


def test_delivery_headers_carry_the_event_the_delivery_id_and_the_signature() -> None:
    assert headers() == {
        "Content-Type": "application/json",
        "User-Agent": "inori-operator/0.1.0",
        "X-Inori-Event": "record.status_changed",
        "X-Inori-Delivery": "d-1",
        "X-Inori-Signature": GOLDEN_SIGNATURE,
    }


def test_a_webhook_without_a_secret_gets_no_signature_header() -> None:
    result = headers(secret=None)
    assert signing.SIGNATURE_HEADER not in result
    assert result[signing.EVENT_HEADER] == "record.status_changed"
    assert result[signing.DELIVERY_HEADER] == "d-1"


def test_a_webhook_with_an_empty_secret_is_refused_rather_than_signed_with_nothing() -> None:
    with pytest.raises(ValueError, match="empty"):
        headers(secret=b"")


def test_the_same_body_gets_the_same_headers_on_every_retry() -> None:
    assert headers() == headers()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", ""),
        ("event_type", "record.created\r\nX-Evil: 1"),
        ("delivery_id", "d-1\n"),
        ("delivery_id", ""),
        ("user_agent", "agent\0"),
    ],
)
def test_a_header_value_that_is_empty_or_splits_lines_is_refused(field: str, value: str) -> None:
    arguments = {
        "body": GOLDEN_BODY,
        "event_type": "record.created",
        "delivery_id": "d-1",
        "secret": None,
        "user_agent": "inori-operator/0.1.0",
    }
    arguments[field] = value
    with pytest.raises(ValueError):
        signing.delivery_headers(**arguments)  # type: ignore[arg-type]
