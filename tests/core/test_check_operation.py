"""check_operation gives validate_operation's verdict (and error) without building typed values.

Publishing only needs the verdict, so it takes a quick path for the common operations; these
tests hold it to exactly the answers of :func:`validate_operation`, on hand-picked edge cases
and on generated operations against schemas of every field type.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.errors import PandanodeError
from pandanode.core.hash import generate_hash
from pandanode.core.operation import Action, Operation, PlainValue
from pandanode.core.schema import (
    BLOB_PIECE_V1,
    SCHEMA_FIELD_DEFINITION_V1,
    FieldType,
    Schema,
    SchemaId,
    check_operation,
    validate_operation,
)

VIEW = generate_hash(b"definition")
OTHER_VIEW = generate_hash(b"other definition")
OP_ID = generate_hash(b"an operation")
TARGET = SchemaId.application("target", VIEW)
SCALARS = Schema(
    SchemaId.application("scalars", VIEW),
    "every scalar field type",
    {
        "a_bool": FieldType("bool"),
        "an_int": FieldType("int"),
        "a_float": FieldType("float"),
        "a_str": FieldType("str"),
        "some_bytes": FieldType("bytes"),
    },
)
MIXED = Schema(
    SchemaId.application("mixed", VIEW),
    "scalars and relations",
    {
        "title": FieldType("str"),
        "rank": FieldType("int"),
        "parent": FieldType("relation", TARGET),
        "tags": FieldType("relation_list", TARGET),
        "pinned": FieldType("pinned_relation", TARGET),
        "pins": FieldType("pinned_relation_list", TARGET),
    },
)
SCHEMAS = (SCALARS, MIXED, SCHEMA_FIELD_DEFINITION_V1, BLOB_PIECE_V1)


def _verdict(check: object, operation: Operation, schema: Schema) -> tuple[object, ...]:
    """None when accepted, else the error's type, reason, message and details."""
    try:
        check(operation, schema)  # type: ignore[operator]
    except PandanodeError as err:
        return (type(err), err.reason, err.message, dict(err.metadata))
    return ()


def _same_verdict(operation: Operation, schema: Schema) -> tuple[object, ...]:
    expected = _verdict(validate_operation, operation, schema)
    assert _verdict(check_operation, operation, schema) == expected
    return expected


def _operation(
    fields: Mapping[str, PlainValue] | None,
    *,
    action: Action = "create",
    previous: tuple[str, ...] | None = None,
    schema_id: str = str(SCALARS.id),
    version: int = 1,
) -> Operation:
    return Operation(version, action, schema_id, previous, fields)


ALL_SCALARS: dict[str, PlainValue] = {
    "a_bool": True,
    "a_float": 1.5,
    "a_str": "text",
    "an_int": -(2**63),
    "some_bytes": b"\x00\x01",
}


def test_a_create_with_every_scalar_field_is_accepted() -> None:
    assert _same_verdict(_operation(ALL_SCALARS), SCALARS) == ()


def test_an_update_of_some_fields_and_of_none_is_accepted() -> None:
    for fields in ({"a_str": "new"}, {}):
        operation = _operation(fields, action="update", previous=(OP_ID,))
        assert _same_verdict(operation, SCALARS) == ()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("an_int", True),  # a bool is no int
        ("an_int", 2**63),  # outside i64
        ("an_int", -(2**63) - 1),
        ("an_int", 1.0),
        ("a_bool", 1),
        ("a_float", 1),
        ("a_str", b"text"),
        ("some_bytes", "00"),
        ("a_str", (OP_ID,)),
    ],
)
def test_a_value_of_another_type_is_rejected_with_the_same_error(
    name: str, value: PlainValue
) -> None:
    fields = {**ALL_SCALARS, name: value}
    assert _same_verdict(_operation(fields), SCALARS) != ()
    update = _operation({name: value}, action="update", previous=(OP_ID,))
    assert _same_verdict(update, SCALARS) != ()


def test_a_missing_or_unexpected_field_is_rejected_with_the_same_error() -> None:
    missing = {k: v for k, v in ALL_SCALARS.items() if k != "a_str"}
    assert _same_verdict(_operation(missing), SCALARS) != ()
    renamed = {**missing, "a_text": "x"}  # as many fields as the schema, one of them unknown
    assert _same_verdict(_operation(renamed), SCALARS) != ()
    extra = {**ALL_SCALARS, "zzz": 1}
    assert _same_verdict(_operation(extra), SCALARS) != ()


@pytest.mark.parametrize(
    "operation",
    [
        _operation(ALL_SCALARS, previous=()),  # a CREATE with an (empty) previous
        _operation(ALL_SCALARS, previous=(OP_ID,)),
        _operation({"a_str": "x"}, action="update"),  # an UPDATE without previous
        _operation({"a_str": "x"}, action="update", previous=()),
        _operation(None, action="update", previous=(OP_ID,)),
        _operation(None, action="delete", previous=(OP_ID,)),
        _operation({}, action="delete", previous=(OP_ID,)),
        _operation(ALL_SCALARS, action="other", previous=None),  # type: ignore[arg-type]
        _operation(ALL_SCALARS, version=2),
        _operation(ALL_SCALARS, schema_id=f"scalars_{OTHER_VIEW}"),
        _operation(ALL_SCALARS, schema_id="scalars"),
        _operation(ALL_SCALARS, schema_id="blob_piece_v1"),
    ],
)
def test_a_malformed_or_misdirected_operation_gets_the_same_verdict(operation: Operation) -> None:
    _same_verdict(operation, SCALARS)


def test_system_schemas_and_relation_fields_get_the_same_verdict() -> None:
    definition = Operation(
        1, "create", "schema_field_definition_v1", None, {"name": "title", "type": "str"}
    )
    assert _same_verdict(definition, SCHEMA_FIELD_DEFINITION_V1) == ()
    bad_type = Operation(
        1, "create", "schema_field_definition_v1", None, {"name": "title", "type": "text"}
    )
    assert _same_verdict(bad_type, SCHEMA_FIELD_DEFINITION_V1) != ()
    relation = _operation(
        {"parent": bytes.fromhex(OP_ID)},
        action="update",
        previous=(OP_ID,),
        schema_id=str(MIXED.id),
    )
    assert _same_verdict(relation, MIXED) == ()
    short = _operation(
        {"parent": b"\x00"}, action="update", previous=(OP_ID,), schema_id=str(MIXED.id)
    )
    assert _same_verdict(short, MIXED) != ()


_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=40),
    st.just(bytes.fromhex(OP_ID)),
    st.lists(st.sampled_from([OP_ID, OP_ID.upper(), "00", VIEW]), max_size=3).map(tuple),
    st.lists(st.lists(st.sampled_from([OP_ID, VIEW]), max_size=2).map(tuple), max_size=2).map(
        tuple
    ),
)
_names = st.sampled_from(
    ["a_bool", "an_int", "a_float", "a_str", "some_bytes", "title", "rank", "parent", "tags",
     "pinned", "pins", "name", "type", "data", "unknown"]
)  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(
    schema=st.sampled_from(SCHEMAS),
    action=st.sampled_from(["create", "update", "delete"]),
    previous=st.sampled_from([None, (), (OP_ID,)]),
    fields=st.one_of(st.none(), st.dictionaries(_names, _values, max_size=6)),
    claims_other_schema=st.booleans(),
    version=st.sampled_from([1, 1, 1, 2]),
)
def test_generated_operations_get_the_same_verdict(
    schema: Schema,
    action: Action,
    previous: tuple[str, ...] | None,
    fields: dict[str, PlainValue] | None,
    claims_other_schema: bool,
    version: int,
) -> None:
    schema_id = str(SCALARS.id if claims_other_schema and schema is not SCALARS else schema.id)
    _same_verdict(Operation(version, action, schema_id, previous, fields), schema)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "a_bool": _values,
            "an_int": _values,
            "a_float": _values,
            "a_str": _values,
            "some_bytes": _values,
        },
    ),
    action=st.sampled_from(["create", "update"]),
)
def test_generated_scalar_operations_get_the_same_verdict(
    fields: dict[str, PlainValue], action: Action
) -> None:
    previous = None if action == "create" else (OP_ID,)
    _same_verdict(_operation(fields, action=action, previous=previous), SCALARS)
