"""Targets: what a predicate or an order reads from a document, and order entries.

A :class:`Target` is a schema field or a meta property with a reader that returns its
comparable value (or :data:`MISSING`). An order *entry* is ``(rank, value, document id)``;
the rank puts float NaN after every number and documents without a value after everything.
The tables here say which filter operators each kind of target takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pandanode.core.errors import quote
from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.core.schema import Schema
from pandanode.services.runtime.errors import InvalidRequestError

from ..model import FilterOp, MaterializedDocument, Meta

__all__ = [
    "ABSENT",
    "FIELD_VALUE_TYPES",
    "INDEXED_KINDS",
    "LIST_KINDS",
    "LIST_OPS",
    "META_TARGETS",
    "MISSING",
    "NAN",
    "OPERAND_NAMES",
    "OPERATORS",
    "ORDERABLE_META",
    "PRESENT",
    "TOP",
    "Check",
    "Entry",
    "Reader",
    "Target",
    "TargetKey",
    "field_targets",
    "float_key",
    "highest",
    "lowest",
    "resolve_target",
]

_LISTED_FIELDS: Final = 30

# Entry ranks: a present value, a float NaN (after every number), no value (after everything).
PRESENT: Final = 0
NAN: Final = 1
ABSENT: Final = 2

Entry: TypeAlias = tuple[Any, ...]
"""An order entry ``(rank, value, document id)``, or a bound compared against entries."""

Check: TypeAlias = Callable[[MaterializedDocument], bool]
Reader: TypeAlias = Callable[[MaterializedDocument], Any]
TargetKey: TypeAlias = tuple[str, str]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


class _Top:
    """Greater than any value: ``(rank, value, TOP)`` bounds every entry with that key above."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __repr__(self) -> str:
        return "<top>"


TOP: Final = _Top()


_SCALAR_OPS: Final = frozenset(
    {
        FilterOp.EQ,
        FilterOp.NOT_EQ,
        FilterOp.IN,
        FilterOp.NOT_IN,
        FilterOp.GT,
        FilterOp.GTE,
        FilterOp.LT,
        FilterOp.LTE,
    }
)
_EQUALITY_OPS: Final = frozenset({FilterOp.EQ, FilterOp.NOT_EQ})
_MEMBERSHIP_OPS: Final = frozenset({FilterOp.EQ, FilterOp.NOT_EQ, FilterOp.IN, FilterOp.NOT_IN})
LIST_OPS: Final = frozenset({FilterOp.IN, FilterOp.NOT_IN})

# Operators per target kind (spec §7.4); "id" and "flag" are the meta properties' kinds.
OPERATORS: Final[dict[str, frozenset[FilterOp]]] = {
    "bool": _EQUALITY_OPS,
    "int": _SCALAR_OPS,
    "float": _SCALAR_OPS,
    "str": _SCALAR_OPS | {FilterOp.CONTAINS, FilterOp.NOT_CONTAINS},
    "bytes": _EQUALITY_OPS,
    "relation": _MEMBERSHIP_OPS,
    "pinned_relation": _MEMBERSHIP_OPS,
    "relation_list": LIST_OPS,
    "pinned_relation_list": LIST_OPS,
    "id": _MEMBERSHIP_OPS,
    "flag": _EQUALITY_OPS,
}
OPERAND_NAMES: Final[dict[str, str]] = {
    "bool": "a bool",
    "int": "an int",
    "float": "a float or an int",
    "str": "a str",
    "bytes": "bytes",
    "relation": "a str (a document id)",
    "pinned_relation": "a str (a document view id)",
    "relation_list": "a str (a document id)",
    "pinned_relation_list": "a str (a document view id)",
    "id": "a str",
    "flag": "a bool",
}
LIST_KINDS: Final = frozenset({"relation_list", "pinned_relation_list"})
# Kinds whose eq/in predicates may use a hash index (booleans select too much to be worth it).
INDEXED_KINDS: Final = frozenset(
    {"int", "float", "str", "bytes", "relation", "pinned_relation", "id"} | LIST_KINDS
)
ORDERABLE_META: Final = (Meta.DOCUMENT_ID, Meta.DOCUMENT_VIEW_ID)
FIELD_VALUE_TYPES: Final[dict[str, type]] = {
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "bytes": bytes,
    "relation": Relation,
    "relation_list": RelationList,
    "pinned_relation": PinnedRelation,
    "pinned_relation_list": PinnedRelationList,
}


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """A field or meta property, with how to read its comparable value from a document.

    ``read`` returns ``MISSING`` when the document has no value. The comparable value is the
    field value itself for bool, int, str and bytes; ``(rank, value)`` for float (NaN is
    ``(NAN, 0.0)``); the document id of a relation; the ``_``-joined view id of a pinned
    relation; a tuple of those for the two list kinds.
    """

    key: TargetKey
    label: str
    kind: str
    read: Reader

    @property
    def is_list(self) -> bool:
        """Whether the target's values are lists (relation lists)."""
        return self.kind in LIST_KINDS

    def entry(self, document: MaterializedDocument) -> Entry:
        """The document's order entry ``(rank, value, document id)`` for this key."""
        value = self.read(document)
        if value is MISSING:
            return (ABSENT, None, document.document_id)
        if self.kind == "float":
            return (value[0], value[1], document.document_id)
        return (PRESENT, value, document.document_id)

    def keys(self, document: MaterializedDocument) -> frozenset[Any]:
        """The hash-index keys of the document's value (one per element for the list kinds)."""
        value = self.read(document)
        if value is MISSING:
            return frozenset()
        return frozenset(value) if self.is_list else frozenset((value,))


def float_key(value: float) -> tuple[int, float]:
    """The comparable form of a float: ``(rank, value)``, NaN after every number."""
    return (NAN, 0.0) if math.isnan(value) else (PRESENT, value)


def _field_reader(name: str, kind: str) -> Reader:
    def plain(document: MaterializedDocument) -> Any:
        return document.fields.get(name, MISSING)

    def float_value(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, MISSING)
        return value if value is MISSING else float_key(value)

    def relation(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, MISSING)
        return value if value is MISSING else value.document_id

    def pinned_relation(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, MISSING)
        return value if value is MISSING else "_".join(value.view_id)

    def relation_list(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, MISSING)
        return value if value is MISSING else value.document_ids

    def pinned_relation_list(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, MISSING)
        if value is MISSING:
            return value
        return tuple("_".join(view_id) for view_id in value.view_ids)

    readers: dict[str, Reader] = {
        "float": float_value,
        "relation": relation,
        "pinned_relation": pinned_relation,
        "relation_list": relation_list,
        "pinned_relation_list": pinned_relation_list,
    }
    return readers.get(kind, plain)


def _meta_target(meta: Meta) -> Target:
    readers: dict[Meta, tuple[str, Reader]] = {
        Meta.OWNER: ("id", lambda document: document.owner),
        Meta.DOCUMENT_ID: ("id", lambda document: document.document_id),
        Meta.DOCUMENT_VIEW_ID: ("id", lambda document: document.view_id),
        Meta.EDITED: ("flag", lambda document: document.edited),
        Meta.DELETED: ("flag", lambda document: document.deleted),
    }
    kind, read = readers[meta]
    return Target(("meta", meta.value), f"meta property {meta.value!r}", kind, read)


META_TARGETS: Final = {meta: _meta_target(meta) for meta in Meta}


def field_targets(schema: Schema) -> dict[str, Target]:
    """The target of each of a schema's fields, by field name."""
    return {
        name: Target(
            ("field", name),
            f"field {name!r} ({field_type.kind})",
            field_type.kind,
            _field_reader(name, field_type.kind),
        )
        for name, field_type in schema.fields.items()
    }


def _describe_fields(schema: Schema) -> str:
    names = [f"{name} ({field_type.kind})" for name, field_type in schema.fields.items()]
    if len(names) > _LISTED_FIELDS:
        more = len(names) - _LISTED_FIELDS
        names = [*names[:_LISTED_FIELDS], f"… and {more} more"]
    return ", ".join(names)


def resolve_target(schema: Schema, fields: dict[str, Target], target: str | Meta) -> Target:
    """The target a predicate or an order names: a meta property, or a field of ``fields``.

    Raises:
        InvalidRequestError: The schema has no such field.
    """
    if isinstance(target, Meta):
        return META_TARGETS[target]
    found = fields.get(target)
    if found is None:
        hint = ""
        if target in Meta.__members__.values():
            hint = f" (to use the document's {target}, target Meta.{Meta(target).name})"
        raise InvalidRequestError(
            f"unknown field {quote(target)}{hint}: schema {schema.id} has the fields "
            f"{_describe_fields(schema)}"
        )
    return found


def highest(bound: Entry | None, other: Entry) -> Entry:
    """The higher of two lower bounds (None: unbounded)."""
    return other if bound is None or other > bound else bound


def lowest(bound: Entry | None, other: Entry) -> Entry:
    """The lower of two upper bounds (None: unbounded)."""
    return other if bound is None or other < bound else bound
