"""Values in and out without a node: query messages to plain Python values, filters to
messages, command-line strings to field values."""

from __future__ import annotations

import pytest

from pandanode.client import Document, SchemaError
from pandanode.client._cli_values import parse_filters, parse_value
from pandanode.client._requests import filters as _filters
from pandanode.client._values import document_from_pb, schema_from_pb, to_field_value
from pandanode.client.cli import UsageError
from pandanode.core import PinnedRelation, Relation, SchemaId
from pandanode.core.schema import FieldType, Schema
from pandanode.query.v1 import query_pb2 as qpb

A = "0020" + "aa" * 32
B = "0020" + "bb" * 32
OWNER = "11" * 32


def test_documents_come_back_with_plain_values() -> None:
    related = qpb.Document(document_id=B, document_view_id=B, schema_id="place_" + A)
    related.fields["name"].str_value = "Hall"
    message = qpb.Document(
        document_id=A, document_view_id=f"{A}_{B}", schema_id="gig_" + A, owner=OWNER, edited=True
    )
    message.fields["title"].str_value = "Launch"
    message.fields["seats"].int_value = -3
    message.fields["price"].float_value = 0.5
    message.fields["open"].bool_value = False
    message.fields["code"].bytes_value = b"\x01"
    message.fields["venue"].relation.document_id = B
    message.fields["resolved"].relation.CopyFrom(qpb.RelationValue(document_id=B, document=related))
    message.fields["pinned"].pinned_relation.document_view_id = B
    message.fields["list"].relation_list.items.add(document_id=A)
    message.fields["pins"].pinned_relation_list.items.add(document_view_id=B)
    document = document_from_pb(message)
    assert isinstance(document, Document)
    assert (document.id, document.view_id, document.owner, document.edited) == (
        A,
        f"{A}_{B}",
        OWNER,
        True,
    )
    assert document["title"] == "Launch" and document["seats"] == -3
    assert document["price"] == 0.5 and document["open"] is False and document["code"] == b"\x01"
    assert document["venue"] == B and document["pinned"] == B
    assert document["list"] == [A] and document["pins"] == [B]
    resolved = document["resolved"]
    assert isinstance(resolved, Document) and resolved["name"] == "Hall"
    as_json = document.to_dict()
    assert as_json["fields"]["code"] == "01"  # type: ignore[index]
    assert as_json["fields"]["resolved"]["document_id"] == B  # type: ignore[index]


def test_schemas_come_back_as_core_schemas() -> None:
    message = qpb.Schema(schema_id="gig_" + A, name="gig", description="A gig")
    message.fields.add(name="title", kind=qpb.FIELD_KIND_STR, type="str")
    message.fields.add(name="venue", kind=qpb.FIELD_KIND_RELATION, target_schema_id="place_" + B)
    schema = schema_from_pb(message)
    assert schema.id == SchemaId.from_str("gig_" + A)
    assert str(schema.fields["venue"]) == f"relation(place_{B})"


SCHEMA = Schema(
    SchemaId.from_str("gig_" + A),
    "",
    {
        "title": FieldType("str"),
        "price": FieldType("float"),
        "seats": FieldType("int"),
        "venue": FieldType("relation", SchemaId.from_str("place_" + B)),
    },
)


def test_filters_are_python_values() -> None:
    filters = _filters(
        SCHEMA,
        {"title__contains": "aun", "price__gte": 10, "venue__in": [A, B], "@owner": OWNER},
    )
    assert filters[0].field == "title" and filters[0].value.str_value == "aun"
    assert filters[1].operator == qpb.FILTER_OPERATOR_GTE
    # An int for a float field is sent as it is: the node compares it by exact value, which a
    # conversion to float would lose for ints beyond 2**53.
    assert filters[1].value.WhichOneof("value") == "int_value"
    assert _filters(SCHEMA, {"price__lt": 2**53 + 1})[0].value.int_value == 2**53 + 1
    assert _filters(SCHEMA, {"price": 1.5})[0].value.float_value == 1.5
    assert [v.str_value for v in filters[2].values] == [A, B]
    assert filters[3].meta == qpb.META_FIELD_OWNER
    with pytest.raises(SchemaError, match="title: str"):
        _filters(SCHEMA, {"titel": "x"})
    with pytest.raises(ValueError, match="unknown filter operator"):
        _filters(SCHEMA, {"title__like": "x"})


def test_command_line_filters_and_values() -> None:
    assert parse_filters(
        ["seats>=100", "title~aun", "price__in=1,2.5", "@edited=true"], SCHEMA
    ) == {
        "seats__gte": 100,
        "title__contains": "aun",
        "price__in": [1.0, 2.5],
        "@edited__eq": True,
    }
    with pytest.raises(UsageError, match="has no field 'sets'"):
        parse_filters(["sets>1"], SCHEMA)
    assert parse_value("ff00", FieldType("bytes")) == b"\xff\x00"
    assert parse_value(f"{A},{B}", FieldType("relation_list", SCHEMA.id)) == [A, B]


def test_typed_values_for_each_kind() -> None:
    target = SchemaId.from_str("place_" + B)
    assert to_field_value("v", A.upper(), FieldType("relation", target)) == Relation(A)
    assert to_field_value("p", f"{B}_{A}", FieldType("pinned_relation", target)) == PinnedRelation(
        [A, B]
    )
    with pytest.raises(SchemaError, match="not a document id"):
        to_field_value("v", "nope", FieldType("relation", target))
    with pytest.raises(SchemaError, match="True or False"):
        to_field_value("b", 1, FieldType("bool"))
    with pytest.raises(SchemaError, match="out of range"):
        to_field_value("i", 2**63, FieldType("int"))
