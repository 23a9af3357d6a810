"""The query service's own vocabulary: materialized documents, changes, filters and orders.

These are plain frozen dataclasses shared by the materializer (which produces documents and
changes), the listing engine (which filters, orders and pages them), the watch hub and the gRPC
servicer (which translates them to and from ``pandanode.query.v1`` messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from pandanode.core.operation import (
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
)

__all__ = [
    "ChangeKind",
    "DocumentChange",
    "FilterOp",
    "FilterValue",
    "MaterializedDocument",
    "Meta",
    "Order",
    "Predicate",
    "TypedValue",
]

TypedValue: TypeAlias = (
    bool | int | float | str | bytes | Relation | RelationList | PinnedRelation | PinnedRelationList
)
"""A field value typed by its schema (see :func:`pandanode.core.schema.validate_operation`)."""


@dataclass(frozen=True, slots=True)
class MaterializedDocument:
    """One view of a document as the query service keeps and serves it.

    Attributes:
        document_id: The id of its CREATE operation.
        view_id: The document view id (``_``-joined, sorted operation ids).
        schema_id: The schema id.
        owner: Public key of the CREATE's author.
        edited: Any field last set by an UPDATE, or deleted.
        deleted: The document holds a DELETE; then ``fields`` is empty.
        fields: Field name → typed value, in byte-wise name order.
        appendable: The view's only tip is open (:func:`pandanode.core.document.open_tip`): an
            operation building on it can be folded in without walking the document again.
    """

    document_id: str
    view_id: str
    schema_id: str
    owner: str
    edited: bool
    deleted: bool
    fields: Mapping[str, TypedValue] = field(default_factory=dict)
    appendable: bool = False


class ChangeKind(StrEnum):
    """What happened to a document's current view."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class DocumentChange:
    """A document's current view changed (emitted after the change is committed to the store).

    Attributes:
        kind: Created, updated or deleted.
        document: The new current view.
        previous: The view it replaced; None when created.
        sequence: Position of the event that caused it in the event stream (increasing).
    """

    kind: ChangeKind
    document: MaterializedDocument
    previous: MaterializedDocument | None
    sequence: int


class Meta(StrEnum):
    """Properties every document has, usable in filters (and, for the ids, in orders)."""

    OWNER = "owner"
    DOCUMENT_ID = "document_id"
    DOCUMENT_VIEW_ID = "document_view_id"
    EDITED = "edited"
    DELETED = "deleted"


class FilterOp(StrEnum):
    """The operators of spec §7.4."""

    EQ = "eq"
    NOT_EQ = "not_eq"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"
    NOT_CONTAINS = "not_contains"


FilterValue: TypeAlias = bool | int | float | str | bytes
"""An operand: relation fields compare document ids, pinned relations view ids (as str)."""


@dataclass(frozen=True, slots=True)
class Predicate:
    """One condition on a field or a meta property; a query's predicates combine with AND.

    Attributes:
        target: A field name, or a :class:`Meta` property.
        op: The operator.
        value: The operand of single-value operators.
        values: The operands of ``in`` / ``not_in``.
    """

    target: str | Meta
    op: FilterOp
    value: FilterValue | None = None
    values: tuple[FilterValue, ...] = ()


@dataclass(frozen=True, slots=True)
class Order:
    """Sort key of a listing; ties are always broken by document id.

    Attributes:
        target: A field name, or ``Meta.DOCUMENT_ID`` / ``Meta.DOCUMENT_VIEW_ID``.
        descending: Reverse order (the tie-break reverses too).
    """

    target: str | Meta = Meta.DOCUMENT_ID
    descending: bool = False
