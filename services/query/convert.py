"""Translations between the query service's model and ``pandanode.query.v1`` messages.

Pure functions; the servicer calls them. Relation fields are answered with the related
documents a read use case found beforehand (:func:`.relations.resolve_relations`, which bounds
the work and size of a response), so this module reads nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from pandanode.core.operation import (
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)
from pandanode.core.schema import Schema, system_schema
from pandanode.query.v1 import query_pb2 as pb
from pandanode.services.runtime.errors import InvalidRequestError

from .model import FilterOp, FilterValue, MaterializedDocument, Meta, Order, Predicate, TypedValue
from .relations import Related

__all__ = [
    "document_to_pb",
    "documents_to_pb",
    "order_from_pb",
    "predicates_from_pb",
    "schema_to_pb",
]

_OPERATORS = {
    pb.FILTER_OPERATOR_EQ: FilterOp.EQ,
    pb.FILTER_OPERATOR_NOT_EQ: FilterOp.NOT_EQ,
    pb.FILTER_OPERATOR_IN: FilterOp.IN,
    pb.FILTER_OPERATOR_NOT_IN: FilterOp.NOT_IN,
    pb.FILTER_OPERATOR_GT: FilterOp.GT,
    pb.FILTER_OPERATOR_GTE: FilterOp.GTE,
    pb.FILTER_OPERATOR_LT: FilterOp.LT,
    pb.FILTER_OPERATOR_LTE: FilterOp.LTE,
    pb.FILTER_OPERATOR_CONTAINS: FilterOp.CONTAINS,
    pb.FILTER_OPERATOR_NOT_CONTAINS: FilterOp.NOT_CONTAINS,
}

_META = {
    pb.META_FIELD_OWNER: Meta.OWNER,
    pb.META_FIELD_DOCUMENT_ID: Meta.DOCUMENT_ID,
    pb.META_FIELD_DOCUMENT_VIEW_ID: Meta.DOCUMENT_VIEW_ID,
    pb.META_FIELD_EDITED: Meta.EDITED,
    pb.META_FIELD_DELETED: Meta.DELETED,
}

_KINDS = {
    "bool": pb.FIELD_KIND_BOOL,
    "int": pb.FIELD_KIND_INT,
    "float": pb.FIELD_KIND_FLOAT,
    "str": pb.FIELD_KIND_STR,
    "bytes": pb.FIELD_KIND_BYTES,
    "relation": pb.FIELD_KIND_RELATION,
    "relation_list": pb.FIELD_KIND_RELATION_LIST,
    "pinned_relation": pb.FIELD_KIND_PINNED_RELATION,
    "pinned_relation_list": pb.FIELD_KIND_PINNED_RELATION_LIST,
}


def _value_to_pb(value: TypedValue, depth: int, resolved: Related) -> pb.FieldValue:
    def related(target: str, pinned: bool) -> pb.Document | None:
        if depth <= 0:
            return None
        document = resolved.get((target, pinned))
        return None if document is None else document_to_pb(document, depth - 1, resolved)

    if isinstance(value, bool):
        return pb.FieldValue(bool_value=value)
    if isinstance(value, int):
        return pb.FieldValue(int_value=value)
    if isinstance(value, float):
        return pb.FieldValue(float_value=value)
    if isinstance(value, str):
        return pb.FieldValue(str_value=value)
    if isinstance(value, bytes):
        return pb.FieldValue(bytes_value=value)
    if isinstance(value, Relation):
        return pb.FieldValue(
            relation=pb.RelationValue(
                document_id=value.document_id, document=related(value.document_id, False)
            )
        )
    if isinstance(value, RelationList):
        items = [
            pb.RelationValue(document_id=doc_id, document=related(doc_id, False))
            for doc_id in value.document_ids
        ]
        return pb.FieldValue(relation_list=pb.RelationListValue(items=items))
    if isinstance(value, PinnedRelation):
        view_id = "_".join(value.view_id)
        return pb.FieldValue(
            pinned_relation=pb.PinnedRelationValue(
                document_view_id=view_id, document=related(view_id, True)
            )
        )
    if not isinstance(value, PinnedRelationList):  # pragma: no cover - TypedValue is closed
        raise TypeError(f"not a typed field value: {value!r}")
    pinned_items = []
    for ids in value.view_ids:
        view_id = "_".join(ids)
        pinned_items.append(
            pb.PinnedRelationValue(document_view_id=view_id, document=related(view_id, True))
        )
    return pb.FieldValue(pinned_relation_list=pb.PinnedRelationListValue(items=pinned_items))


def document_to_pb(
    document: MaterializedDocument, depth: int = 0, related: Related | None = None
) -> pb.Document:
    """Convert a document; relation fields hold the ``related`` documents ``depth`` levels deep."""
    resolved: Related = {} if related is None else related
    message = pb.Document(
        document_id=document.document_id,
        document_view_id=document.view_id,
        schema_id=document.schema_id,
        owner=document.owner,
        edited=document.edited,
        deleted=document.deleted,
    )
    for name, value in document.fields.items():
        message.fields[name].CopyFrom(_value_to_pb(value, depth, resolved))
    return message


def documents_to_pb(
    documents: Sequence[MaterializedDocument], depth: int, related: Related
) -> list[pb.Document]:
    """Convert the documents of one response, relations resolved ``depth`` levels deep.

    Args:
        documents: The response's documents.
        depth: How many levels of relations to answer with documents.
        related: The related documents :func:`.relations.resolve_relations` read for them.
    """
    return [document_to_pb(document, depth, related) for document in documents]


def _operand(value: pb.FilterValue, path: str) -> FilterValue:
    kind = value.WhichOneof("value")
    if kind is None:
        raise InvalidRequestError("a filter value is empty: set one of its members").violation(path)
    result: FilterValue = getattr(value, kind)
    return result


def predicates_from_pb(filters: Sequence[pb.Filter]) -> list[Predicate]:
    """Convert request filters into predicates (their fit to the schema is checked later)."""
    predicates = []
    for index, message in enumerate(filters):
        where = f"filter {index}"
        target_kind = message.WhichOneof("target")
        target: str | Meta
        if target_kind == "field":
            target = message.field
        elif target_kind == "meta" and message.meta in _META:
            target = _META[message.meta]
        else:
            raise InvalidRequestError(f"{where}: set `field` or a valid `meta`").violation(
                f"filters[{index}].meta" if target_kind == "meta" else f"filters[{index}].field"
            )
        op = _OPERATORS.get(message.operator)
        if op is None:
            raise InvalidRequestError(f"{where}: set an operator").violation(
                f"filters[{index}].operator"
            )
        if op in (FilterOp.IN, FilterOp.NOT_IN):
            operands = tuple(
                _operand(v, f"filters[{index}].values[{i}]") for i, v in enumerate(message.values)
            )
            predicates.append(Predicate(target, op, values=operands))
        else:
            if not message.HasField("value"):
                raise InvalidRequestError(f"{where}: operator {op.value} needs `value`").violation(
                    f"filters[{index}].value"
                )
            predicates.append(
                Predicate(target, op, value=_operand(message.value, f"filters[{index}].value"))
            )
    return predicates


def order_from_pb(order_by: pb.OrderBy, descending: bool) -> Order:
    """Convert the request's order (default: by document id)."""
    kind = order_by.WhichOneof("key")
    if kind == "field":
        return Order(order_by.field, descending)
    if kind == "meta":
        meta = _META.get(order_by.meta)
        if meta is None or meta not in (Meta.DOCUMENT_ID, Meta.DOCUMENT_VIEW_ID):
            raise InvalidRequestError(
                "order_by.meta must be DOCUMENT_ID or DOCUMENT_VIEW_ID"
            ).violation("order_by.meta")
        return Order(meta, descending)
    return Order(Meta.DOCUMENT_ID, descending)


def schema_to_pb(schema: Schema) -> pb.Schema:
    """Convert a schema with its typed fields."""
    fields = [
        pb.SchemaField(
            name=name,
            kind=_KINDS[field_type.kind],
            target_schema_id=str(field_type.schema_id) if field_type.schema_id else "",
            type=str(field_type),
        )
        for name, field_type in schema.fields.items()
    ]
    return pb.Schema(
        schema_id=str(schema.id),
        name=schema.name,
        description=schema.description,
        fields=fields,
        system=system_schema(schema.id) is not None,
    )
