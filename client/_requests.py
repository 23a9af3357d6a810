"""Building what the client sends: operations to sign, and the messages of reads.

Everything here is a pure function of its arguments: Python values are checked against the
schema (nothing invalid is ever signed or sent) and turned into operations, filters, orderings
and read requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from pandanode.core.errors import Reason, SchemaError
from pandanode.core.operation import decode_operation, encode_operation
from pandanode.core.schema import (
    MAX_SCHEMA_FIELDS,
    FieldType,
    Schema,
    validate_operation,
)
from pandanode.core.schema_id import (
    SchemaId,
    is_valid_description,
    is_valid_field_name,
    is_valid_schema_name,
    parse_schema_id,
)
from pandanode.query.v1 import query_pb2 as qpb

from ._models import Document, Published
from ._values import fields_for, to_field_value

__all__ = [
    "DocumentLike",
    "FieldTypeLike",
    "SchemaLike",
    "Target",
    "blob_request",
    "check_operation",
    "check_schema_description",
    "consistency",
    "create_operation",
    "delete_operation",
    "document_request",
    "filters",
    "known_field",
    "order_by",
    "pinned_relation",
    "pinned_relation_list",
    "relation",
    "relation_list",
    "system_operation",
    "update_operation",
]

SchemaLike: TypeAlias = str | SchemaId | Schema
"""A schema: its id as a string or :class:`SchemaId`, or the :class:`Schema` itself."""

DocumentLike: TypeAlias = Document | Published | str
"""A document to write to: a :class:`Document` or :class:`Published` (the write builds on that
view), or a document id (the write builds on the current view)."""

FieldTypeLike: TypeAlias = str | FieldType
"""A field type: ``"str"``, ``"relation(<schema id>)"``, … or a :class:`FieldType`."""

_FILTER_OPERATORS: Final = {
    "eq": qpb.FILTER_OPERATOR_EQ,
    "not_eq": qpb.FILTER_OPERATOR_NOT_EQ,
    "ne": qpb.FILTER_OPERATOR_NOT_EQ,
    "in": qpb.FILTER_OPERATOR_IN,
    "not_in": qpb.FILTER_OPERATOR_NOT_IN,
    "gt": qpb.FILTER_OPERATOR_GT,
    "gte": qpb.FILTER_OPERATOR_GTE,
    "lt": qpb.FILTER_OPERATOR_LT,
    "lte": qpb.FILTER_OPERATOR_LTE,
    "contains": qpb.FILTER_OPERATOR_CONTAINS,
    "not_contains": qpb.FILTER_OPERATOR_NOT_CONTAINS,
}
_META_FIELDS: Final = {
    "owner": qpb.META_FIELD_OWNER,
    "document_id": qpb.META_FIELD_DOCUMENT_ID,
    "id": qpb.META_FIELD_DOCUMENT_ID,
    "view_id": qpb.META_FIELD_DOCUMENT_VIEW_ID,
    "document_view_id": qpb.META_FIELD_DOCUMENT_VIEW_ID,
    "edited": qpb.META_FIELD_EDITED,
    "deleted": qpb.META_FIELD_DELETED,
}


# -- field types --------------------------------------------------------------------------------


def _target_id(target: SchemaLike) -> SchemaId:
    if isinstance(target, Schema):
        return target.id
    if isinstance(target, SchemaId):
        return target
    return parse_schema_id(target)


def relation(target: SchemaLike) -> FieldType:
    """The type of a field holding one document of schema ``target`` (its current view)."""
    return FieldType("relation", _target_id(target))


def relation_list(target: SchemaLike) -> FieldType:
    """The type of a field holding a list of documents of schema ``target``."""
    return FieldType("relation_list", _target_id(target))


def pinned_relation(target: SchemaLike) -> FieldType:
    """The type of a field holding one document view of schema ``target``."""
    return FieldType("pinned_relation", _target_id(target))


def pinned_relation_list(target: SchemaLike) -> FieldType:
    """The type of a field holding a list of document views of schema ``target``."""
    return FieldType("pinned_relation_list", _target_id(target))


def check_schema_description(
    name: str, description: str, fields: Mapping[str, FieldTypeLike]
) -> dict[str, FieldType]:
    """Check a new schema's name, description and fields; return the parsed field types.

    Raises:
        SchemaError: (``INVALID_SCHEMA_DEFINITION``) A rule of spec §5.3 is broken.
    """

    def fail(problem: str) -> SchemaError:
        return SchemaError(problem, Reason.INVALID_SCHEMA_DEFINITION)

    if not is_valid_schema_name(name):
        raise fail(
            f"invalid schema name {name!r}: 2 to 64 characters from A-Z, a-z, 0-9 and '_', "
            "starting with a letter and not ending with '_'"
        )
    if not is_valid_description(description):
        raise fail(f"the description has {len(description)} characters, at most 256 are allowed")
    if not 1 <= len(fields) <= MAX_SCHEMA_FIELDS:
        raise fail(f"a schema has 1 to {MAX_SCHEMA_FIELDS} fields, got {len(fields)}")
    types: dict[str, FieldType] = {}
    for field_name, field_type in fields.items():
        if not is_valid_field_name(field_name):
            raise fail(
                f"invalid field name {field_name!r}: 1 to 64 characters from A-Z, a-z, 0-9 and "
                "'_', starting with a letter"
            )
        types[field_name] = (
            field_type if isinstance(field_type, FieldType) else FieldType.from_str(field_type)
        )
    return types


# -- operations ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The document a write builds on."""

    document_id: str
    view_id: str
    schema_id: str


def create_operation(schema: Schema, fields: Mapping[str, object]) -> bytes:
    """A CREATE of ``schema`` with every field (checked and typed here)."""
    return encode_operation(
        action="create", schema_id=str(schema.id), fields=fields_for(schema, fields, create=True)
    )


def update_operation(schema: Schema, target: Target, fields: Mapping[str, object]) -> bytes:
    """An UPDATE of some fields of ``target``, built on its view."""
    return encode_operation(
        action="update",
        schema_id=target.schema_id,
        previous=target.view_id,
        fields=fields_for(schema, fields, create=False),
    )


def delete_operation(target: Target) -> bytes:
    """A DELETE of ``target``, built on its view."""
    return encode_operation(action="delete", schema_id=target.schema_id, previous=target.view_id)


def system_operation(schema: Schema, fields: Mapping[str, object]) -> bytes:
    """A CREATE of a system schema document from (possibly partial) plain values."""
    return encode_operation(
        action="create",
        schema_id=str(schema.id),
        fields={
            name: to_field_value(name, value, schema.fields[name]) for name, value in fields.items()
        },
    )


def check_operation(operation: bytes, schema: Schema) -> None:
    """Run the node's own schema check here, so that nothing invalid is ever signed."""
    validate_operation(decode_operation(operation), schema)


# -- reads --------------------------------------------------------------------------------------


def consistency(after: Published | str | None) -> qpb.Consistency | None:
    """Read-your-writes: wait for the operation ``after`` (a receipt or an id), if any."""
    if after is None:
        return None
    operation_id = after.operation_id if isinstance(after, Published) else after
    return qpb.Consistency(operation_id=operation_id)


def document_request(
    document_id: str | None,
    view_id: str | None,
    *,
    resolve_depth: int = 0,
    after: Published | str | None = None,
) -> qpb.GetDocumentRequest:
    """The request for one document (its current view) or one view of it."""
    request = qpb.GetDocumentRequest(resolve_depth=resolve_depth, consistency=consistency(after))
    if view_id:
        request.document_view_id = view_id
    elif document_id:
        request.document_id = document_id
    else:
        raise ValueError("get_document needs a document_id or a view_id")
    return request


def blob_request(
    document_id: str | None, view_id: str | None, after: Published | str | None
) -> qpb.GetBlobRequest:
    """The request for a blob (its current view) or one view of it."""
    request = qpb.GetBlobRequest(consistency=consistency(after))
    if view_id:
        request.document_view_id = view_id
    elif document_id:
        request.document_id = document_id
    else:
        raise ValueError("get_blob needs a document_id or a view_id")
    return request


def known_field(schema: Schema, name: str) -> FieldType:
    """The type of field ``name`` of ``schema``.

    Raises:
        SchemaError: (``UNEXPECTED_FIELD``) The schema has no such field; names the fields.
    """
    field_type = schema.fields.get(name)
    if field_type is None:
        raise SchemaError(
            f"unknown field '{name}': schema {schema.name} has the fields "
            f"{schema.describe_fields()} (and @owner, @document_id, @view_id, @edited, @deleted)",
            Reason.UNEXPECTED_FIELD,
        )
    return field_type


def _meta_field(name: str) -> qpb.MetaField.ValueType:
    meta = _META_FIELDS.get(name)
    if meta is None:
        raise ValueError(
            f"unknown document property '@{name}': use @owner, @document_id, @view_id, "
            "@edited or @deleted"
        )
    return meta


def order_by(request: qpb.ListDocumentsRequest, schema: Schema, key: str | None) -> None:
    """Set the ordering of a listing: a field or ``@property``, ``-`` prefixed for descending."""
    if not key:
        return
    request.descending = key.startswith("-")
    name = key.lstrip("-")
    if name.startswith("@"):
        request.order_by.meta = _meta_field(name[1:])
    else:
        known_field(schema, name)
        request.order_by.field = name


def filters(schema: Schema, conditions: Mapping[str, object]) -> list[qpb.Filter]:
    """The filter messages of ``{"field__operator": value}`` conditions (combined with AND)."""
    return [_filter(schema, key, value) for key, value in conditions.items()]


def _filter(schema: Schema, key: str, value: object) -> qpb.Filter:
    target, _, operator_name = key.partition("__")
    operator = _FILTER_OPERATORS.get(operator_name or "eq")
    if operator is None:
        raise ValueError(
            f"unknown filter operator '{operator_name}' in {key!r}: use one of "
            f"{', '.join(sorted(_FILTER_OPERATORS))}"
        )
    message = qpb.Filter(operator=operator)
    if target.startswith("@"):
        message.meta = _meta_field(target[1:])
        by_view = message.meta == qpb.META_FIELD_DOCUMENT_VIEW_ID
    else:
        kind = known_field(schema, target).kind
        message.field = target
        by_view = kind in ("pinned_relation", "pinned_relation_list")
    if operator in (qpb.FILTER_OPERATOR_IN, qpb.FILTER_OPERATOR_NOT_IN):
        if not isinstance(value, list | tuple | set | frozenset):
            raise ValueError(f"filter {key!r} takes a list of values")
        message.values.extend(_filter_value(key, item, by_view) for item in value)
    else:
        message.value.CopyFrom(_filter_value(key, value, by_view))
    return message


def _filter_value(key: str, value: object, by_view: bool) -> qpb.FilterValue:
    """One operand; documents and receipts stand for their id (``by_view``: their view id)."""
    if isinstance(value, Document):
        value = value.view_id if by_view else value.id
    elif isinstance(value, Published):
        value = value.view_id if by_view else value.document_id
    if isinstance(value, bool):
        return qpb.FilterValue(bool_value=value)
    if isinstance(value, int):  # also for float fields: the node compares exact values
        return qpb.FilterValue(int_value=value)
    if isinstance(value, float):
        return qpb.FilterValue(float_value=value)
    if isinstance(value, str):
        return qpb.FilterValue(str_value=value)
    if isinstance(value, bytes):
        return qpb.FilterValue(bytes_value=value)
    raise ValueError(f"filter {key!r}: cannot compare with {type(value).__name__} {value!r:.40}")
