"""GraphQL collection arguments (``filter``, ``meta``, ``orderBy``) as query service requests.

A translation only: the query service does the filtering and ordering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphql import GraphQLError

from pandanode.query.v1 import query_pb2 as qpb

from .scalars import check_hex, check_id, check_public_key, check_view_id

__all__ = ["META_ORDER", "field_filters", "meta_filters", "order_by"]

_OPERATORS: Mapping[str, qpb.FilterOperator.ValueType] = {
    "eq": qpb.FILTER_OPERATOR_EQ,
    "notEq": qpb.FILTER_OPERATOR_NOT_EQ,
    "in": qpb.FILTER_OPERATOR_IN,
    "notIn": qpb.FILTER_OPERATOR_NOT_IN,
    "gt": qpb.FILTER_OPERATOR_GT,
    "gte": qpb.FILTER_OPERATOR_GTE,
    "lt": qpb.FILTER_OPERATOR_LT,
    "lte": qpb.FILTER_OPERATOR_LTE,
    "contains": qpb.FILTER_OPERATOR_CONTAINS,
    "notContains": qpb.FILTER_OPERATOR_NOT_CONTAINS,
}
_LISTS = frozenset({"in", "notIn"})

META_ORDER: Mapping[str, qpb.MetaField.ValueType] = {
    "DOCUMENT_ID": qpb.META_FIELD_DOCUMENT_ID,
    "DOCUMENT_VIEW_ID": qpb.META_FIELD_DOCUMENT_VIEW_ID,
}
"""The meta values of every ``SOrderBy`` enum."""

_Value = Callable[[Any], qpb.FilterValue]


def _bool(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(bool_value=bool(value))


def _int(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(int_value=int(value))


def _float(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(float_value=float(value))


def _str(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(str_value=str(value))


def _bytes(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(bytes_value=check_hex(value, "bytes"))


def _document_id(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(str_value=check_id(value))


def _view_id(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(str_value=check_view_id(value))


def _public_key(value: Any) -> qpb.FilterValue:
    return qpb.FilterValue(str_value=check_public_key(value))


_BY_KIND: Mapping[qpb.FieldKind.ValueType, _Value] = {
    qpb.FIELD_KIND_BOOL: _bool,
    qpb.FIELD_KIND_INT: _int,
    qpb.FIELD_KIND_FLOAT: _float,
    qpb.FIELD_KIND_STR: _str,
    qpb.FIELD_KIND_BYTES: _bytes,
    qpb.FIELD_KIND_RELATION: _document_id,
    qpb.FIELD_KIND_RELATION_LIST: _document_id,
    qpb.FIELD_KIND_PINNED_RELATION: _view_id,
    qpb.FIELD_KIND_PINNED_RELATION_LIST: _view_id,
}

_META: Mapping[str, tuple[qpb.MetaField.ValueType, _Value]] = {
    "documentId": (qpb.META_FIELD_DOCUMENT_ID, _document_id),
    "viewId": (qpb.META_FIELD_DOCUMENT_VIEW_ID, _view_id),
    "owner": (qpb.META_FIELD_OWNER, _public_key),
    "edited": (qpb.META_FIELD_EDITED, _bool),
    "deleted": (qpb.META_FIELD_DELETED, _bool),
}


def _conditions(operators: Mapping[str, Any], convert: _Value, **target: Any) -> list[qpb.Filter]:
    filters: list[qpb.Filter] = []
    for name, operand in operators.items():
        if operand is None:
            continue
        operator = _OPERATORS[name]
        if name in _LISTS:
            items = operand if isinstance(operand, list) else [operand]
            values = [convert(item) for item in items]
            filters.append(qpb.Filter(operator=operator, values=values, **target))
        else:
            filters.append(qpb.Filter(operator=operator, value=convert(operand), **target))
    return filters


def field_filters(
    kinds: Mapping[str, qpb.FieldKind.ValueType], filter_arg: Mapping[str, Any] | None
) -> list[qpb.Filter]:
    """The ``filter: SFilter`` argument as query service filters (``kinds``: by field name)."""
    filters: list[qpb.Filter] = []
    for field, operators in (filter_arg or {}).items():
        if operators is None:
            continue
        if field not in kinds:
            raise GraphQLError(f"unknown field {field!r} in filter")
        filters.extend(_conditions(operators, _BY_KIND[kinds[field]], field=field))
    return filters


def meta_filters(meta_arg: Mapping[str, Any] | None) -> list[qpb.Filter]:
    """The ``meta: MetaFilterInputObject`` argument as query service filters."""
    filters: list[qpb.Filter] = []
    for name, operators in (meta_arg or {}).items():
        if operators is None:
            continue
        meta, convert = _META[name]
        filters.extend(_conditions(operators, convert, meta=meta))
    return filters


def order_by(value: str | None) -> qpb.OrderBy | None:
    """The ``orderBy: SOrderBy`` argument (a meta name or a field name) as an OrderBy."""
    if value is None:
        return None
    if value in META_ORDER:
        return qpb.OrderBy(meta=META_ORDER[value])
    return qpb.OrderBy(field=value)
