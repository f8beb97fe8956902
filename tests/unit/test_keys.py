"""Unit tests for inori_operator.keys: the API key format, checksum, hash and display prefix."""

from __future__ import annotations

import re
import zlib

import pytest

from inori_operator import keys

GOLDEN_RANDOM = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
GOLDEN_CHECKSUM = "1ggZdL"  # base62 of zlib.crc32(GOLDEN_RANDOM) == 1546885699
GOLDEN_KEY = "inori_" + GOLDEN_RANDOM + GOLDEN_CHECKSUM
GOLDEN_HASH = "50714a5a3c9adc8a48c42b09b637b6173a9bf332daa81f383fd07b9c310016f1"

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def from_base62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62.index(char)
    return value


def test_the_constants_describe_the_format() -> None:
    assert keys.PREFIX == "inori_"
    assert (keys.RANDOM_LENGTH, keys.CHECKSUM_LENGTH, keys.KEY_LENGTH) == (32, 6, 44)
    assert keys.KEY_REGEX_TEXT == "^inori_[0-9A-Za-z]{38}$"
    assert keys.KEY_PATTERN.pattern == keys.KEY_REGEX_TEXT


def test_a_generated_key_has_the_prefix_random_part_and_checksum() -> None:
    key = keys.generate()
    assert len(key) == 44
    assert re.fullmatch(r"inori_[0-9A-Za-z]{38}", key)
    assert key[-6:] == keys.checksum(key[6:38])
    assert keys.parse(key) == key


def test_the_random_part_carries_at_least_190_bits() -> None:
    import math

    assert keys.RANDOM_LENGTH * math.log2(62) > 190


def test_a_thousand_generated_keys_are_distinct_and_well_formed() -> None:
    generated = [keys.generate() for _ in range(1000)]
    assert len(set(generated)) == 1000
    assert len({key[6:10] for key in generated}) > 990  # display prefixes tell keys apart
    assert all(keys.is_well_formed(key) for key in generated)


def test_generated_keys_use_the_whole_alphabet() -> None:
    characters = set("".join(keys.generate()[6:38] for _ in range(200)))
    assert characters == set(BASE62)


def test_the_checksum_matches_a_golden_value() -> None:
    assert keys.checksum(GOLDEN_RANDOM) == GOLDEN_CHECKSUM
    assert from_base62(GOLDEN_CHECKSUM) == zlib.crc32(GOLDEN_RANDOM.encode()) == 1546885699


@pytest.mark.parametrize("random_part", ["0" * 32, "z" * 32, "a" * 32, GOLDEN_RANDOM, "Zz" * 16])
def test_the_checksum_is_the_crc32_in_six_zero_padded_base62_digits(random_part: str) -> None:
    result = keys.checksum(random_part)
    assert len(result) == 6
    assert from_base62(result) == zlib.crc32(random_part.encode())


def test_a_small_crc_is_left_padded_with_zeros() -> None:
    # crc32 of the empty string is 0: the checksum is all padding
    assert keys.checksum("") == "000000"


@pytest.mark.parametrize("sample", range(5))
def test_the_checksum_detects_every_single_character_substitution(sample: int) -> None:
    key = GOLDEN_KEY if sample == 0 else keys.generate()
    for position in range(6, 44):
        for replacement in BASE62:
            if replacement == key[position]:
                continue
            typo = key[:position] + replacement + key[position + 1 :]
            with pytest.raises(keys.MalformedKey) as caught:
                keys.parse(typo)
            assert caught.value.reason == "BadChecksum"


def test_the_checksum_detects_swapped_neighbours() -> None:
    for position in range(6, 37):
        a, b = GOLDEN_KEY[position], GOLDEN_KEY[position + 1]
        if a != b:
            swapped = GOLDEN_KEY[:position] + b + a + GOLDEN_KEY[position + 2 :]
            assert not keys.is_well_formed(swapped)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "inori_",
        GOLDEN_KEY[:-1],
        GOLDEN_KEY + "0",
        "x" * 10_000,
        "INORI_" + GOLDEN_RANDOM + GOLDEN_CHECKSUM,
        "inori-" + GOLDEN_RANDOM + GOLDEN_CHECKSUM,
        "ghp_xx" + GOLDEN_RANDOM + GOLDEN_CHECKSUM,
        "inori_" + GOLDEN_RANDOM[:-1] + "_" + GOLDEN_CHECKSUM,
        "inori_" + GOLDEN_RANDOM[:-1] + "-" + GOLDEN_CHECKSUM,
        "inori_" + GOLDEN_RANDOM[:-1] + "é" + GOLDEN_CHECKSUM,
        "inori_" + GOLDEN_RANDOM[:-1] + "٣" + GOLDEN_CHECKSUM,  # a non-ASCII digit
        "inori_" + GOLDEN_RANDOM[:-1] + " " + GOLDEN_CHECKSUM,
        GOLDEN_KEY[:-1] + "\n",
        " " + GOLDEN_KEY[1:],
        "Bearer " + GOLDEN_KEY,
    ],
)
def test_text_of_the_wrong_length_prefix_or_alphabet_is_malformed(text: str) -> None:
    with pytest.raises(keys.MalformedKey) as caught:
        keys.parse(text)
    assert caught.value.reason == "Malformed"
    assert not keys.is_well_formed(text)


def test_a_non_string_is_malformed() -> None:
    with pytest.raises(keys.MalformedKey) as caught:
        keys.parse(None)  # type: ignore[arg-type]
    assert caught.value.reason == "Malformed"


def test_a_malformed_key_is_a_value_error_whose_message_never_contains_the_key() -> None:
    typo = GOLDEN_KEY[:-1] + ("0" if GOLDEN_KEY[-1] != "0" else "1")
    for text in (typo, GOLDEN_KEY + "x", GOLDEN_KEY[:-1] + "-"):
        with pytest.raises(ValueError) as caught:
            keys.parse(text)
        assert GOLDEN_RANDOM not in str(caught.value)
        assert GOLDEN_RANDOM[:8] not in str(caught.value)


def test_a_well_formed_key_parses_to_itself() -> None:
    assert keys.parse(GOLDEN_KEY) == GOLDEN_KEY
    assert keys.is_well_formed(GOLDEN_KEY)


def test_the_hash_is_the_hex_sha256_of_the_key_and_stable() -> None:
    assert keys.hash_key(GOLDEN_KEY) == GOLDEN_HASH
    assert keys.hash_key(GOLDEN_KEY) == keys.hash_key(GOLDEN_KEY)


def test_different_keys_have_different_hashes_that_do_not_contain_the_key() -> None:
    first, second = keys.generate(), keys.generate()
    assert keys.hash_key(first) != keys.hash_key(second)
    assert first[6:] not in keys.hash_key(first)
    assert re.fullmatch(r"[0-9a-f]{64}", keys.hash_key(first))


def test_the_display_prefix_is_the_prefix_and_four_random_characters() -> None:
    assert keys.display_prefix(GOLDEN_KEY) == "inori_0123"
    key = keys.generate()
    assert keys.display_prefix(key) == key[:10]


def test_the_display_prefix_of_a_malformed_key_is_refused() -> None:
    with pytest.raises(keys.MalformedKey):
        keys.display_prefix("inori_abc")
