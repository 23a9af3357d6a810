"""Filter compilation: predicates validated against a schema, compiled into one test.

:func:`compile_filter` checks every predicate (field, operator, operand types) and returns a
:class:`DocumentFilter`: a test of documents, the predicates in canonical form (the key of
caches and of page tokens), and what the index's planner can use (hash lookups, ranges).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pandanode.core.schema import Schema
from pandanode.services.runtime.errors import InvalidRequestError

from ..model import FilterOp, MaterializedDocument, Meta, Predicate
from .targets import (
    ABSENT,
    INDEXED_KINDS,
    LIST_OPS,
    MISSING,
    OPERAND_NAMES,
    OPERATORS,
    PRESENT,
    TOP,
    Check,
    Entry,
    Target,
    TargetKey,
    field_targets,
    float_key,
    highest,
    lowest,
    resolve_target,
)

__all__ = ["DocumentFilter", "canonical_predicates", "compile_filter", "compile_with_targets"]


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _operand(target: Target, op: FilterOp, value: object) -> Any:
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
            f"filter {op.value!r} on {target.label} needs {OPERAND_NAMES[kind]} value, "
            f"got {type(value).__name__} {_show(value)}"
        )
    if kind == "float":
        return float_key(value) if isinstance(value, float) else (PRESENT, value)
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


def canonical_predicates(predicates: Sequence[Predicate]) -> tuple[Any, ...]:
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


def _compile_predicate(target: Target, predicate: Predicate) -> tuple[Check, tuple[Any, ...]]:
    """Validate a predicate; return its check and its operands in comparable form."""
    try:
        op = FilterOp(predicate.op)
    except ValueError:
        allowed = ", ".join(op.value for op in FilterOp)
        raise InvalidRequestError(
            f"unknown filter operator {predicate.op!r} on {target.label}: expected one of {allowed}"
        ) from None
    allowed_ops = OPERATORS[target.kind]
    if op not in allowed_ops:
        names = ", ".join(sorted(allowed.value for allowed in allowed_ops))
        raise InvalidRequestError(
            f"filter {op.value!r} is not available on {target.label}; it takes {names}"
        )
    if op in LIST_OPS:
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


def _check(target: Target, op: FilterOp, operands: tuple[Any, ...]) -> Check:
    read = target.read
    operand = operands[0]
    if target.is_list:
        wanted = frozenset(operands)
        if op is FilterOp.IN:
            return lambda d: (v := read(d)) is not MISSING and not wanted.isdisjoint(v)
        return lambda d: (v := read(d)) is not MISSING and wanted.isdisjoint(v)
    if op is FilterOp.IN:
        wanted = frozenset(operands)
        return lambda d: (v := read(d)) is not MISSING and v in wanted
    if op is FilterOp.NOT_IN:
        wanted = frozenset(operands)
        return lambda d: (v := read(d)) is not MISSING and v not in wanted
    checks: dict[FilterOp, Check] = {
        FilterOp.EQ: lambda d: (v := read(d)) is not MISSING and v == operand,
        FilterOp.NOT_EQ: lambda d: (v := read(d)) is not MISSING and v != operand,
        FilterOp.GT: lambda d: (v := read(d)) is not MISSING and v > operand,
        FilterOp.GTE: lambda d: (v := read(d)) is not MISSING and v >= operand,
        FilterOp.LT: lambda d: (v := read(d)) is not MISSING and v < operand,
        FilterOp.LTE: lambda d: (v := read(d)) is not MISSING and v <= operand,
        FilterOp.CONTAINS: lambda d: (v := read(d)) is not MISSING and operand in v,
        FilterOp.NOT_CONTAINS: lambda d: (v := read(d)) is not MISSING and operand not in v,
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
        lookups: The ``eq``/``in`` predicates a hash index can answer: (target, operands).
        ranges: The range predicates on fields: (target key, operator, operand).
    """

    __slots__ = ("_checks", "canonical", "deleted", "includes_deleted", "lookups", "ranges")

    def __init__(
        self,
        canonical: tuple[Any, ...],
        checks: Sequence[Check],
        lookups: Sequence[tuple[Target, tuple[Any, ...]]],
        ranges: Sequence[tuple[TargetKey, FilterOp, Any]],
        includes_deleted: bool,
        deleted: bool | None,
    ) -> None:
        self.canonical = canonical
        self.includes_deleted = includes_deleted
        self.deleted = deleted
        self._checks = tuple(checks)
        self.lookups = tuple(lookups)
        self.ranges = tuple(ranges)

    def matches(self, document: MaterializedDocument) -> bool:
        """Whether the document satisfies every predicate (and is not deleted, unless asked)."""
        for check in self._checks:  # noqa: SIM110 - all() over a generator is slower here
            if not check(document):
                return False
        return True

    __call__ = matches

    def bounds(self, target: Target) -> tuple[Entry | None, Entry | None]:
        """Exclusive entry bounds ``(low, high)`` that every match's entry for ``target`` has."""
        low: Entry | None = None
        high: Entry | None = None
        for key, op, operand in self.ranges:
            if key != target.key:
                continue
            # A document without a value never matches a predicate on the field.
            high = lowest(high, (ABSENT,))
            bound = tuple(operand) if target.kind == "float" else (PRESENT, operand)
            if op in (FilterOp.GTE, FilterOp.EQ):
                low = highest(low, bound)
            if op is FilterOp.GT:
                low = highest(low, (*bound, TOP))
            if op in (FilterOp.LTE, FilterOp.EQ):
                high = lowest(high, (*bound, TOP))
            if op is FilterOp.LT:
                high = lowest(high, bound)
        return low, high


def compile_with_targets(
    schema: Schema, fields: dict[str, Target], predicates: Sequence[Predicate]
) -> DocumentFilter:
    """:func:`compile_filter` with the schema's field targets already built."""
    checks: list[Check] = []
    lookups: list[tuple[Target, tuple[Any, ...]]] = []
    ranges: list[tuple[TargetKey, FilterOp, Any]] = []
    includes_deleted = False
    deleted_states = {False, True}
    for index, predicate in enumerate(predicates):
        try:
            target = resolve_target(schema, fields, predicate.target)
            check, operands = _compile_predicate(target, predicate)
        except InvalidRequestError as err:
            raise err.violation(f"filters[{index}]") from None
        checks.append(check)
        op = FilterOp(predicate.op)
        if target.kind in INDEXED_KINDS and op in (FilterOp.EQ, FilterOp.IN):
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
        canonical_predicates(predicates), checks, lookups, ranges, includes_deleted, deleted
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
    return compile_with_targets(schema, field_targets(schema), predicates)
