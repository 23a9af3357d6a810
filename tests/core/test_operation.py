"""Operations: encoding, decoding and p2panda's rules (spec §3).

Behaviour marked "[JS]" was checked against p2panda-js 0.8.1 (``decodeOperation`` and
``encodeOperation``) while writing this module; the permanent interop suite lives in
tests/interop.
"""

import contextlib
import math
from collections.abc import Mapping
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.cbor import CborMap, CborValue, dumps
from pandanode.core.errors import (
    DecodeError,
    OperationDecodeError,
    PandanodeError,
    Reason,
    SchemaIdError,
)
from pandanode.core.operation import (
    Action,
    FieldValue,
    Operation,
    PinnedRelation,
    PinnedRelationList,
    PlainValue,
    Relation,
    RelationList,
    decode_operation,
    encode_operation,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


SID = "venue_0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
H1 = "0020" + "11" * 32
H2 = "0020" + "22" * 32
H3 = "0020" + "33" * 32
A = "0020" + "ab" * 32
B = "0020" + "cd" * 32
#: The bytes of a CREATE of SID up to the value of its single field "a".
FIELD_A_PREFIX = h("84 01 00") + dumps(SID) + h("a1 61 61")


def raw(*items_hex: str, head: str | None = None) -> bytes:
    """Build an operation from raw item encodings (so any of them can be malformed)."""
    prefix = head if head is not None else f"{0x80 | len(items_hex):02x}"
    return h(prefix + "".join(items_hex))


def enc(value: CborValue) -> str:
    encoded: bytes = dumps(value)
    return encoded.hex()


def create_with(value_hex: str, key: str = "a") -> bytes:
    """A CREATE of SID whose one field ``key`` is encoded as ``value_hex``."""
    return raw("01", "00", enc(SID), "a1" + enc(key) + value_hex)


def update_with(previous_hex: str, fields_hex: str | None = None) -> bytes:
    return raw("01", "01", enc(SID), previous_hex, fields_hex or "a1" + enc("a") + "01")


def decode_error(data: bytes) -> OperationDecodeError:
    with pytest.raises(OperationDecodeError) as info:
        decode_operation(data)
    return info.value


def field_a(data: bytes) -> PlainValue:
    fields = decode_operation(data).fields
    assert fields is not None
    return fields["a"]


# ---------------------------------------------------------------------------------------------
# Spec vectors


def test_encode_reproduces_the_create_worked_example() -> None:
    # §3.1, and the §11.6 field definition operation.
    expected = h(
        "840100781a736368656d615f6669656c645f646566696e6974696f6e5f7631"
        "a2646e616d656576656e7565647479706563737472"
    )
    encoded = encode_operation(
        schema_id="schema_field_definition_v1", fields={"type": "str", "name": "venue"}
    )
    assert encoded == expected
    assert len(encoded) == 52
    op = decode_operation(expected)
    assert op == Operation(
        1, "create", "schema_field_definition_v1", None, {"name": "venue", "type": "str"}
    )
    assert op.to_bytes() == expected


def test_encode_reproduces_the_update_and_delete_examples() -> None:
    update = encode_operation(
        action="update",
        schema_id="schema_field_definition_v1",
        previous=[H1],
        fields={"name": "venue2"},
    )
    assert update == (
        h("85 01 01 78 1a")
        + b"schema_field_definition_v1"
        + h("81 58 22")
        + h(H1)
        + h("a1 64")
        + b"name"
        + h("66")
        + b"venue2"
    )
    delete = encode_operation(action="delete", schema_id=SID, previous=[H1])
    assert delete == h("84 01 02 78 4a") + SID.encode() + h("81 58 22") + h(H1)
    assert decode_operation(delete) == Operation(1, "delete", SID, (H1,), None)
    assert decode_operation(update).previous == (H1,)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (True, "f5"),
        (False, "f4"),
        (0, "00"),
        (23, "17"),
        (24, "18 18"),
        (-1, "20"),
        (-1000, "39 03 e7"),
        (2**63 - 1, "1b 7fffffffffffffff"),
        (-(2**63), "3b 7fffffffffffffff"),
        (3.5, "f9 43 00"),
        (1.0, "f9 3c 00"),
        (0.5, "f9 38 00"),
        (-0.0, "f9 80 00"),
        (65504.0, "f9 7b ff"),
        (100000.0, "fa 47 c3 50 00"),
        (3.4028234663852886e38, "fa 7f 7f ff ff"),
        (12.3, "fb 40 28 99 99 99 99 99 9a"),
        (0.1, "fb 3f b9 99 99 99 99 99 9a"),
        (1e-8, "fb 3e 45 79 8e e2 30 8c 3a"),
        (math.nan, "f9 7e 00"),
        (math.inf, "f9 7c 00"),
        ("しろくま", "6c e3 81 97 e3 82 8d e3 81 8f e3 81 be"),
        (b"hello", "45 68 65 6c 6c 6f"),
        (Relation(H1), "58 22" + H1),
        (RelationList([H1, H2, H1]), "83 5822" + H1 + "5822" + H2 + "5822" + H1),
        (PinnedRelation([H2, H1]), "82 5822" + H1 + "5822" + H2),
        (
            PinnedRelationList([[H1], [H2, H1]]),
            "82 81 5822" + H1 + "82 5822" + H1 + "5822" + H2,
        ),
        (RelationList([]), "80"),
        (PinnedRelationList([]), "80"),
    ],
)
def test_encode_reproduces_every_row_of_the_field_encoding_table(
    value: FieldValue, encoded: str
) -> None:
    # §3.2 "Encoding of each type as p2panda emits it".
    assert encode_operation(schema_id=SID, fields={"a": value}) == FIELD_A_PREFIX + h(encoded)


def test_encode_reproduces_the_blob_piece_example() -> None:
    # §10.1
    expected = h("8401006d626c6f625f70696563655f7631a164646174614568656c6c6f")
    assert encode_operation(schema_id="blob_piece_v1", fields={"data": b"hello"}) == expected
    assert decode_operation(expected).fields == {"data": b"hello"}


VECTOR_A = h(
    "840100784a76656e75655f303032306336353536376165333765666561323933653334613963376431336638"
    "6632626632336462646333623563376239616234363239333131316334386663373862a26b64657363726970"
    "74696f6e71666f7220706c6179696e67206368657373646e616d65656368657373"
)


def test_vector_a_operation_decodes_and_reencodes() -> None:
    # §11.2: fields in the CBOR are "description" then "name".
    assert len(VECTOR_A) == 121
    op = decode_operation(VECTOR_A)
    assert op == Operation(
        1, "create", SID, None, {"description": "for playing chess", "name": "chess"}
    )
    assert (
        encode_operation(
            schema_id=SID, fields={"name": "chess", "description": "for playing chess"}
        )
        == VECTOR_A
    )


VECTOR_D = h(
    "8401007849746573745f30303230646463393961636137373664663063613964316235383731626133396434"
    "65646163633735326130613334323662313263333935383937316236633834376163a961616d48656c6c6f2c"
    "20576f726c64216162187b6163fb402899999999999a6164f561654400010203616658220020da3590fbac19"
    "a90bda5618dbcd1799ce6e3bf6e3cd74b7cd41d5d4cb4077af556167825822002020e572c9e4cb884754c047"
    "d3d6fec0ff9e700e446cb5f62167575475f7e31bd2582200206ebac2127506d3855abc76316299534ee1f695"
    "c52e6ac3ae105004b3b968a3416168815822002049ed4a0a6cb7308ec13c029e1b559bb1cddccd5c40710cbe"
    "ad900d2fa2ee86c261698281582200206ec876ee8e56acc1e2d5d0d3390f1b02cb4807ade58ca71e885c3943"
    "e5287b968258220020cf369d24676ba5ae8e74f259f9682607e3e6d01047e31b2b53d3a1cf5f31722e582200"
    "20fc29afb2f0620bf7417fda043dd13b8e2ef60a47b3f99f47bf8019f68c17411e"
)
D_SCHEMA = "test_0020ddc99aca776df0ca9d1b5871ba39d4edacc752a0a3426b12c3958971b6c847ac"
D_F = "0020da3590fbac19a90bda5618dbcd1799ce6e3bf6e3cd74b7cd41d5d4cb4077af55"
D_G = (
    "002020e572c9e4cb884754c047d3d6fec0ff9e700e446cb5f62167575475f7e31bd2",
    "00206ebac2127506d3855abc76316299534ee1f695c52e6ac3ae105004b3b968a341",
)
D_H = ("002049ed4a0a6cb7308ec13c029e1b559bb1cddccd5c40710cbead900d2fa2ee86c2",)
D_I = (
    ("00206ec876ee8e56acc1e2d5d0d3390f1b02cb4807ade58ca71e885c3943e5287b96",),
    (
        "0020cf369d24676ba5ae8e74f259f9682607e3e6d01047e31b2b53d3a1cf5f31722e",
        "0020fc29afb2f0620bf7417fda043dd13b8e2ef60a47b3f99f47bf8019f68c17411e",
    ),
)


def test_vector_d_decodes_to_the_listed_plain_values() -> None:
    # §11.5: every field type in one operation.
    op = decode_operation(VECTOR_D)
    assert (op.version, op.action, op.schema_id, op.previous) == (1, "create", D_SCHEMA, None)
    assert op.fields == {
        "a": "Hello, World!",
        "b": 123,
        "c": 12.3,
        "d": True,
        "e": h("00010203"),
        "f": h(D_F),
        "g": D_G,
        "h": D_H,
        "i": D_I,
    }
    assert op.fields is not None
    assert list(op.fields) == list("abcdefghi")
    assert type(op.fields["b"]) is int
    assert type(op.fields["c"]) is float


def test_vector_d_reencodes_to_its_own_bytes() -> None:
    assert decode_operation(VECTOR_D).to_bytes() == VECTOR_D
    assert Operation.from_bytes(VECTOR_D).to_bytes() == VECTOR_D
    typed: dict[str, FieldValue] = {
        "i": PinnedRelationList(D_I),
        "h": PinnedRelation(D_H),
        "g": RelationList(D_G),
        "f": Relation(D_F),
        "e": h("00010203"),
        "d": True,
        "c": 12.3,
        "b": 123,
        "a": "Hello, World!",
    }
    assert encode_operation(schema_id=D_SCHEMA, fields=typed) == VECTOR_D


def test_vector_e_schema_definition_operation_is_reproduced() -> None:
    # §11.6
    title = "00202b9b7d72931d692513cc56a75f871a4126e788247fefee50202b5619648c9be6"
    image = "002035e10422bafc98ebd37ae36c473301204d1b676b873a4e9d0c4e997da4ac22e2"
    expected = h(
        "84010074736368656d615f646566696e6974696f6e5f7631a36b6465736372697074696f6e664120706f7374"
        "666669656c647382815822" + title + "815822" + image + "646e616d6564706f7374"
    )
    encoded = encode_operation(
        schema_id="schema_definition_v1",
        fields={
            "name": "post",
            "description": "A post",
            "fields": PinnedRelationList([[title], [image]]),
        },
    )
    assert encoded == expected
    assert decode_operation(expected).fields == {
        "description": "A post",
        "fields": ((title,), (image,)),
        "name": "post",
    }


# ---------------------------------------------------------------------------------------------
# Decoding: the top-level array


def test_decode_rejects_versions_other_than_one() -> None:
    for version in ["00", "02", "18 64", "1b ffffffffffffffff"]:
        error = decode_error(raw(version, "00", enc(SID), "a0"))
        assert error.reason is Reason.UNSUPPORTED_VERSION
        assert "unsupported operation version" in error.message


def test_decode_rejects_a_version_that_is_not_an_unsigned_integer() -> None:
    for version in ["20", "f9 3c00", "f5", enc("1")]:
        assert decode_error(raw(version, "00", enc(SID), "a0")).reason is Reason.INVALID_OPERATION


def test_decode_rejects_unknown_actions() -> None:
    for action in ["03", "19 0100", "1b 0000000100000000"]:
        error = decode_error(raw("01", action, enc(SID), "a0"))
        assert error.reason is Reason.UNKNOWN_ACTION
        assert "unknown operation action" in error.message
    assert decode_error(raw("01", "20", enc(SID), "a0")).reason is Reason.INVALID_OPERATION


def test_decode_accepts_non_minimal_heads_everywhere() -> None:
    # [JS] version as `18 01`, text lengths as `78 ..`, array head as `98 04`.
    data = h("98 04 18 01 18 00 78 4a") + SID.encode() + h("b8 01 78 01 61 19 0001")
    assert decode_operation(data) == Operation(1, "create", SID, None, {"a": 1})


def test_decode_skips_tags_around_the_array_the_version_and_the_action() -> None:
    # [JS] ciborium skips tags where it expects an integer or a sequence.
    assert decode_operation(h("c0") + create_with("01")).fields == {"a": 1}
    assert decode_operation(raw("c0 c1 01", "c0 00", enc(SID), "a1 6161 01")).action == "create"


def test_decode_reads_bignum_versions_and_actions() -> None:
    # [JS] `c2 41 01` is version 1; a long or chunked bignum is read too.
    assert decode_operation(raw("c2 41 01", "00", enc(SID), "a0")).version == 1
    long_one = "c2 51" + "00" * 16 + "01"
    assert decode_operation(raw(long_one, "c2 5f 41 00 ff", enc(SID), "a0")).action == "create"
    error = decode_error(raw("01", "c2 c0 41 00", enc(SID), "a0"))
    assert error.reason is Reason.INVALID_OPERATION


def test_decode_requires_the_schema_id_as_untagged_text() -> None:
    # [JS] bytes and tagged text are rejected; chunked text is fine.
    assert decode_error(raw("01", "00", enc(SID.encode()), "a0")).reason is Reason.INVALID_SCHEMA_ID
    assert decode_error(raw("01", "00", "c0" + enc(SID), "a0")).reason is Reason.INVALID_SCHEMA_ID
    assert decode_error(raw("01", "00", "01", "a0")).reason is Reason.INVALID_SCHEMA_ID
    chunked = "7f" + enc(SID[:5]) + enc(SID[5:]) + "ff"
    assert decode_operation(raw("01", "00", chunked, "a0")).schema_id == SID


def test_decode_keeps_the_schema_id_as_written() -> None:
    # [JS] p2panda-js reports these back re-rendered (`blob_v1`); we never re-encode received data.
    for schema_id in ["blob_v01", "blob_v+1", "schema_definition_v2", f"Venue_{A.upper()}"]:
        assert decode_operation(raw("01", "00", enc(schema_id), "a0")).schema_id == schema_id


def schema_id_error(schema_id: str, previous_hex: str | None = None) -> SchemaIdError:
    """Decode a CREATE (or, given ``previous_hex``, a DELETE) with this schema id; must fail."""
    if previous_hex is None:
        data = raw("01", "00", enc(schema_id), "a1 6161 01")
    else:
        data = raw("01", "02", enc(schema_id), previous_hex)
    with pytest.raises(SchemaIdError) as info:
        decode_operation(data)
    return info.value


def test_decode_rejects_an_unsupported_system_schema() -> None:
    # [JS] "Could not decode operation: unsupported system schema: foo"
    error = schema_id_error("foo_v1")
    assert error.reason is Reason.UNSUPPORTED_SYSTEM_SCHEMA
    assert error.message == "unsupported system schema: foo"
    assert schema_id_error("venue_v1").message == "unsupported system schema: venue"


def test_decode_rejects_a_one_character_schema_name() -> None:
    error = schema_id_error(f"a_{A}")
    assert error.reason is Reason.INVALID_SCHEMA_ID
    assert error.message == (
        f"malformed schema id `a_{A}`: name contains too many or invalid characters"
    )


@pytest.mark.parametrize("ids", [(B, A), (A, A), (H1, H3, H2)])
def test_decode_rejects_unsorted_or_duplicate_view_ids_in_the_schema_id(
    ids: tuple[str, ...],
) -> None:
    error = schema_id_error("venue_" + "_".join(ids))
    assert error.reason is Reason.INVALID_SCHEMA_ID
    assert error.message == (
        "encountered invalid document view id while parsing application schema id: "
        "expected sorted operation ids in document view id"
    )


@pytest.mark.parametrize(
    ("schema_id", "message"),
    [
        ("", "malformed schema id ``: doesn't contain an underscore"),
        ("Anything at all", "malformed schema id `Anything at all`: doesn't contain an underscore"),
        ("blob_v", "malformed schema id `blob_v`: couldn't parse system schema version"),
        ("blob_v256", "malformed schema id `blob_v256`: couldn't parse system schema version"),
        (
            "venue_" + "zz" * 34,
            "encountered invalid hash while parsing application schema id: "
            "invalid hex encoding in hash string",
        ),
        (
            f"venue_{A[:-2]}",
            "encountered invalid hash while parsing application schema id: "
            "invalid hash length 33 bytes, expected 34 bytes",
        ),
    ],
)
def test_decode_rejects_malformed_schema_ids_with_p2panda_messages(
    schema_id: str, message: str
) -> None:
    error = schema_id_error(schema_id)
    assert error.reason is Reason.INVALID_SCHEMA_ID
    assert error.message == message


def test_decode_reports_the_schema_id_before_previous_and_fields() -> None:
    # [JS] p2panda reads the schema id into a SchemaId before it reads on.
    assert schema_id_error("foo_v1", previous_hex="01").reason is Reason.UNSUPPORTED_SYSTEM_SCHEMA
    data = raw("01", "00", enc("foo_v1"), "a2 6162 01 6161 01")  # unsorted fields too
    with pytest.raises(SchemaIdError):
        decode_operation(data)
    with pytest.raises(SchemaIdError):  # and before a missing item
        decode_operation(raw("01", "01", enc("foo_v1")))


def test_decode_schema_id_errors_are_decode_errors() -> None:
    assert isinstance(schema_id_error("foo_v1"), DecodeError)


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ("80", "version"),
        ("81 01", "action"),
        ("82 01 00", "schema id"),
        ("83 01 00" + enc(SID), "fields"),
        ("83 01 01" + enc(SID), "previous"),
        ("84 01 01" + enc(SID) + enc([h(H1)]), "fields"),
        ("83 01 02" + enc(SID), "previous"),
        ("9f 01 00" + enc(SID) + "ff", "fields"),
    ],
)
def test_decode_rejects_missing_items_naming_the_missing_one(data: str, missing: str) -> None:
    error = decode_error(h(data))
    assert error.reason is Reason.INVALID_OPERATION
    assert f"missing {missing}" in error.message


def test_decode_rejects_too_many_items_in_a_definite_array() -> None:
    # [JS] "too many items for this operation action": a 5th item on CREATE, fields on DELETE.
    cases = [
        raw("01", "00", enc(SID), "a0", "01"),
        raw("01", "00", enc(SID), "a0", "a0"),
        raw("01", "01", enc(SID), enc([h(H1)]), "a0", "01"),
        raw("01", "02", enc(SID), enc([h(H1)]), "a0"),
    ]
    for data in cases:
        error = decode_error(data)
        assert error.reason is Reason.INVALID_OPERATION
        assert "too many items" in error.message


def test_decode_ignores_extra_items_after_an_indefinite_top_level_array() -> None:
    # [JS] p2panda-js stops reading once it has the items the action needs: a DELETE with a
    # fields map, a CREATE with a second map, junk, or no break code at all decode fine.
    prev = enc([h(H1)])
    delete = decode_operation(raw("01", "02", enc(SID), prev, "a1 6161 01", "ff", head="9f"))
    assert delete == Operation(1, "delete", SID, (H1,), None)
    create = raw("01", "00", enc(SID), "a1 6161 01", head="9f")
    for tail in ["a0 ff", "ff", "", "f7 1c ff", "ff ff ff"]:
        assert decode_operation(create + h(tail)).fields == {"a": 1}


def test_decode_ignores_trailing_bytes_after_the_operation() -> None:
    # [JS] (they still count for the payload hash and size, which are over the raw bytes)
    data = create_with("01") + h("ff ff 00 1c")
    assert decode_operation(data).fields == {"a": 1}


@pytest.mark.parametrize(
    "data", ["", "a0", "01", "60", "f6", "ff", "c0", "84", "9f", "84 01 00", "1c"]
)
def test_decode_rejects_what_is_not_an_operation_array(data: str) -> None:
    error = decode_error(h(data))
    assert error.reason in {Reason.INVALID_CBOR, Reason.INVALID_OPERATION}


def test_decode_rejects_malformed_cbor_inside_an_item_as_invalid_cbor() -> None:
    assert decode_error(create_with("62 c3 28")).reason is Reason.INVALID_CBOR
    assert decode_error(create_with("1c")).reason is Reason.INVALID_CBOR
    assert decode_error(create_with("81" * 40 + "00")).reason is Reason.INVALID_CBOR


# ---------------------------------------------------------------------------------------------
# Decoding: previous


def test_decode_reads_previous_as_hex_ids() -> None:
    op = decode_operation(update_with(enc([h(H1), h(H2)])))
    assert op.previous == (H1, H2)


def test_decode_rejects_empty_unsorted_or_duplicate_previous() -> None:
    # [JS] "expected one or more operation ids" / "expected sorted operation ids ..."
    cases: list[list[CborValue]] = [[], [h(H2), h(H1)], [h(H1), h(H1)]]
    for previous in cases:
        error = decode_error(update_with(enc(previous)))
        assert error.reason is Reason.INVALID_DOCUMENT_VIEW_ID
    assert "one or more" in decode_error(update_with("80")).message
    assert "sorted" in decode_error(update_with(enc([h(H2), h(H1)]))).message


def test_decode_rejects_previous_items_that_are_not_34_byte_blake3_hashes() -> None:
    # [JS] wrong length and hash type 01 are rejected; text items are rejected.
    assert decode_error(update_with(enc([h(H1)[:33]]))).reason is Reason.INVALID_HASH
    assert decode_error(update_with(enc([h(H1) + b"\x00"]))).reason is Reason.INVALID_HASH
    assert decode_error(update_with(enc([b"\x01" + h(H1)[1:]]))).reason is Reason.INVALID_HASH
    error = decode_error(update_with(enc([H1])))
    assert error.reason is Reason.INVALID_DOCUMENT_VIEW_ID


def test_decode_does_not_check_the_hash_length_byte_and_keeps_it() -> None:
    # §1.3 [JS]: `0021…` is accepted in previous and reported unchanged.
    odd = "0021" + "11" * 32
    assert decode_operation(update_with(enc([h(odd)]))).previous == (odd,)


def test_decode_accepts_previous_as_one_text_string() -> None:
    # [JS] "<id>_<id>" instead of an array of byte strings; the ids must be sorted.
    assert decode_operation(update_with(enc(f"{H1}_{H2}"))).previous == (H1, H2)
    assert decode_operation(update_with(enc(H1))).previous == (H1,)
    for text in [f"{H2}_{H1}", f"{H1}_{H1}"]:
        assert decode_error(update_with(enc(text))).reason is Reason.INVALID_DOCUMENT_VIEW_ID
    for text in ["", "xyz", f"{H1}_", "01" + H1[2:], H1[:-2]]:
        assert decode_error(update_with(enc(text))).reason is Reason.INVALID_HASH


def test_decode_keeps_text_previous_as_written_and_compares_it_as_text() -> None:
    # [JS] uppercase hex is kept as given; order is string order, so "0020AB…" < "0020ab…".
    assert decode_operation(update_with(enc(A.upper()))).previous == (A.upper(),)
    assert decode_operation(update_with(enc(f"{A.upper()}_{B}"))).previous == (A.upper(), B)
    assert decode_operation(update_with(enc(f"{A.upper()}_{A}"))).previous == (A.upper(), A)
    assert decode_error(update_with(enc(f"{A}_{B.upper()}"))).reason is (
        Reason.INVALID_DOCUMENT_VIEW_ID
    )


def test_decode_accepts_indefinite_and_tagged_previous_items_but_not_a_tagged_array() -> None:
    # [JS] ciborium skips tags around byte strings, not around the view id itself.
    chunked = "5f" + enc(h(H1)[:10]) + enc(h(H1)[10:]) + "ff"
    assert decode_operation(update_with("81" + chunked)).previous == (H1,)
    assert decode_operation(update_with("9f" + enc(h(H1)) + "ff")).previous == (H1,)
    assert decode_operation(update_with("81 c0" + enc(h(H1)))).previous == (H1,)
    assert decode_error(update_with("c0" + enc([h(H1)]))).reason is Reason.INVALID_DOCUMENT_VIEW_ID


def test_decode_rejects_previous_of_the_wrong_type() -> None:
    for previous in [enc(h(H1)), "f6", "a0", "01"]:
        assert decode_error(update_with(previous)).reason is Reason.INVALID_DOCUMENT_VIEW_ID


def test_decode_accepts_a_delete_with_text_previous() -> None:
    op = decode_operation(raw("01", "02", enc(SID), enc(H1)))
    assert op == Operation(1, "delete", SID, (H1,), None)


# ---------------------------------------------------------------------------------------------
# Decoding: fields


def test_decode_requires_field_keys_in_plain_byte_wise_order() -> None:
    # §3.3 [JS]: "B" < "a_b" < "aa" < "b" is the accepted order.
    fields = "a4" + "".join(enc(k) + "01" for k in ["B", "a_b", "aa", "b"])
    assert list(decode_operation(raw("01", "00", enc(SID), fields)).fields or {}) == [
        "B",
        "a_b",
        "aa",
        "b",
    ]


def test_decode_rejects_field_keys_in_length_first_order() -> None:
    # [JS] the RFC 7049 canonical order {b, aa} is rejected.
    error = decode_error(raw("01", "00", enc(SID), "a2" + enc("b") + "01" + enc("aa") + "01"))
    assert error.reason is Reason.UNSORTED_FIELDS
    assert error.message == "encountered unsorted field name: 'aa' should be before 'b'"


def test_decode_orders_non_ascii_keys_by_utf8_bytes() -> None:
    ok = "a3" + enc("z") + "01" + enc("é") + "01" + enc("😀") + "01"
    assert list(decode_operation(raw("01", "00", enc(SID), ok)).fields or {}) == ["z", "é", "😀"]
    bad = "a2" + enc("😀") + "01" + enc("é") + "01"
    assert decode_error(raw("01", "00", enc(SID), bad)).reason is Reason.UNSORTED_FIELDS


def test_decode_rejects_duplicate_field_keys() -> None:
    error = decode_error(raw("01", "00", enc(SID), "a2" + enc("a") + "01" + enc("a") + "02"))
    assert error.reason is Reason.DUPLICATE_FIELD
    assert error.message == "encountered duplicate field key 'a'"


def test_decode_rejects_non_text_field_keys() -> None:
    for key in ["01", enc(b"a"), "f6"]:
        error = decode_error(raw("01", "00", enc(SID), "a1" + key + "01"))
        assert error.reason is Reason.INVALID_OPERATION


def test_decode_accepts_tagged_and_chunked_field_keys_and_a_tagged_fields_map() -> None:
    # [JS]
    assert decode_operation(create_with("01", key="a")).fields == {"a": 1}
    assert decode_operation(raw("01", "00", enc(SID), "a1 c0 6161 01")).fields == {"a": 1}
    assert decode_operation(raw("01", "00", enc(SID), "a1 7f 6161 ff 01")).fields == {"a": 1}
    assert decode_operation(raw("01", "00", enc(SID), "c0 a1 6161 01")).fields == {"a": 1}


def test_decode_accepts_indefinite_length_fields_maps() -> None:
    assert decode_operation(raw("01", "00", enc(SID), "bf 6161 01 6162 02 ff")).fields == {
        "a": 1,
        "b": 2,
    }


def test_decode_accepts_empty_fields_and_unusual_field_names() -> None:
    # [JS] an empty map decodes (the schema rejects it later); names are not checked here.
    assert decode_operation(raw("01", "00", enc(SID), "a0")).fields == {}
    assert decode_operation(update_with(enc([h(H1)]), "a0")).fields == {}
    assert decode_operation(create_with("01", key="")).fields == {"": 1}
    assert decode_operation(create_with("01", key="1a")).fields == {"1a": 1}


def test_decode_rejects_fields_that_are_not_a_map() -> None:
    for fields in ["80", "f6", "01"]:
        assert decode_error(raw("01", "00", enc(SID), fields)).reason is Reason.INVALID_OPERATION


@pytest.mark.parametrize(
    ("encoded", "value"),
    [
        ("f5", True),
        ("f4", False),
        ("f8 15", True),  # [JS] two-byte true
        ("f8 14", False),
        ("1b 7fffffffffffffff", 2**63 - 1),
        ("3b 7fffffffffffffff", -(2**63)),
        ("18 01", 1),
        ("c2 41 01", 1),  # [JS] bignums that fit i64
        ("c2 40", 0),
        ("c3 49 000000000000000001", -2),
        ("c2 48 7fffffffffffffff", 2**63 - 1),
        ("c3 48 7fffffffffffffff", -(2**63)),
        ("c2 50" + "00" * 15 + "01", 1),
        ("f9 0001", 2.0**-24),
        ("fa 40600000", 3.5),  # [JS] any float width
        ("fb 400c000000000000", 3.5),
        ("f9 7c00", math.inf),
        ("7f 6161 626262 ff", "abb"),
        ("7f ff", ""),
        ("5f 4161 4162 ff", b"ab"),
        ("40", b""),
        ("80", ()),
        ("9f ff", ()),
    ],
)
def test_decode_reads_plain_values(encoded: str, value: PlainValue) -> None:
    decoded = field_a(create_with(h(encoded).hex()))
    assert decoded == value
    assert type(decoded) is type(value)


def test_decode_reads_nan_floats() -> None:
    for encoded in ["f97e00", "f97e01", "fb7ff8000000000001"]:
        value = field_a(create_with(encoded))
        assert isinstance(value, float)
        assert math.isnan(value)


def test_decode_reads_34_byte_strings_as_bytes_whatever_their_first_byte() -> None:
    # A relation or a bytes field: only the schema can tell [JS].
    assert field_a(create_with(enc(h(H1)))) == h(H1)
    assert field_a(create_with(enc(b"\x01" + h(H1)[1:]))) == b"\x01" + h(H1)[1:]


def test_decode_reads_arrays_of_hashes_as_tuples_of_hex_ids_in_wire_order() -> None:
    # [JS] flat lists are not checked for order or duplicates (a relation_list keeps both).
    assert field_a(create_with(enc([h(H2), h(H1), h(H2)]))) == (H2, H1, H2)
    odd = "0021" + "11" * 32
    assert field_a(create_with(enc([h(odd)]))) == (odd,)
    assert field_a(create_with("9f" + enc(h(H1)) + "ff")) == (H1,)
    chunked = "5f" + enc(h(H1)[:1]) + enc(h(H1)[1:]) + "ff"
    assert field_a(create_with("81" + chunked)) == (H1,)


def test_decode_reads_arrays_of_arrays_of_hashes_without_checking_inner_order() -> None:
    # [JS] `[[H2, H1]]`, `[[H1, H1]]`, `[[]]` and `[[], [H1]]` all decode; the schema checks
    # each view id later.
    assert field_a(create_with(enc([[h(H2), h(H1)]]))) == ((H2, H1),)
    assert field_a(create_with(enc([[h(H1), h(H1)]]))) == ((H1, H1),)
    assert field_a(create_with(enc([[]]))) == ((),)
    assert field_a(create_with(enc([[], [h(H1)]]))) == ((), (H1,))


@pytest.mark.parametrize(
    "encoded",
    [
        "f6",  # null
        "f7",  # undefined
        "f0",  # simple(16)
        "f8 20",
        "f8 16",  # two-byte null
        "a0",  # map
        enc([1, 2]),  # array of ints
        enc(["a"]),
        enc([H1]),  # hex text instead of bytes
        enc([h(H1), [h(H1)]]),  # mixed
        enc([[h(H1)], h(H1)]),
        enc([[[h(H1)]]]),
        enc([h(H1)[:33]]),
        enc([h(H1) + b"\x00"]),
        enc([b"\x01" + h(H1)[1:]]),  # hash type 01
        enc([[b"\x01" + h(H1)[1:]]]),
        "81 c0" + enc(h(H1)),  # tagged hash inside a list
        "81 81 c0" + enc(h(H1)),
        "81 c0 81" + enc(h(H1)),
        "c0 81" + enc(h(H1)),  # tagged list
        "c0 6161",  # tagged text
        "c1 f93c00",
        "d818 4161",
        "c2 6161",  # bignum over text
        "c2 c2 4101",
        "c2 5f 4101 ff",  # [JS] bignum over a chunked byte string
        "c2 51" + "00" * 16 + "01",  # [JS] bignum of 17 bytes
        "c2 80",
    ],
)
def test_decode_rejects_values_that_are_no_plain_value(encoded: str) -> None:
    # [JS] "data did not match any variant of untagged enum PlainValue"
    assert decode_error(create_with(h(encoded).hex())).reason is Reason.INVALID_FIELD_VALUE


@pytest.mark.parametrize(
    "encoded",
    [
        "1b 8000000000000000",
        "1b ffffffffffffffff",
        "3b 8000000000000000",
        "c2 48 8000000000000000",
        "c3 48 8000000000000000",
    ],
)
def test_decode_rejects_integers_outside_i64(encoded: str) -> None:
    # [JS] "out of range integral type conversion attempted"
    error = decode_error(create_with(h(encoded).hex()))
    assert error.reason is Reason.INVALID_FIELD_VALUE
    assert "i64" in error.message


def test_decode_reports_a_bad_value_before_a_later_unsorted_key() -> None:
    # [JS] entries are checked in wire order.
    data = raw("01", "00", enc(SID), "a2" + enc("b") + "f6" + enc("a") + "01")
    assert decode_error(data).reason is Reason.INVALID_FIELD_VALUE


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = create_with("01")
    assert decode_operation(bytearray(data)) == decode_operation(memoryview(data))


# ---------------------------------------------------------------------------------------------
# Encoding


def test_encode_sorts_field_names_byte_wise() -> None:
    encoded = encode_operation(schema_id=SID, fields={"b": "x", "aa": "x", "B": "x", "a_b": "x"})
    # [JS] identical to p2panda-js with the same fields
    assert encoded.endswith(h("a4 6142 6178 63615f62 6178 626161 6178 6162 6178"))


def test_encode_writes_bool_as_bool_not_int() -> None:
    assert encode_operation(schema_id=SID, fields={"a": True}) == FIELD_A_PREFIX + h("f5")
    assert encode_operation(schema_id=SID, fields={"a": 1}) == FIELD_A_PREFIX + h("01")


def test_encode_sorts_and_deduplicates_pinned_relations_like_p2panda_js() -> None:
    # [JS] pinned_relation [A, A] → [A]; [B, A] → [A, B]; inner view ids likewise.
    assert encode_operation(schema_id=SID, fields={"a": PinnedRelation([A, A])}) == (
        FIELD_A_PREFIX + h("81 5822" + A)
    )
    assert encode_operation(schema_id=SID, fields={"a": PinnedRelation(f"{B}_{A}")}) == (
        FIELD_A_PREFIX + h("82 5822" + A + "5822" + B)
    )
    value = PinnedRelationList([[B, A], [A], [A, A]])
    assert encode_operation(schema_id=SID, fields={"a": value}) == FIELD_A_PREFIX + h(
        "83 82 5822" + A + "5822" + B + "81 5822" + A + "81 5822" + A
    )


def test_encode_writes_empty_view_ids_like_p2panda_js() -> None:
    # [JS] p2panda-js encodes an empty pinned relation as `80` and `[[]]` as `81 80`; the
    # schema rejects them later.
    assert encode_operation(schema_id=SID, fields={"a": PinnedRelation([])}).endswith(h("80"))
    assert encode_operation(schema_id=SID, fields={"a": PinnedRelationList([[]])}).endswith(
        h("81 80")
    )


def test_encode_keeps_relation_list_order_and_duplicates() -> None:
    encoded = encode_operation(schema_id=SID, fields={"a": RelationList([B, A, B])})
    assert encoded == FIELD_A_PREFIX + h("83 5822" + B + "5822" + A + "5822" + B)


def test_encode_accepts_uppercase_and_odd_length_byte_ids_as_p2panda_js_does() -> None:
    # [JS] uppercase hex becomes the same bytes; `0021…` is written as given.
    assert encode_operation(schema_id=SID, fields={"a": Relation(A.upper())}) == (
        FIELD_A_PREFIX + h("5822" + A)
    )
    odd = "0021" + "ab" * 32
    assert encode_operation(schema_id=SID, fields={"a": Relation(odd)}).endswith(h(odd))


@pytest.mark.parametrize(
    "value",
    [
        Relation("0020ab"),
        Relation("01" + A[2:]),
        Relation("zz" * 34),
        RelationList([A, "nope"]),
        PinnedRelation([A, "0120" + A[4:]]),
        PinnedRelationList([[A], ["x"]]),
    ],
)
def test_encode_rejects_malformed_ids_in_relations(value: FieldValue) -> None:
    with pytest.raises(OperationDecodeError) as info:
        encode_operation(schema_id=SID, fields={"a": value})
    assert info.value.reason is Reason.INVALID_HASH


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_encode_rejects_integers_outside_i64(value: int) -> None:
    with pytest.raises(OperationDecodeError) as info:
        encode_operation(schema_id=SID, fields={"a": value})
    assert info.value.reason is Reason.INVALID_FIELD_VALUE


@pytest.mark.parametrize("value", [None, [A], (A,), {"x": 1}, {A}, object(), "\ud800"])
def test_encode_rejects_values_without_a_field_type(value: Any) -> None:
    with pytest.raises(OperationDecodeError) as info:
        encode_operation(schema_id=SID, fields={"a": value})
    assert info.value.reason is Reason.INVALID_FIELD_VALUE


def test_encode_hints_at_the_relation_wrappers_for_bare_lists() -> None:
    with pytest.raises(OperationDecodeError, match="RelationList"):
        encode_operation(schema_id=SID, fields={"a": cast(Any, [A])})


def test_encode_rejects_non_string_field_names() -> None:
    with pytest.raises(OperationDecodeError):
        encode_operation(schema_id=SID, fields=cast(Any, {1: "x"}))


def test_encode_writes_previous_from_a_list_or_a_view_id_string() -> None:
    # [JS] both forms give the same bytes.
    from_list = encode_operation(action="delete", schema_id=SID, previous=[A, B])
    from_text = encode_operation(action="delete", schema_id=SID, previous=f"{A}_{B}")
    assert from_list == from_text == raw("01", "02", enc(SID), enc([h(A), h(B)]))
    assert encode_operation(action="delete", schema_id=SID, previous=(A.upper(),)).endswith(h(A))


def test_encode_rejects_unsorted_duplicate_or_empty_previous_like_p2panda_js() -> None:
    # [JS] "Invalid document view id": p2panda-js does not sort previous for you.
    unsorted: list[list[str] | str] = [[B, A], [A, A], [], f"{B}_{A}"]
    for previous in unsorted:
        with pytest.raises(OperationDecodeError) as info:
            encode_operation(action="delete", schema_id=SID, previous=previous)
        assert info.value.reason is Reason.INVALID_DOCUMENT_VIEW_ID
    malformed: list[Any] = [["0120" + A[4:]], ["nope"], [b"\x00" * 34]]
    for previous in malformed:
        with pytest.raises(OperationDecodeError) as info:
            encode_operation(action="delete", schema_id=SID, previous=previous)
        assert info.value.reason is Reason.INVALID_HASH


def test_encode_checks_previous_and_fields_against_the_action() -> None:
    # [JS] same four rules and messages as p2panda-js.
    cases: list[tuple[dict[str, Any], str]] = [
        ({"action": "create", "previous": [A], "fields": {"a": 1}}, "unexpected 'previous'"),
        ({"action": "update", "fields": {"a": 1}}, "expected 'previous'"),
        ({"action": "delete", "fields": {"a": 1}, "previous": [A]}, "unexpected 'fields'"),
        ({"action": "delete"}, "expected 'previous'"),
        ({"action": "create"}, "expected 'fields'"),
        ({"action": "update", "previous": [A]}, "expected 'fields'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OperationDecodeError, match=message) as info:
            encode_operation(schema_id=SID, **kwargs)
        assert info.value.reason is Reason.INVALID_OPERATION


def test_encode_checks_the_action_shape_before_the_field_values() -> None:
    with pytest.raises(OperationDecodeError, match="unexpected 'fields'"):
        encode_operation(action="delete", schema_id=SID, previous=[A], fields={"a": 2**64})


def test_encode_rejects_unknown_actions_and_missing_schema_ids() -> None:
    with pytest.raises(OperationDecodeError) as info:
        encode_operation(action=cast(Any, "foo"), schema_id=SID, fields={})
    assert info.value.reason is Reason.UNKNOWN_ACTION
    with pytest.raises(OperationDecodeError) as info:
        encode_operation(schema_id=cast(Any, None), fields={})
    assert info.value.reason is Reason.INVALID_SCHEMA_ID
    with pytest.raises(SchemaIdError) as schema_info:
        encode_operation(schema_id="", fields={})
    assert schema_info.value.reason is Reason.INVALID_SCHEMA_ID


@pytest.mark.parametrize(
    ("schema_id", "reason"),
    [
        ("foo_v1", Reason.UNSUPPORTED_SYSTEM_SCHEMA),
        ("venue_v1", Reason.UNSUPPORTED_SYSTEM_SCHEMA),
        (f"a_{A}", Reason.INVALID_SCHEMA_ID),
        (f"venue_{B}_{A}", Reason.INVALID_SCHEMA_ID),
        ("venue", Reason.INVALID_SCHEMA_ID),
        ("blob_v", Reason.INVALID_SCHEMA_ID),
    ],
)
def test_encode_rejects_malformed_schema_ids_like_decode(schema_id: str, reason: Reason) -> None:
    # [JS] encodeOperation refuses them with the messages of decodeOperation, and checks the
    # schema id before `previous`.
    with pytest.raises(SchemaIdError) as info:
        encode_operation(action="delete", schema_id=schema_id, previous=["nope"])
    assert info.value.reason is reason
    assert info.value.message == schema_id_error(schema_id).message


def test_encode_rejects_a_schema_id_that_is_not_utf8() -> None:
    with pytest.raises(SchemaIdError) as info:
        encode_operation(schema_id="venue_\ud800", fields={})
    assert info.value.reason is Reason.INVALID_SCHEMA_ID


def test_encode_writes_a_well_formed_schema_id_as_given() -> None:
    assert encode_operation(schema_id="blob_v01", fields={}) == raw(
        "01", "00", enc("blob_v01"), "a0"
    )


def test_encode_accepts_empty_fields_like_p2panda_js() -> None:
    assert encode_operation(schema_id=SID, fields={}) == raw("01", "00", enc(SID), "a0")


def test_encode_errors_are_pandanode_errors() -> None:
    with pytest.raises(PandanodeError):
        encode_operation(schema_id=SID, fields={"a": 2**64})


# ---------------------------------------------------------------------------------------------
# Operation.to_bytes


def test_to_bytes_encodes_plain_values_schema_lessly() -> None:
    op = Operation(
        1,
        "update",
        SID,
        (A, B),
        {"z": (), "y": ((B, A), ()), "x": (B, A, B), "w": h(A), "v": -5, "u": math.nan},
    )
    encoded = op.to_bytes()
    assert encoded == raw(
        "01",
        "01",
        enc(SID),
        enc([h(A), h(B)]),
        enc(
            CborMap(
                (
                    ("u", math.nan),
                    ("v", -5),
                    ("w", h(A)),
                    ("x", [h(B), h(A), h(B)]),
                    ("y", [[h(B), h(A)], []]),
                    ("z", []),
                )
            )
        ),
    )


def test_to_bytes_round_trips_decoded_canonical_operations() -> None:
    for data in [VECTOR_A, VECTOR_D, update_with(enc([h(H1), h(H2)]))]:
        assert Operation.from_bytes(data).to_bytes() == data


def test_to_bytes_writes_a_text_previous_as_byte_strings() -> None:
    op = decode_operation(update_with(enc(f"{H1}_{H2}")))
    assert op.to_bytes() == update_with(enc([h(H1), h(H2)]))


def test_to_bytes_rejects_operations_that_could_not_be_encoded() -> None:
    bad: list[Operation] = [
        Operation(2, "create", SID, None, {}),
        Operation(1, "create", SID, (A,), {}),
        Operation(1, "delete", SID, (A,), {}),
        Operation(1, "update", SID, None, {}),
        Operation(1, "create", SID, None, {"a": 2**63}),
        Operation(1, "create", SID, None, {"a": ("nope",)}),
        Operation(1, "create", SID, None, {"a": cast(Any, (A, (A,)))}),
    ]
    for op in bad:
        with pytest.raises(OperationDecodeError):
            op.to_bytes()
    with pytest.raises(SchemaIdError):
        Operation(1, "create", "foo_v1", None, {}).to_bytes()


# ---------------------------------------------------------------------------------------------
# Properties

_hash_ids = st.binary(min_size=33, max_size=33).map(lambda tail: (b"\x00" + tail).hex())
_hash_ids_upper = _hash_ids | _hash_ids.map(str.upper)


def _i64() -> st.SearchStrategy[int]:
    return st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.sampled_from(
        [0, 23, 24, -24, -25, 255, 256, 2**63 - 1, -(2**63), 2**32, -(2**32)]
    )


_field_values: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(),
    _i64(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=16),
    st.text(),
    st.binary(max_size=64),
    _hash_ids_upper.map(Relation),
    st.lists(_hash_ids_upper, max_size=4).map(RelationList),
    st.lists(_hash_ids_upper, max_size=4).map(PinnedRelation),
    st.lists(st.lists(_hash_ids_upper, max_size=3), max_size=3).map(PinnedRelationList),
)
_fields = st.dictionaries(st.text(max_size=8), _field_values, max_size=6)
_schema_ids = st.sampled_from(
    ["blob_v1", "blob_piece_v1", "schema_definition_v1", "schema_field_definition_v1", "blob_v01"]
) | st.builds(
    lambda name, ids: f"{name}_{'_'.join(sorted(ids))}",
    st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,62}[A-Za-z0-9]", fullmatch=True),
    st.lists(_hash_ids_upper, min_size=1, max_size=3, unique=True),
)


def _expected_plain(value: FieldValue) -> PlainValue:
    if isinstance(value, Relation):
        return bytes.fromhex(value.document_id)
    if isinstance(value, RelationList):
        return tuple(i.lower() for i in value.document_ids)
    if isinstance(value, PinnedRelation):
        return tuple(sorted({i.lower() for i in value.view_id}))
    if isinstance(value, PinnedRelationList):
        return tuple(tuple(sorted({i.lower() for i in v})) for v in value.view_ids)
    return value


def _comparable(fields: Mapping[str, PlainValue] | None) -> Any:
    if fields is None:
        return None
    return [
        (k, "NaN" if isinstance(v, float) and math.isnan(v) else (type(v).__name__, v))
        for k, v in fields.items()
    ]


@st.composite
def _operations(
    draw: st.DrawFn,
) -> tuple[Action, str, list[str] | None, dict[str, FieldValue] | None]:
    action: Action = draw(st.sampled_from(["create", "update", "delete"]))
    schema_id = draw(_schema_ids)
    previous = None
    if action != "create":
        ids = draw(st.lists(_hash_ids, min_size=1, max_size=4, unique=True))
        previous = sorted(ids)
    fields = None if action == "delete" else draw(_fields)
    return action, schema_id, previous, fields


@settings(max_examples=300)
@given(_operations())
def test_encode_then_decode_is_identity(
    case: tuple[Action, str, list[str] | None, dict[str, FieldValue] | None],
) -> None:
    action, schema_id, previous, fields = case
    encoded = encode_operation(action=action, schema_id=schema_id, previous=previous, fields=fields)
    op = decode_operation(encoded)
    assert op.version == 1
    assert op.action == action
    assert op.schema_id == schema_id
    assert op.previous == (None if previous is None else tuple(previous))
    expected = None if fields is None else {k: _expected_plain(fields[k]) for k in sorted(fields)}
    assert _comparable(op.fields) == _comparable(expected)
    for name, value in (op.fields or {}).items():
        original = (fields or {})[name]
        if isinstance(original, float) and not math.isnan(original):
            assert isinstance(value, float)
            assert math.copysign(1.0, value) == math.copysign(1.0, original)
    assert op.to_bytes() == encoded


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_decode_of_arbitrary_bytes_raises_only_operation_or_schema_id_errors(data: bytes) -> None:
    with contextlib.suppress(OperationDecodeError, SchemaIdError):
        decode_operation(data)


@settings(max_examples=300)
@given(_operations(), st.data())
def test_decode_of_corrupted_operations_raises_only_operation_or_schema_id_errors(
    case: tuple[Action, str, list[str] | None, dict[str, FieldValue] | None],
    data: st.DataObject,
) -> None:
    action, schema_id, previous, fields = case
    encoded = bytearray(
        encode_operation(action=action, schema_id=schema_id, previous=previous, fields=fields)
    )
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
        encoded[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    try:
        op = decode_operation(bytes(encoded[:cut]))
    except (OperationDecodeError, SchemaIdError):
        return
    assert op.action in ("create", "update", "delete")
