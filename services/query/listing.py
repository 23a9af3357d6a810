"""The listing engine: filtered, ordered and paginated lists of one schema's documents.

A :class:`SchemaIndex` holds the current views of one schema's documents in memory and answers
``ListDocuments``; a :class:`Catalog` keeps one index per schema. Everything here is pure Python,
synchronous and not thread-safe: the query service calls it from its event loop only.

Semantics (what the tests pin down):

* **Filters** are spec §7.4's operators, combined with AND; :func:`compile_filter` lists which
  operators each field type takes. A predicate on a field never matches a document that has no
  value for it (a deleted document has no fields), whatever the operator, like SQL's NULL.
  Deleted documents are left out unless a predicate on :attr:`Meta.DELETED` is given.
* **Strings** compare by code point (the same as UTF-8 byte order) and ``contains`` is a
  case-sensitive substring test; relations compare by document id, pinned relations by their
  ``_``-joined view id; ``relation_list`` ``in`` matches a list holding any of the values and
  ``not_in`` one holding none of them (an empty list included).
* **Floats** follow one total order, for filters and ordering alike (PostgreSQL's):
  ``-inf < … < -0.0 == 0.0 < … < inf < NaN``; NaN equals NaN. An int operand on a float field
  compares by exact value.
* **Order** is by ``(key, document id)``, ascending or descending; descending is the exact
  reverse, tie-break included, so every order is a strict total order. Documents without a value
  for the key (deleted ones, when asked for) come after every value ascending and first
  descending. ``False < True``; bytes compare byte-wise.
* **Pages** are keyset pages. A page token records the query's fingerprint (schema id,
  predicates as a set, order) and the sort key of the page's last document; the next page holds
  the documents strictly after that key in the order, as the index is *then*. So a document that
  matches and keeps its sort key from the first request to the last is returned exactly once,
  however many documents are added, changed or removed meanwhile; documents added behind the
  position are not returned, and a document whose sort key changes between two requests may be
  returned twice or not at all. ``total_size`` counts the matches at the time of each call.
* **Page size**: None or 0 means :data:`DEFAULT_PAGE_SIZE`; a larger size than the index's
  maximum (:data:`MAX_PAGE_SIZE` by default) is lowered to it, as Google's AIP-158 prescribes;
  a negative size is an error.

How a page is found: every order key gets a sorted list of ``(rank, value, document id)``
entries, built on first use and maintained on each upsert. A page either walks that list from
the token's position (narrowed by range predicates on the order key), testing each document and
stopping after ``page_size + 1`` matches, or, when an ``eq``/``in`` predicate selects few enough
documents through a hash index (also built on first use), sorts just those. ``total_size`` is
cached per predicate set and brought up to date from a short log of recent changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pandanode.core.errors import Reason
from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.core.schema import Schema
from pandanode.services.runtime.errors import InvalidRequestError, ResourceNotFoundError

from .model import (
    DocumentChange,
    FilterOp,
    MaterializedDocument,
    Meta,
    Order,
    Predicate,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Catalog",
    "DocumentFilter",
    "Page",
    "SchemaIndex",
    "compile_filter",
]

DEFAULT_PAGE_SIZE: Final = 25
"""Documents per page when a request names no page size."""

MAX_PAGE_SIZE: Final = 1000
"""Default upper limit of a page; larger requests are lowered to it."""

_TOKEN_VERSION: Final = 1
# A token holds the last sort key, which may be a long str or bytes value (up to an operation's
# size); gRPC's default message limit bounds it anyway.
_MAX_TOKEN_LENGTH: Final = 4 * 1024 * 1024
_FILTER_CACHE_SIZE: Final = 256
_CHANGE_LOG_LIMIT: Final = 8192
_CHUNK_SIZE: Final = 512
_LISTED_FIELDS: Final = 30

# Entry ranks: a present value, a float NaN (after every number), no value (after everything).
_PRESENT: Final = 0
_NAN: Final = 1
_ABSENT: Final = 2

_Entry: TypeAlias = tuple[Any, ...]
"""An order entry ``(rank, value, document id)``, or a bound compared against entries."""

_Check: TypeAlias = Callable[[MaterializedDocument], bool]
_Reader: TypeAlias = Callable[[MaterializedDocument], Any]
_TargetKey: TypeAlias = tuple[str, str]
_Found: TypeAlias = list[tuple[_Entry, MaterializedDocument]]
_IdSets: TypeAlias = list[Any]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


class _Top:
    """Greater than any value: ``(rank, value, _TOP)`` bounds every entry with that key above."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return False

    def __gt__(self, other: object) -> bool:
        return other is not self

    def __repr__(self) -> str:
        return "<top>"


_TOP: Final = _Top()


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing.

    Attributes:
        documents: The page's documents, in order.
        next_page_token: Pass it back for the next page; None when this is the last page.
        total_size: How many documents match the predicates (all pages), at the time of the call.
    """

    documents: tuple[MaterializedDocument, ...]
    next_page_token: str | None
    total_size: int


# --------------------------------------------------------------------------------------------
# Targets: what a predicate or an order reads from a document

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
_LIST_OPS: Final = frozenset({FilterOp.IN, FilterOp.NOT_IN})

# Operators per target kind (spec §7.4); "id" and "flag" are the meta properties' kinds.
_OPERATORS: Final[dict[str, frozenset[FilterOp]]] = {
    "bool": _EQUALITY_OPS,
    "int": _SCALAR_OPS,
    "float": _SCALAR_OPS,
    "str": _SCALAR_OPS | {FilterOp.CONTAINS, FilterOp.NOT_CONTAINS},
    "bytes": _EQUALITY_OPS,
    "relation": _MEMBERSHIP_OPS,
    "pinned_relation": _MEMBERSHIP_OPS,
    "relation_list": _LIST_OPS,
    "pinned_relation_list": _LIST_OPS,
    "id": _MEMBERSHIP_OPS,
    "flag": _EQUALITY_OPS,
}
_OPERAND_NAMES: Final[dict[str, str]] = {
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
_LIST_KINDS: Final = frozenset({"relation_list", "pinned_relation_list"})
# Kinds whose eq/in predicates may use a hash index (booleans select too much to be worth it).
_INDEXED_KINDS: Final = frozenset(
    {"int", "float", "str", "bytes", "relation", "pinned_relation", "id"} | _LIST_KINDS
)
_ORDERABLE_META: Final = (Meta.DOCUMENT_ID, Meta.DOCUMENT_VIEW_ID)
_FIELD_VALUE_TYPES: Final[dict[str, type]] = {
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
class _Target:
    """A field or meta property, with how to read its comparable value from a document.

    ``read`` returns ``_MISSING`` when the document has no value. The comparable value is the
    field value itself for bool, int, str and bytes; ``(rank, value)`` for float (NaN is
    ``(_NAN, 0.0)``); the document id of a relation; the ``_``-joined view id of a pinned
    relation; a tuple of those for the two list kinds.
    """

    key: _TargetKey
    label: str
    kind: str
    read: _Reader

    @property
    def is_list(self) -> bool:
        return self.kind in _LIST_KINDS

    def entry(self, document: MaterializedDocument) -> _Entry:
        """The document's order entry ``(rank, value, document id)`` for this key."""
        value = self.read(document)
        if value is _MISSING:
            return (_ABSENT, None, document.document_id)
        if self.kind == "float":
            return (value[0], value[1], document.document_id)
        return (_PRESENT, value, document.document_id)

    def keys(self, document: MaterializedDocument) -> frozenset[Any]:
        """The hash-index keys of the document's value (one per element for the list kinds)."""
        value = self.read(document)
        if value is _MISSING:
            return frozenset()
        return frozenset(value) if self.is_list else frozenset((value,))


def _float_key(value: float) -> tuple[int, float]:
    return (_NAN, 0.0) if math.isnan(value) else (_PRESENT, value)


def _field_reader(name: str, kind: str) -> _Reader:
    def plain(document: MaterializedDocument) -> Any:
        return document.fields.get(name, _MISSING)

    def float_key(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, _MISSING)
        return value if value is _MISSING else _float_key(value)

    def relation(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, _MISSING)
        return value if value is _MISSING else value.document_id

    def pinned_relation(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, _MISSING)
        return value if value is _MISSING else "_".join(value.view_id)

    def relation_list(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, _MISSING)
        return value if value is _MISSING else value.document_ids

    def pinned_relation_list(document: MaterializedDocument) -> Any:
        value: Any = document.fields.get(name, _MISSING)
        if value is _MISSING:
            return value
        return tuple("_".join(view_id) for view_id in value.view_ids)

    readers: dict[str, _Reader] = {
        "float": float_key,
        "relation": relation,
        "pinned_relation": pinned_relation,
        "relation_list": relation_list,
        "pinned_relation_list": pinned_relation_list,
    }
    return readers.get(kind, plain)


def _meta_target(meta: Meta) -> _Target:
    readers: dict[Meta, tuple[str, _Reader]] = {
        Meta.OWNER: ("id", lambda document: document.owner),
        Meta.DOCUMENT_ID: ("id", lambda document: document.document_id),
        Meta.DOCUMENT_VIEW_ID: ("id", lambda document: document.view_id),
        Meta.EDITED: ("flag", lambda document: document.edited),
        Meta.DELETED: ("flag", lambda document: document.deleted),
    }
    kind, read = readers[meta]
    return _Target(("meta", meta.value), f"meta property {meta.value!r}", kind, read)


_META_TARGETS: Final = {meta: _meta_target(meta) for meta in Meta}


def _field_targets(schema: Schema) -> dict[str, _Target]:
    return {
        name: _Target(
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


def _resolve_target(schema: Schema, fields: dict[str, _Target], target: str | Meta) -> _Target:
    if isinstance(target, Meta):
        return _META_TARGETS[target]
    found = fields.get(target)
    if found is None:
        hint = ""
        if target in Meta.__members__.values():
            hint = f" (to use the document's {target}, target Meta.{Meta(target).name})"
        raise InvalidRequestError(
            f"unknown field {target!r}{hint}: schema {schema.id} has the fields "
            f"{_describe_fields(schema)}"
        )
    return found


# --------------------------------------------------------------------------------------------
# Compiled predicates


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _operand(target: _Target, op: FilterOp, value: object) -> Any:
    """Check an operand's type and return it as comparable as the target's values."""
    kind = target.kind
    if kind in ("bool", "flag"):
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "bytes":
        ok = isinstance(value, bytes)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise InvalidRequestError(
            f"filter {op.value!r} on {target.label} needs {_OPERAND_NAMES[kind]} value, "
            f"got {type(value).__name__} {_show(value)}"
        )
    if kind == "float":
        return _float_key(value) if isinstance(value, float) else (_PRESENT, value)
    return value


def _tag(value: object) -> tuple[Any, ...]:
    """A type-tagged, ordered, hashable form of an operand: ``1``, ``1.0``, ``True`` differ."""
    if value is None:
        return ("none",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, str):
        return ("str", str(value))
    if isinstance(value, bytes):
        return ("bytes", value.hex())
    return ("other", type(value).__name__, repr(value))


def _canonical(predicates: Sequence[Predicate]) -> tuple[Any, ...]:
    """The predicates as a set, in a stable form: the key of caches and of page tokens."""
    forms = []
    for predicate in predicates:
        target = predicate.target
        forms.append(
            (
                isinstance(target, Meta),
                target.value if isinstance(target, Meta) else str(target),
                str(predicate.op),
                _tag(predicate.value),
                tuple(sorted({_tag(value) for value in predicate.values})),
            )
        )
    return tuple(sorted(set(forms)))


def _compile_predicate(target: _Target, predicate: Predicate) -> tuple[_Check, tuple[Any, ...]]:
    """Validate a predicate; return its check and its operands in comparable form."""
    try:
        op = FilterOp(predicate.op)
    except ValueError:
        allowed = ", ".join(op.value for op in FilterOp)
        raise InvalidRequestError(
            f"unknown filter operator {predicate.op!r} on {target.label}: expected one of {allowed}"
        ) from None
    allowed_ops = _OPERATORS[target.kind]
    if op not in allowed_ops:
        names = ", ".join(sorted(allowed.value for allowed in allowed_ops))
        raise InvalidRequestError(
            f"filter {op.value!r} is not available on {target.label}; it takes {names}"
        )
    if op in _LIST_OPS:
        if predicate.value is not None:
            raise InvalidRequestError(
                f"filter {op.value!r} on {target.label} takes its operands in `values`, not `value`"
            )
        if not predicate.values:
            raise InvalidRequestError(
                f"filter {op.value!r} on {target.label} needs at least one value in `values`"
            )
        operands = tuple(_operand(target, op, value) for value in predicate.values)
    else:
        if predicate.values:
            raise InvalidRequestError(
                f"filter {op.value!r} on {target.label} takes one operand in `value`, not `values`"
            )
        if predicate.value is None:
            raise InvalidRequestError(f"filter {op.value!r} on {target.label} needs a `value`")
        operands = (_operand(target, op, predicate.value),)
    return _check(target, op, operands), operands


def _check(target: _Target, op: FilterOp, operands: tuple[Any, ...]) -> _Check:
    read = target.read
    operand = operands[0]
    if target.is_list:
        wanted = frozenset(operands)
        if op is FilterOp.IN:
            return lambda d: (v := read(d)) is not _MISSING and not wanted.isdisjoint(v)
        return lambda d: (v := read(d)) is not _MISSING and wanted.isdisjoint(v)
    if op is FilterOp.IN:
        wanted = frozenset(operands)
        return lambda d: (v := read(d)) is not _MISSING and v in wanted
    if op is FilterOp.NOT_IN:
        wanted = frozenset(operands)
        return lambda d: (v := read(d)) is not _MISSING and v not in wanted
    checks: dict[FilterOp, _Check] = {
        FilterOp.EQ: lambda d: (v := read(d)) is not _MISSING and v == operand,
        FilterOp.NOT_EQ: lambda d: (v := read(d)) is not _MISSING and v != operand,
        FilterOp.GT: lambda d: (v := read(d)) is not _MISSING and v > operand,
        FilterOp.GTE: lambda d: (v := read(d)) is not _MISSING and v >= operand,
        FilterOp.LT: lambda d: (v := read(d)) is not _MISSING and v < operand,
        FilterOp.LTE: lambda d: (v := read(d)) is not _MISSING and v <= operand,
        FilterOp.CONTAINS: lambda d: (v := read(d)) is not _MISSING and operand in v,
        FilterOp.NOT_CONTAINS: lambda d: (v := read(d)) is not _MISSING and operand not in v,
    }
    return checks[op]


def _not_deleted(document: MaterializedDocument) -> bool:
    return not document.deleted


class DocumentFilter:
    """Predicates validated against a schema and compiled into one test of documents.

    The listing uses it, and so can anything else that must decide whether a document matches a
    query (the watch hub, for changes). Build one with :func:`compile_filter`.

    Attributes:
        canonical: The predicates as a set, in a stable hashable form.
        includes_deleted: A predicate on ``Meta.DELETED`` was given; otherwise deleted documents
            never match.
        deleted: The ``deleted`` flag of every match: True when the predicates ask for the
            deleted documents, False for the live ones (the default), None when they
            contradict each other and nothing can match.
    """

    __slots__ = ("_checks", "_lookups", "_ranges", "canonical", "deleted", "includes_deleted")

    def __init__(
        self,
        canonical: tuple[Any, ...],
        checks: Sequence[_Check],
        lookups: Sequence[tuple[_Target, tuple[Any, ...]]],
        ranges: Sequence[tuple[_TargetKey, FilterOp, Any]],
        includes_deleted: bool,
        deleted: bool | None,
    ) -> None:
        self.canonical = canonical
        self.includes_deleted = includes_deleted
        self.deleted = deleted
        self._checks = tuple(checks)
        self._lookups = tuple(lookups)
        self._ranges = tuple(ranges)

    def matches(self, document: MaterializedDocument) -> bool:
        """Whether the document satisfies every predicate (and is not deleted, unless asked)."""
        for check in self._checks:  # noqa: SIM110 - all() over a generator is slower here
            if not check(document):
                return False
        return True

    __call__ = matches

    def _bounds(self, target: _Target) -> tuple[_Entry | None, _Entry | None]:
        """Exclusive entry bounds ``(low, high)`` that every match's entry for ``target`` has."""
        low: _Entry | None = None
        high: _Entry | None = None
        for key, op, operand in self._ranges:
            if key != target.key:
                continue
            # A document without a value never matches a predicate on the field.
            high = _lowest(high, (_ABSENT,))
            bound = tuple(operand) if target.kind == "float" else (_PRESENT, operand)
            if op in (FilterOp.GTE, FilterOp.EQ):
                low = _highest(low, bound)
            if op is FilterOp.GT:
                low = _highest(low, (*bound, _TOP))
            if op in (FilterOp.LTE, FilterOp.EQ):
                high = _lowest(high, (*bound, _TOP))
            if op is FilterOp.LT:
                high = _lowest(high, bound)
        return low, high


def _highest(bound: _Entry | None, other: _Entry) -> _Entry:
    return other if bound is None or other > bound else bound


def _lowest(bound: _Entry | None, other: _Entry) -> _Entry:
    return other if bound is None or other < bound else bound


def _compile(
    schema: Schema, fields: dict[str, _Target], predicates: Sequence[Predicate]
) -> DocumentFilter:
    checks: list[_Check] = []
    lookups: list[tuple[_Target, tuple[Any, ...]]] = []
    ranges: list[tuple[_TargetKey, FilterOp, Any]] = []
    includes_deleted = False
    deleted_states = {False, True}
    for predicate in predicates:
        target = _resolve_target(schema, fields, predicate.target)
        check, operands = _compile_predicate(target, predicate)
        checks.append(check)
        op = FilterOp(predicate.op)
        if target.kind in _INDEXED_KINDS and op in (FilterOp.EQ, FilterOp.IN):
            lookups.append((target, operands))
        if target.key[0] == "field" and op in (
            FilterOp.EQ,
            FilterOp.GT,
            FilterOp.GTE,
            FilterOp.LT,
            FilterOp.LTE,
        ):
            ranges.append((target.key, op, operands[0]))
        if target.key == ("meta", Meta.DELETED.value):
            includes_deleted = True
            deleted_states &= {operands[0] if op is FilterOp.EQ else not operands[0]}
    if not includes_deleted:
        checks.insert(0, _not_deleted)
        deleted_states = {False}
    deleted = deleted_states.pop() if len(deleted_states) == 1 else None
    return DocumentFilter(
        _canonical(predicates), checks, lookups, ranges, includes_deleted, deleted
    )


def compile_filter(schema: Schema, predicates: Sequence[Predicate]) -> DocumentFilter:
    """Validate predicates against a schema and compile them.

    Operators per field type (spec §7.4): ``bool`` takes ``eq``/``not_eq``; ``int`` and ``float``
    those plus ``in``/``not_in``/``gt``/``gte``/``lt``/``lte``; ``str`` all of those plus
    ``contains``/``not_contains``; ``bytes`` ``eq``/``not_eq``; ``relation`` and
    ``pinned_relation`` ``eq``/``not_eq``/``in``/``not_in`` (on the document id, resp. the view
    id as a str); ``relation_list`` and ``pinned_relation_list`` ``in``/``not_in``. The meta
    properties owner, document id and view id take ``eq``/``not_eq``/``in``/``not_in`` with str
    operands; edited and deleted ``eq``/``not_eq`` with a bool. ``in`` and ``not_in`` take one or
    more operands in ``values``, the others one in ``value``. A target that is a plain ``str``
    names a field, even if it reads like a meta property.

    Args:
        schema: The schema of the documents.
        predicates: Conditions, all of which must hold.

    Returns:
        The compiled filter.

    Raises:
        InvalidRequestError: A field the schema does not have, an operator the field type does
            not take, an operand of the wrong type, or operands given the wrong way.
    """
    return _compile(schema, _field_targets(schema), predicates)


# --------------------------------------------------------------------------------------------
# A sorted list of order entries, in chunks so that an insert moves at most a chunk


class _SortedEntries:
    __slots__ = ("_chunks", "_maxes", "_size")

    def __init__(self, entries: Iterable[_Entry]) -> None:
        ordered = sorted(entries)
        self._chunks = [
            ordered[start : start + _CHUNK_SIZE] for start in range(0, len(ordered), _CHUNK_SIZE)
        ]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._size = len(ordered)

    def __len__(self) -> int:
        return self._size

    def add(self, entry: _Entry) -> None:
        chunks, maxes = self._chunks, self._maxes
        self._size += 1
        if not chunks:
            chunks.append([entry])
            maxes.append(entry)
            return
        index = bisect_left(maxes, entry)
        if index == len(maxes):
            index -= 1
            chunk = chunks[index]
            chunk.append(entry)
            maxes[index] = entry
        else:
            chunk = chunks[index]
            insort(chunk, entry)
        if len(chunk) > 2 * _CHUNK_SIZE:
            half = len(chunk) // 2
            chunks[index : index + 1] = [chunk[:half], chunk[half:]]
            maxes[index : index + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, entry: _Entry) -> None:
        chunks, maxes = self._chunks, self._maxes
        index = bisect_left(maxes, entry)
        chunk = chunks[index] if index < len(chunks) else []
        position = bisect_left(chunk, entry)
        if position == len(chunk) or chunk[position] != entry:
            raise KeyError(entry)
        del chunk[position]
        self._size -= 1
        if not chunk:
            del chunks[index]
            del maxes[index]
            return
        maxes[index] = chunk[-1]
        following = index + 1
        if following < len(chunks) and len(chunk) + len(chunks[following]) <= _CHUNK_SIZE:
            chunk.extend(chunks[following])
            maxes[index] = chunk[-1]
            del chunks[following]
            del maxes[following]

    def count_between(self, low: _Entry | None, high: _Entry | None) -> int:
        """How many entries lie strictly between ``low`` and ``high`` (None: unbounded)."""
        below_high = self._size if high is None else self._rank(high, bisect_left)
        upto_low = 0 if low is None else self._rank(low, bisect_right)
        return max(0, below_high - upto_low)

    def _rank(self, entry: _Entry, bisect: Callable[[Any, Any], int]) -> int:
        # Entries before ``entry`` (bisect_left) or up to it (bisect_right); O(chunks + log n).
        index = bisect(self._maxes, entry)
        rank = sum(len(chunk) for chunk in self._chunks[:index])
        if index < len(self._chunks):
            rank += bisect(self._chunks[index], entry)
        return rank

    def between(self, low: _Entry | None, high: _Entry | None, reverse: bool) -> Iterator[_Entry]:
        """Yield the entries strictly between ``low`` and ``high`` (None: unbounded)."""
        chunks, maxes = self._chunks, self._maxes
        if not chunks:
            return
        if not reverse:
            index = 0 if low is None else bisect_right(maxes, low)
            start = 0 if low is None or index == len(chunks) else bisect_right(chunks[index], low)
            while index < len(chunks):
                chunk = chunks[index]
                for position in range(start, len(chunk)):
                    entry = chunk[position]
                    if high is not None and not entry < high:
                        return
                    yield entry
                index += 1
                start = 0
            return
        index = len(chunks) - 1 if high is None else bisect_left(maxes, high)
        if index == len(chunks):
            index -= 1
            end = len(chunks[index])
        else:
            end = len(chunks[index]) if high is None else bisect_left(chunks[index], high)
        while index >= 0:
            chunk = chunks[index]
            for position in range(end - 1, -1, -1):
                entry = chunk[position]
                if low is not None and not low < entry:
                    return
                yield entry
            index -= 1
            end = len(chunks[index]) if index >= 0 else 0


# --------------------------------------------------------------------------------------------
# Page tokens


def _fingerprint(schema_id: str, canonical: tuple[Any, ...], order: _Target, desc: bool) -> str:
    text = repr((schema_id, canonical, order.key, desc)).encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def _encode_token(fingerprint: str, kind: str, entry: _Entry) -> str:
    rank, value, document_id = entry
    if rank != _PRESENT:
        value = None
    elif kind == "float":
        value = float(value).hex()
    elif kind == "bytes":
        value = value.hex()
    payload = json.dumps(
        [_TOKEN_VERSION, fingerprint, rank, value, document_id],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode("ascii")


_MALFORMED_TOKEN: Final = (
    "malformed page token: pass the next_page_token of the previous response unchanged, or "
    "leave it empty for the first page"
)


def _decode_token(token: str, fingerprint: str, kind: str) -> _Entry:
    try:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (ValueError, binascii.Error):
        raise InvalidRequestError(_MALFORMED_TOKEN) from None
    if not isinstance(payload, list) or len(payload) != 5 or payload[0] != _TOKEN_VERSION:
        raise InvalidRequestError(_MALFORMED_TOKEN)
    _, token_fingerprint, rank, value, document_id = payload
    if token_fingerprint != fingerprint:
        raise InvalidRequestError(
            "page token belongs to another query: it was issued for a different schema, filter "
            "or order; repeat the query of the previous page, or start again without a token"
        )
    entry = _token_entry(kind, rank, value, document_id)
    if entry is None:
        raise InvalidRequestError(_MALFORMED_TOKEN)
    return entry


def _token_entry(kind: str, rank: object, value: object, document_id: object) -> _Entry | None:
    if not isinstance(document_id, str) or isinstance(rank, bool):
        return None
    if rank == _ABSENT and value is None:
        return (_ABSENT, None, document_id)
    if rank == _NAN and value is None and kind == "float":
        return (_NAN, 0.0, document_id)
    if rank != _PRESENT:
        return None
    try:
        if kind == "float" and isinstance(value, str):
            number = float.fromhex(value)
            return None if math.isnan(number) else (_PRESENT, number, document_id)
        if kind == "bytes" and isinstance(value, str):
            return (_PRESENT, bytes.fromhex(value), document_id)
    except ValueError:
        return None
    if kind == "bool" and isinstance(value, bool):
        return (_PRESENT, value, document_id)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return (_PRESENT, value, document_id)
    if kind in ("str", "relation", "pinned_relation", "id") and isinstance(value, str):
        return (_PRESENT, value, document_id)
    return None


# --------------------------------------------------------------------------------------------
# The index


def _prefer_candidates(candidates: int, documents: int, page_size: int) -> bool:
    """Whether sorting ``candidates`` documents beats walking the order for a page.

    Walking the order to fill a page touches about ``page_size * documents / matches`` entries
    (the matches being at most the candidates); sorting the candidates touches each once.
    """
    return candidates <= 64 or candidates * candidates <= 4 * (page_size + 1) * documents


class _CachedFilter:
    __slots__ = ("count", "filter", "version")

    def __init__(self, document_filter: DocumentFilter) -> None:
        self.filter = document_filter
        self.count = 0
        self.version = -1


class SchemaIndex:
    """The current views of one schema's documents, listed by filter, order and page.

    Feed it every document change with :meth:`upsert` (and :meth:`remove`); query it with
    :meth:`list`. Order structures and hash indexes are built on first use and kept up to date
    afterwards.

    Args:
        schema: The schema of the documents.
        max_page_size: Larger pages are lowered to this many documents.
    """

    def __init__(self, schema: Schema, *, max_page_size: int = MAX_PAGE_SIZE) -> None:
        if max_page_size < 1:
            raise ValueError(f"max_page_size must be at least 1, got {max_page_size}")
        self._schema = schema
        self._schema_id = str(schema.id)
        self._max_page_size = max_page_size
        self._fields = _field_targets(schema)
        self._documents: dict[str, MaterializedDocument] = {}
        # Per order key, the entries of the live and of the deleted documents: a filter always
        # wants one of the two, and deleted documents (no fields) would crowd the list's end.
        self._orders: dict[_TargetKey, tuple[_Target, _SortedEntries, _SortedEntries]] = {}
        self._postings: dict[_TargetKey, tuple[_Target, dict[Any, set[str]]]] = {}
        self._filters: OrderedDict[tuple[Any, ...], _CachedFilter] = OrderedDict()
        # _changes[i] took the index from version _changes_base + i to the next one.
        self._version = 0
        self._changes: list[tuple[MaterializedDocument | None, MaterializedDocument | None]] = []
        self._changes_base = 0

    @property
    def schema(self) -> Schema:
        """The schema of the documents."""
        return self._schema

    @property
    def max_page_size(self) -> int:
        """The largest page this index returns."""
        return self._max_page_size

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, document_id: object) -> bool:
        return document_id in self._documents

    def get(self, document_id: str) -> MaterializedDocument | None:
        """Return the current view of a document, deleted or not; None if unknown."""
        return self._documents.get(document_id)

    def documents(self) -> Iterator[MaterializedDocument]:
        """Iterate over every document, deleted ones included, in no particular order."""
        return iter(self._documents.values())

    def upsert(self, document: MaterializedDocument) -> MaterializedDocument | None:
        """Add a document or replace its previous view.

        Args:
            document: The new current view.

        Returns:
            The view it replaced, or None.

        Raises:
            ValueError: The document is of another schema, or a field value does not have the
                type the schema gives the field (a bug upstream, not a request error).
        """
        if document.schema_id != self._schema_id:
            raise ValueError(
                f"document {document.document_id} is of schema {document.schema_id}, "
                f"not {self._schema_id}"
            )
        self._check_values(document)
        previous = self._documents.get(document.document_id)
        if previous == document:
            return previous
        self._documents[document.document_id] = document
        self._reindex(previous, document)
        return previous

    def remove(self, document_id: str) -> MaterializedDocument | None:
        """Forget a document; return its last view, or None if it was unknown."""
        previous = self._documents.pop(document_id, None)
        if previous is not None:
            self._reindex(previous, None)
        return previous

    def filter(self, predicates: Sequence[Predicate]) -> DocumentFilter:
        """Validate and compile predicates against this index's schema (cached).

        Raises:
            InvalidRequestError: See :func:`compile_filter`.
        """
        return self._cached_filter(predicates).filter

    def count(self, predicates: Sequence[Predicate] = ()) -> int:
        """Return how many documents match the predicates.

        Raises:
            InvalidRequestError: See :func:`compile_filter`.
        """
        return self._count(self._cached_filter(predicates))

    def list(
        self,
        predicates: Sequence[Predicate] = (),
        order: Order | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """Return one page of the documents that match, in order.

        Args:
            predicates: Conditions, all of which must hold (see :func:`compile_filter`).
            order: Sort key and direction; by default ascending document id.
            page_size: Documents per page: None or 0 for :data:`DEFAULT_PAGE_SIZE`; more than
                :attr:`max_page_size` is lowered to it.
            page_token: The ``next_page_token`` of the previous page of the same query; None or
                empty for the first page.

        Returns:
            The page, the token of the next one, and the number of matches.

        Raises:
            InvalidRequestError: Invalid predicates, an order by a list field, an unknown field
                or a meta property other than the ids, a negative page size, or a page token
                that is malformed or belongs to another query.
        """
        order = order if order is not None else Order()
        size = self._page_size(page_size)
        cached = self._cached_filter(predicates)
        document_filter = cached.filter
        target = self._order_target(order)
        fingerprint = _fingerprint(
            self._schema_id, document_filter.canonical, target, order.descending
        )
        cursor = _decode_token(page_token, fingerprint, target.kind) if page_token else None
        candidates = self._candidates(document_filter, size)
        if candidates is not None:
            found, total = self._page_of_candidates(
                cached, candidates, target, order.descending, cursor, size
            )
        else:
            total = self._count(cached)
            # On a first page, the walk can stop once it has found every match.
            wanted = size + 1 if cursor is not None else min(size + 1, total)
            found = self._page_by_walking(document_filter, target, order.descending, cursor, wanted)
        next_token = None
        if len(found) > size:
            found = found[:size]
            next_token = _encode_token(fingerprint, target.kind, found[-1][0])
        return Page(tuple(document for _, document in found), next_token, total)

    # ----------------------------------------------------------------------------------------
    # Requests

    def _page_size(self, page_size: int | None) -> int:
        if page_size is None or page_size == 0:
            return min(DEFAULT_PAGE_SIZE, self._max_page_size)
        if page_size < 0:
            raise InvalidRequestError(
                f"page size must not be negative, got {page_size}; use 0 for the default "
                f"({DEFAULT_PAGE_SIZE}) or up to {self._max_page_size}"
            )
        return min(page_size, self._max_page_size)

    def _order_target(self, order: Order) -> _Target:
        metas = " or ".join(f"Meta.{meta.name}" for meta in _ORDERABLE_META)
        orderable = (
            f"a field of type bool, int, float, str, bytes, relation or pinned_relation, or {metas}"
        )
        if isinstance(order.target, Meta):
            if order.target not in _ORDERABLE_META:
                raise InvalidRequestError(
                    f"cannot order by meta property {order.target.value!r}; order by {orderable}"
                )
            return _META_TARGETS[order.target]
        target = _resolve_target(self._schema, self._fields, order.target)
        if target.is_list:
            raise InvalidRequestError(
                f"cannot order by {target.label}: a list has no order; order by {orderable}"
            )
        return target

    def _cached_filter(self, predicates: Sequence[Predicate]) -> _CachedFilter:
        key = _canonical(predicates)
        cached = self._filters.get(key)
        if cached is not None:
            self._filters.move_to_end(key)
            return cached
        cached = _CachedFilter(_compile(self._schema, self._fields, predicates))
        self._filters[key] = cached
        if len(self._filters) > _FILTER_CACHE_SIZE:
            self._filters.popitem(last=False)
        return cached

    def _smallest_lookup(self, document_filter: DocumentFilter) -> tuple[int, _IdSets] | None:
        """The eq/in predicate selecting the fewest documents: how many, and their id sets."""
        best: tuple[int, _IdSets] | None = None
        for target, operands in document_filter._lookups:
            if target.key == ("meta", Meta.DOCUMENT_ID.value):
                sets: _IdSets = [frozenset(operands)]
            else:
                postings = self._postings_of(target)
                sets = [found for key in operands if (found := postings.get(key))]
            size = sum(map(len, sets))
            if best is None or size < best[0]:
                best = (size, sets)
        return best

    def _candidates(self, document_filter: DocumentFilter, page_size: int) -> Iterable[str] | None:
        """The ids of a small superset of the matches, if an eq/in predicate gives one."""
        lookup = self._smallest_lookup(document_filter)
        if lookup is None or not _prefer_candidates(lookup[0], len(self._documents), page_size):
            return None
        return _union(lookup[1])

    def _page_of_candidates(
        self,
        cached: _CachedFilter,
        candidates: Iterable[str],
        target: _Target,
        descending: bool,
        cursor: _Entry | None,
        size: int,
    ) -> tuple[_Found, int]:
        documents = self._documents
        matches = cached.filter.matches
        found = [
            (target.entry(document), document)
            for document_id in candidates
            if (document := documents.get(document_id)) is not None and matches(document)
        ]
        cached.count, cached.version = len(found), self._version
        found.sort(key=_first)
        if not descending:
            start = 0 if cursor is None else bisect_right(found, cursor, key=_first)
            return found[start : start + size + 1], len(found)
        end = len(found) if cursor is None else bisect_left(found, cursor, key=_first)
        return found[max(0, end - size - 1) : end][::-1], len(found)

    def _page_by_walking(
        self,
        document_filter: DocumentFilter,
        target: _Target,
        descending: bool,
        cursor: _Entry | None,
        wanted: int,
    ) -> _Found:
        """Walk the order from the cursor; return up to ``wanted`` matches."""
        low, high = document_filter._bounds(target)
        if cursor is not None:
            if descending:
                high = _lowest(high, cursor)
            else:
                low = _highest(low, cursor)
        documents = self._documents
        matches = document_filter.matches
        found: _Found = []
        if document_filter.deleted is None or wanted == 0:
            return found
        entries = self._order_of(target, document_filter.deleted)
        for entry in entries.between(low, high, descending):
            document = documents[entry[2]]
            if matches(document):
                found.append((entry, document))
                if len(found) == wanted:
                    break
        return found

    def _count(self, cached: _CachedFilter) -> int:
        if cached.version == self._version:
            return cached.count
        matches = cached.filter.matches
        if cached.filter.deleted is None:
            count = 0
        elif cached.version >= self._changes_base:
            count = cached.count
            for previous, document in self._changes[cached.version - self._changes_base :]:
                if previous is not None and matches(previous):
                    count -= 1
                if document is not None and matches(document):
                    count += 1
        elif (ranged := self._count_by_range(cached.filter)) is not None:
            count = ranged
        else:
            lookup = self._smallest_lookup(cached.filter)
            if lookup is None or lookup[0] >= len(self._documents):
                count = sum(1 for document in self._documents.values() if matches(document))
            else:
                documents = self._documents
                count = sum(
                    1
                    for document_id in _union(lookup[1])
                    if (document := documents.get(document_id)) is not None and matches(document)
                )
        cached.count, cached.version = count, self._version
        return count

    def _count_by_range(self, document_filter: DocumentFilter) -> int | None:
        """Count by bisecting a sorted structure when every predicate bounds one field.

        A new range (e.g. ``rank >= x`` with a different ``x`` on every call) would otherwise
        cost a scan of every document to count.
        """
        ranges = document_filter._ranges
        if document_filter.deleted is not False or not ranges:
            return None
        keys = {key for key, _, _ in ranges}
        if len(keys) != 1 or len(ranges) != len(document_filter.canonical):
            return None
        (key,) = keys
        target = next((t for t in self._fields.values() if t.key == key), None)
        if target is None or target.is_list:
            return None
        low, high = document_filter._bounds(target)
        return self._order_of(target, deleted=False).count_between(low, high)

    # ----------------------------------------------------------------------------------------
    # Maintenance

    def _check_values(self, document: MaterializedDocument) -> None:
        for name, value in document.fields.items():
            field_type = self._schema.fields.get(name)
            if field_type is None:
                raise ValueError(
                    f"document {document.document_id} has a field {name!r} that schema "
                    f"{self._schema_id} does not have"
                )
            expected = _FIELD_VALUE_TYPES[field_type.kind]
            if type(value) is not expected and not (
                expected is int and isinstance(value, int) and not isinstance(value, bool)
            ):
                raise ValueError(
                    f"document {document.document_id}: field {name!r} ({field_type.kind}) "
                    f"holds a {type(value).__name__}"
                )

    def _order_of(self, target: _Target, deleted: bool) -> _SortedEntries:
        built = self._orders.get(target.key)
        if built is None:
            documents = self._documents.values()
            live = _SortedEntries(target.entry(d) for d in documents if not d.deleted)
            gone = _SortedEntries(target.entry(d) for d in documents if d.deleted)
            built = (target, live, gone)
            self._orders[target.key] = built
        return built[2] if deleted else built[1]

    def _postings_of(self, target: _Target) -> dict[Any, set[str]]:
        built = self._postings.get(target.key)
        if built is None:
            postings: dict[Any, set[str]] = {}
            for document_id, document in self._documents.items():
                for key in target.keys(document):
                    postings.setdefault(key, set()).add(document_id)
            built = (target, postings)
            self._postings[target.key] = built
        return built[1]

    def _reindex(
        self, previous: MaterializedDocument | None, document: MaterializedDocument | None
    ) -> None:
        previous_id = previous.document_id if previous is not None else ""
        for target, live, gone in self._orders.values():
            old = target.entry(previous) if previous is not None else None
            new = target.entry(document) if document is not None else None
            old_entries = gone if previous is not None and previous.deleted else live
            new_entries = gone if document is not None and document.deleted else live
            if old != new or old_entries is not new_entries:
                if old is not None:
                    old_entries.remove(old)
                if new is not None:
                    new_entries.add(new)
        for target, postings in self._postings.values():
            old_keys = target.keys(previous) if previous is not None else frozenset()
            new_keys = target.keys(document) if document is not None else frozenset()
            document_id = document.document_id if document is not None else previous_id
            for key in old_keys - new_keys:
                ids = postings[key]
                ids.discard(document_id)
                if not ids:
                    del postings[key]
            for key in new_keys - old_keys:
                postings.setdefault(key, set()).add(document_id)
        self._version += 1
        if not self._filters:
            # No count to bring up to date: the log can start afresh.
            self._changes.clear()
            self._changes_base = self._version
            return
        self._changes.append((previous, document))
        if len(self._changes) > 2 * _CHANGE_LOG_LIMIT:
            dropped = len(self._changes) - _CHANGE_LOG_LIMIT
            del self._changes[:dropped]
            self._changes_base += dropped


def _union(sets: _IdSets) -> Iterable[str]:
    if len(sets) == 1:
        only: Iterable[str] = sets[0]
        return only
    return set().union(*sets)


def _first(item: tuple[_Entry, MaterializedDocument]) -> _Entry:
    return item[0]


# --------------------------------------------------------------------------------------------
# The catalog


class Catalog:
    """One :class:`SchemaIndex` per schema, and documents routed to theirs.

    Args:
        max_page_size: The largest page of every index.
    """

    def __init__(self, *, max_page_size: int = MAX_PAGE_SIZE) -> None:
        self._max_page_size = max_page_size
        self._indexes: dict[str, SchemaIndex] = {}
        self._schema_of: dict[str, str] = {}

    def add_schema(self, schema: Schema) -> SchemaIndex:
        """Return the index of a schema, creating an empty one if it has none yet."""
        schema_id = str(schema.id)
        index = self._indexes.get(schema_id)
        if index is None:
            index = SchemaIndex(schema, max_page_size=self._max_page_size)
            self._indexes[schema_id] = index
        return index

    def get(self, schema_id: str) -> SchemaIndex | None:
        """Return the index of a schema id, or None."""
        return self._indexes.get(schema_id)

    def index(self, schema_id: str) -> SchemaIndex:
        """Return the index of a schema id.

        Raises:
            ResourceNotFoundError: reason ``SCHEMA_NOT_FOUND`` when the schema is unknown.
        """
        index = self._indexes.get(schema_id)
        if index is None:
            raise ResourceNotFoundError(f"unknown schema {schema_id!r}", Reason.SCHEMA_NOT_FOUND)
        return index

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self._indexes

    def schemas(self) -> tuple[Schema, ...]:
        """Return the schemas that have an index, in the order they were added."""
        return tuple(index.schema for index in self._indexes.values())

    def get_document(self, document_id: str) -> MaterializedDocument | None:
        """Return a document's current view by its id, whatever its schema; None if unknown."""
        schema_id = self._schema_of.get(document_id)
        return None if schema_id is None else self._indexes[schema_id].get(document_id)

    def upsert(self, document: MaterializedDocument) -> MaterializedDocument | None:
        """Add or replace a document in the index of its schema; return the view it replaced.

        Raises:
            ResourceNotFoundError: The document's schema has no index yet.
            ValueError: See :meth:`SchemaIndex.upsert`.
        """
        previous = self.index(document.schema_id).upsert(document)
        self._schema_of[document.document_id] = document.schema_id
        return previous

    def apply(self, change: DocumentChange) -> None:
        """Apply a change from the materializer (the new view replaces the previous one)."""
        self.upsert(change.document)

    def remove(self, document_id: str) -> MaterializedDocument | None:
        """Forget a document; return its last view, or None if it was unknown."""
        schema_id = self._schema_of.pop(document_id, None)
        return None if schema_id is None else self._indexes[schema_id].remove(document_id)
