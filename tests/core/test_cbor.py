"""Our own CBOR reader and writer (core/cbor.py).

Where the reader departs from RFC 8949 or picks one of several readings, it does what ciborium
(inside p2panda-js 0.8.1) does; those cases were checked by decoding operations with
``p2panda-js.decodeOperation`` and are marked "[JS]".
"""

import math
import struct
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.cbor import (
    UNDEFINED,
    CborMap,
    CborValue,
    Head,
    Simple,
    Tag,
    bignum_value,
    decode_head,
    decode_item,
    dumps,
    encode_float,
    loads,
)
from pandanode.core.errors import OperationDecodeError, Reason


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def assert_invalid(data: bytes) -> OperationDecodeError:
    with pytest.raises(OperationDecodeError) as info:
        loads(data)
    assert info.value.reason is Reason.INVALID_CBOR
    return info.value


# ---------------------------------------------------------------------------------------------
# Writer


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (23, "17"),
        (24, "18 18"),
        (255, "18 ff"),
        (256, "19 0100"),
        (65535, "19 ffff"),
        (65536, "1a 00010000"),
        (2**32 - 1, "1a ffffffff"),
        (2**32, "1b 0000000100000000"),
        (2**63 - 1, "1b 7fffffffffffffff"),
        (2**64 - 1, "1b ffffffffffffffff"),
        (-1, "20"),
        (-24, "37"),
        (-25, "38 18"),
        (-1000, "39 03e7"),
        (-(2**63), "3b 7fffffffffffffff"),
        (-(2**64), "3b ffffffffffffffff"),
    ],
)
def test_dumps_writes_integers_with_the_shortest_head(value: int, encoded: str) -> None:
    assert dumps(value) == h(encoded)
    assert loads(h(encoded)) == value


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (3.5, "f9 4300"),
        (1.0, "f9 3c00"),
        (0.5, "f9 3800"),
        (0.0, "f9 0000"),
        (-0.0, "f9 8000"),
        (65504.0, "f9 7bff"),
        (2.0**-24, "f9 0001"),  # smallest half-precision subnormal
        (100000.0, "fa 47c35000"),
        (65520.0, "fa 477ff000"),  # rounds to infinity in half precision
        (2.0**-25, "fa 33000000"),  # below the half-precision range
        (2.0**-149, "fa 00000001"),  # smallest single-precision subnormal
        (3.4028234663852886e38, "fa 7f7fffff"),
        (12.3, "fb 402899999999999a"),
        (0.1, "fb 3fb999999999999a"),
        (1e-8, "fb 3e45798ee2308c3a"),
        (1e300, "fb 7e37e43c8800759c"),
        (math.inf, "f9 7c00"),
        (-math.inf, "f9 fc00"),
        (math.nan, "f9 7e00"),
    ],
)
def test_dumps_writes_floats_in_the_shortest_exact_width_like_p2panda(
    value: float, encoded: str
) -> None:
    # Spec §3.2 table; the subnormal and rounding rows were checked with p2panda-js [JS].
    assert encode_float(value) == h(encoded)
    assert dumps(value) == h(encoded)


def test_dumps_writes_every_nan_as_the_canonical_half_precision_nan() -> None:
    quiet_with_payload = struct.unpack(">d", h("7ff8000000000001"))[0]
    negative_nan = struct.unpack(">d", h("fff8000000000000"))[0]
    assert dumps(quiet_with_payload) == h("f9 7e00")
    assert dumps(negative_nan) == h("f9 7e00")


def test_dumps_writes_text_bytes_arrays_and_maps_with_definite_lengths() -> None:
    assert dumps("しろくま") == h("6c e38197 e3828d e3818f e381be")
    assert dumps(b"hello") == h("45 68656c6c6f")
    assert dumps("") == h("60")
    assert dumps(b"") == h("40")
    assert dumps([]) == h("80")
    assert dumps((1, [2, 3])) == h("82 01 82 02 03")
    assert dumps("x" * 24) == h("78 18") + b"x" * 24
    assert dumps(b"\x00" * 256) == h("59 0100") + b"\x00" * 256


def test_dumps_writes_map_entries_in_the_order_given_without_sorting() -> None:
    value = CborMap((("b", 1), ("aa", 2), ("b", 3)))
    assert dumps(value) == h("a3 6162 01 626161 02 6162 03")


def test_dumps_writes_booleans_not_integers() -> None:
    assert dumps(True) == h("f5")
    assert dumps(False) == h("f4")
    assert dumps([True, 1, False, 0]) == h("84 f5 01 f4 00")


def test_dumps_writes_null_undefined_simple_values_and_tags() -> None:
    assert dumps(None) == h("f6")
    assert dumps(UNDEFINED) == h("f7")
    assert dumps(Simple(16)) == h("f0")
    assert dumps(Simple(255)) == h("f8 ff")
    assert dumps(Tag(0, "x")) == h("c0 6178")
    assert dumps(Tag(24, b"")) == h("d8 18 40")


@pytest.mark.parametrize("value", [2**64, -(2**64) - 1, 10**40])
def test_dumps_rejects_integers_outside_the_cbor_head_range(value: int) -> None:
    with pytest.raises(OperationDecodeError) as info:
        dumps(value)
    assert info.value.reason is Reason.INVALID_CBOR


@pytest.mark.parametrize("value", [Simple(20), Simple(24), Simple(31), Simple(256)])
def test_dumps_rejects_simple_values_that_have_their_own_python_value_or_no_encoding(
    value: Simple,
) -> None:
    with pytest.raises(OperationDecodeError):
        dumps(value)


def test_dumps_rejects_python_types_without_a_cbor_counterpart() -> None:
    with pytest.raises(OperationDecodeError, match="set"):
        dumps(cast(Any, {1, 2}))
    with pytest.raises(OperationDecodeError, match="dict"):
        dumps(cast(Any, {"a": 1}))


def test_dumps_rejects_text_with_lone_surrogates() -> None:
    with pytest.raises(OperationDecodeError, match="UTF-8"):
        dumps("\ud800")


# ---------------------------------------------------------------------------------------------
# Reader: what is accepted


@pytest.mark.parametrize(
    "encoded",
    ["01", "18 01", "19 0001", "1a 00000001", "1b 0000000000000001"],
)
def test_loads_accepts_non_minimal_integer_heads(encoded: str) -> None:
    assert loads(h(encoded)) == 1


def test_loads_accepts_non_minimal_length_heads() -> None:
    assert loads(h("78 01 61")) == "a"
    assert loads(h("59 0001 ff")) == b"\xff"
    assert loads(h("98 01 01")) == [1]
    assert loads(h("b9 0001 6161 01")) == CborMap((("a", 1),))


def test_loads_reads_negative_integers_down_to_minus_two_to_the_64() -> None:
    assert loads(h("20")) == -1
    assert loads(h("3b ffffffffffffffff")) == -(2**64)


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("f9 4300", 3.5),
        ("fa 40600000", 3.5),
        ("fb 400c000000000000", 3.5),
        ("f9 0001", 2.0**-24),
        ("f9 7bff", 65504.0),
        ("f9 7c00", math.inf),
        ("f9 fc00", -math.inf),
        ("fa 7f800000", math.inf),
    ],
)
def test_loads_reads_floats_of_every_width(encoded: str, value: float) -> None:
    assert loads(h(encoded)) == value


def test_loads_reads_negative_zero_and_nans_with_payloads() -> None:
    negative_zero = loads(h("f9 8000"))
    assert isinstance(negative_zero, float)
    assert math.copysign(1.0, negative_zero) == -1.0
    for encoded in ["f9 7e00", "f9 7e01", "fa 7fc00001", "fb 7ff8000000000001"]:
        value = loads(h(encoded))
        assert isinstance(value, float)
        assert math.isnan(value)


def test_loads_joins_indefinite_length_strings() -> None:
    assert loads(h("5f 41 61 42 6263 ff")) == b"abc"
    assert loads(h("7f 61 61 62 6262 ff")) == "abb"
    assert loads(h("5f ff")) == b""
    assert loads(h("7f ff")) == ""
    assert loads(h("7f 78 01 61 ff")) == "a"  # a chunk may itself have a non-minimal head


def test_loads_flattens_nested_indefinite_length_strings_like_ciborium() -> None:
    # RFC 8949 allows only definite chunks; ciborium (p2panda) accepts nesting [JS].
    assert loads(h("7f 7f 61 61 ff 61 62 ff")) == "ab"
    assert loads(h("7f 7f 7f 61 61 ff ff ff")) == "a"
    assert loads(h("5f 5f 5f 41 61 ff ff 41 62 ff")) == b"ab"
    assert loads(h("7f 7f ff ff")) == ""


def test_loads_reads_indefinite_length_arrays_and_maps() -> None:
    assert loads(h("9f 01 9f 02 ff ff")) == [1, [2]]
    assert loads(h("bf 6161 01 6162 9f ff ff")) == CborMap((("a", 1), ("b", [])))
    assert loads(h("9f ff")) == []


def test_loads_keeps_map_entries_in_wire_order_with_duplicates() -> None:
    value = loads(h("a3 6162 01 626161 02 6162 03"))
    assert value == CborMap((("b", 1), ("aa", 2), ("b", 3)))


def test_loads_keeps_non_text_map_keys() -> None:
    assert loads(h("a2 01 02 41 00 f6")) == CborMap(((1, 2), (b"\x00", None)))


def test_loads_reads_simple_values() -> None:
    assert loads(h("f4")) is False
    assert loads(h("f5")) is True
    assert loads(h("f6")) is None
    assert loads(h("f7")) == UNDEFINED
    assert loads(h("e0")) == Simple(0)
    assert loads(h("f3")) == Simple(19)
    assert loads(h("f8 20")) == Simple(32)
    assert loads(h("f8 ff")) == Simple(255)


def test_loads_reads_two_byte_false_true_null_like_ciborium() -> None:
    # Not well-formed per RFC 8949, but p2panda-js decodes `f8 15` as true [JS].
    assert loads(h("f8 14")) is False
    assert loads(h("f8 15")) is True
    assert loads(h("f8 16")) is None
    assert loads(h("f8 17")) == UNDEFINED
    assert loads(h("f8 10")) == Simple(16)


def test_loads_reads_tags_as_tag_values() -> None:
    assert loads(h("c0 6178")) == Tag(0, "x")
    assert loads(h("d8 18 40")) == Tag(24, b"")
    assert loads(h("c1 c0 01")) == Tag(1, Tag(0, 1))


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("c2 41 01", 1),
        ("c2 40", 0),
        ("c2 41 00", 0),
        ("c2 58 01 01", 1),  # non-minimal length head
        ("c3 41 00", -1),
        ("c3 49 000000000000000001", -2),  # leading zeros
        ("c2 48 8000000000000000", 2**63),
        ("c2 50" + "ff" * 16, 2**128 - 1),
        ("c3 50" + "ff" * 16, -(2**128)),
    ],
)
def test_loads_reads_bignums_of_up_to_sixteen_bytes_as_integers(encoded: str, value: int) -> None:
    assert loads(h(encoded)) == value


@pytest.mark.parametrize(
    ("encoded", "tag"),
    [
        ("c2 51" + "00" * 16 + "01", Tag(2, bytes(16) + b"\x01")),  # 17 bytes [JS: rejected]
        ("c2 5f 41 01 ff", Tag(2, b"\x01")),  # indefinite content [JS: rejected]
        ("c2 61 61", Tag(2, "a")),
        ("c2 c2 41 01", Tag(2, 1)),
    ],
)
def test_loads_leaves_other_bignum_tags_as_tags(encoded: str, tag: Tag) -> None:
    assert loads(h(encoded)) == tag


def test_bignum_value_reads_leftover_bignum_tags() -> None:
    assert bignum_value(Tag(2, bytes(16) + b"\x01")) == 1
    assert bignum_value(Tag(3, b"\x01")) == -2
    assert bignum_value(Tag(2, "a")) is None
    assert bignum_value(Tag(0, b"\x01")) is None


def test_decode_item_returns_the_end_offset_and_ignores_what_follows() -> None:
    assert decode_item(h("82 01 02 ff ff")) == ([1, 2], 3)
    assert decode_item(h("00 61 61"), 1) == ("a", 3)
    assert decode_item(bytearray(h("01"))) == (1, 1)
    assert decode_item(memoryview(h("01"))) == (1, 1)


def test_decode_head_reads_only_the_head() -> None:
    assert decode_head(h("84 01")) == Head(4, 4, 4, 1)
    assert decode_head(h("9f ff")) == Head(4, 31, None, 1)
    assert decode_head(h("19 0100")) == Head(0, 25, 256, 3)
    assert decode_head(h("00 c0 01"), 1) == Head(6, 0, 0, 2)
    assert decode_head(h("f9 7c00")) == Head(7, 25, 0x7C00, 3)
    assert decode_head(h("ff")) == Head(7, 31, None, 1)


@pytest.mark.parametrize("encoded", ["", "19 01", "1c", "df", "3f"])
def test_decode_head_rejects_truncated_and_reserved_heads(encoded: str) -> None:
    with pytest.raises(OperationDecodeError) as info:
        decode_head(h(encoded))
    assert info.value.reason is Reason.INVALID_CBOR


# ---------------------------------------------------------------------------------------------
# Reader: what is rejected


@pytest.mark.parametrize("major", range(8))
@pytest.mark.parametrize("info", [28, 29, 30])
def test_loads_rejects_reserved_additional_information(major: int, info: int) -> None:
    assert_invalid(bytes([major << 5 | info]) + bytes(8))


@pytest.mark.parametrize("initial", [0x1F, 0x3F, 0xDF])
def test_loads_rejects_indefinite_length_integers_and_tags(initial: int) -> None:
    assert_invalid(bytes([initial, 0x00, 0xFF]))


def test_loads_rejects_a_break_code_outside_an_indefinite_item() -> None:
    assert_invalid(h("ff"))
    assert_invalid(h("82 01 ff"))
    assert_invalid(h("a1 ff 01"))


def test_loads_rejects_chunks_of_another_type_in_indefinite_strings() -> None:
    assert_invalid(h("5f 61 61 ff"))  # text chunk in a byte string
    assert_invalid(h("7f 41 61 ff"))  # byte chunk in a text string [JS: rejected]
    assert_invalid(h("7f 5f 41 61 ff ff"))  # nested indefinite of the other type [JS]
    assert_invalid(h("5f 01 ff"))


def test_loads_rejects_invalid_utf8_in_text_strings() -> None:
    assert_invalid(h("62 c3 28"))
    assert_invalid(h("63 eda080"))  # an encoded surrogate
    assert_invalid(h("61 ff"))


def test_loads_rejects_a_character_split_across_text_chunks() -> None:
    # RFC 8949 and ciborium agree: every chunk is valid UTF-8 on its own [JS: rejected].
    assert_invalid(h("7f 61 c3 61 a9 ff"))
    assert loads(h("7f 62 c3a9 ff")) == "é"


@pytest.mark.parametrize(
    "encoded",
    [
        "18",
        "19 01",
        "1a 000000",
        "1b 00000000000000",
        "41",
        "62 61",
        "82 01",
        "a1 01",
        "9f 01",
        "bf 01 02",
        "5f 41 61",
        "7f",
        "c0",
        "f8",
        "f9 00",
        "fa 000000",
        "fb 00000000000000",
    ],
)
def test_loads_rejects_truncated_input(encoded: str) -> None:
    error = assert_invalid(h(encoded))
    assert "end of input" in error.message


def test_loads_rejects_every_proper_prefix_of_a_valid_item() -> None:
    whole = dumps([1, "abc", b"\x00\x01", CborMap((("k", [2.5, None]),)), Tag(5, -300)])
    for end in range(len(whole)):
        assert_invalid(whole[:end])


def test_loads_rejects_huge_declared_lengths_without_allocating() -> None:
    assert_invalid(h("5b ffffffffffffffff"))
    assert_invalid(h("9b ffffffffffffffff 00"))
    assert_invalid(h("bb ffffffffffffffff 00 00"))
    assert_invalid(h("7b 7fffffffffffffff 61"))


def test_loads_rejects_trailing_bytes() -> None:
    error = assert_invalid(h("01 02"))
    assert "trailing" in error.message


def test_loads_bounds_nesting_depth() -> None:
    assert loads(h("81" * 32 + "00")) is not None  # MAX_DEPTH containers may nest
    assert_invalid(h("81" * 33 + "00"))
    assert_invalid(h("c0" * 40 + "00"))
    assert_invalid(h("a1 00" * 40 + "00"))
    assert_invalid(h("7f" * 40 + "ff" * 40))
    assert_invalid(h("81" * 5000 + "00"))
    assert loads(h("81 81 00"), max_depth=2) == [[0]]
    with pytest.raises(OperationDecodeError, match="too deeply"):
        loads(h("81 81 00"), max_depth=1)


# ---------------------------------------------------------------------------------------------
# Properties


def _nan_safe(value: CborValue) -> CborValue:
    """Map NaN to a marker so that structures containing NaN compare equal."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN-marker"
    if isinstance(value, float) and value == 0.0:
        return ("zero", math.copysign(1.0, value))
    if isinstance(value, (list, tuple)):
        return [_nan_safe(item) for item in value]
    if isinstance(value, CborMap):
        return CborMap(tuple((_nan_safe(k), _nan_safe(v)) for k, v in value.items))
    if isinstance(value, Tag):
        return Tag(value.tag, _nan_safe(value.value))
    return value


_scalars = (
    st.booleans()
    | st.none()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(width=16)
    | st.floats(width=32)
    | st.text()
    | st.binary()
    | st.sampled_from([UNDEFINED, Simple(0), Simple(19), Simple(32), Simple(255)])
)
_values: st.SearchStrategy[CborValue] = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.lists(st.tuples(children, children), max_size=5).map(
            lambda pairs: CborMap(tuple(pairs))
        )
        | st.builds(Tag, st.integers(min_value=4, max_value=2**64 - 1), children)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_values)
def test_loads_of_dumps_is_identity(value: CborValue) -> None:
    assert _nan_safe(loads(dumps(value))) == _nan_safe(value)


@settings(max_examples=300)
@given(_values)
def test_dumps_is_canonical_so_reencoding_is_stable(value: CborValue) -> None:
    encoded = dumps(value)
    assert dumps(loads(encoded)) == encoded


def _fits(fmt: str, value: float) -> bool:
    try:
        return bool(struct.unpack(fmt, struct.pack(fmt, value))[0] == value)
    except OverflowError:
        return False


@settings(max_examples=300)
@given(
    st.floats(allow_nan=False)
    | st.floats(width=32, allow_nan=False)
    | st.floats(width=16, allow_nan=False)
)
def test_encode_float_is_exact_and_no_wider_than_needed(value: float) -> None:
    encoded = encode_float(value)
    decoded = loads(encoded)
    assert isinstance(decoded, float)
    assert decoded == value
    assert math.copysign(1.0, decoded) == math.copysign(1.0, value)
    width = {3: ">e", 5: ">f", 9: ">d"}[len(encoded)]
    assert _fits(width, value)
    if width != ">e":
        assert not _fits(">e", value)
    if width == ">d":
        assert not _fits(">f", value)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_loads_of_arbitrary_bytes_raises_only_operation_decode_error(data: bytes) -> None:
    try:
        loads(data)
    except OperationDecodeError as err:
        assert err.reason is Reason.INVALID_CBOR


@settings(max_examples=300)
@given(_values, st.data())
def test_loads_of_corrupted_encodings_raises_only_operation_decode_error(
    value: CborValue, data: st.DataObject
) -> None:
    encoded = bytearray(dumps(value))
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        loads(bytes(encoded))
    except OperationDecodeError as err:
        assert err.reason is Reason.INVALID_CBOR
