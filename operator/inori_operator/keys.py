"""The API key format: `inori_` + 32 random base62 characters + a 6-character base62 checksum.

- The fixed prefix lets secret scanners (and people) recognise a leaked key.
- 32 base62 characters carry 32 * log2(62), about 190.5 bits of randomness from `secrets`.
- The checksum is the CRC32 of the random part in base62, left-padded with '0'. CRC32 catches
  every single-character typo (any change within 32 bits), so a mistyped key is refused without
  a lookup, and scanners can tell a real key from a look-alike string.

Only `hash_key(key)` is ever stored. No function here puts a key into an error message.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import zlib

PREFIX = "inori_"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
DISPLAY_LENGTH = 4
"""Random characters shown in the display prefix: 62**4 (about 14.8 million) values tell keys
apart in a list, while the 186 bits left hidden keep the key unusable."""

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
KEY_REGEX_TEXT = rf"^{PREFIX}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$"
KEY_PATTERN = re.compile(KEY_REGEX_TEXT)

MALFORMED = "Malformed"
BAD_CHECKSUM = "BadChecksum"

_BASE = len(ALPHABET)


class MalformedKey(ValueError):
    """The text is not an Inori API key; `reason` is "Malformed" or "BadChecksum".

    Either way no lookup can succeed: the caller answers 401 without touching the key store. The
    message never contains the key.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def generate() -> str:
    """Return a new API key with a fresh random part from the `secrets` module."""
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return PREFIX + random_part + checksum(random_part)


def checksum(random_part: str) -> str:
    """Return the 6-character base62 CRC32 of the random part."""
    value = zlib.crc32(random_part.encode("utf-8"))
    digits: list[str] = []
    while value:
        value, remainder = divmod(value, _BASE)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(CHECKSUM_LENGTH, ALPHABET[0])


def parse(key: str) -> str:
    """Return `key` if it is a well-formed API key; raise MalformedKey otherwise.

    The length is checked before the regular expression, so an oversized token costs nothing.
    """
    if not isinstance(key, str) or len(key) != KEY_LENGTH:
        raise MalformedKey(MALFORMED, f"an API key is {KEY_LENGTH} characters starting with {PREFIX!r}")
    if KEY_PATTERN.fullmatch(key) is None:
        raise MalformedKey(
            MALFORMED, f"an API key is {PREFIX!r} followed by letters and digits only"
        )
    random_part = key[len(PREFIX) : len(PREFIX) + RANDOM_LENGTH]
    if key[-CHECKSUM_LENGTH:] != checksum(random_part):
        raise MalformedKey(BAD_CHECKSUM, "the API key's checksum does not match; it was probably mistyped")
    return key


def is_well_formed(key: str) -> bool:
    """Tell whether `parse` accepts `key`."""
    try:
        parse(key)
    except MalformedKey:
        return False
    return True


def hash_key(key: str) -> str:
    """Return the hex SHA-256 of the UTF-8 key, the only form in which keys are stored.

    A fast hash is right here, unlike for passwords: with about 190 random bits no brute force
    or dictionary attack on a stolen hash is feasible, so a slow KDF (bcrypt, Argon2) would buy
    nothing (NIST SP 800-63B asks for slow hashing of memorised secrets chosen by people; OWASP
    ASVS allows an approved fast hash for high-entropy random secrets). A fast hash also keeps
    every request's verification cheap and makes the hash usable as a lookup key.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """Return `inori_` + the first 4 random characters: enough to tell keys apart, never to use one."""
    parse(key)
    return key[: len(PREFIX) + DISPLAY_LENGTH]
