"""Unit tests of the GraphQL schema building, the scalars and the lenient validation rule."""

# graphql-core annotates GraphQLNamedType.__new__ as returning the base class, so pyright types
# every GraphQLObjectType(...), GraphQLScalarType(...) … as a plain GraphQLNamedType; mypy (strict)
# ignores that annotation and checks these arguments, returns and assignments.
# pyright: reportArgumentType=false

from __future__ import annotations

import pytest
from graphql import GraphQLError, GraphQLField, GraphQLString, parse, validate

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.services.gateway.scalars import INT64, check_view_id
from pandanode.services.gateway.schema import SchemaTypes, build_schema
from pandanode.services.gateway.validation import RULES

TAG = qpb.Schema(
    schema_id="tag_0020" + "ab" * 32,
    name="tag",
    fields=[
        qpb.SchemaField(name="name", kind=qpb.FIELD_KIND_STR),
        qpb.SchemaField(
            name="parent", kind=qpb.FIELD_KIND_RELATION, target_schema_id="tag_0020" + "ab" * 32
        ),
        qpb.SchemaField(
            name="gone", kind=qpb.FIELD_KIND_RELATION, target_schema_id="unknown_0020" + "cd" * 32
        ),
    ],
)


def errors(query: str) -> list[str]:
    return [e.message for e in validate(build_schema([TAG]), parse(query), RULES)]


def test_string_variables_may_feed_string_scalars_but_not_other_types() -> None:
    assert errors("query Q($pk: String!) { nextArgs(publicKey: $pk) { logId } }") == []
    assert errors("query Q($pk: String) { nextArgs(publicKey: $pk) { logId } }") == []
    assert errors(f"query Q($f: String) {{ all_{TAG.schema_id}(first: $f) {{ totalCount }} }}") == [
        "Variable '$f' of type 'String' used in position expecting type 'Int'."
    ]


def test_relations_to_unknown_schemas_are_left_out_and_known_ones_typed() -> None:
    fields = build_schema([TAG]).get_type(f"{TAG.schema_id}Fields")
    assert set(fields.fields) == {"name", "parent"}  # type: ignore[union-attr]


def test_a_subscription_root_is_added_when_asked_for() -> None:
    def subscriptions(types: SchemaTypes) -> dict[str, GraphQLField]:
        return {f"all_{s}": GraphQLField(GraphQLString) for s in types.documents}

    schema = build_schema([TAG], subscriptions)
    assert schema.subscription_type is not None
    assert set(schema.subscription_type.fields) == {f"all_{TAG.schema_id}"}
    assert build_schema([TAG]).subscription_type is None


def test_int_is_64_bit_both_ways() -> None:
    assert INT64.parse_value(2**63 - 1) == 2**63 - 1
    assert INT64.serialize(-(2**63)) == -(2**63)
    for bad in (2**63, 1.5, "1", True):
        with pytest.raises(GraphQLError):
            INT64.parse_value(bad)


def test_view_ids_must_be_sorted_and_unique() -> None:
    a, b = "0020" + "aa" * 32, "0020" + "bb" * 32
    assert check_view_id(f"{a}_{b}") == f"{a}_{b}"
    for bad in (f"{b}_{a}", f"{a}_{a}", "0020zz", ""):
        with pytest.raises(GraphQLError):
            check_view_id(bad)
