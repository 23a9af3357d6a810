"""Field values in and out.

Python values are checked against a schema and typed before anything is signed; query messages
are turned back into plain Python values.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Final

from pandanode.core.errors import HashDecodeError, Reason, SchemaError
from pandanode.core.hash import hash_from_hex
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import (
    FieldValue,
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)
from pandanode.core.schema import FieldType, Schema
from pandanode.core.schema_id import parse_schema_id
from pandanode.discovery.v1 import discovery_pb2 as dpb
from pandanode.query.v1 import query_pb2 as qpb

from ._models import Document, Peer, PeerSource, Published, Value

__all__ = [
    "document_from_pb",
    "fields_for",
    "peer_from_pb",
    "schema_from_pb",
]

_PEER_SOURCES: Final[dict[int, PeerSource]] = {
    dpb.PEER_SOURCE_BOOTSTRAP: "bootstrap",
    dpb.PEER_SOURCE_LAN: "lan",
    dpb.PEER_SOURCE_EXCHANGE: "exchange",
}


def peer_from_pb(message: dpb.Peer) -> Peer:
    """A ``pandanode.discovery.v1.Peer`` message as a :class:`Peer`."""
    return Peer(
        node_id=message.node_id,
        addresses=tuple(message.addresses),
        source=_PEER_SOURCES.get(message.source, "unknown"),
        first_seen=message.first_seen.ToDatetime(tzinfo=UTC),
        last_seen=message.last_seen.ToDatetime(tzinfo=UTC),
        reachable=message.reachable,
    )


_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1

_KIND_NAMES: Final = {
    qpb.FIELD_KIND_BOOL: "bool",
    qpb.FIELD_KIND_INT: "int",
    qpb.FIELD_KIND_FLOAT: "float",
    qpb.FIELD_KIND_STR: "str",
    qpb.FIELD_KIND_BYTES: "bytes",
    qpb.FIELD_KIND_RELATION: "relation",
    qpb.FIELD_KIND_RELATION_LIST: "relation_list",
    qpb.FIELD_KIND_PINNED_RELATION: "pinned_relation",
    qpb.FIELD_KIND_PINNED_RELATION_LIST: "pinned_relation_list",
}


# -- Python values → typed field values --------------------------------------------------------


def fields_for(
    schema: Schema, values: Mapping[str, object], *, create: bool
) -> dict[str, FieldValue]:
    """Check ``values`` against ``schema`` and convert them to typed field values.

    Args:
        schema: The schema of the document.
        values: Field name → Python value. Relations take document ids (``str``), or a
            :class:`Document` / :class:`Published`; pinned relations take view ids or the same
            objects; the list kinds take sequences of those. Float fields also take ints.
        create: A CREATE needs every field; an UPDATE any non-empty subset.

    Returns:
        Field name → value for :func:`pandanode.core.encode_operation`.

    Raises:
        SchemaError: ``UNEXPECTED_FIELD`` (naming the schema's fields and the closest match),
            ``MISSING_FIELD``, ``FIELD_TYPE_MISMATCH`` or ``INVALID_FIELD_VALUE``.
    """
    unknown = [name for name in values if name not in schema.fields]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(str(name), list(schema.fields), n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise SchemaError(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: schema "
            f"{schema.name} has the fields {schema.describe_fields()}",
            Reason.UNEXPECTED_FIELD,
        )
    if create:
        missing = [name for name in schema.fields if name not in values]
        if missing:
            listed = ", ".join(f"'{name}' ({schema.fields[name]})" for name in missing)
            raise SchemaError(
                f"missing field{'s' if len(missing) > 1 else ''} {listed}: a new {schema.name} "
                f"document needs every field: {schema.describe_fields()}",
                Reason.MISSING_FIELD,
            )
    elif not values:
        raise SchemaError(
            f"an update needs at least one field; schema {schema.name} has the fields "
            f"{schema.describe_fields()}",
            Reason.MISSING_FIELD,
        )
    return {
        name: to_field_value(name, values[name], schema.fields[name]) for name in sorted(values)
    }


def _mismatch(name: str, value: object, field_type: FieldType, expected: str) -> SchemaError:
    return SchemaError(
        f"field '{name}' is {field_type}, so it takes {expected}; got {type(value).__name__} "
        f"{value!r:.60}",
        Reason.FIELD_TYPE_MISMATCH,
    )


def to_field_value(name: str, value: object, field_type: FieldType) -> FieldValue:
    """Convert one Python value to the typed value of ``field_type`` (see :func:`fields_for`)."""
    kind = field_type.kind
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(name, value, field_type)
    if kind == "relation":
        return Relation(_document_id(name, value, field_type))
    if kind == "pinned_relation":
        return PinnedRelation(_view_id(name, value, field_type).ids)
    items = _sequence(name, value, field_type)
    if kind == "relation_list":
        return RelationList([_document_id(name, item, field_type) for item in items])
    return PinnedRelationList([_view_id(name, item, field_type).ids for item in items])


def _bool(name: str, value: object, field_type: FieldType) -> FieldValue:
    if isinstance(value, bool):
        return value
    raise _mismatch(name, value, field_type, "True or False")


def _int(name: str, value: object, field_type: FieldType) -> FieldValue:
    if isinstance(value, int) and not isinstance(value, bool):
        if not _I64_MIN <= value <= _I64_MAX:
            raise SchemaError(
                f"field '{name}' is int (64-bit signed); {value} is out of range",
                Reason.INVALID_FIELD_VALUE,
            )
        return value
    raise _mismatch(name, value, field_type, "an int")


def _float(name: str, value: object, field_type: FieldType) -> FieldValue:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise _mismatch(name, value, field_type, "a float")


def _str(name: str, value: object, field_type: FieldType) -> FieldValue:
    if isinstance(value, str):
        return value
    raise _mismatch(name, value, field_type, "a str")


def _bytes(name: str, value: object, field_type: FieldType) -> FieldValue:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise _mismatch(name, value, field_type, "bytes")


_SCALARS: Final[dict[str, Callable[[str, object, FieldType], FieldValue]]] = {
    "bool": _bool,
    "int": _int,
    "float": _float,
    "str": _str,
    "bytes": _bytes,
}


def _sequence(name: str, value: object, field_type: FieldType) -> Sequence[object]:
    if isinstance(value, RelationList):
        return value.document_ids
    if isinstance(value, PinnedRelationList):
        return ["_".join(ids) for ids in value.view_ids]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return value
    raise _mismatch(name, value, field_type, "a list")


def _document_id(name: str, value: object, field_type: FieldType) -> str:
    if isinstance(value, Document | Published):
        return value.id if isinstance(value, Document) else value.document_id
    if isinstance(value, Relation):
        value = value.document_id
    if not isinstance(value, str):
        raise _mismatch(name, value, field_type, "a document id (or a Document or Published)")
    try:
        hash_from_hex(value)
    except HashDecodeError as err:
        raise SchemaError(
            f"field '{name}' is {field_type}: {value!r:.80} is not a document id: {err.message}",
            Reason.INVALID_FIELD_VALUE,
        ) from None
    return value.lower()


def _view_id(name: str, value: object, field_type: FieldType) -> DocumentViewId:
    if isinstance(value, Document | Published):
        value = value.view_id
    elif isinstance(value, PinnedRelation):
        value = "_".join(value.view_id)
    if not isinstance(value, str):
        raise _mismatch(name, value, field_type, "a document view id (or a Document or Published)")
    try:
        return DocumentViewId.from_ids(op_id.lower() for op_id in value.split("_"))
    except HashDecodeError as err:
        raise SchemaError(
            f"field '{name}' is {field_type}: {value!r:.80} is not a document view id: "
            f"{err.message}",
            Reason.INVALID_FIELD_VALUE,
        ) from None


# -- query messages → plain values -------------------------------------------------------------


def document_from_pb(message: qpb.Document) -> Document:
    """Turn a query ``Document`` message into a :class:`Document` with plain values."""
    return Document(
        id=message.document_id,
        view_id=message.document_view_id,
        schema_id=message.schema_id,
        owner=message.owner,
        edited=message.edited,
        deleted=message.deleted,
        fields={name: _value(message.fields[name]) for name in sorted(message.fields)},
    )


def _related(item: qpb.RelationValue | qpb.PinnedRelationValue, id_: str) -> str | Document:
    return document_from_pb(item.document) if item.HasField("document") else id_


def _value(message: qpb.FieldValue) -> Value:
    which = message.WhichOneof("value")
    if which == "bool_value":
        return message.bool_value
    if which == "int_value":
        return message.int_value
    if which == "float_value":
        return message.float_value
    if which == "str_value":
        return message.str_value
    if which == "bytes_value":
        return message.bytes_value
    if which == "relation":
        return _related(message.relation, message.relation.document_id)
    if which == "pinned_relation":
        return _related(message.pinned_relation, message.pinned_relation.document_view_id)
    if which == "relation_list":
        return [_related(item, item.document_id) for item in message.relation_list.items]
    if which == "pinned_relation_list":
        return [
            _related(item, item.document_view_id) for item in message.pinned_relation_list.items
        ]
    return ""  # an unset value: the node sent a field without a value


def schema_from_pb(message: qpb.Schema) -> Schema:
    """Turn a query ``Schema`` message into a :class:`pandanode.core.schema.Schema`."""
    fields: dict[str, FieldType] = {}
    for item in message.fields:
        if item.type:
            fields[item.name] = FieldType.from_str(item.type)
        else:
            kind = _KIND_NAMES[item.kind]
            target = parse_schema_id(item.target_schema_id) if item.target_schema_id else None
            fields[item.name] = FieldType(kind, target)  # type: ignore[arg-type]
    return Schema(parse_schema_id(message.schema_id), message.description, fields)
