"""decode_operation's fast path (cbor2 C decoder + canonical re-encode) vs the general reader.

The fast path may only ever answer for bytes that p2panda itself would write, and then exactly as
the general reader does; everything else (lenient encodings, invalid bytes) must reach the general
reader, so accept / reject, values, error reasons and messages stay the same.
"""

import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.cbor import encode_float
from pandanode.core.errors import PandanodeError
from pandanode.core.operation import (
    Action,
    FieldValue,
    PinnedRelationList,
    RelationList,
    _decode_canonical,
    _decode_general,
    decode_operation,
    encode_operation,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


SID = "venue_0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
A = "0020" + "ab" * 32
B = "0020" + "cd" * 32
SID_CBOR = h("78 4a") + SID.encode()  # the schema id as a text string (74 bytes)
HEAD = h("84 01 00") + SID_CBOR  # a CREATE array of 4: version, action, schema id


def outcome(decode: object, data: bytes) -> tuple[str, ...]:
    """What decoding ``data`` gives: the operation's repr, or the error's type, reason, text."""
    assert callable(decode)
    try:
        return ("ok", repr(decode(data)))
    except PandanodeError as err:
        return ("error", type(err).__name__, str(err.reason), str(err))


assert len(SID) == 0x4A


def assert_same_as_general(data: bytes) -> None:
    assert outcome(decode_operation, data) == outcome(_decode_general, data), data.hex()


CANONICAL = [
    encode_operation(schema_id=SID, fields={"title": "item", "rank": 7, "done": False}),
    encode_operation(schema_id=SID, fields={"a": 1.5, "b": 3.4028234663852886e38, "c": 0.1}),
    encode_operation(schema_id=SID, fields={"nan": math.nan, "inf": -math.inf, "zero": -0.0}),
    encode_operation(schema_id=SID, fields={"big": 2**63 - 1, "small": -(2**63), "raw": b"\x00"}),
    encode_operation(schema_id=SID, fields={"": "empty name", "ünï": "cödé ✓"}),
    encode_operation(schema_id=SID, fields={}),
    encode_operation(action="update", schema_id=SID, previous=[A], fields={"title": "v2"}),
    encode_operation(action="update", schema_id=SID, previous=[A, B], fields={"n": -1}),
    encode_operation(action="delete", schema_id=SID, previous=[A, B]),
    encode_operation(schema_id=SID, fields={"members": RelationList([B, A, B]), "none": b""}),
    encode_operation(schema_id=SID, fields={"empty": RelationList([])}),
    encode_operation(
        schema_id="schema_definition_v1",
        fields={"description": "d", "fields": PinnedRelationList([[A], [A, B]]), "name": "x"},
    ),
    encode_operation(schema_id="blob_v1", fields={"pins": PinnedRelationList([[]])}),
]


@pytest.mark.parametrize("data", CANONICAL, ids=lambda data: data.hex()[:24])
def test_operations_encoded_as_p2panda_does_take_the_fast_path_and_read_as_the_general_reader(
    data: bytes,
) -> None:
    fast = _decode_canonical(data)
    assert fast is not None
    assert repr(fast) == repr(_decode_general(data))
    assert repr(decode_operation(data)) == repr(fast)


# Encodings cbor2 reads differently from p2panda (or reads at all where p2panda does not), and
# lenient ones p2panda accepts: each must be answered by the general reader.
LEFT_TO_THE_GENERAL_READER = {
    "non-minimal integer head": HEAD + h("a1 61 61 18 01"),
    "non-minimal length of a text string": h("84 01 00 79 00 4a") + SID.encode() + h("a0"),
    "indefinite top-level array with trailing garbage": h("9f 01 00") + SID_CBOR + h("a0 ff ff"),
    "indefinite-length text string": HEAD + h("a1 61 61 7f 61 78 ff"),
    "indefinite-length map": HEAD + h("bf 61 61 01 ff"),
    "trailing bytes after the operation": HEAD + h("a0 00"),
    "duplicate field names": HEAD + h("a2 61 61 01 61 61 02"),
    "unsorted field names": HEAD + h("a2 61 62 01 61 61 02"),
    "float written wider than needed": HEAD + h("a1 61 61 fb 3f f8 00 00 00 00 00 00"),
    "NaN with a payload": HEAD + h("a1 61 61 f9 7e 01"),
    "self-described CBOR tag around a field value": HEAD + h("a1 61 61 d9 d9 f7 01"),
    "self-described CBOR tag around the operation": h("d9 d9 f7") + HEAD + h("a0"),
    "bignum of 1 over 17 bytes as a field value": HEAD + h("a1 61 61 c2 51") + bytes(16) + b"\x01",
    "bignum around the version": h("84 c2 41 01 00") + SID_CBOR + h("a0"),
    "tag around a field name": HEAD + h("a1 c1 61 61 01"),
    "epoch date tag as a field value": HEAD + h("a1 61 61 c1 01"),
    "string reference tags": HEAD + h("d9 01 00 a2 61 61 63 78 79 7a 61 62 d8 19 00"),
    "shared value tags": HEAD + h("a2 61 61 d8 1c 81 01 61 62 d8 1d 00"),
    "two-byte simple value true": HEAD + h("a1 61 61 f8 15"),
    "undefined as a field value": HEAD + h("a1 61 61 f7"),
    "integer beyond i64": HEAD + h("a1 61 61 1b 80 00 00 00 00 00 00 00"),
    "previous as text": h("85 01 01") + SID_CBOR + h("78 44") + A.encode() + h("a1 61 61 01"),
    "previous unsorted": h("85 01 01")
    + SID_CBOR
    + h("82 58 22")
    + h(B)
    + h("58 22")
    + h(A)
    + h("a0"),
    "previous empty": h("85 01 01") + SID_CBOR + h("80 a0"),
    "relation of 33 bytes": HEAD + h("a1 61 61 81 58 21") + h(A)[:33],
    "hash of unknown type in a list": HEAD + h("a1 61 61 81 58 22 01") + h(A)[1:],
    "CREATE with previous": h("85 01 00") + SID_CBOR + h("81 58 22") + h(A) + h("a0"),
    "DELETE with fields": h("85 01 02") + SID_CBOR + h("81 58 22") + h(A) + h("a0"),
    "too few items": HEAD,
    "version 2": h("84 02 00") + SID_CBOR + h("a0"),
    "version true": h("84 f5 00") + SID_CBOR + h("a0"),
    "unknown action": h("84 01 03") + SID_CBOR + h("a0"),
    "malformed schema id": h("84 01 00 65") + b"venue" + h("a0"),
    "schema id as bytes": h("84 01 00 58 4a") + SID.encode() + h("a0"),
    "invalid UTF-8 in a text field": HEAD + h("a1 61 61 62 c3 28"),
    "encoded surrogate in a field name": HEAD + h("a1 63 ed a0 80 01"),
    "nested too deeply": HEAD + h("a1 61 61 81 81 81 81 01"),
    "truncated": CANONICAL[0][:-1],
    "empty": b"",
}


@pytest.mark.parametrize(
    "data", LEFT_TO_THE_GENERAL_READER.values(), ids=LEFT_TO_THE_GENERAL_READER.keys()
)
def test_anything_p2panda_would_not_write_is_left_to_the_general_reader(data: bytes) -> None:
    assert _decode_canonical(data) is None
    assert_same_as_general(data)


def test_floats_are_accepted_only_in_their_shortest_width() -> None:
    for value in (0.0, 1.5, 65504.0, 1e-7, 0.1, 1e300):
        shortest = HEAD + h("a1 61 61") + encode_float(value)
        assert _decode_canonical(shortest) is not None
        double = HEAD + h("a1 61 61 fb") + struct.pack(">d", value)
        if double != shortest:
            assert _decode_canonical(double) is None
            assert_same_as_general(double)


_ids = st.binary(min_size=32, max_size=32).map(lambda raw: "0020" + raw.hex())
_names = st.text(min_size=0, max_size=6)
_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.binary(max_size=40),
    st.lists(_ids, max_size=3).map(RelationList),
    st.lists(st.lists(_ids, max_size=2), max_size=2).map(PinnedRelationList),
)


@st.composite
def operations(draw: st.DrawFn) -> bytes:
    action: Action = draw(st.sampled_from(["create", "update", "delete"]))
    previous = None
    if action != "create":
        previous = sorted(set(draw(st.lists(_ids, min_size=1, max_size=3))))
    fields = None
    if action != "delete":
        fields = draw(st.dictionaries(_names, _values, max_size=5))
    return encode_operation(action=action, schema_id=SID, previous=previous, fields=fields)


SPECIAL_BYTES = (0x00, 0x17, 0x18, 0x1F, 0x40, 0x5F, 0x7F, 0x9F, 0xBF, 0xC2, 0xD9, 0xF5, 0xF9, 0xFF)


def mutate(seed: int, data: bytes) -> bytes:
    rng = random.Random(seed)
    raw = bytearray(data)
    i = rng.randrange(len(raw))
    kind = rng.randrange(5)
    if kind == 0:
        raw[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        raw[i] = rng.choice(SPECIAL_BYTES)
    elif kind == 2:
        del raw[i]
    elif kind == 3:
        raw.insert(i, rng.choice(SPECIAL_BYTES))
    else:
        raw[i] = (raw[i] + rng.choice((-1, 1))) % 256
    return bytes(raw)


@settings(max_examples=300, deadline=None)
@given(operations())
def test_every_operation_p2panda_writes_takes_the_fast_path_with_the_same_result(
    data: bytes,
) -> None:
    fast = _decode_canonical(data)
    assert fast is not None
    assert repr(fast) == repr(_decode_general(data))


@settings(max_examples=1000, deadline=None)
@given(operations(), st.integers(min_value=0, max_value=2**32), st.integers(1, 3))
def test_mutated_operations_decode_exactly_as_the_general_reader_decodes_them(
    data: bytes, seed: int, rounds: int
) -> None:
    for n in range(rounds):
        data = mutate(seed + n, data)
    assert_same_as_general(data)


def test_the_canonical_nan_reads_bit_for_bit_as_the_general_reader_reads_it() -> None:
    data = HEAD + h("a1 61 61 f9 7e 00")
    fast, general = _decode_canonical(data), _decode_general(data)
    assert fast is not None and fast.fields is not None and general.fields is not None
    assert struct.pack(">d", fast.fields["a"]) == struct.pack(">d", general.fields["a"])


def test_nans_with_other_payloads_or_signs_are_left_to_the_general_reader() -> None:
    # cbor2 reads half-precision NaN payloads differently from the general reader (struct).
    for bits in [*range(0x7C01, 0x8000), *range(0xFC01, 0x10000)]:
        if bits == 0x7E00:
            continue
        data = HEAD + h("a1 61 61 f9") + bits.to_bytes(2, "big")
        assert _decode_canonical(data) is None, hex(bits)
