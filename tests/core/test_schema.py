"""Schemas (spec §5): field types, system schemas, validation and building.

Schema ids and the name rules are tested in test_schema_id.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pandanode.core.errors import (
    OperationDecodeError,
    Reason,
    SchemaError,
    SchemaIdError,
)
from pandanode.core.hash import generate_hash
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import (
    Action,
    Operation,
    PinnedRelation,
    PinnedRelationList,
    PlainValue,
    Relation,
    RelationList,
    decode_operation,
)
from pandanode.core.schema import (
    BLOB_PIECE_V1,
    BLOB_PIECE_V1_ID,
    BLOB_V1,
    BLOB_V1_ID,
    SCHEMA_DEFINITION_V1,
    SCHEMA_DEFINITION_V1_ID,
    SCHEMA_FIELD_DEFINITION_V1,
    SCHEMA_FIELD_DEFINITION_V1_ID,
    SYSTEM_SCHEMAS,
    FieldType,
    Schema,
    SchemaId,
    build_schema,
    field_type_from_definition,
    is_valid_field_type_definition,
    is_valid_mime_type,
    parse_schema_id,
    system_schema,
    validate_operation,
)

# Spec §11.6: two field definitions and the schema definition that lists them.
TITLE_VIEW = "00202b9b7d72931d692513cc56a75f871a4126e788247fefee50202b5619648c9be6"
IMAGE_VIEW = "002035e10422bafc98ebd37ae36c473301204d1b676b873a4e9d0c4e997da4ac22e2"
POST_DEFINITION_VIEW = "00209a546c90393a994ecfa89b01815fb4935f258a7a846320f5214a5ff25cd2f606"
POST_SCHEMA_ID = f"post_{POST_DEFINITION_VIEW}"
VENUE_HASH = "0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
VENUE_SCHEMA_ID = f"venue_{VENUE_HASH}"

A = "00200000000000000000000000000000000000000000000000000000000000000000"
B = "00201111111111111111111111111111111111111111111111111111111111111111"
C = "00202222222222222222222222222222222222222222222222222222222222222222"


def op(
    schema_id: str | SchemaId,
    fields: Mapping[str, PlainValue] | None,
    action: Action = "create",
    previous: tuple[str, ...] | None = None,
) -> Operation:
    if action != "create" and previous is None:
        previous = (A,)
    return Operation(1, action, str(schema_id), previous, fields)


def post_schema() -> Schema:
    return build_schema(
        POST_DEFINITION_VIEW,
        {"name": "post", "description": "A post", "fields": [[TITLE_VIEW], [IMAGE_VIEW]]},
        {
            TITLE_VIEW: {"name": "title", "type": "str"},
            IMAGE_VIEW: {"name": "image", "type": "relation(blob_v1)"},
        },
    )


def every_type_schema() -> Schema:
    target = SchemaId.system("blob")
    return Schema(
        SchemaId.application("every_type", A),
        "One field of each type",
        {
            "b": FieldType("bool"),
            "i": FieldType("int"),
            "f": FieldType("float"),
            "s": FieldType("str"),
            "y": FieldType("bytes"),
            "r": FieldType("relation", target),
            "rl": FieldType("relation_list", target),
            "p": FieldType("pinned_relation", target),
            "pl": FieldType("pinned_relation_list", target),
        },
    )


def validate_field(name: str, value: PlainValue) -> object:
    """Validate one field of the every-type schema through an UPDATE."""
    schema = every_type_schema()
    return validate_operation(op(schema.id, {name: value}, "update"), schema)[name]


def reject_field(name: str, value: PlainValue, reason: Reason) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        validate_field(name, value)
    assert info.value.reason == reason
    return info.value


# --------------------------------------------------------------------------------------------
# MIME types (spec §5.3; accept/reject lists of p2panda-rs)


@pytest.mark.parametrize(
    "mime_type",
    [
        "video/webm",
        "image/webp",
        "x-conference/x-cooltalk",
        "application/vnd.cluetrust.cartomobile-config-pkg",
        "application/emma+xml",
        "my/made.up.mime.type",
        "text/plain",
    ],
)
def test_mime_type_accepts(mime_type: str) -> None:
    assert is_valid_mime_type(mime_type)


@pytest.mark.parametrize(
    "mime_type",
    [
        "wrong format",
        "wrong_format",
        "wrong/f o r m a t",
        "wrong/!format!",
        "wrong/for..mat",
        "wro.ng/for..mat",
        "this/mime.type.has.one.too.many.elements.yes",
        "this/mime.type.hasoneelementwhichiswaytoolong",
        "thismimetypealsohasonelongelement/one.element.too.long",
        "text/plain\n",
        "Text/Plain",
    ],
)
def test_mime_type_rejects(mime_type: str) -> None:
    assert not is_valid_mime_type(mime_type)


# --------------------------------------------------------------------------------------------
# Field types


@pytest.mark.parametrize(
    "text",
    [
        "bool",
        "int",
        "float",
        "str",
        "bytes",
        "relation(schema_field_definition_v1)",
        "relation_list(schema_field_definition_v1)",
        "pinned_relation(blob_v1)",
        "pinned_relation_list(blob_piece_v1)",
        f"relation({VENUE_SCHEMA_ID})",
        f"relation_list(bees_{A}_{B})",
    ],
)
def test_field_type_parses_and_prints_every_kind(text: str) -> None:
    field_type = FieldType.from_str(text)
    assert str(field_type) == text
    assert field_type == field_type_from_definition(text)
    assert field_type.is_relation == ("(" in text)


def test_field_type_relation_carries_its_target_schema_id() -> None:
    field_type = FieldType.from_str("relation(blob_v1)")
    assert field_type.kind == "relation"
    assert field_type.schema_id == SchemaId.system("blob")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "string",
        "Bool",
        "relation",
        "relation()",
        "relation(no_no_no)",
        "foo(blob_v1)",
        " relation(blob_v1)",
        "relation(blob_v1)x",
        f"pinned_relation_list(unordered_{B}_{A})",
    ],
)
def test_field_type_from_str_is_strict(text: str) -> None:
    with pytest.raises(SchemaError) as info:
        FieldType.from_str(text)
    assert info.value.reason == Reason.INVALID_FIELD_DEFINITION


def test_field_type_checks_its_target_schema_id() -> None:
    with pytest.raises(SchemaError):
        FieldType("relation")
    with pytest.raises(SchemaError):
        FieldType("str", SchemaId.system("blob"))
    with pytest.raises(SchemaError):
        FieldType("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" relation(blob_v1)xyz", "relation(blob_v1)"),
        ("relation(blob_v1)\n)", "relation(blob_v1)"),
        ("relation_list(blob_v1) then (more)", None),
        ("pinned_relation(blob_v1)", "pinned_relation(blob_v1)"),
    ],
)
def test_field_type_from_definition_reads_types_like_p2panda(
    text: str, expected: str | None
) -> None:
    if expected is None:
        with pytest.raises(SchemaError):
            field_type_from_definition(text)
    else:
        assert str(field_type_from_definition(text)) == expected


@pytest.mark.parametrize(
    "text", ["", "()", "relation", "relation()", "foo(blob_v1)", "relation(blob_v1))", "strx"]
)
def test_field_type_from_definition_rejects(text: str) -> None:
    with pytest.raises(SchemaError) as info:
        field_type_from_definition(text)
    assert info.value.reason == Reason.INVALID_FIELD_DEFINITION


@pytest.mark.parametrize(
    "text",
    [
        "bool",
        "int",
        "str",
        "bytes",
        "float",
        "relation(schema_field_definition_v1)",
        "relation(schema_definition_v1)",
        f"relation(venues_with_garden_{A})",
        f"pinned_relation(monkeys_{A})",
        f"relation_list(bees_{A}_{B}_{C})",
        f"pinned_relation_list(and_recommendations_{A}_{C})",
        "foo(blob_v1)",  # quirk: the word before the parenthesis is not checked
        "see relation(blob_v1) here",  # quirk: unanchored
    ],
)
def test_field_type_definition_check_accepts(text: str) -> None:
    assert is_valid_field_type_definition(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "floaty",
        "boaty",
        "string",
        f"relation(inny!_boxy!_dynny!_thingy!_{A})",
        "pinned_relation(his_is_not_a_hash)",
        "relation_list(enues_00201234)",
        f"pinned_relation_list(unordered_operation_ids_{B}_{A})",
        f"relation(duplicate_operation_ids_{A}_{A})",
        "relation(blob_v1",
        "bool ",
    ],
)
def test_field_type_definition_check_rejects(text: str) -> None:
    assert not is_valid_field_type_definition(text)


# --------------------------------------------------------------------------------------------
# System schemas (spec §5.1)


@pytest.mark.parametrize(
    ("schema", "schema_id", "description", "fields"),
    [
        (
            SCHEMA_DEFINITION_V1,
            "schema_definition_v1",
            "Publish data schemas for your application.",
            {
                "description": "str",
                "fields": "pinned_relation_list(schema_field_definition_v1)",
                "name": "str",
            },
        ),
        (
            SCHEMA_FIELD_DEFINITION_V1,
            "schema_field_definition_v1",
            "Define fields for application data schemas.",
            {"name": "str", "type": "str"},
        ),
        (
            BLOB_V1,
            "blob_v1",
            "Definition of a blob file.",
            {"length": "int", "mime_type": "str", "pieces": "pinned_relation_list(blob_piece_v1)"},
        ),
        (
            BLOB_PIECE_V1,
            "blob_piece_v1",
            "Representation of the (partial) binary data of a file.",
            {"data": "bytes"},
        ),
    ],
)
def test_system_schemas_are_exactly_those_of_p2panda_0_8(
    schema: Schema, schema_id: str, description: str, fields: dict[str, str]
) -> None:
    assert str(schema.id) == schema_id
    assert schema.description == description
    assert {name: str(t) for name, t in schema.fields.items()} == fields
    assert list(schema.fields) == sorted(fields)
    assert system_schema(schema_id) is schema
    assert system_schema(schema.id) is schema


def test_there_are_exactly_four_system_schemas() -> None:
    assert len(SYSTEM_SCHEMAS) == 4
    assert system_schema(POST_SCHEMA_ID) is None
    assert system_schema("blob_v2") is None


def test_schema_definition_v2_parses_but_no_system_schema_exists_for_it() -> None:
    schema_id = parse_schema_id("schema_definition_v2")
    assert schema_id.version == 2
    assert system_schema(schema_id) is None


def test_schema_fields_are_sorted_and_read_only() -> None:
    schema = Schema(
        SchemaId.application("ab", A), "", {"b": FieldType("int"), "a": FieldType("str")}
    )
    assert list(schema.fields) == ["a", "b"]
    assert schema.name == "ab"
    with pytest.raises(TypeError):
        schema.fields["c"] = FieldType("int")  # type: ignore[index]
    assert hash(schema) == hash(Schema(schema.id, "", dict(schema.fields)))


@pytest.mark.parametrize(
    ("description", "fields"),
    [
        ("x" * 257, {"a": FieldType("int")}),
        ("", {}),
        ("", {"1a": FieldType("int")}),
        ("", {f"f{i}": FieldType("int") for i in range(1025)}),
    ],
)
def test_schema_rejects_invalid_descriptions_and_fields(
    description: str, fields: dict[str, FieldType]
) -> None:
    with pytest.raises(SchemaError) as info:
        Schema(SchemaId.application("ab", A), description, fields)
    assert info.value.reason == Reason.INVALID_SCHEMA_DEFINITION


# --------------------------------------------------------------------------------------------
# validate_operation: shape and field sets (spec §5.4)


def test_create_with_exactly_the_schema_fields_returns_typed_values() -> None:
    blob_id = bytes.fromhex(B)
    typed = validate_operation(op(POST_SCHEMA_ID, {"image": blob_id, "title": "Hi"}), post_schema())
    assert typed == {"image": Relation(B), "title": "Hi"}
    assert list(typed) == ["image", "title"]


def test_the_spec_field_definition_operation_validates(spec_vectors: dict[str, Any]) -> None:
    fields = spec_vectors["E"]["field_definition_title"]["fields"]
    typed = validate_operation(op("schema_field_definition_v1", fields), SCHEMA_FIELD_DEFINITION_V1)
    assert typed == {"name": "title", "type": "str"}


def test_operation_schema_id_must_name_the_schema() -> None:
    with pytest.raises(SchemaError) as info:
        validate_operation(op(VENUE_SCHEMA_ID, {"title": "x"}, "update"), post_schema())
    assert info.value.reason == Reason.SCHEMA_MISMATCH
    assert VENUE_SCHEMA_ID in info.value.message and POST_SCHEMA_ID in info.value.message


def test_operation_schema_id_is_compared_parsed_like_p2panda() -> None:
    operation = op("blob_piece_v01", {"data": b"x"})
    assert validate_operation(operation, BLOB_PIECE_V1) == {"data": b"x"}


def test_operation_with_an_unparsable_schema_id_raises_schema_id_error() -> None:
    with pytest.raises(SchemaIdError):
        validate_operation(op("nope", {"data": b"x"}), BLOB_PIECE_V1)


def test_create_missing_a_field_names_it_and_lists_the_schema_fields() -> None:
    with pytest.raises(SchemaError) as info:
        validate_operation(op(POST_SCHEMA_ID, {"title": "Hi"}), post_schema())
    assert info.value.reason == Reason.MISSING_FIELD
    assert "'image' (relation(blob_v1))" in info.value.message
    assert "image: relation(blob_v1), title: str" in info.value.message


def test_create_with_an_unknown_field_names_it_and_lists_the_schema_fields() -> None:
    fields: dict[str, PlainValue] = {"image": bytes.fromhex(B), "title": "Hi", "zzz": 1}
    with pytest.raises(SchemaError) as info:
        validate_operation(op(POST_SCHEMA_ID, fields), post_schema())
    assert info.value.reason == Reason.UNEXPECTED_FIELD
    assert "'zzz'" in info.value.message
    assert "image: relation(blob_v1), title: str" in info.value.message


def test_update_may_give_any_subset_of_fields_including_none() -> None:
    schema = post_schema()
    assert validate_operation(op(POST_SCHEMA_ID, {"title": "New"}, "update"), schema) == {
        "title": "New"
    }
    assert validate_operation(op(POST_SCHEMA_ID, {}, "update"), schema) == {}


def test_update_with_an_unknown_field_is_rejected() -> None:
    with pytest.raises(SchemaError) as info:
        validate_operation(op(POST_SCHEMA_ID, {"body": "x"}, "update"), post_schema())
    assert info.value.reason == Reason.UNEXPECTED_FIELD
    assert "'body'" in info.value.message


def test_delete_has_no_fields() -> None:
    assert validate_operation(op(POST_SCHEMA_ID, None, "delete"), post_schema()) == {}


@pytest.mark.parametrize(
    "operation",
    [
        Operation(1, "create", POST_SCHEMA_ID, (A,), {"title": "x", "image": bytes.fromhex(B)}),
        Operation(1, "create", POST_SCHEMA_ID, None, None),
        Operation(1, "update", POST_SCHEMA_ID, None, {"title": "x"}),
        Operation(1, "update", POST_SCHEMA_ID, (A,), None),
        Operation(1, "delete", POST_SCHEMA_ID, None, None),
        Operation(1, "delete", POST_SCHEMA_ID, (A,), {"title": "x"}),
        Operation(1, "erase", POST_SCHEMA_ID, (A,), None),  # type: ignore[arg-type]
    ],
)
def test_operations_of_the_wrong_shape_for_their_action_are_rejected(operation: Operation) -> None:
    with pytest.raises(OperationDecodeError) as info:
        validate_operation(operation, post_schema())
    assert info.value.reason == Reason.INVALID_OPERATION


def test_operation_version_must_be_1() -> None:
    operation = Operation(2, "delete", POST_SCHEMA_ID, (A,), None)
    with pytest.raises(OperationDecodeError) as info:
        validate_operation(operation, post_schema())
    assert info.value.reason == Reason.UNSUPPORTED_VERSION


# --------------------------------------------------------------------------------------------
# validate_operation: plain value → field type (spec §3.2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("b", True),
        ("b", False),
        ("i", 0),
        ("i", -(2**63)),
        ("i", 2**63 - 1),
        ("f", 12.3),
        ("f", float("inf")),
        ("s", "しろくま"),
        ("s", ""),
        ("y", b""),
        ("y", b"\x00\x01"),
    ],
)
def test_simple_values_keep_their_python_value(name: str, value: PlainValue) -> None:
    typed = validate_field(name, value)
    assert typed == value and type(typed) is type(value)


@pytest.mark.parametrize(
    ("name", "value", "plain"),
    [
        ("f", 1, "int"),
        ("i", 1.0, "float"),
        ("i", True, "bool"),
        ("b", 1, "int"),
        ("s", b"x", "bytes"),
        ("y", "x", "str"),
        ("r", (B,), "hash[]"),
        ("rl", bytes.fromhex(B), "bytes"),
        ("p", ((B,),), "hash[][]"),
        ("rl", ((B,),), "hash[][]"),
        ("pl", "x", "str"),
    ],
)
def test_values_of_another_type_are_rejected(name: str, value: PlainValue, plain: str) -> None:
    error = reject_field(name, value, Reason.FIELD_TYPE_MISMATCH)
    assert f"field '{name}' does not match schema: invalid field type '{plain}'" in error.message


def test_int_values_outside_i64_are_rejected() -> None:
    reject_field("i", 2**63, Reason.INVALID_FIELD_VALUE)
    reject_field("i", -(2**63) - 1, Reason.INVALID_FIELD_VALUE)


def test_bytes_are_a_relation_only_when_they_are_a_34_byte_hash() -> None:
    assert validate_field("r", bytes.fromhex(B)) == Relation(B)
    assert validate_field("y", bytes.fromhex(B)) == bytes.fromhex(B)
    reject_field("r", b"hello", Reason.INVALID_FIELD_VALUE)
    reject_field("r", b"", Reason.INVALID_FIELD_VALUE)
    reject_field("r", bytes.fromhex("0120" + B[4:]), Reason.INVALID_FIELD_VALUE)


def test_a_relation_list_keeps_order_and_duplicates() -> None:
    assert validate_field("rl", (C, A, C)) == RelationList((C, A, C))
    assert validate_field("rl", ()) == RelationList(())


def test_a_pinned_relation_must_be_a_sorted_non_empty_view_id() -> None:
    assert validate_field("p", (A, B)) == PinnedRelation((A, B))
    reject_field("p", (B, A), Reason.INVALID_FIELD_VALUE)
    reject_field("p", (A, A), Reason.INVALID_FIELD_VALUE)
    reject_field("p", (), Reason.INVALID_FIELD_VALUE)


def test_a_flat_hash_list_becomes_an_empty_pinned_relation_list_quirk() -> None:
    assert validate_field("pl", ()) == PinnedRelationList(())
    assert validate_field("pl", (A, B)) == PinnedRelationList(())


def test_a_list_of_view_ids_is_a_pinned_relation_list_keeping_outer_order() -> None:
    assert validate_field("pl", ((C,), (A, B), (C,))) == PinnedRelationList([(C,), (A, B), (C,)])
    reject_field("pl", ((B, A),), Reason.INVALID_FIELD_VALUE)
    reject_field("pl", ((),), Reason.INVALID_FIELD_VALUE)


def test_hashes_in_relation_values_must_be_hashes_and_are_lowercased() -> None:
    assert validate_field("rl", (A.upper(),)) == RelationList((A,))
    reject_field("rl", ("nothex",), Reason.INVALID_FIELD_VALUE)


@pytest.mark.parametrize("value", [None, {"a": 1}, (A, (B,)), (1, 2), [[1]]])
def test_values_that_are_not_plain_values_are_rejected(value: Any) -> None:
    with pytest.raises(OperationDecodeError) as info:
        validate_field("s", value)
    assert info.value.reason == Reason.INVALID_FIELD_VALUE


# --------------------------------------------------------------------------------------------
# validate_operation: extra checks of the system schemas (spec §5.3)


def definition_fields(**changes: PlainValue) -> dict[str, PlainValue]:
    fields: dict[str, PlainValue] = {"description": "A post", "fields": ((A,),), "name": "post"}
    fields.update(changes)
    return fields


def reject_system(
    schema: Schema, fields: Mapping[str, PlainValue], action: Action = "create"
) -> str:
    with pytest.raises(SchemaError) as info:
        validate_operation(op(schema.id, fields, action), schema)
    assert info.value.reason == Reason.INVALID_SYSTEM_FIELD
    assert f"invalid '{schema.id}' operation" in info.value.message
    return info.value.message


def test_schema_definition_returns_its_pinned_field_views() -> None:
    typed = validate_operation(
        op("schema_definition_v1", definition_fields()), SCHEMA_DEFINITION_V1
    )
    assert typed == {"description": "A post", "fields": PinnedRelationList([(A,)]), "name": "post"}


@pytest.mark.parametrize("name", ["a", "1post", "post_", "pöst"])
def test_schema_definition_name_must_be_a_schema_name(name: str) -> None:
    assert "'name'" in reject_system(SCHEMA_DEFINITION_V1, definition_fields(name=name))
    reject_system(SCHEMA_DEFINITION_V1, {"name": name}, "update")


def test_schema_definition_description_has_at_most_256_characters() -> None:
    fields = definition_fields(description="ü" * 256)
    validate_operation(op("schema_definition_v1", fields), SCHEMA_DEFINITION_V1)
    reject_system(SCHEMA_DEFINITION_V1, definition_fields(description="x" * 257))


def test_schema_definition_lists_at_most_1024_field_views() -> None:
    many = tuple((A,) for _ in range(1024))
    validate_operation(
        op("schema_definition_v1", definition_fields(fields=many)), SCHEMA_DEFINITION_V1
    )
    too_many = (*many, (A,))
    assert "1025" in reject_system(SCHEMA_DEFINITION_V1, definition_fields(fields=too_many))


def test_schema_definition_with_no_field_views_is_still_accepted() -> None:
    typed = validate_operation(
        op("schema_definition_v1", definition_fields(fields=())), SCHEMA_DEFINITION_V1
    )
    assert typed["fields"] == PinnedRelationList(())


@pytest.mark.parametrize("name", ["", "1a", "_a", "a" * 65, "n\u00e4m\u0435"])  # ä, Cyrillic e
def test_field_definition_name_must_be_a_field_name(name: str) -> None:
    reject_system(SCHEMA_FIELD_DEFINITION_V1, {"name": name, "type": "str"})


@pytest.mark.parametrize("name", ["a", "a_", "a" * 64])
def test_field_definition_accepts_field_names(name: str) -> None:
    fields = {"name": name, "type": "str"}
    validate_operation(op("schema_field_definition_v1", fields), SCHEMA_FIELD_DEFINITION_V1)


@pytest.mark.parametrize("type_text", ["string", "relation(no_no_no)", "relation", ""])
def test_field_definition_type_must_be_a_field_type(type_text: str) -> None:
    message = reject_system(SCHEMA_FIELD_DEFINITION_V1, {"name": "a", "type": type_text})
    assert "'type'" in message
    reject_system(SCHEMA_FIELD_DEFINITION_V1, {"type": type_text}, "update")


def test_field_definition_accepts_any_word_before_a_valid_schema_id_quirk() -> None:
    fields = {"name": "a", "type": "foo(blob_v1)"}
    validate_operation(op("schema_field_definition_v1", fields), SCHEMA_FIELD_DEFINITION_V1)


def blob_fields(**changes: PlainValue) -> dict[str, PlainValue]:
    fields: dict[str, PlainValue] = {"length": 5, "mime_type": "text/plain", "pieces": ((A,),)}
    fields.update(changes)
    return fields


def test_blob_mime_type_must_look_like_a_mime_type() -> None:
    validate_operation(op("blob_v1", blob_fields()), BLOB_V1)
    assert "'mime_type'" in reject_system(BLOB_V1, blob_fields(mime_type="not a mime type"))


def test_blob_with_empty_pieces_slips_through_as_a_flat_list_quirk() -> None:
    typed = validate_operation(op("blob_v1", blob_fields(pieces=())), BLOB_V1)
    assert typed["pieces"] == PinnedRelationList(())


def test_blob_piece_data_has_at_most_256000_bytes() -> None:
    validate_operation(op("blob_piece_v1", {"data": b"x" * 256_000}), BLOB_PIECE_V1)
    reject_system(BLOB_PIECE_V1, {"data": b"x" * 256_001})


def test_application_schemas_have_no_system_checks() -> None:
    schema = Schema(SchemaId.application("notes", A), "", {"name": FieldType("str")})
    assert validate_operation(op(schema.id, {"name": "1 not a schema name"}), schema)


# --------------------------------------------------------------------------------------------
# build_schema (spec §5.5, §11.6)


def test_building_the_spec_post_schema_gives_its_exact_schema_id() -> None:
    schema = post_schema()
    assert (
        str(schema.id)
        == "post_00209a546c90393a994ecfa89b01815fb4935f258a7a846320f5214a5ff25cd2f606"
    )
    assert schema.name == "post"
    assert schema.description == "A post"
    assert {n: str(t) for n, t in schema.fields.items()} == {
        "image": "relation(blob_v1)",
        "title": "str",
    }


def test_build_schema_takes_the_typed_values_validate_operation_returns() -> None:
    definition = op(
        "schema_definition_v1",
        {"description": "A post", "fields": ((TITLE_VIEW,), (IMAGE_VIEW,)), "name": "post"},
    )
    typed = validate_operation(definition, SCHEMA_DEFINITION_V1)
    field_views = {
        TITLE_VIEW: validate_operation(
            op("schema_field_definition_v1", {"name": "title", "type": "str"}),
            SCHEMA_FIELD_DEFINITION_V1,
        ),
        IMAGE_VIEW: validate_operation(
            op("schema_field_definition_v1", {"name": "image", "type": "relation(blob_v1)"}),
            SCHEMA_FIELD_DEFINITION_V1,
        ),
    }
    schema = build_schema(DocumentViewId((POST_DEFINITION_VIEW,)), typed, field_views)
    assert schema == post_schema()


def test_the_spec_schema_flow_decodes_validates_and_builds(spec_vectors: dict[str, Any]) -> None:
    vector = spec_vectors["E"]
    definition = decode_operation(bytes.fromhex(vector["schema_definition"]["operation"]))
    title = decode_operation(bytes.fromhex(vector["field_definition_title"]["operation"]))
    typed_definition = validate_operation(definition, SCHEMA_DEFINITION_V1)
    typed_title = validate_operation(title, SCHEMA_FIELD_DEFINITION_V1)
    image = {"name": "image", "type": "relation(blob_v1)"}
    schema = build_schema(
        vector["schema_definition"]["operation_id"],
        typed_definition,
        {TITLE_VIEW: typed_title, vector["field_definition_image_operation_id"]: image},
    )
    assert str(schema.id) == vector["schema_id"]


def build(
    fields: Any,
    field_definitions: Mapping[str, Mapping[str, object]],
    name: object = "post",
    description: object = "A post",
) -> Schema:
    return build_schema(
        POST_DEFINITION_VIEW,
        {"name": name, "description": description, "fields": fields},
        field_definitions,
    )


def reject_build(*args: Any, **kwargs: Any) -> str:
    with pytest.raises(SchemaError) as info:
        build(*args, **kwargs)
    assert info.value.reason == Reason.INVALID_SCHEMA_DEFINITION
    return info.value.message


TITLE = {"name": "title", "type": "str"}
IMAGE = {"name": "image", "type": "relation(blob_v1)"}


def test_build_schema_needs_every_listed_field_view() -> None:
    message = reject_build([[TITLE_VIEW], [IMAGE_VIEW]], {TITLE_VIEW: TITLE})
    assert IMAGE_VIEW in message


def test_build_schema_rejects_field_views_that_are_not_listed() -> None:
    message = reject_build([[TITLE_VIEW]], {TITLE_VIEW: TITLE, IMAGE_VIEW: IMAGE})
    assert IMAGE_VIEW in message


def test_build_schema_needs_at_least_one_field() -> None:
    assert "at least one" in reject_build([], {})
    assert "at least one" in reject_build(PinnedRelationList(()), {})


def test_build_schema_allows_1024_fields_but_not_more() -> None:
    views = [generate_hash(i.to_bytes(2, "big")) for i in range(1025)]
    definitions = {view: {"name": f"f{i}", "type": "int"} for i, view in enumerate(views)}
    schema = build([[v] for v in views[:1024]], {v: definitions[v] for v in views[:1024]})
    assert len(schema.fields) == 1024
    assert "1025 fields" in reject_build([[v] for v in views], definitions)


def test_build_schema_rejects_adjacent_duplicate_field_names() -> None:
    other_title = {"name": "title", "type": "int"}
    assert "'title' is defined twice" in reject_build(
        [[TITLE_VIEW], [IMAGE_VIEW]], {TITLE_VIEW: TITLE, IMAGE_VIEW: other_title}
    )
    assert "defined twice" in reject_build([[TITLE_VIEW], [TITLE_VIEW]], {TITLE_VIEW: TITLE})


def test_build_schema_lets_a_later_duplicate_name_win_when_not_adjacent_quirk() -> None:
    third = C
    definitions = {TITLE_VIEW: TITLE, IMAGE_VIEW: IMAGE, third: {"name": "title", "type": "int"}}
    schema = build([[TITLE_VIEW], [IMAGE_VIEW], [third]], definitions)
    assert {n: str(t) for n, t in schema.fields.items()} == {
        "image": "relation(blob_v1)",
        "title": "int",
    }


@pytest.mark.parametrize(
    ("name", "description", "title", "needle"),
    [
        ("a", "A post", TITLE, "invalid schema name"),
        ("post", "x" * 257, TITLE, "257 characters"),
        ("post", "A post", {"name": "1title", "type": "str"}, "invalid field name"),
        ("post", "A post", {"name": "title", "type": "foo(blob_v1)"}, "invalid field type"),
        ("post", "A post", {"name": "title", "type": "string"}, "invalid field type"),
        ("post", "A post", {"name": "title"}, "exactly the fields name, type"),
        ("post", "A post", {"name": "title", "type": "str", "x": "y"}, "exactly the fields"),
        ("post", "A post", {"name": "title", "type": 1}, "must be str"),
        (1, "A post", TITLE, "'name' must be a str"),
        ("post", None, TITLE, "'description' must be a str"),
    ],
)
def test_build_schema_rejects_invalid_definitions(
    name: object, description: object, title: Mapping[str, object], needle: str
) -> None:
    message = reject_build([[TITLE_VIEW]], {TITLE_VIEW: title}, name=name, description=description)
    assert needle in message


def test_build_schema_rejects_a_definition_with_other_fields() -> None:
    with pytest.raises(SchemaError) as info:
        build_schema(POST_DEFINITION_VIEW, {"name": "post", "fields": [[TITLE_VIEW]]}, {})
    assert "exactly the fields description, fields, name" in info.value.message


@pytest.mark.parametrize("fields", ["nope", [[B, A]], [[]], [1], None])
def test_build_schema_rejects_invalid_field_view_lists(fields: Any) -> None:
    reject_build(fields, {})


def test_build_schema_rejects_an_invalid_definition_view_id() -> None:
    with pytest.raises(SchemaError) as info:
        build_schema(f"{B}_{A}", {"name": "post", "description": "", "fields": []}, {})
    assert info.value.reason == Reason.INVALID_SCHEMA_DEFINITION


def test_build_schema_reads_lenient_type_strings_like_aquadoggo() -> None:
    schema = build([[IMAGE_VIEW]], {IMAGE_VIEW: {"name": "image", "type": " relation(blob_v1)x"}})
    assert str(schema.fields["image"]) == "relation(blob_v1)"


def test_build_schema_accepts_view_ids_in_every_form() -> None:
    forms: list[Any] = [
        [DocumentViewId((TITLE_VIEW,))],
        [TITLE_VIEW],
        [(TITLE_VIEW,)],
        PinnedRelationList([(TITLE_VIEW,)]),
    ]
    for fields in forms:
        assert list(build(fields, {TITLE_VIEW: TITLE}).fields) == ["title"]


def test_build_schema_with_a_multi_id_definition_view() -> None:
    schema = build_schema(
        f"{A}_{B}", {"name": "post", "description": "", "fields": [[C]]}, {C: TITLE}
    )
    assert str(schema.id) == f"post_{A}_{B}"
    assert parse_schema_id(str(schema.id)) == schema.id


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (SCHEMA_DEFINITION_V1, SCHEMA_DEFINITION_V1_ID),
        (SCHEMA_FIELD_DEFINITION_V1, SCHEMA_FIELD_DEFINITION_V1_ID),
        (BLOB_V1, BLOB_V1_ID),
        (BLOB_PIECE_V1, BLOB_PIECE_V1_ID),
    ],
)
def test_system_schema_id_constants_are_the_text_of_the_system_schemas_ids(
    schema: Schema, text: str
) -> None:
    assert str(schema.id) == text
    assert system_schema(text) is schema
