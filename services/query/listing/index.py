"""The per-schema index: one schema's current documents, listed by filter, order and page.

How a page is found: every order key gets a sorted list of ``(rank, value, document id)``
entries (:mod:`.sorted_entries`), built on first use and maintained on each upsert. A page
either walks that list from the token's position (narrowed by range predicates on the order
key), testing each document and stopping after ``page_size + 1`` matches, or, when an
``eq``/``in`` predicate selects few enough documents through a hash index (also built on first
use), sorts just those. ``total_size`` is cached per predicate set and brought up to date from a
short log of recent changes (:mod:`.changelog`).

At a little over 500 lines it stays one module on purpose: the planner's parts (the walk, the
candidates, the counts and the maintenance of the structures) all work on the index's state.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pandanode.core.schema import Schema
from pandanode.services.runtime.errors import InvalidRequestError

from ..model import MaterializedDocument, Meta, Order, Predicate
from .changelog import DEFAULT_CHANGE_LOG_BYTES, ChangeLog
from .filters import DocumentFilter, canonical_predicates, compile_with_targets
from .sorted_entries import SortedEntries
from .targets import (
    FIELD_VALUE_TYPES,
    META_TARGETS,
    ORDERABLE_META,
    Entry,
    Target,
    TargetKey,
    field_targets,
    highest,
    lowest,
    resolve_target,
)
from .tokens import PageTokens, Truncated, query_fingerprint

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "SchemaIndex"]

DEFAULT_PAGE_SIZE: Final = 25
"""Documents per page when a request names no page size."""

MAX_PAGE_SIZE: Final = 1000
"""Default upper limit of a page; larger requests are lowered to it."""

_FILTER_CACHE_SIZE: Final = 256

_Found: TypeAlias = list[tuple[Entry, MaterializedDocument]]
_IdSets: TypeAlias = list[Any]


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
        tokens: Makes and checks the page tokens (the node's); by default this process's.
        change_log_bytes: Byte budget of the replaced views kept to update cached counts.
    """

    def __init__(
        self,
        schema: Schema,
        *,
        max_page_size: int = MAX_PAGE_SIZE,
        tokens: PageTokens | None = None,
        change_log_bytes: int = DEFAULT_CHANGE_LOG_BYTES,
    ) -> None:
        if max_page_size < 1:
            raise ValueError(f"max_page_size must be at least 1, got {max_page_size}")
        self._schema = schema
        self._schema_id = str(schema.id)
        self._max_page_size = max_page_size
        self._tokens = tokens if tokens is not None else PageTokens()
        self._fields = field_targets(schema)
        self._documents: dict[str, MaterializedDocument] = {}
        # Per order key, the entries of the live and of the deleted documents: a filter always
        # wants one of the two, and deleted documents (no fields) would crowd the list's end.
        self._orders: dict[TargetKey, tuple[Target, SortedEntries, SortedEntries]] = {}
        self._postings: dict[TargetKey, tuple[Target, dict[Any, set[str]]]] = {}
        self._filters: OrderedDict[tuple[Any, ...], _CachedFilter] = OrderedDict()
        self._version = 0
        self._changes = ChangeLog(change_log_bytes)

    @property
    def schema(self) -> Schema:
        """The schema of the documents."""
        return self._schema

    @property
    def max_page_size(self) -> int:
        """The largest page this index returns."""
        return self._max_page_size

    @property
    def change_log_bytes(self) -> int:
        """Estimated bytes of the replaced views kept to bring cached counts up to date."""
        return self._changes.retained_bytes

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
        fingerprint = query_fingerprint(
            self._schema_id, document_filter.canonical, target, order.descending
        )
        cursor = self._cursor(page_token, fingerprint, target, order.descending)
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
            next_token = self._tokens.encode(fingerprint, target.kind, found[-1][0])
        return Page(tuple(document for _, document in found), next_token, total)

    # ----------------------------------------------------------------------------------------
    # Requests

    def _cursor(
        self, page_token: str | None, fingerprint: str, target: Target, descending: bool
    ) -> Entry | None:
        """The exclusive bound a page token says the page starts after; None: the start."""
        if not page_token:
            return None
        position = self._tokens.decode(page_token, fingerprint, target.kind)
        if isinstance(position, Truncated):
            document = self._documents.get(position.document_id)
            current = None if document is None else target.entry(document)
            return position.bound(current, descending)
        return position

    def _page_size(self, page_size: int | None) -> int:
        if page_size is None or page_size == 0:
            return min(DEFAULT_PAGE_SIZE, self._max_page_size)
        if page_size < 0:
            raise InvalidRequestError(
                f"page size must not be negative, got {page_size}; use 0 for the default "
                f"({DEFAULT_PAGE_SIZE}) or up to {self._max_page_size}"
            ).violation("page_size")
        return min(page_size, self._max_page_size)

    def _order_target(self, order: Order) -> Target:
        metas = " or ".join(f"Meta.{meta.name}" for meta in ORDERABLE_META)
        orderable = (
            f"a field of type bool, int, float, str, bytes, relation or pinned_relation, or {metas}"
        )
        if isinstance(order.target, Meta):
            if order.target not in ORDERABLE_META:
                raise InvalidRequestError(
                    f"cannot order by meta property {order.target.value!r}; order by {orderable}"
                ).violation("order_by.meta")
            return META_TARGETS[order.target]
        try:
            target = resolve_target(self._schema, self._fields, order.target)
        except InvalidRequestError as err:
            raise err.violation("order_by.field") from None
        if target.is_list:
            raise InvalidRequestError(
                f"cannot order by {target.label}: a list has no order; order by {orderable}"
            ).violation("order_by.field")
        return target

    def _cached_filter(self, predicates: Sequence[Predicate]) -> _CachedFilter:
        key = canonical_predicates(predicates)
        cached = self._filters.get(key)
        if cached is not None:
            self._filters.move_to_end(key)
            return cached
        cached = _CachedFilter(compile_with_targets(self._schema, self._fields, predicates))
        self._filters[key] = cached
        if len(self._filters) > _FILTER_CACHE_SIZE:
            self._filters.popitem(last=False)
        return cached

    def _smallest_lookup(self, document_filter: DocumentFilter) -> tuple[int, _IdSets] | None:
        """The eq/in predicate selecting the fewest documents: how many, and their id sets."""
        best: tuple[int, _IdSets] | None = None
        for target, operands in document_filter.lookups:
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
        target: Target,
        descending: bool,
        cursor: Entry | None,
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
        target: Target,
        descending: bool,
        cursor: Entry | None,
        wanted: int,
    ) -> _Found:
        """Walk the order from the cursor; return up to ``wanted`` matches."""
        low, high = document_filter.bounds(target)
        if cursor is not None:
            if descending:
                high = lowest(high, cursor)
            else:
                low = highest(low, cursor)
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
        elif (changes := self._changes.since(cached.version)) is not None:
            count = cached.count
            for previous, document, _ in changes:
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
        ranges = document_filter.ranges
        if document_filter.deleted is not False or not ranges:
            return None
        keys = {key for key, _, _ in ranges}
        if len(keys) != 1 or len(ranges) != len(document_filter.canonical):
            return None
        (key,) = keys
        target = next((t for t in self._fields.values() if t.key == key), None)
        if target is None or target.is_list:
            return None
        low, high = document_filter.bounds(target)
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
            expected = FIELD_VALUE_TYPES[field_type.kind]
            if type(value) is not expected and not (
                expected is int and isinstance(value, int) and not isinstance(value, bool)
            ):
                raise ValueError(
                    f"document {document.document_id}: field {name!r} ({field_type.kind}) "
                    f"holds a {type(value).__name__}"
                )

    def _order_of(self, target: Target, deleted: bool) -> SortedEntries:
        built = self._orders.get(target.key)
        if built is None:
            documents = self._documents.values()
            live = SortedEntries(target.entry(d) for d in documents if not d.deleted)
            gone = SortedEntries(target.entry(d) for d in documents if d.deleted)
            built = (target, live, gone)
            self._orders[target.key] = built
        return built[2] if deleted else built[1]

    def _postings_of(self, target: Target) -> dict[Any, set[str]]:
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
            self._changes.restart(self._version)
            return
        self._changes.record(previous, document)


def _union(sets: _IdSets) -> Iterable[str]:
    if len(sets) == 1:
        only: Iterable[str] = sets[0]
        return only
    return set().union(*sets)


def _first(item: tuple[Entry, MaterializedDocument]) -> Entry:
    return item[0]
