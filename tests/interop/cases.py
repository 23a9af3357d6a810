"""Hand-built malformed and lenient inputs (spec §2.4, §3.3, §11.7), each named for its test id.

``*_REJECTED``: p2panda-js 0.8.1 refuses them, and so must we (with a ``DecodeError``).
``*_ACCEPTED``: not canonical, yet p2panda-js 0.8.1 reads them; we must read the same values.
Every entry here is signed correctly, so the only defect is the one in its name.
"""

from __future__ import annotations

import nacl.signing

from .support import (
    blake3_yasmf,
    cbor_array,
    cbor_bytes,
    cbor_hashes,
    cbor_head,
    cbor_indefinite_array,
    cbor_int,
    cbor_map,
    cbor_text,
    raw_entry,
    varu64,
)

# -- entries --------------------------------------------------------------------------------------

# Spec §11.4 (vector C) private key; any key would do.
KEY = nacl.signing.SigningKey(
    bytes.fromhex("ec6e84f8255cbd7243599545364fd7364a83830774d4c873aaba9bd5d60c773e")
)
OTHER_KEY = nacl.signing.SigningKey(bytes(range(32)))
LINK_1 = blake3_yasmf(b"an earlier entry")
LINK_2 = blake3_yasmf(b"the previous entry")


def _with_length_byte_21(link: bytes) -> bytes:
    return b"\x00\x21" + link[2:]


def _with_hash_type_01(link: bytes) -> bytes:
    return b"\x01" + link[1:]


def _flip_last_bit(data: bytes, index: int = -1) -> bytes:
    raw = bytearray(data)
    raw[index] ^= 0x01
    return bytes(raw)


_VALID_SEQ_1 = raw_entry(KEY)
_VALID_SEQ_2 = raw_entry(KEY, seq_num=b"\x02", backlink=LINK_2)
_BIG_LOG_ID = raw_entry(KEY, log_id=varu64(2**32))
_SIGNED_THEN_TAMPERED = bytearray(_VALID_SEQ_1)
_SIGNED_THEN_TAMPERED[40] ^= 0x01  # a bit of the payload hash, after signing

ENTRIES_REJECTED: dict[str, bytes] = {
    "empty": b"",
    "tag_only": b"\x00",
    "truncated_in_public_key": _VALID_SEQ_1[:20],
    "truncated_in_log_id": _BIG_LOG_ID[:36],
    "truncated_in_backlink": _VALID_SEQ_2[:50],
    "truncated_signature": _VALID_SEQ_1[:-1],
    "seq_num_0": raw_entry(KEY, seq_num=b"\x00"),
    "log_id_non_canonical_f8_05": raw_entry(KEY, log_id=b"\xf8\x05"),
    "log_id_non_canonical_f9_00ff": raw_entry(KEY, log_id=b"\xf9\x00\xff"),
    "log_id_non_canonical_nine_bytes": raw_entry(KEY, log_id=b"\xff" + (7).to_bytes(8, "big")),
    "seq_num_non_canonical_f8_01": raw_entry(KEY, seq_num=b"\xf8\x01"),
    "payload_size_non_canonical": raw_entry(KEY, payload_size=b"\xf8\x03"),
    "trailing_byte_after_signature": raw_entry(KEY, after_signature=b"\x00"),
    # Extra bytes between the payload hash and the signature, covered by the signature: the
    # signature is "the last 64 bytes" for verification but "the 64 bytes after the payload hash"
    # for decoding, so the entry must be exactly as long as its fields. p2panda-js refuses
    # (with "signature invalid", or by panicking: "unreachable").
    "signed_extra_byte_before_signature": raw_entry(KEY, before_signature=b"\x00"),
    "signed_extra_byte_before_signature_seq_4": raw_entry(
        KEY, seq_num=b"\x04", skiplink=LINK_1, backlink=LINK_2, before_signature=b"\xff"
    ),
    "signed_extra_64_bytes_before_signature": raw_entry(KEY, before_signature=bytes(64)),
    "seq_2_without_backlink": raw_entry(KEY, seq_num=b"\x02"),
    "seq_1_with_backlink": raw_entry(KEY, backlink=LINK_2),
    "seq_4_without_skiplink": raw_entry(KEY, seq_num=b"\x04", backlink=LINK_2),
    "seq_2_with_unneeded_skiplink": raw_entry(
        KEY, seq_num=b"\x02", skiplink=LINK_1, backlink=LINK_2
    ),
    "required_skiplink_equals_backlink": raw_entry(
        KEY, seq_num=b"\x04", skiplink=LINK_2, backlink=LINK_2
    ),
    "backlink_hash_type_01": raw_entry(KEY, seq_num=b"\x02", backlink=_with_hash_type_01(LINK_2)),
    "skiplink_hash_type_01": raw_entry(
        KEY, seq_num=b"\x04", skiplink=_with_hash_type_01(LINK_1), backlink=LINK_2
    ),
    "payload_hash_type_01": raw_entry(
        KEY, payload_hash=_with_hash_type_01(blake3_yasmf(b"\x11\x22\x33"))
    ),
    "signature_tampered": _flip_last_bit(_VALID_SEQ_1),
    "signed_bytes_tampered": bytes(_SIGNED_THEN_TAMPERED),
    "signed_by_another_key": raw_entry(KEY, public_key=bytes(OTHER_KEY.verify_key)),
    # y = 2 is not the y coordinate of a point on Curve25519 (dalek refuses to decompress it)
    "public_key_not_a_curve_point": raw_entry(KEY, public_key=b"\x02" + bytes(31)),
}

ENTRIES_ACCEPTED: dict[str, bytes] = {
    "backlink_hash_length_byte_21": raw_entry(
        KEY, seq_num=b"\x02", backlink=_with_length_byte_21(LINK_2)
    ),
    "skiplink_hash_length_byte_21": raw_entry(
        KEY, seq_num=b"\x04", skiplink=_with_length_byte_21(LINK_1), backlink=LINK_2
    ),
    "payload_hash_length_byte_21": raw_entry(
        KEY, payload_hash=_with_length_byte_21(blake3_yasmf(b"\x11\x22\x33"))
    ),
    "tag_01": raw_entry(KEY, tag=b"\x01"),
    "tag_02": raw_entry(KEY, tag=b"\x02"),
    "tag_ff": raw_entry(KEY, tag=b"\xff"),
    "payload_size_mismatch": raw_entry(KEY, payload_size=varu64(999)),
    "payload_size_zero_for_three_bytes": raw_entry(KEY, payload_size=b"\x00"),
    "log_id_max_u64_seq_2": raw_entry(
        KEY, log_id=varu64(2**64 - 1), seq_num=b"\x02", backlink=LINK_2
    ),
}

# -- operations -----------------------------------------------------------------------------------

SCHEMA = "venue_0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
ID_A = "0020" + "1a" * 32
ID_B = "0020" + "2b" * 32
ID_C = "0020" + "3c" * 32
_A = bytes.fromhex(ID_A)

ONE = cbor_int(1)
CREATE = cbor_int(0)
UPDATE = cbor_int(1)
DELETE = cbor_int(2)
S = cbor_text(SCHEMA)
FIELDS = cbor_map((cbor_text("a"), cbor_text("x")))
PREVIOUS = cbor_hashes(ID_A)


def _create_with(value: bytes) -> bytes:
    """A CREATE whose only field ``a`` has the given (raw CBOR) value."""
    return cbor_array(ONE, CREATE, S, cbor_map((cbor_text("a"), value)))


def _with_schema_id(schema_id: str) -> bytes:
    return cbor_array(ONE, CREATE, cbor_text(schema_id), FIELDS)


_VALID_CREATE = cbor_array(ONE, CREATE, S, FIELDS)

OPERATIONS_REJECTED: dict[str, bytes] = {
    # not an operation at all
    "empty": b"",
    "top_level_map": cbor_map((cbor_text("a"), ONE)),
    "top_level_integer": ONE,
    "top_level_break_byte": b"\xff",
    "reserved_additional_info": b"\x1c",
    "truncated_array": _VALID_CREATE[:-1],
    "truncated_header": cbor_array(ONE, CREATE)[:2],
    "too_few_items": cbor_array(ONE, CREATE),
    # version and action
    "version_0": cbor_array(cbor_int(0), CREATE, S, FIELDS),
    "version_2": cbor_array(cbor_int(2), CREATE, S, FIELDS),
    "version_negative": cbor_array(cbor_int(-1), CREATE, S, FIELDS),
    "version_as_text": cbor_array(cbor_text("1"), CREATE, S, FIELDS),
    "version_as_float": cbor_array(b"\xf9\x3c\x00", CREATE, S, FIELDS),
    "action_3": cbor_array(ONE, cbor_int(3), S, FIELDS),
    "action_255": cbor_array(ONE, cbor_int(255), S, FIELDS),
    "action_negative": cbor_array(ONE, cbor_int(-1), S, FIELDS),
    "action_as_text": cbor_array(ONE, cbor_text("create"), S, FIELDS),
    # schema id
    "schema_id_as_bytes": cbor_array(ONE, CREATE, cbor_bytes(SCHEMA.encode()), FIELDS),
    # shape per action
    "create_without_fields": cbor_array(ONE, CREATE, S),
    "create_with_previous": cbor_array(ONE, CREATE, S, PREVIOUS, FIELDS),
    "create_with_two_field_maps": cbor_array(ONE, CREATE, S, FIELDS, FIELDS),
    "update_without_previous": cbor_array(ONE, UPDATE, S, FIELDS),
    "update_without_fields": cbor_array(ONE, UPDATE, S, PREVIOUS),
    "delete_with_fields": cbor_array(ONE, DELETE, S, PREVIOUS, FIELDS),
    "delete_without_previous": cbor_array(ONE, DELETE, S),
    "fields_as_array": cbor_array(ONE, CREATE, S, cbor_array(cbor_text("a"), cbor_text("x"))),
    # field map keys
    "unsorted_field_keys": cbor_array(
        ONE, CREATE, S, cbor_map((cbor_text("b"), ONE), (cbor_text("a"), ONE))
    ),
    "length_first_key_order": cbor_array(
        ONE, CREATE, S, cbor_map((cbor_text("b"), ONE), (cbor_text("aa"), ONE))
    ),
    "duplicate_field_keys": cbor_array(
        ONE, CREATE, S, cbor_map((cbor_text("a"), ONE), (cbor_text("a"), ONE))
    ),
    "field_key_not_text": cbor_array(ONE, CREATE, S, cbor_map((ONE, ONE))),
    # previous
    "unsorted_previous": cbor_array(ONE, DELETE, S, cbor_hashes(ID_B, ID_A)),
    "duplicate_previous": cbor_array(ONE, DELETE, S, cbor_hashes(ID_A, ID_A)),
    "empty_previous": cbor_array(ONE, DELETE, S, cbor_array()),
    "text_in_previous_array": cbor_array(ONE, DELETE, S, cbor_array(cbor_text(ID_A))),
    "previous_hash_of_33_bytes": cbor_array(ONE, DELETE, S, cbor_array(cbor_bytes(_A[:33]))),
    "previous_hash_of_35_bytes": cbor_array(ONE, DELETE, S, cbor_array(cbor_bytes(_A + b"\x00"))),
    "previous_hash_type_01": cbor_array(ONE, DELETE, S, cbor_array(cbor_bytes(b"\x01" + _A[1:]))),
    "previous_as_integer": cbor_array(ONE, DELETE, S, ONE),
    "previous_text_unsorted": cbor_array(ONE, DELETE, S, cbor_text(f"{ID_B}_{ID_A}")),
    # field values
    "int_above_i64_max": _create_with(cbor_head(0, 2**63)),
    "int_below_i64_min": _create_with(cbor_head(1, 2**63)),
    "int_u64_max": _create_with(cbor_head(0, 2**64 - 1)),
    "bignum_above_i64_max": _create_with(b"\xc2" + cbor_bytes((2**64).to_bytes(9, "big"))),
    "value_null": _create_with(b"\xf6"),
    "value_undefined": _create_with(b"\xf7"),
    "value_simple_0": _create_with(b"\xe0"),
    "value_map": _create_with(cbor_map()),
    "value_array_of_ints": _create_with(cbor_array(ONE, ONE)),
    "value_array_of_text": _create_with(cbor_array(cbor_text(ID_A))),
    "value_array_hash_and_int": _create_with(cbor_array(cbor_bytes(_A), ONE)),
    "value_array_of_short_bytes": _create_with(cbor_array(cbor_bytes(b"\x00\x20\x01"))),
    "value_array_of_hash_type_01": _create_with(cbor_array(cbor_bytes(b"\x01" + _A[1:]))),
    "value_three_levels_of_arrays": _create_with(cbor_array(cbor_array(cbor_hashes(ID_A)))),
    "value_list_of_lists_with_short_bytes": _create_with(
        cbor_array(cbor_array(cbor_bytes(b"\x00")))
    ),
    "value_tagged_text": _create_with(b"\xc0" + cbor_text("2023-11-19T00:00:00Z")),
    "value_text_invalid_utf8": _create_with(b"\x62\xff\xfe"),
    "field_key_invalid_utf8": cbor_array(ONE, CREATE, S, cbor_map((b"\x61\xff", ONE))),
}

# p2panda-js parses the schema id while decoding, and so does our ``decode_operation`` (with
# ``parse_schema_id``, core/schema_id.py): it must raise a ``SchemaIdError`` with p2panda's message.
OPERATIONS_WITH_MALFORMED_SCHEMA_ID: dict[str, bytes] = {
    "schema_id_unsupported_system_schema": cbor_array(ONE, CREATE, cbor_text("foo_v1"), FIELDS),
    "schema_id_one_letter_name": cbor_array(ONE, CREATE, cbor_text(f"a_{ID_A}"), FIELDS),
    "schema_id_unsorted_view_id": cbor_array(
        ONE, CREATE, cbor_text(f"venue_{ID_B}_{ID_A}"), FIELDS
    ),
    "schema_id_duplicate_view_id": cbor_array(
        ONE, CREATE, cbor_text(f"venue_{ID_A}_{ID_A}"), FIELDS
    ),
    "schema_id_bad_hash": cbor_array(ONE, CREATE, cbor_text("venue_" + "zz" * 34), FIELDS),
    "schema_id_empty": _with_schema_id(""),
    "schema_id_without_underscore": _with_schema_id("venue"),
    "schema_id_system_without_name": _with_schema_id("_v1"),
    "schema_id_system_without_version_number": _with_schema_id("blob_v"),
    "schema_id_application_name_v1": _with_schema_id("venue_v1"),
    "schema_id_truncated_hash": _with_schema_id(f"venue_{ID_A[:-2]}"),
    "schema_id_trailing_underscore": _with_schema_id(f"venue_{ID_A}_"),
    "schema_id_name_with_trailing_underscore": _with_schema_id(f"venue__{ID_A}"),
    "schema_id_name_of_65_chars": _with_schema_id(f"{'x' * 64}a_{ID_A}"),
}

OPERATIONS_ACCEPTED: dict[str, bytes] = {
    "canonical_create": _VALID_CREATE,
    "version_head_non_minimal_18_01": cbor_array(cbor_head(0, 1, width=1), CREATE, S, FIELDS),
    "action_head_non_minimal_19_0001": cbor_array(
        ONE, cbor_head(0, 1, width=2), S, PREVIOUS, FIELDS
    ),
    "text_length_non_minimal_78_01": cbor_array(
        ONE, CREATE, S, cbor_map((b"\x78\x01a", cbor_text("x")))
    ),
    "int_head_non_minimal_1b": _create_with(cbor_head(0, 5, width=8)),
    "array_length_non_minimal_98_04": b"\x98\x04" + ONE + CREATE + S + FIELDS,
    "top_level_indefinite_array": cbor_indefinite_array(ONE, CREATE, S, FIELDS),
    "fields_indefinite_map": cbor_array(
        ONE, CREATE, S, b"\xbf" + cbor_text("a") + ONE + cbor_text("b") + ONE + b"\xff"
    ),
    "previous_indefinite_array": cbor_array(ONE, DELETE, S, b"\x9f" + cbor_bytes(_A) + b"\xff"),
    "value_indefinite_hash_list": _create_with(b"\x9f" + cbor_bytes(_A) + b"\xff"),
    "value_indefinite_text_string": _create_with(
        b"\x7f" + cbor_text("pan") + cbor_text("da") + b"\xff"
    ),
    "value_indefinite_byte_string": _create_with(
        b"\x5f" + cbor_bytes(b"\x01") + cbor_bytes(b"\x02\x03") + b"\xff"
    ),
    "trailing_bytes_after_array": _VALID_CREATE + b"\x00\x01\x02",
    "trailing_garbage_after_array": _VALID_CREATE + b"\xff\xff",
    "indefinite_delete_with_fields_ignored": cbor_indefinite_array(
        ONE, DELETE, S, PREVIOUS, FIELDS
    ),
    "indefinite_create_with_second_map_ignored": cbor_indefinite_array(
        ONE, CREATE, S, FIELDS, cbor_map((cbor_text("z"), ONE))
    ),
    "previous_as_text_string": cbor_array(ONE, DELETE, S, cbor_text(f"{ID_A}_{ID_B}")),
    "previous_as_text_string_uppercase": cbor_array(ONE, DELETE, S, cbor_text(f"{ID_A.upper()}")),
    "previous_hash_length_byte_21": cbor_array(
        ONE, DELETE, S, cbor_array(cbor_bytes(b"\x00\x21" + _A[2:]))
    ),
    "float_3_5_as_f64": _create_with(bytes.fromhex("fb400c000000000000")),
    "float_3_5_as_f32": _create_with(bytes.fromhex("fa40600000")),
    "float_1_as_f64": _create_with(bytes.fromhex("fb3ff0000000000000")),
    "float_nan_as_f64": _create_with(bytes.fromhex("fb7ff8000000000000")),
    "float_negative_nan_f16": _create_with(bytes.fromhex("f9fe00")),
    "float_f16_subnormal": _create_with(bytes.fromhex("f90001")),
    "bignum_1": _create_with(b"\xc2" + cbor_bytes(b"\x01")),
    "bignum_with_leading_zeros": _create_with(b"\xc2" + cbor_bytes(b"\x00\x00\x01\x00")),
    "negative_bignum_1": _create_with(b"\xc3" + cbor_bytes(b"\x01")),
    "bignum_i64_max": _create_with(b"\xc2" + cbor_bytes((2**63 - 1).to_bytes(8, "big"))),
    "negative_bignum_i64_min": _create_with(b"\xc3" + cbor_bytes((2**63 - 1).to_bytes(8, "big"))),
    "field_name_empty": cbor_array(ONE, CREATE, S, cbor_map((cbor_text(""), ONE))),
    "field_name_starting_with_digit": cbor_array(ONE, CREATE, S, cbor_map((cbor_text("1a"), ONE))),
    "field_names_byte_order": cbor_array(
        ONE,
        CREATE,
        S,
        cbor_map(*((cbor_text(k), ONE) for k in ("B", "a_b", "aa", "b", "é", "中"))),
    ),
    "update_with_empty_fields": cbor_array(ONE, UPDATE, S, PREVIOUS, cbor_map()),
    "create_with_empty_fields": cbor_array(ONE, CREATE, S, cbor_map()),
    "value_empty_array": _create_with(cbor_array()),
    "value_list_of_one_empty_view": _create_with(cbor_array(cbor_array())),
    "value_list_of_unsorted_view": _create_with(cbor_array(cbor_hashes(ID_B, ID_A))),
    "value_hash_list_unsorted_with_duplicates": _create_with(cbor_hashes(ID_C, ID_A, ID_C)),
    "value_bytes_of_34_bytes": _create_with(cbor_bytes(_A)),
    "value_bytes_of_34_bytes_hash_type_01": _create_with(cbor_bytes(b"\x01" + _A[1:])),
    "system_schema_v2": _with_schema_id("schema_definition_v2"),
    "schema_id_uppercase_hash": _with_schema_id(f"venue_{ID_A.upper()}"),
    "schema_id_capitalised_name": _with_schema_id(f"Venue_{ID_A}"),
    "schema_id_name_of_64_chars": _with_schema_id(f"{'x' * 63}a_{ID_A}"),
    "schema_id_name_of_2_chars": _with_schema_id(f"a1_{ID_A}"),
    "schema_id_multi_view": cbor_array(
        ONE, CREATE, cbor_text(f"venue_{ID_A}_{ID_B}_{ID_C}"), FIELDS
    ),
}
