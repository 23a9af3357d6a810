"""Every operation of the committed spec §11 fixtures decodes and re-encodes byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from pandanode.core import Operation, decode_operation, generate_hash


def _operations(vectors: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "operation" and isinstance(item, str):
                    found.append((path, item))
                else:
                    walk(f"{path}.{key}" if path else key, item)
        elif isinstance(value, str) and path.startswith("operation_examples"):
            found.append((path, value))

    walk("", vectors)
    return found


def test_the_fixtures_hold_every_operation_vector(spec_vectors: dict[str, Any]) -> None:
    paths = {path for path, _ in _operations(spec_vectors)}
    assert {"A", "D", "E.field_definition_title", "E.schema_definition"} <= paths
    assert "operation_examples.blob_piece_hello" in paths


def test_every_fixture_operation_re_encodes_byte_for_byte(spec_vectors: dict[str, Any]) -> None:
    for path, hex_bytes in _operations(spec_vectors):
        raw = bytes.fromhex(hex_bytes)
        assert decode_operation(raw).to_bytes() == raw, path
        assert Operation.from_bytes(raw) == decode_operation(raw), path


def _plain(typed: dict[str, Any]) -> Any:
    ((kind, value),) = typed.items()
    if kind == "bytes":
        return bytes.fromhex(value)
    if kind == "ids":
        return tuple(value)
    if kind == "view_ids":
        return tuple(tuple(view) for view in value)
    return value


def test_vector_d_decodes_to_the_fixture_values(spec_vectors: dict[str, Any]) -> None:
    vector = spec_vectors["D"]
    operation = decode_operation(bytes.fromhex(vector["operation"]))
    assert operation.action == vector["action"]
    assert operation.schema_id == vector["schema_id"]
    assert operation.fields is not None
    assert dict(operation.fields) == {
        name: _plain(value) for name, value in vector["fields"].items()
    }


@pytest.mark.parametrize("name", ["A"])
def test_the_payload_hash_of_a_fixture_operation_matches(
    spec_vectors: dict[str, Any], name: str
) -> None:
    vector = spec_vectors[name]
    assert generate_hash(bytes.fromhex(vector["operation"])) == vector["payload_hash"]
