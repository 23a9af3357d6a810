"""is_hex: hex digits only (lowercase ones when asked), of a given length, nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pandanode.core.hexid import HEX_DIGITS, LOWER_HEX_DIGITS, is_hash_hex, is_hex

HASH = "0020" + "ab12cd34" * 8


def _by_the_definition(text: str, length: int | None, lowercase: bool) -> bool:
    digits = LOWER_HEX_DIGITS if lowercase else HEX_DIGITS
    return (length is None or len(text) == length) and all(c in digits for c in text)


def test_a_lowercase_hash_is_hex_of_its_length() -> None:
    assert is_hex(HASH, 68, lowercase=True)
    assert is_hash_hex(HASH, lowercase=True)
    assert not is_hex(HASH, 66, lowercase=True)


def test_uppercase_digits_pass_only_when_case_is_free() -> None:
    assert is_hex(HASH.upper(), 68)
    assert not is_hex(HASH.upper(), 68, lowercase=True)


def test_whitespace_signs_and_other_scripts_digits_are_not_hex() -> None:
    for text in (HASH[:-1] + "\n", HASH + "\n", " " + HASH[1:], "+1", "١٢", "ａｂ", "0x12", "g0"):
        assert not is_hex(text), repr(text)
        assert not is_hex(text, lowercase=True), repr(text)


def test_without_a_length_any_length_passes_also_none() -> None:
    assert is_hex("")
    assert is_hex("abc", lowercase=True)


@given(
    st.text(alphabet=st.sampled_from("0123456789abcdefABCDEFgz \n\t١ａ_"), max_size=80),
    st.one_of(st.none(), st.integers(min_value=0, max_value=80)),
    st.booleans(),
)
def test_is_hex_agrees_with_the_definition(text: str, length: int | None, lowercase: bool) -> None:
    assert is_hex(text, length, lowercase=lowercase) == _by_the_definition(text, length, lowercase)
