"""Webhook signatures and delivery headers.

The signature is lowercase hex HMAC-SHA256 over the exact body bytes sent, keyed with the raw
bytes of the Webhook's Secret value. Signing the bytes (never a re-serialisation) is what lets a
receiver verify without knowing how we format JSON, and what keeps retries byte-identical.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Inori-Signature"
EVENT_HEADER = "X-Inori-Event"
DELIVERY_HEADER = "X-Inori-Delivery"
CONTENT_TYPE = "application/json"

_FORBIDDEN_HEADER_CHARACTERS = frozenset("\r\n\0")


def sign(body: bytes, secret: bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of `body` keyed with `secret`.

    An empty key is refused: it would produce a signature anyone can compute, which looks like
    protection and is none.
    """
    if not secret:
        raise ValueError("the signing secret is empty; put a non-empty value in the Secret")
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, signature: str) -> bool:
    """Tell whether `signature` is the signature of `body`, in constant time.

    Meant for receivers and tests. An empty secret raises ValueError like `sign` does, so a
    misconfigured receiver fails loudly instead of rejecting everything quietly.
    """
    expected = sign(body, secret).encode("ascii")
    return hmac.compare_digest(expected, signature.encode("utf-8"))


def delivery_headers(
    *,
    body: bytes,
    event_type: str,
    delivery_id: str,
    secret: bytes | None,
    user_agent: str,
) -> dict[str, str]:
    """Build the headers of one delivery attempt.

    The signature header appears only when the Webhook has a secret (`secret is not None`);
    without one nothing is signed, as the contract says.
    """
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": _header_value("User-Agent", user_agent),
        EVENT_HEADER: _header_value(EVENT_HEADER, event_type),
        DELIVERY_HEADER: _header_value(DELIVERY_HEADER, delivery_id),
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers


def _header_value(name: str, value: str) -> str:
    """Refuse empty values and line breaks, which would forge or split headers."""
    if not value:
        raise ValueError(f"the {name} header value is empty")
    if _FORBIDDEN_HEADER_CHARACTERS.intersection(value):
        raise ValueError(f"the {name} header value contains a line break or NUL character")
    return value
