import pytest
from hypothesis import given
from hypothesis import strategies as st

from pandanode.core.errors import DecodeError, Reason
from pandanode.core.varu64 import MAX_U64, decode_varu64, encode_varu64

SPEC_TABLE = [
    (0, "00"),
    (1, "01"),
    (247, "f7"),
    (248, "f8f8"),
    (255, "f8ff"),
    (256, "f90100"),
    (300, "f9012c"),
    (65535, "f9ffff"),
    (65536, "fa010000"),
    (2**32, "fc0100000000"),
    (MAX_U64, "ffffffffffffffffff"),
]


@pytest.mark.parametrize(("value", "encoding"), SPEC_TABLE)
def test_encode_matches_the_spec_table(value: int, encoding: str) -> None:
    assert encode_varu64(value).hex() == encoding


@pytest.mark.parametrize(("value", "encoding"), SPEC_TABLE)
def test_decode_matches_the_spec_table(value: int, encoding: str) -> None:
    data = bytes.fromhex(encoding)
    assert decode_varu64(data) == (value, len(data))


@pytest.mark.parametrize("encoding", ["f805", "f900ff", "fa00ffff", "ff00ffffffffffffff"])
def test_decode_rejects_non_canonical_encodings(encoding: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_varu64(bytes.fromhex(encoding), name="log_id")
    assert info.value.reason == Reason.NON_CANONICAL_VARU64
    assert "log_id" in info.value.message


@pytest.mark.parametrize("encoding", ["", "f8", "f901", "ffffffff"])
def test_decode_rejects_truncated_input(encoding: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_varu64(bytes.fromhex(encoding))
    assert info.value.reason == Reason.INVALID_VARU64


def test_encode_refuses_values_outside_u64() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_varu64(MAX_U64 + 1)
    with pytest.raises(ValueError, match="out of range"):
        encode_varu64(-1)


@given(st.integers(min_value=0, max_value=MAX_U64))
def test_encode_then_decode_is_identity(value: int) -> None:
    data = encode_varu64(value) + b"\xaa"
    assert decode_varu64(data) == (value, len(data) - 1)


@given(st.binary(max_size=12))
def test_decode_of_arbitrary_bytes_only_raises_decode_errors(data: bytes) -> None:
    try:
        value, end = decode_varu64(data)
    except DecodeError:
        return
    assert encode_varu64(value) == data[:end]
