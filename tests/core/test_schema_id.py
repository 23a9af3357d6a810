"""Schema ids and the name rules (spec §5.2, §5.3): ``pandanode.core.schema_id``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from pandanode.core import schema as schema_module
from pandanode.core import schema_id as schema_id_module
from pandanode.core.errors import DecodeError, Reason, SchemaIdError
from pandanode.core.ids import DocumentViewId
from pandanode.core.schema_id import (
    SchemaId,
    is_valid_description,
    is_valid_field_name,
    is_valid_schema_name,
    parse_schema_id,
)

# Spec §11.6: the view of the schema definition of `post`.
POST_DEFINITION_VIEW = "00209a546c90393a994ecfa89b01815fb4935f258a7a846320f5214a5ff25cd2f606"
POST_SCHEMA_ID = f"post_{POST_DEFINITION_VIEW}"
VENUE_HASH = "0020c65567ae37efea293e34a9c7d13f8f2bf23dbdc3b5c7b9ab46293111c48fc78b"
VENUE_SCHEMA_ID = f"venue_{VENUE_HASH}"

A = "00200000000000000000000000000000000000000000000000000000000000000000"
B = "00201111111111111111111111111111111111111111111111111111111111111111"
C = "00202222222222222222222222222222222222222222222222222222222222222222"


# --------------------------------------------------------------------------------------------
# Schema ids


def test_schema_id_parses_the_spec_post_example() -> None:
    schema_id = parse_schema_id(POST_SCHEMA_ID)
    assert schema_id.name == "post"
    assert schema_id.view_id == DocumentViewId((POST_DEFINITION_VIEW,))
    assert schema_id.version is None
    assert not schema_id.is_system
    assert str(schema_id) == POST_SCHEMA_ID


def test_schema_id_parses_the_p2panda_venue_constant() -> None:
    schema_id = SchemaId.from_str(VENUE_SCHEMA_ID)
    assert (schema_id.name, str(schema_id.view_id)) == ("venue", VENUE_HASH)
    assert str(schema_id) == VENUE_SCHEMA_ID


@pytest.mark.parametrize(
    "name", ["schema_definition", "schema_field_definition", "blob", "blob_piece"]
)
def test_schema_id_parses_every_system_schema_v1(name: str) -> None:
    schema_id = parse_schema_id(f"{name}_v1")
    assert (schema_id.name, schema_id.version, schema_id.view_id) == (name, 1, None)
    assert schema_id.is_system
    assert str(schema_id) == f"{name}_v1"
    assert schema_id == SchemaId.system(name)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("blob_v01", "blob_v1"), ("blob_v+1", "blob_v1"), ("schema_definition_v255", None)],
)
def test_schema_id_reads_the_system_version_like_a_rust_u8(
    text: str, canonical: str | None
) -> None:
    schema_id = parse_schema_id(text)
    assert str(schema_id) == (canonical or text)
    if canonical:
        assert schema_id == parse_schema_id(canonical)


@pytest.mark.parametrize(
    "text",
    [
        "schema_definition_v256",
        "blob_v",
        "blob_v-1",
        "schema_definition_v1.5",
        "blob_vé",
        "blob_v1 ",
    ],
)
def test_schema_id_rejects_a_malformed_system_version(text: str) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(text)
    assert info.value.reason == Reason.INVALID_SCHEMA_ID
    assert (
        info.value.message == f"malformed schema id `{text}`: couldn't parse system schema version"
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("foo_v1", "foo"),
        ("Blob_v1", "Blob"),
        ("_v1", ""),
        ("unknown_system_schema_name_v1", "unknown_system_schema_name"),
        (f"{VENUE_SCHEMA_ID}_v1", VENUE_SCHEMA_ID),
    ],
)
def test_schema_id_rejects_unknown_system_schema_names(text: str, name: str) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(text)
    assert info.value.reason == Reason.UNSUPPORTED_SYSTEM_SCHEMA
    assert info.value.message == f"unsupported system schema: {name}"


@pytest.mark.parametrize("text", ["", "v1", "This is not a hash", VENUE_HASH])
def test_schema_id_without_an_underscore_is_rejected(text: str) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(text)
    assert info.value.message == f"malformed schema id `{text}`: doesn't contain an underscore"


def test_schema_id_errors_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        parse_schema_id("nope")


def test_schema_id_rejects_a_one_character_name() -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(f"a_{VENUE_HASH}")
    assert info.value.reason == Reason.INVALID_SCHEMA_ID
    assert "name contains too many or invalid characters" in info.value.message


@pytest.mark.parametrize("length", [2, 3, 63, 64])
def test_schema_id_accepts_names_of_2_to_64_characters(length: int) -> None:
    name = "a" * length
    assert parse_schema_id(f"{name}_{VENUE_HASH}").name == name


@pytest.mark.parametrize("length", [65, 66, 67, 68, 100])
def test_schema_id_rejects_names_longer_than_64_characters(length: int) -> None:
    with pytest.raises(SchemaIdError):
        parse_schema_id(f"{'a' * length}_{VENUE_HASH}")


@pytest.mark.parametrize(
    "name", ["abc2%", "venue_", "25_kangaroos", "_and_how", "icecrüëmm", "specification-says-no"]
)
def test_schema_id_rejects_invalid_names(name: str) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(f"{name}_{VENUE_HASH}")
    assert info.value.reason == Reason.INVALID_SCHEMA_ID


def test_schema_id_rejects_a_missing_name() -> None:
    text = f"_{VENUE_HASH}"
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(text)
    assert info.value.message == f"application schema id is missing a name: {text}"


def test_schema_id_accepts_several_sorted_view_ids() -> None:
    schema_id = parse_schema_id(f"venue_{A}_{B}_{C}")
    assert schema_id.view_id == DocumentViewId((A, B, C))
    assert str(schema_id) == f"venue_{A}_{B}_{C}"


@pytest.mark.parametrize("ids", [(B, A), (A, A), (A, C, B)])
def test_schema_id_rejects_unsorted_or_duplicate_view_ids(ids: tuple[str, ...]) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id("venue_" + "_".join(ids))
    assert info.value.reason == Reason.INVALID_SCHEMA_ID
    assert info.value.message == (
        "encountered invalid document view id while parsing application schema id: "
        "expected sorted operation ids in document view id"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("venue_", "invalid hash length 0 bytes, expected 34 bytes"),
        ("venue_00", "invalid hash length 1 bytes, expected 34 bytes"),
        ("venue_0", "invalid hex encoding in hash string"),
        ("venue_zz", "invalid hex encoding in hash string"),
        (f"venue_{VENUE_HASH[:-2]}", "invalid hash length 33 bytes, expected 34 bytes"),
        (f"{VENUE_SCHEMA_ID}_", "invalid hash length 0 bytes, expected 34 bytes"),
        (f"ab_0120{VENUE_HASH[4:]}", "can not decode YASMF BLAKE3 hash"),
        (f"blob_V1_{VENUE_HASH}x", "invalid hex encoding in hash string"),
        (f"{VENUE_SCHEMA_ID}\n", "invalid hex encoding in hash string"),
        (
            "this_name_is_way_too_long_it_cant_be_good_to_have_such_a_long_name_to_be_honest_"
            f"{VENUE_HASH}",
            "invalid hex encoding in hash string",
        ),
    ],
)
def test_schema_id_rejects_invalid_operation_ids_with_p2panda_messages(
    text: str, problem: str
) -> None:
    with pytest.raises(SchemaIdError) as info:
        parse_schema_id(text)
    assert info.value.reason == Reason.INVALID_SCHEMA_ID
    assert info.value.message == (
        f"encountered invalid hash while parsing application schema id: {problem}"
    )


@pytest.mark.parametrize("name", ["ab_cd", "blob_v1", "schema_definition"])
def test_schema_id_application_names_may_contain_underscores_and_system_names(name: str) -> None:
    schema_id = parse_schema_id(f"{name}_{VENUE_HASH}")
    assert schema_id.name == name
    assert not schema_id.is_system


def test_schema_id_accepts_the_unchecked_hash_length_byte_like_p2panda() -> None:
    assert parse_schema_id(f"ab_0021{VENUE_HASH[4:]}").name == "ab"


def test_schema_id_keeps_uppercase_hex_as_written() -> None:
    text = f"venue_{VENUE_HASH.upper()}"
    schema_id = parse_schema_id(text)
    assert str(schema_id) == text
    assert schema_id != parse_schema_id(VENUE_SCHEMA_ID)


def test_schema_ids_compare_and_hash_by_the_schema_they_name() -> None:
    assert parse_schema_id("blob_v1") == SchemaId.system("blob", 1)
    assert parse_schema_id(VENUE_SCHEMA_ID) == SchemaId.application("venue", VENUE_HASH)
    assert len({parse_schema_id("blob_v01"), SchemaId.system("blob")}) == 1
    assert repr(SchemaId.system("blob")) == "SchemaId('blob_v1')"


def test_schema_id_constructors_check_their_parts() -> None:
    with pytest.raises(SchemaIdError) as info:
        SchemaId.system("foo")
    assert info.value.reason == Reason.UNSUPPORTED_SYSTEM_SCHEMA
    with pytest.raises(SchemaIdError):
        SchemaId.system("blob", 256)
    with pytest.raises(SchemaIdError):
        SchemaId.system("blob", -1)
    with pytest.raises(SchemaIdError):
        SchemaId.application("a", A)
    with pytest.raises(SchemaIdError):
        SchemaId("blob")
    with pytest.raises(SchemaIdError):
        SchemaId("blob", 1, DocumentViewId((A,)))


def test_schema_hash_id_follows_spec_3_4(spec_vectors: dict[str, Any]) -> None:
    vector = spec_vectors["E"]
    schema_id = SchemaId.application("post", vector["view_id_of_both_fields"])
    assert schema_id.hash_id() == f"post__{vector['view_hash_of_both_fields']}"
    assert SchemaId.system("blob_piece").hash_id() == "blob_piece__1"


# --------------------------------------------------------------------------------------------
# Schema, field and description rules (spec §5.3; accept/reject lists of p2panda-rs)

GOOD_NAMES = [
    "venues_with_garden",
    "animals_in_zoo_with_many_friends",
    "robot_3000_building_specification",
    "mushrooms_in_2054",
    "ILikeCamels",
    "AndDromedars",
    "And_Their_Special_Variants",
    "ab",
    "a" * 64,
]
BAD_NAMES = [
    "",
    "a",
    "icecrüëmm",
    "\u30b5\u30fc\u30d3\u30b9\uff01\u30b5\u30fc\u30d3\u30b9\uff01",
    "schema_names_for_people_who_cant_decide_which_schema_name_to_pick",
    "25_kangaroos",
    "_and_how_did_it_all_began",
    "???????",
    "specification-says-no",
    "a" * 65,
    "venue\n",
    "ve nue",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_schema_name_accepts(name: str) -> None:
    assert is_valid_schema_name(name)


@pytest.mark.parametrize("name", [*BAD_NAMES, "where_did_we_end_up_again_", "c0_1_2_1_a_b_4_____"])
def test_schema_name_rejects(name: str) -> None:
    assert not is_valid_schema_name(name)


@pytest.mark.parametrize(
    "name", [*GOOD_NAMES, "a", "where_did_we_end_up_again_", "c0_1_2_1_a_b_4_____", "a" * 64]
)
def test_field_name_accepts(name: str) -> None:
    assert is_valid_field_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "venüë",
        "\u30b5\u30fc\u30d3\u30b9\uff01\u30b5\u30fc\u30d3\u30b9\uff01",
        "schema_field_names_for_people_who_cant_decide_which_schema_field_name_to_pick",
        "25_kangaroos",
        "_and_how_did_it_all_began",
        "?",
        "specification-says-no",
        "a" * 65,
        "title\n",
    ],
)
def test_field_name_rejects(name: str) -> None:
    assert not is_valid_field_name(name)


def test_description_allows_256_characters_counted_as_characters_not_bytes() -> None:
    assert is_valid_description("")
    assert is_valid_description("%*&______@@@@@[[}}}{}}}}}}}&}{&{&{&{&{&}}}}}]]")
    assert is_valid_description("ü" * 256)
    assert not is_valid_description("a" * 257)


# --------------------------------------------------------------------------------------------
# The module


def test_schema_module_re_exports_every_schema_id_name() -> None:
    for name in schema_id_module.__all__:
        assert getattr(schema_module, name) is getattr(schema_id_module, name)
        assert name in schema_module.__all__


def test_schema_id_module_imports_neither_operations_nor_schemas() -> None:
    # decode_operation parses schema ids, so this module must not depend on operations.
    tree = ast.parse(Path(schema_id_module.__file__ or "").read_text())
    relative = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level > 0
    }
    assert relative == {"errors", "hash", "ids"}
