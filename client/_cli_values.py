"""Command-line text to field values and filters."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pandanode.core.schema import FieldType, Schema

from ._cli_output import UsageError

__all__ = ["field_values", "json_value", "parse_filters", "parse_value"]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "yes", "1", "on"}:
        return True
    if lowered in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _parse_bytes(text: str) -> bytes:
    if text.startswith("@"):
        return Path(text[1:]).expanduser().read_bytes()
    return bytes.fromhex(text)


def parse_value(text: str, field_type: FieldType) -> object:
    """Turn a command-line string into the Python value a field of ``field_type`` takes."""
    kind = field_type.kind
    if kind == "bool":
        return _parse_bool(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bytes":
        return _parse_bytes(text)
    if kind in ("relation_list", "pinned_relation_list"):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def json_value(value: object, field_type: FieldType) -> object:
    """Turn a JSON value into the Python value a field of ``field_type`` takes (bytes: hex)."""
    if field_type.kind == "bytes" and isinstance(value, str):
        return _parse_bytes(value)
    return value


def field_values(args: argparse.Namespace, schema: Schema) -> dict[str, object]:
    values: dict[str, object] = {}
    if args.fields_json:
        try:
            loaded = json.loads(args.fields_json)
        except json.JSONDecodeError as err:
            raise UsageError(f"--fields-json is not JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise UsageError("--fields-json must be a JSON object")
        for name, value in loaded.items():
            field_type = schema.fields.get(name)
            values[name] = value if field_type is None else json_value(value, field_type)
    for item in args.field:
        name, equals, text = item.partition("=")
        if not equals:
            raise UsageError(f"--field {item!r}: expected NAME=VALUE")
        field_type = schema.fields.get(name)
        if field_type is None:
            values[name] = text  # the client names the schema's fields in its error
            continue
        try:
            values[name] = parse_value(text, field_type)
        except ValueError as err:
            raise UsageError(
                f"--field {name}: {err}; the field is {field_type} "
                f"(schema {schema.name}: {schema.describe_fields()})"
            ) from None
    return values


_FILTER_SYMBOLS: Final = (
    (">=", "gte"),
    ("<=", "lte"),
    ("!=", "not_eq"),
    ("!~", "not_contains"),
    ("=", "eq"),
    (">", "gt"),
    ("<", "lt"),
    ("~", "contains"),
)
_FILTER_LOOKUP: Final = re.compile(r"^(@?[A-Za-z][A-Za-z0-9_]*?)__([a-z_]+)=(.*)$", re.DOTALL)
_META_TYPES: Final = {"edited": FieldType("bool"), "deleted": FieldType("bool")}


def _split_filter(expression: str) -> tuple[str, str, str] | None:
    # The first operator in the expression wins (the longer one at the same place), so a
    # value may hold operator characters: 'title=a>b', 'name~x=y'.
    found: tuple[int, int, str] | None = None
    for symbol, operator in _FILTER_SYMBOLS:
        at = expression.find(symbol)
        if at >= 0 and (found is None or (at, -len(symbol)) < (found[0], -found[1])):
            found = (at, len(symbol), operator)
    if found is None:
        return None
    at, length, operator = found
    return expression[:at], operator, expression[at + length :]


def parse_filters(expressions: Sequence[str], schema: Schema) -> dict[str, object]:
    """Turn ``--filter`` expressions into the ``filter`` mapping of :meth:`Client.documents`."""
    conditions: dict[str, object] = {}
    for expression in expressions:
        lookup = _FILTER_LOOKUP.match(expression)
        if lookup is not None:
            target, operator, text = lookup.groups()
        else:
            split = _split_filter(expression)
            if split is None:
                raise UsageError(
                    f"--filter {expression!r}: expected FIELD OP VALUE with OP one of "
                    "= != > >= < <= ~ !~ (or FIELD__in=a,b)"
                )
            target, operator, text = split
        target = target.strip()
        if target.startswith("@"):
            field_type = _META_TYPES.get(target[1:], FieldType("str"))
        else:
            known = schema.fields.get(target)
            if known is None:
                raise UsageError(
                    f"--filter {expression!r}: schema {schema.name} has no field {target!r}; "
                    f"its fields: {schema.describe_fields()} (and @owner, @document_id, "
                    "@view_id, @edited, @deleted)"
                )
            field_type = known
        try:
            if operator in ("in", "not_in"):
                scalar = field_type if not field_type.is_relation else FieldType("str")
                conditions[f"{target}__{operator}"] = [
                    parse_value(item.strip(), scalar) for item in text.split(",")
                ]
            else:
                scalar = field_type if not field_type.is_relation else FieldType("str")
                conditions[f"{target}__{operator}"] = parse_value(text.strip(), scalar)
        except ValueError as err:
            raise UsageError(f"--filter {expression!r}: {err}") from None
    return conditions
