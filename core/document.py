"""Documents: the operation graph, its ordering walk and the reducer (spec §6).

A document is the set of operations that descend from one CREATE. Materializing it means:

1. :func:`build_graph` — one node per operation, an edge ``p → op`` for every id ``p`` in an
   operation's ``previous`` (spec §6.1);
2. optionally :func:`trim_graph` — keep only the tips of a requested document view id and all
   their ancestors (spec §6.4);
3. :func:`walk` — p2panda-rs 0.8.1's depth-first ordering walk, ported with all its quirks
   (spec §6.2), folding every visited operation into the reducer (spec §6.3).

:func:`materialize` does all three. :func:`open_tip` and :func:`extends_tip` tell when one more
operation can be folded into an existing view without walking the whole graph again (the
common case of a document edited in a line), so a store can keep long documents up to date at
a constant cost per operation. Everything here is pure: no I/O, no clocks, and the result
does not depend on the order in which the operations are handed in.

Operation ids are compared exactly as given, as strings (p2panda keys its graph by the id
string). Operation ids in p2panda are lowercase hex, and :class:`DocumentOperation` insists on
that; a ``previous`` id written in uppercase therefore does not connect, as in p2panda.

Errors (all raised, never returned):

- :class:`~.errors.DocumentError` with ``Reason.INVALID_GRAPH``: no operations, no CREATE, more
  than one CREATE, two different operations with one id, a link to an operation that is not in
  the set, a self-link, a ``previous`` id listed twice, no unique root, a cycle; and the two
  walk failures of the reference ("cycle detected" — which the reference's guard also reports
  for some acyclic graphs that make it revisit merge operations — and "badly formed graph").
- :class:`~.errors.DocumentError` with ``Reason.INVALID_REDUCTION``: the first visited operation
  is not a CREATE, or a later one is.
- :class:`~.errors.DocumentError` with ``Reason.INVALID_CLAIMED_SCHEMA``: an operation's schema id
  differs from the CREATE's (the same fact publishing reports under this reason, spec §4.3).
- :class:`~.errors.DocumentError` with ``Reason.DOCUMENT_DELETED``: an operation is visited after
  a DELETE ("Cannot perform a commit on a deleted document"). The whole build fails (spec §6.3).
- :class:`~.errors.NotFoundError` with ``Reason.VIEW_NOT_FOUND``: a requested view id names an
  operation that is not part of the document (spec §6.4).
- :class:`~.errors.HashDecodeError` with ``Reason.INVALID_HASH``: a :class:`DocumentOperation`
  whose id is not a lowercase hex YASMF hash.

It stays one module: building the graph, the walk and the reducer are the steps of one algorithm
of the reference, and :func:`open_tip`/:func:`extends_tip` must agree with the walk's order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .errors import DocumentError, HashDecodeError, NotFoundError, Reason, quote
from .hexid import is_hash_hex
from .ids import DocumentViewId
from .operation import Action, Operation, PlainValue

__all__ = [
    "Document",
    "DocumentOperation",
    "GraphWalk",
    "OperationGraph",
    "build_graph",
    "extends_tip",
    "materialize",
    "open_tip",
    "reduce_document",
    "trim_graph",
    "walk",
]


def _short(op_id: str) -> str:
    """Return a readable abbreviation of an operation id for error messages."""
    return op_id if len(op_id) <= 16 else f"{op_id[:4]}…{op_id[-8:]}"


@dataclass(frozen=True, slots=True)
class DocumentOperation:
    """One operation of a document, as a store hands it to the document layer.

    Attributes:
        id: The operation id: the YASMF hash of the entry that carries it (68 lowercase hex).
        public_key: The author's public key (hex) — the entry's public key.
        operation: The decoded operation.

    Raises:
        HashDecodeError: (``INVALID_HASH``) ``id`` is not 68 lowercase hex characters of a
            YASMF hash.
    """

    id: str
    public_key: str
    operation: Operation

    def __post_init__(self) -> None:
        if not is_hash_hex(self.id, lowercase=True):
            raise HashDecodeError(
                f"invalid operation id {quote(self.id)}: expected a YASMF hash as 68 lowercase "
                "hex characters",
                Reason.INVALID_HASH,
            )

    @property
    def action(self) -> Action:
        """The operation's action: ``"create"``, ``"update"`` or ``"delete"``."""
        return self.operation.action

    @property
    def schema_id(self) -> str:
        """The schema id the operation claims."""
        return self.operation.schema_id

    @property
    def previous(self) -> tuple[str, ...]:
        """The ids this operation builds on; empty for a CREATE."""
        return self.operation.previous or ()

    @property
    def fields(self) -> Mapping[str, PlainValue]:
        """The fields the operation sets; empty for a DELETE."""
        return self.operation.fields or {}

    @property
    def is_create(self) -> bool:
        """Whether this is a CREATE operation."""
        return self.operation.action == "create"

    @property
    def is_update(self) -> bool:
        """Whether this is an UPDATE operation."""
        return self.operation.action == "update"

    @property
    def is_delete(self) -> bool:
        """Whether this is a DELETE operation."""
        return self.operation.action == "delete"


@dataclass(frozen=True, slots=True, eq=False)
class OperationGraph:
    """The operation graph of one document (spec §6.1): acyclic, with exactly one root.

    Build it with :func:`build_graph`; narrow it to a view with :func:`trim_graph`.

    Attributes:
        operations: Operation id → operation, for every node.
        parents: Operation id → the ids of its parents (its ``previous`` ids), ascending.
        children: Operation id → the ids of the operations that name it in ``previous``,
            ascending.
        root: The id of the only node without parents (the CREATE, for a well-formed document).
    """

    operations: Mapping[str, DocumentOperation]
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    root: str

    def __len__(self) -> int:
        return len(self.operations)

    def __contains__(self, op_id: object) -> bool:
        return op_id in self.operations

    def tips(self) -> tuple[str, ...]:
        """Return the ids of all nodes without children, ascending."""
        return tuple(sorted(k for k, c in self.children.items() if not c))


@dataclass(frozen=True, slots=True)
class GraphWalk:
    """The result of :func:`walk`.

    Attributes:
        order: Operation ids in the order the walk visited them. An id can occur twice: the
            reference walk may visit a merge operation a second time (spec §6.2).
        tips: The visited operations without children, each once, in first-visit order.
    """

    order: tuple[str, ...]
    tips: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """A materialized document view (spec §6.3).

    Attributes:
        document_id: The id of the document: the id of its CREATE operation.
        view_id: The sorted, deduplicated graph tips of the materialized graph.
        schema_id: The schema id of the CREATE (every operation has the same).
        owner: The public key of the CREATE's author.
        fields: Field name → plain value, in byte-wise name order; None when deleted.
        field_origins: Field name → the id of the operation that last set the field; None when
            deleted.
        deleted: Whether a DELETE was the last operation applied.
        edited: Whether the document is deleted or any field was last set by a non-CREATE
            operation.
        walk_order: Every operation id in the walk order the view was reduced in; an id can
            occur twice (spec §6.2). See :meth:`sorted_index`.
    """

    document_id: str
    view_id: DocumentViewId
    schema_id: str
    owner: str
    fields: Mapping[str, PlainValue] | None
    field_origins: Mapping[str, str] | None
    deleted: bool
    edited: bool
    walk_order: tuple[str, ...]

    def sorted_index(self) -> dict[str, int]:
        """Return each operation's position in the walk, as aquadoggo records it (spec §6.5).

        aquadoggo enumerates the walk order and writes the index of every entry onto its
        operation, so for an operation visited twice the later position is the one kept.
        Replication sends entries per document in this order (spec §8.4).
        """
        return {op_id: index for index, op_id in enumerate(self.walk_order)}


# --- graph --------------------------------------------------------------------------------------


def build_graph(operations: Iterable[DocumentOperation]) -> OperationGraph:
    """Build and check the operation graph of one document (spec §6.1).

    The same operation may be passed more than once; it counts once. Checks run in a fixed
    order and, within a check, in ascending id order, so the error reported does not depend on
    the order of ``operations``.

    Args:
        operations: All operations of the document (any order).

    Returns:
        The graph, acyclic and with exactly one root.

    Raises:
        DocumentError: (``INVALID_GRAPH``) no operations; one id carried by two different
            operations; no CREATE or more than one; a ``previous`` id that is the operation's
            own id, is listed twice, or is not among ``operations``; more than one root or none;
            a cycle.
    """
    by_id: dict[str, DocumentOperation] = {}
    for op in operations:
        seen = by_id.setdefault(op.id, op)
        if seen != op:
            raise DocumentError(
                f"two different operations share the id {op.id}", Reason.INVALID_GRAPH
            )
    if not by_id:
        raise DocumentError("a document needs at least one operation", Reason.INVALID_GRAPH)
    ids = sorted(by_id)

    creates = [op_id for op_id in ids if by_id[op_id].is_create]
    if len(creates) > 1:
        raise DocumentError(
            "multiple CREATE operations found when building operation graph: " + ", ".join(creates),
            Reason.INVALID_GRAPH,
        )
    if not creates:
        raise DocumentError(
            "no CREATE operation found when building operation graph", Reason.INVALID_GRAPH
        )

    children: dict[str, list[str]] = {op_id: [] for op_id in ids}
    parents: dict[str, tuple[str, ...]] = {}
    for op_id in ids:
        previous = by_id[op_id].previous
        for prev in previous:
            if prev == op_id:
                raise DocumentError(
                    f"operation {op_id} cannot be connected to the document graph: "
                    "it names itself in previous",
                    Reason.INVALID_GRAPH,
                )
            if prev not in by_id:
                raise DocumentError(
                    f"operation {op_id} cannot be connected to the document graph: "
                    f"previous operation {prev} is not part of this document",
                    Reason.INVALID_GRAPH,
                )
        if len(set(previous)) != len(previous):
            raise DocumentError(
                f"operation {op_id} cannot be connected to the document graph: "
                "it lists a previous operation twice",
                Reason.INVALID_GRAPH,
            )
        parents[op_id] = tuple(sorted(previous))
        for prev in previous:
            children[prev].append(op_id)

    roots = [op_id for op_id in ids if not parents[op_id]]
    if not roots:
        raise DocumentError(
            "no root node found in the operation graph (every operation has a previous one)",
            Reason.INVALID_GRAPH,
        )
    if len(roots) > 1:
        raise DocumentError(
            "multiple root nodes found in the operation graph: " + ", ".join(roots),
            Reason.INVALID_GRAPH,
        )

    graph = OperationGraph(
        operations=MappingProxyType(by_id),
        parents=MappingProxyType(parents),
        children=MappingProxyType({k: tuple(sorted(v)) for k, v in children.items()}),
        root=roots[0],
    )
    _check_acyclic(graph)
    return graph


def _check_acyclic(graph: OperationGraph) -> None:
    """Raise when some operations cannot be ordered after their parents (Kahn's algorithm).

    With exactly one root and every link resolved, an acyclic graph is also connected: every
    operation descends from the root.
    """
    waiting = {op_id: len(parents) for op_id, parents in graph.parents.items()}
    ready = [graph.root]
    ordered = 0
    while ready:
        current = ready.pop()
        ordered += 1
        for child in graph.children[current]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if ordered != len(graph):
        stuck = sorted(op_id for op_id, count in waiting.items() if count > 0)
        raise DocumentError(
            "cycle detected in the operation graph, involving "
            + ", ".join(_short(op_id) for op_id in stuck),
            Reason.INVALID_GRAPH,
        )


def trim_graph(graph: OperationGraph, view_id: DocumentViewId) -> OperationGraph:
    """Keep the given tips and all their ancestors (spec §6.4).

    The result is the subgraph induced by those operations: a kept operation keeps exactly the
    children that are kept too. As in p2panda, a requested tip that is an ancestor of another
    requested tip is not a tip of the trimmed graph, so the view id that :func:`walk` then
    reports leaves it out.

    Args:
        graph: A graph from :func:`build_graph`.
        view_id: The view to trim to.

    Returns:
        The trimmed graph (same root).

    Raises:
        NotFoundError: (``VIEW_NOT_FOUND``) an id of ``view_id`` is not in ``graph``.
    """
    for op_id in view_id.ids:
        if op_id not in graph:
            raise NotFoundError(
                f"document view {view_id} not found: operation {op_id} is not part of document "
                f"{graph.root}",
                Reason.VIEW_NOT_FOUND,
            )
    keep: set[str] = set()
    pending = list(view_id.ids)
    while pending:
        current = pending.pop()
        if current in keep:
            continue
        keep.add(current)
        pending.extend(graph.parents[current])
    ids = sorted(keep)
    return OperationGraph(
        operations=MappingProxyType({k: graph.operations[k] for k in ids}),
        parents=MappingProxyType({k: graph.parents[k] for k in ids}),
        children=MappingProxyType(
            {k: tuple(c for c in graph.children[k] if c in keep) for k in ids}
        ),
        root=graph.root,
    )


def walk(
    graph: OperationGraph, visit: Callable[[DocumentOperation], None] | None = None
) -> GraphWalk:
    """Order the operations with p2panda-rs 0.8.1's ``Graph::walk_from`` (spec §6.2).

    A depth-first walk from the root with an explicit LIFO stack. After visiting an operation
    the walk looks at its children not yet visited, sorted ascending by id: the lowest is
    followed at once, the others are pushed onto the stack in ascending order (so they are
    popped highest first). A merge operation (more than one parent) is never followed
    directly: it is pushed onto the stack when all its parents have been visited, else the
    branch is left — or the walk fails if nothing is left on the stack. Operations popped from
    the stack are visited without checking their parents, so a merge can come before one of its
    parents, and a merge pushed twice is visited twice. Before each pop the walk fails when it
    has made more visits than there are operations (the reference's cycle guard). Because of the
    repeated visits that guard also fires on some acyclic graphs, e.g. A → {B, M, N}, B → C,
    C → {M, N} (visits A B C M N N, then M would be popped a second time); like the reference,
    such a graph cannot be materialized.

    Args:
        graph: A graph from :func:`build_graph` or :func:`trim_graph`.
        visit: Called with every visited operation, in order (twice for an operation visited
            twice); an exception it raises ends the walk.

    Returns:
        The visit order and the tips.

    Raises:
        DocumentError: (``INVALID_GRAPH``) "cycle detected" from the guard above, or "badly
            formed graph" when a merge's parents are missing and the stack is empty.
    """
    order: list[str] = []
    visited: set[str] = set()
    tips: dict[str, None] = {}  # insertion-ordered set
    stack = [graph.root]

    def visit_node(op_id: str) -> None:
        order.append(op_id)
        visited.add(op_id)
        if not graph.children[op_id]:
            tips.setdefault(op_id)
        if visit is not None:
            visit(graph.operations[op_id])

    while stack:
        current = stack.pop()
        if len(order) > len(graph):
            raise DocumentError(
                f"cycle detected while walking the operation graph of document {graph.root} "
                f"({len(order)} visits for {len(graph)} operations)",
                Reason.INVALID_GRAPH,
            )
        visit_node(current)
        while True:
            candidates = sorted(c for c in graph.children[current] if c not in visited)
            if not candidates:
                break
            following = candidates[0]
            stack.extend(candidates[1:])
            if len(graph.parents[following]) > 1:
                if all(p in visited for p in graph.parents[following]):
                    stack.append(following)
                elif not stack:
                    raise DocumentError(
                        f"badly formed graph: merge operation {following} has unvisited "
                        "previous operations and nothing is left to walk",
                        Reason.INVALID_GRAPH,
                    )
                break
            visit_node(following)
            current = following
    return GraphWalk(order=tuple(order), tips=tuple(tips))


# --- reduction ----------------------------------------------------------------------------------


class _Reducer:
    """Folds visited operations into a document view, like p2panda-rs ``DocumentReducer``."""

    def __init__(self) -> None:
        self.create: DocumentOperation | None = None
        self.fields: dict[str, PlainValue] | None = None
        self.origins: dict[str, str] | None = None

    def combine(self, op: DocumentOperation) -> None:
        if self.create is None:
            if not op.is_create:
                raise DocumentError(
                    f"the first operation of a document must be a CREATE, got {op.action} "
                    f"operation {op.id}",
                    Reason.INVALID_REDUCTION,
                )
            self.create = op
            self.fields = dict(op.fields)
            self.origins = dict.fromkeys(op.fields, op.id)
            return
        if op.is_create:
            raise DocumentError(
                f"Cannot update an existing document with a create operation ({op.id})",
                Reason.INVALID_REDUCTION,
            )
        if op.schema_id != self.create.schema_id:
            raise DocumentError(
                f"Operation {op.id} does not match the documents schema: "
                f"{quote(op.schema_id)} is not "
                f"{quote(self.create.schema_id)}",
                Reason.INVALID_CLAIMED_SCHEMA,
            )
        if self.fields is None or self.origins is None:
            raise DocumentError(
                f"Cannot perform a commit on a deleted document (operation {op.id} of document "
                f"{self.create.id} comes after its DELETE)",
                Reason.DOCUMENT_DELETED,
            )
        if op.is_delete:
            self.fields = None
            self.origins = None
            return
        for name, value in op.fields.items():
            self.fields[name] = value
            self.origins[name] = op.id


def reduce_document(graph: OperationGraph) -> Document:
    """Walk ``graph`` and fold every visited operation into a document view (spec §6.3).

    The first visited operation must be the CREATE; it sets all fields. Every later visit
    (also a repeated one) applies its operation whatever its ``previous`` says: an UPDATE
    overwrites exactly the fields it carries, a DELETE leaves the document without fields.
    The view id is the sorted set of graph tips.

    Args:
        graph: A graph from :func:`build_graph` or :func:`trim_graph`.

    Returns:
        The document view.

    Raises:
        DocumentError: every walk error of :func:`walk`; ``INVALID_REDUCTION`` when the first
            visited operation is not a CREATE or a later one is; ``INVALID_CLAIMED_SCHEMA`` when
            an operation's schema id differs from the CREATE's; ``DOCUMENT_DELETED`` when an
            operation is visited after a DELETE. The first error in walk order wins.
    """
    reducer = _Reducer()
    result = walk(graph, reducer.combine)
    create = reducer.create
    if create is None:  # pragma: no cover - the walk always visits the root
        raise DocumentError("the walk visited no operation", Reason.INVALID_GRAPH)
    fields = reducer.fields
    origins = reducer.origins
    deleted = fields is None
    edited = deleted or any(origin != create.id for origin in (origins or {}).values())
    return Document(
        document_id=create.id,
        view_id=DocumentViewId.from_ids(result.tips),
        schema_id=create.schema_id,
        owner=create.public_key,
        fields=None if fields is None else MappingProxyType(dict(sorted(fields.items()))),
        field_origins=None if origins is None else MappingProxyType(dict(sorted(origins.items()))),
        deleted=deleted,
        edited=edited,
        walk_order=result.order,
    )


def materialize(
    operations: Iterable[DocumentOperation], view_id: DocumentViewId | None = None
) -> Document:
    """Materialize a document from all its operations (spec §6.3, §6.4).

    Like p2panda-rs ``DocumentBuilder::build`` / ``build_to_view_id``: the whole set is checked
    (:func:`build_graph`) even when only a historic view is asked for.

    Args:
        operations: Every operation of the document, in any order.
        view_id: None for the current view; else the view to materialize — its operations and
            all their ancestors are reduced, later operations ignored.

    Returns:
        The document view.

    Raises:
        DocumentError: see :func:`build_graph` and :func:`reduce_document`.
        NotFoundError: (``VIEW_NOT_FOUND``) ``view_id`` names an operation not in the set.
    """
    graph = build_graph(operations)
    if view_id is not None:
        graph = trim_graph(graph, view_id)
    return reduce_document(graph)


# --- appending to a view ------------------------------------------------------------------------


def open_tip(document: Document) -> str | None:
    """The tip an operation can build on to be folded into ``document`` without a new walk.

    That is the view's only tip, when the walk visited it last and once. Then every other
    operation is an ancestor of it, so an UPDATE or DELETE naming exactly that tip in
    ``previous`` is followed right after it and visited last: materializing the grown set of
    operations walks the old order plus the new operation, and reduces to the old view with the
    new operation applied on top (see :func:`extends_tip`).

    Args:
        document: A current view from :func:`materialize` (all operations, no view id).

    Returns:
        The tip's id, or None when the next operation needs a full :func:`materialize`.
    """
    if len(document.view_id.ids) != 1:
        return None
    tip = document.view_id.ids[0]
    order = document.walk_order
    if not order or order[-1] != tip or tip in order[:-1]:
        return None
    return tip


def extends_tip(tip: str, schema_id: str, deleted: bool, op: DocumentOperation) -> bool:
    """Whether ``op`` can be folded into the view whose open tip is ``tip`` (:func:`open_tip`).

    It can when it is an UPDATE or DELETE of the view's schema whose ``previous`` is exactly
    the tip, and the view is not deleted. The result is then the view with ``op`` applied
    (UPDATE: its fields overwrite; DELETE: no fields), ``op.id`` as the only (and open) tip,
    and the walk order extended by ``op.id``. Anything else — a fork, a merge, a CREATE, an
    operation after a DELETE, another schema — needs a full :func:`materialize`, which also
    reports the errors.

    Args:
        tip: The open tip of the current view.
        schema_id: The document's schema id.
        deleted: Whether the current view is deleted.
        op: The new operation.
    """
    return not deleted and not op.is_create and op.schema_id == schema_id and op.previous == (tip,)
