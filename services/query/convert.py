"""Translations between the query service's model and ``pandanode.query.v1`` messages.

Pure functions; the servicer calls them. Relation fields are resolved into documents through a
``resolve`` callback so this module needs no store; :class:`BoundedResolver` wraps one for a
single response, so the work and size of a response are bounded however the documents relate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pandanode.core.operation import (
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)
from pandanode.core.schema import Schema, system_schema
from pandanode.query.v1 import query_pb2 as pb
from pandanode.services.runtime.errors import InvalidRequestError, LimitExceededError

from .model import FilterOp, FilterValue, MaterializedDocument, Meta, Order, Predicate, TypedValue

__all__ = [
    "BoundedResolver",
    "Resolver",
    "approximate_size",
    "document_to_pb",
    "documents_to_pb",
    "order_from_pb",
    "predicates_from_pb",
    "schema_to_pb",
]

Resolver = Callable[[str, bool], MaterializedDocument | None]
"""``resolve(id, pinned)``: the current view of a document id, or (pinned) a view by view id."""

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


def _value_to_pb(value: TypedValue, depth: int, resolve: Resolver) -> pb.FieldValue:
    def related(target: str, pinned: bool) -> pb.Document | None:
        if depth <= 0:
            return None
        document = resolve(target, pinned)
        return None if document is None else document_to_pb(document, depth - 1, resolve)

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
    document: MaterializedDocument, depth: int = 0, resolve: Resolver | None = None
) -> pb.Document:
    """Convert a document; relation fields are resolved ``depth`` levels deep via ``resolve``."""

    def nothing(_: str, __: bool) -> MaterializedDocument | None:
        return None

    resolver = resolve or nothing
    message = pb.Document(
        document_id=document.document_id,
        document_view_id=document.view_id,
        schema_id=document.schema_id,
        owner=document.owner,
        edited=document.edited,
        deleted=document.deleted,
    )
    for name, value in document.fields.items():
        message.fields[name].CopyFrom(_value_to_pb(value, depth, resolver))
    return message


_ID_BYTES = 70  # a 68-character hex id with its protobuf tag and length


def _value_size(value: TypedValue) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "replace"))
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, Relation):
        return _ID_BYTES
    if isinstance(value, RelationList):
        return _ID_BYTES * len(value.document_ids)
    if isinstance(value, PinnedRelation):
        return _ID_BYTES * len(value.view_id)
    if isinstance(value, PinnedRelationList):
        return sum(_ID_BYTES * len(ids) for ids in value.view_ids)
    return 10


def approximate_size(document: MaterializedDocument) -> int:
    """About how many bytes a document takes in a response, without resolved relations."""
    size = 4 * _ID_BYTES + 8
    for name, value in document.fields.items():
        size += len(name) + 8 + _value_size(value)
    return size


class BoundedResolver:
    """The resolver of one response: each distinct document read once, work and size bounded.

    Relations can multiply a response: a document whose relation list names itself 16 times,
    resolved 4 levels deep, is 69,905 documents. Every document that goes into the response
    (the top-level ones via :meth:`admit`, related ones as they are resolved) is counted, with
    its approximate size; past either budget the response is refused as a whole with
    RESOURCE_EXHAUSTED (``BUDGET_EXCEEDED``) rather than cut, so a client never mistakes a
    partial answer for a complete one.

    Args:
        resolve: Reads a related document (see :data:`Resolver`).
        max_documents: Most documents one response holds, related ones included.
        max_bytes: Most bytes (approximately) one response holds.
    """

    def __init__(self, resolve: Resolver, *, max_documents: int, max_bytes: int) -> None:
        self._resolve = resolve
        self._max_documents = max_documents
        self._max_bytes = max_bytes
        self._seen: dict[tuple[str, bool], tuple[MaterializedDocument | None, int]] = {}
        self.documents = 0
        self.bytes = 0
        self.reads = 0

    def admit(self, document: MaterializedDocument, size: int | None = None) -> None:
        """Count one document into the response.

        Raises:
            LimitExceededError: the response would hold too many documents or bytes.
        """
        self.documents += 1
        self.bytes += approximate_size(document) if size is None else size
        if self.documents > self._max_documents:
            raise LimitExceededError(
                f"the response would hold more than {self._max_documents} documents "
                "(max_resolved_documents; resolved relations count, each time they appear): "
                "ask for a smaller resolve_depth or page_size"
            )
        if self.bytes > self._max_bytes:
            raise LimitExceededError(
                f"the response would hold more than {self._max_bytes} bytes "
                "(max_message_bytes): ask for a smaller resolve_depth or page_size"
            )

    def __call__(self, target: str, pinned: bool) -> MaterializedDocument | None:
        """Resolve a relation (read once per distinct target) and count it into the response."""
        key = (target, pinned)
        seen = self._seen.get(key)
        if seen is None:
            self.reads += 1
            document = self._resolve(target, pinned)
            seen = (document, 0 if document is None else approximate_size(document))
            self._seen[key] = seen
        document, size = seen
        if document is not None:
            self.admit(document, size)
        return document


def documents_to_pb(
    documents: Sequence[MaterializedDocument], depth: int, resolver: BoundedResolver
) -> list[pb.Document]:
    """Convert the documents of one response, relations resolved ``depth`` levels deep.

    Raises:
        LimitExceededError: the response would exceed the resolver's budget.
    """
    converted = []
    for document in documents:
        resolver.admit(document)
        converted.append(document_to_pb(document, depth, resolver))
    return converted


def _operand(value: pb.FilterValue) -> FilterValue:
    kind = value.WhichOneof("value")
    if kind is None:
        raise InvalidRequestError("a filter value is empty: set one of its members")
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
            raise InvalidRequestError(f"{where}: set `field` or a valid `meta`")
        op = _OPERATORS.get(message.operator)
        if op is None:
            raise InvalidRequestError(f"{where}: set an operator")
        if op in (FilterOp.IN, FilterOp.NOT_IN):
            predicates.append(
                Predicate(target, op, values=tuple(_operand(v) for v in message.values))
            )
        else:
            if not message.HasField("value"):
                raise InvalidRequestError(f"{where}: operator {op.value} needs `value`")
            predicates.append(Predicate(target, op, value=_operand(message.value)))
    return predicates


def order_from_pb(order_by: pb.OrderBy, descending: bool) -> Order:
    """Convert the request's order (default: by document id)."""
    kind = order_by.WhichOneof("key")
    if kind == "field":
        return Order(order_by.field, descending)
    if kind == "meta":
        meta = _META.get(order_by.meta)
        if meta not in (Meta.DOCUMENT_ID, Meta.DOCUMENT_VIEW_ID):
            raise InvalidRequestError("order_by.meta must be DOCUMENT_ID or DOCUMENT_VIEW_ID")
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
