"""Operations: our encoder writes p2panda-js' bytes, and both decoders read the same values (§3).

Every case is checked three ways: ``encode_operation`` bytes equal p2panda-js ``encodeOperation``
bytes for the same typed input; p2panda-js ``decodeOperation`` reads our bytes as the expected
plain values; ``decode_operation`` reads p2panda-js' bytes as the same plain values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import pytest

from pandanode.core import (
    PandanodeError,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
    decode_operation,
    encode_operation,
)
from pandanode.core.operation import FieldValue

from .oracle_client import JsOperation, Oracle, Outcome, TypedSpec
from .support import (
    bits_float,
    encode_kwargs,
    float_bits,
    make_spec,
    normalise_js_operation,
    operation_json,
)

pytestmark = pytest.mark.interop

SCHEMA = "venue_0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
MULTI_VIEW_SCHEMA = (
    "events_0020" + "11" * 32 + "_0020" + "22" * 32 + "_0020" + "33" * 32
)  # a schema id whose view id has three operation ids
A = "0020" + "a1" * 32
B = "0020" + "b2" * 32
C = "0020" + "c3" * 32
D = "0020" + "04" * 32  # sorts before A
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
F32_MAX = 3.4028234663852886e38

VALUES: dict[str, FieldValue] = {
    "bool_true": True,
    "bool_false": False,
    **{
        f"int_{n}".replace("-", "minus_"): n
        for n in (0, 1, 23, 24, 255, 256, -1, -24, -25, -256, -257, -1000, 65535, 65536)
    },
    "int_u32_max": 2**32 - 1,
    "int_2_pow_32": 2**32,
    "int_i64_max": I64_MAX,
    "int_i64_min": I64_MIN,
    "float_zero": 0.0,
    "float_negative_zero": -0.0,
    "float_0_5": 0.5,
    "float_1_0": 1.0,
    "float_3_5": 3.5,
    "float_12_3": 12.3,
    "float_0_1": 0.1,
    "float_1e_minus_8": 1e-8,
    "float_65504": 65504.0,
    "float_65505": 65505.0,
    "float_100000": 100000.0,
    "float_f32_max": F32_MAX,
    "float_f32_max_times_2": F32_MAX * 2,
    "float_f16_smallest_subnormal": 2.0**-24,
    "float_f16_smallest_normal": 2.0**-14,
    "float_f32_smallest_subnormal": 2.0**-149,
    "float_f64_smallest_subnormal": 5e-324,
    "float_f64_max": 1.7976931348623157e308,
    "float_one_third": 1 / 3,
    "float_minus_pi": -math.pi,
    "float_2_pow_53": 2.0**53,
    "float_nan": math.nan,
    "float_infinity": math.inf,
    "float_minus_infinity": -math.inf,
    "str_empty": "",
    "str_ascii": "Hello, World!",
    "str_japanese": "しろくま",
    "str_emoji": "🐼🎋",
    "str_nul": "\x00",
    "str_23_bytes": "x" * 23,
    "str_24_bytes": "x" * 24,
    "str_300_chars": "ü" * 300,
    "str_70000_bytes": "y" * 70000,
    "bytes_empty": b"",
    "bytes_one_zero": b"\x00",
    "bytes_hello": b"hello",
    "bytes_24": bytes(range(24)),
    "bytes_34_like_a_hash": bytes.fromhex(A),
    "bytes_256": bytes(256),
    "bytes_65536": b"\xab" * 65536,
    "relation": Relation(A),
    "relation_list_empty": RelationList([]),
    "relation_list_one": RelationList([A]),
    "relation_list_unsorted_with_duplicates": RelationList([C, A, C, B, A]),
    "relation_list_of_30": RelationList([A, B, C] * 10),
    "pinned_relation_one": PinnedRelation([A]),
    "pinned_relation_unsorted": PinnedRelation([C, A, B]),
    "pinned_relation_from_view_id_string": PinnedRelation(f"{B}_{A}"),
    "pinned_relation_list_empty": PinnedRelationList([]),
    "pinned_relation_list_one": PinnedRelationList([[A]]),
    "pinned_relation_list_unsorted_views": PinnedRelationList([[C, B], [A], [B, D, A]]),
    "pinned_relation_list_duplicate_views": PinnedRelationList([[A], [A], [B, A]]),
    "pinned_relation_list_of_view_id_strings": PinnedRelationList([f"{B}_{C}", A]),
}

# p2panda-js normalises these view ids (sorted, duplicates removed); so must we.
NORMALISED_VALUES: dict[str, FieldValue] = {
    "pinned_relation_with_duplicate_ids": PinnedRelation([B, A, B]),
    "pinned_relation_list_with_duplicate_ids": PinnedRelationList([[A, A], [C, B, C]]),
    "pinned_relation_empty": PinnedRelation([]),
}

ALL_TYPES: dict[str, FieldValue] = {
    "a": "Hello, World!",
    "b": 123,
    "c": 12.3,
    "d": True,
    "e": b"\x00\x01\x02\x03",
    "f": Relation(A),
    "g": RelationList([B, A]),
    "h": PinnedRelation([C, A]),
    "i": PinnedRelationList([[A], [C, B]]),
    # names in byte-wise order differ from length-first and from "natural" order
    "B": 1,
    "a_b": 2,
    "aa": 3,
    "é": 4,
    "中": 5,
    "🐼": 6,
    "z" * 64: 7,
}


def _cases() -> dict[str, TypedSpec]:
    cases: dict[str, TypedSpec] = {}
    for name, value in {**VALUES, **NORMALISED_VALUES}.items():
        cases[f"create-{name}"] = make_spec("create", SCHEMA, None, {"value": value})
        cases[f"update-{name}"] = make_spec("update", SCHEMA, [A], {"value": value})
    cases["create-all_types"] = make_spec("create", SCHEMA, None, ALL_TYPES)
    cases["create-all_types_in_reverse_order"] = make_spec(
        "create", SCHEMA, None, dict(reversed(ALL_TYPES.items()))
    )
    cases["create-multi_view_schema_id"] = make_spec("create", MULTI_VIEW_SCHEMA, None, ALL_TYPES)
    cases["create-system_schema"] = make_spec(
        "create", "schema_field_definition_v1", None, {"name": "venue", "type": "str"}
    )
    cases["create-empty_fields"] = make_spec("create", SCHEMA, None, {})
    cases["update-empty_fields"] = make_spec("update", SCHEMA, [A], {})
    cases["update-previous_of_three"] = make_spec("update", SCHEMA, [D, A, C], {"x": 1})
    cases["delete-previous_of_one"] = make_spec("delete", SCHEMA, [A])
    cases["delete-previous_of_three"] = make_spec("delete", SCHEMA, [D, A, B])
    cases["delete-previous_of_30"] = make_spec(
        "delete", SCHEMA, sorted("0020" + f"{i:02x}" * 32 for i in range(30))
    )
    cases["delete-blob_piece"] = make_spec("delete", "blob_piece_v1", [B])
    # The digest length byte of a YASMF hash is not checked by p2panda (spec §1.3).
    cases["delete-previous_with_length_byte_00"] = make_spec("delete", SCHEMA, ["00" * 34])
    cases["update-relation_with_length_byte_21"] = make_spec(
        "update", SCHEMA, [A], {"value": Relation("0021" + A[4:])}
    )
    cases["update-view_id_string_as_previous"] = {
        "action": "update",
        "schemaId": SCHEMA,
        "previous": f"{A}_{B}",
        "fields": [["x", "str", "y"]],
    }
    return cases


CASES = _cases()


def _expected_plain(type_: str, value: Any) -> dict[str, Any]:
    """The plain value p2panda-js decodes a typed input to (independent of our codec)."""
    if type_ == "float":
        return {"float": "nan" if math.isnan(bits_float(value)) else value}
    if type_ in ("relation", "bytes"):
        return {"bytes": value}
    if type_ == "relation_list":
        return {"hashes": value}
    if type_ == "pinned_relation":
        return {"hashes": sorted(set(value))}
    if type_ == "pinned_relation_list":
        # An empty list is an ambiguous plain value: a flat (empty) list of hashes.
        return {"hashLists": [sorted(set(view)) for view in value]} if value else {"hashes": []}
    return {type_: value}


def _expected(spec: TypedSpec) -> dict[str, Any]:
    previous = spec["previous"]
    fields = spec["fields"]
    return {
        "version": 1,
        "action": spec["action"],
        "schemaId": spec["schemaId"],
        "previous": previous.split("_") if isinstance(previous, str) else previous,
        "fields": None
        if fields is None or spec["action"] == "delete"
        else [[n, _expected_plain(t, v)] for n, t, v in sorted(fields, key=lambda f: f[0])],
    }


@dataclass
class Checked:
    """One case: our encoding (or why it failed), p2panda-js' encoding, its decoding of ours."""

    ours: bytes | Exception
    js_encoded: Outcome
    js_decoded_ours: Outcome | None


def _check_all(oracle: Oracle, specs: dict[str, TypedSpec]) -> dict[str, Checked]:
    ours: dict[str, bytes | Exception] = {}
    for name, spec in specs.items():
        try:
            ours[name] = encode_operation(**encode_kwargs(spec))
        except Exception as error:  # reported by the test of that case
            ours[name] = error
    calls: list[tuple[str, dict[str, Any]]] = [
        ("encodeOperation", dict(spec)) for spec in specs.values()
    ]
    decodable = {name: data for name, data in ours.items() if isinstance(data, bytes)}
    calls += [("decodeOperation", {"operation": data.hex()}) for data in decodable.values()]
    answers = oracle.batch(calls)
    encoded = dict(zip(specs, answers[: len(specs)], strict=True))
    decoded = dict(zip(decodable, answers[len(specs) :], strict=True))
    return {name: Checked(ours[name], encoded[name], decoded.get(name)) for name in specs}


def _assert_interop(name: str, spec: TypedSpec, checked: Checked) -> None:
    js_bytes = bytes.fromhex(checked.js_encoded.unwrap())
    if isinstance(checked.ours, Exception):
        raise AssertionError(
            f"{name}: p2panda-js encodes {js_bytes.hex()}, encode_operation raised "
            f"{type(checked.ours).__name__}: {checked.ours}"
        )
    assert checked.ours.hex() == js_bytes.hex(), f"{name}: our bytes differ from p2panda-js"
    assert checked.js_decoded_ours is not None
    js_view: JsOperation = checked.js_decoded_ours.unwrap()
    expected = _expected(spec)
    assert normalise_js_operation(js_view) == expected, f"{name}: p2panda-js reads other values"
    assert operation_json(decode_operation(js_bytes)) == expected, f"{name}: we read other values"


@pytest.fixture(scope="module")
def checked_cases(oracle: Oracle) -> dict[str, Checked]:
    return _check_all(oracle, CASES)


@pytest.mark.parametrize("case", CASES)
def test_operation_encodes_like_js_and_both_decoders_read_it_back(
    checked_cases: dict[str, Checked], case: str
) -> None:
    _assert_interop(case, CASES[case], checked_cases[case])


def test_expected_values_of_the_float_cases_are_what_the_spec_table_says(
    checked_cases: dict[str, Checked],
) -> None:
    # Spec §3.2: shortest exact width. A guard on the oracle itself, not on our code.
    expected_tail = {
        "float_0_5": "f93800",
        "float_negative_zero": "f98000",
        "float_65504": "f97bff",
        "float_100000": "fa47c35000",
        "float_f32_max": "fa7f7fffff",
        "float_12_3": "fb402899999999999a",
        "float_1e_minus_8": "fb3e45798ee2308c3a",
        "float_nan": "f97e00",
        "float_infinity": "f97c00",
        "float_minus_infinity": "f9fc00",
    }
    for name, tail in expected_tail.items():
        assert checked_cases[f"create-{name}"].js_encoded.unwrap().endswith(tail), name


# -- random operations ----------------------------------------------------------------------------

_FIELD_NAMES = ("a", "b", "B", "aa", "a_b", "Z9", "x" * 64, "é", "中", "🐼", "name", "type", "c_")


def _random_id(rng: random.Random) -> str:
    return "0020" + rng.randbytes(32).hex()


def _random_float(rng: random.Random) -> float:
    choice = rng.randrange(4)
    if choice == 0:
        return rng.choice([0.0, -0.0, 0.5, 65504.0, 1e-8, F32_MAX, math.inf, -math.inf, math.nan])
    if choice == 1:
        while True:
            value = bits_float(rng.randbytes(8).hex())
            if not math.isnan(value):
                return value
    if choice == 2:
        return math.ldexp(rng.randrange(-2048, 2048), -rng.randrange(30))
    return rng.uniform(-1, 1) * 10.0 ** rng.randrange(-30, 30)


def _random_value(rng: random.Random) -> FieldValue:
    kind = rng.randrange(9)
    if kind == 0:
        return rng.random() < 0.5
    if kind == 1:
        return rng.choice(
            [0, 23, 24, -1, -24, -25, I64_MIN, I64_MAX, rng.randint(I64_MIN, I64_MAX)]
        )
    if kind == 2:
        return _random_float(rng)
    if kind == 3:
        alphabet = 'aZ_1 éß€中🐼"\\\n\x00'
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 23, 24, 40])))
    if kind == 4:
        return rng.randbytes(rng.choice([0, 1, 23, 24, 34, 255, 256]))
    if kind == 5:
        return Relation(_random_id(rng))
    if kind == 6:
        ids = [_random_id(rng) for _ in range(rng.randrange(5))]
        return RelationList(ids + ids[: rng.randrange(len(ids) + 1)])
    if kind == 7:
        return PinnedRelation([_random_id(rng) for _ in range(1 + rng.randrange(4))])
    views = [
        [_random_id(rng) for _ in range(1 + rng.randrange(3))] for _ in range(rng.randrange(4))
    ]
    return PinnedRelationList(views)


def _random_spec(rng: random.Random) -> TypedSpec:
    action = rng.choice(["create", "create", "update", "delete"])
    schema_id = rng.choice(
        [SCHEMA, MULTI_VIEW_SCHEMA, "blob_v1", "schema_definition_v1", f"a1_{_random_id(rng)}"]
    )
    previous = None
    if action != "create":
        previous = sorted({_random_id(rng) for _ in range(1 + rng.randrange(3))})
    fields = None
    if action != "delete":
        names = rng.sample(_FIELD_NAMES, rng.randrange(len(_FIELD_NAMES)))
        fields = {name: _random_value(rng) for name in names}
    return make_spec(action, schema_id, previous, fields)


def test_random_operations_from_a_seeded_generator_encode_and_decode_like_js(
    oracle: Oracle,
) -> None:
    rng = random.Random(0x2A2A)
    specs = {f"seeded-{i}": _random_spec(rng) for i in range(400)}
    checked = _check_all(oracle, specs)
    for name, spec in specs.items():
        _assert_interop(name, spec, checked[name])


def test_fresh_random_operations_made_up_by_js_encode_and_decode_like_ours(
    oracle: Oracle,
) -> None:
    made = oracle.random_operations(300)
    ours_decoded = [decode_operation(bytes.fromhex(m["operation"])) for m in made]
    js_decoded = oracle.batch([("decodeOperation", {"operation": m["operation"]}) for m in made])
    for made_one, ours, js in zip(made, ours_decoded, js_decoded, strict=True):
        spec = made_one["spec"]
        encoded = encode_operation(**encode_kwargs(spec))
        assert encoded.hex() == made_one["operation"], f"spec {spec!r}"
        assert operation_json(ours) == normalise_js_operation(js.unwrap()) == _expected(spec)


def test_spec_vectors_decode_to_the_same_values_in_js_and_here(
    oracle: Oracle, spec_vectors: dict[str, Any]
) -> None:
    operations = [
        spec_vectors["D"]["operation"],
        spec_vectors["E"]["field_definition_title"]["operation"],
        spec_vectors["E"]["schema_definition"]["operation"],
        *spec_vectors["operation_examples"].values(),
    ]
    answers = oracle.batch([("decodeOperation", {"operation": op}) for op in operations])
    for operation, answer in zip(operations, answers, strict=True):
        ours = decode_operation(bytes.fromhex(operation))
        assert operation_json(ours) == normalise_js_operation(answer.unwrap())


def test_a_float_survives_the_json_bridge_bit_for_bit() -> None:
    # Guards the oracle convention itself: NaN, infinities and -0.0 must not be lost in JSON.
    for value in (math.inf, -math.inf, -0.0, 5e-324, F32_MAX):
        assert float_bits(bits_float(float_bits(value))) == float_bits(value)
    assert math.isnan(bits_float(float_bits(math.nan)))


@pytest.mark.parametrize(
    ("action", "previous", "with_fields"),
    [
        pytest.param("update", [B, A], True, id="update_with_unsorted_previous"),
        pytest.param("update", [A, A], True, id="update_with_duplicate_previous"),
        pytest.param("update", [], True, id="update_with_empty_previous"),
        pytest.param("update", None, True, id="update_without_previous"),
        pytest.param("update", [A], False, id="update_without_fields"),
        pytest.param("create", None, False, id="create_without_fields"),
        pytest.param("delete", None, False, id="delete_without_previous"),
        pytest.param("update", ["01" + A[2:]], True, id="previous_hash_type_01"),
        pytest.param("update", [A[:-2]], True, id="previous_too_short"),
    ],
)
def test_encoder_refuses_what_js_refuses(
    oracle: Oracle, action: str, previous: list[str] | None, with_fields: bool
) -> None:
    spec: TypedSpec = {
        "action": action,
        "schemaId": SCHEMA,
        "previous": previous,
        "fields": [["x", "int", "1"]] if with_fields else None,
    }
    js = oracle.request("encodeOperation", spec)
    assert not js.accepted, f"p2panda-js encoded {js.ok}"
    with pytest.raises(PandanodeError):
        encode_operation(**encode_kwargs(spec))


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        pytest.param("int", str(I64_MAX + 1), id="int_above_i64"),
        pytest.param("int", str(I64_MIN - 1), id="int_below_i64"),
        pytest.param("relation", "0120" + A[4:], id="relation_hash_type_01"),
        pytest.param("relation", A[:-2], id="relation_too_short"),
        pytest.param("relation_list", [A, "zz" * 34], id="relation_list_with_non_hex"),
        pytest.param("pinned_relation", [A, "01" + A[2:]], id="pinned_relation_hash_type_01"),
    ],
)
def test_encoder_refuses_field_values_js_refuses(oracle: Oracle, type_: str, value: Any) -> None:
    spec: TypedSpec = {
        "action": "create",
        "schemaId": SCHEMA,
        "previous": None,
        "fields": [["x", type_, value]],
    }
    js = oracle.request("encodeOperation", spec)
    assert not js.accepted, f"p2panda-js encoded {js.ok}"
    with pytest.raises(PandanodeError):
        encode_operation(**encode_kwargs(spec))
