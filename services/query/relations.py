"""Relation resolution: the related documents one response holds, read with bounded work.

A read with ``resolve_depth`` answers relation fields with the documents they name, that many
levels deep. :func:`resolve_relations` walks the relations of a response's documents and reads
every related document through a :class:`BoundedResolver`, which reads each distinct one once
and bounds the documents and bytes of the response; the conversion to messages
(:func:`.convert.documents_to_pb`) then only looks the related documents up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.services.runtime.errors import LimitExceededError

from .model import MaterializedDocument, TypedValue

__all__ = [
    "BoundedResolver",
    "approximate_size",
    "Related",
    "Resolver",
    "relation_targets",
    "resolve_relations",
]

Resolver = Callable[[str, bool], MaterializedDocument | None]
"""``resolve(id, pinned)``: the current view of a document id, or (pinned) a view by view id."""

Related = Mapping[tuple[str, bool], MaterializedDocument | None]
"""The related documents of a response by ``(id, pinned)``; None: not found here."""


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
            ).about(limit=self._max_documents)
        if self.bytes > self._max_bytes:
            raise LimitExceededError(
                f"the response would hold more than {self._max_bytes} bytes "
                "(max_message_bytes): ask for a smaller resolve_depth or page_size"
            ).about(limit=self._max_bytes)

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

    def related(self) -> dict[tuple[str, bool], MaterializedDocument | None]:
        """Every related document read so far, by ``(id, pinned)``."""
        return {key: document for key, (document, _) in self._seen.items()}


def relation_targets(value: TypedValue) -> Iterator[tuple[str, bool]]:
    """The ``(id, pinned)`` of every document a field value relates to, in field order."""
    if isinstance(value, Relation):
        yield value.document_id, False
    elif isinstance(value, RelationList):
        for document_id in value.document_ids:
            yield document_id, False
    elif isinstance(value, PinnedRelation):
        yield "_".join(value.view_id), True
    elif isinstance(value, PinnedRelationList):
        for ids in value.view_ids:
            yield "_".join(ids), True


def resolve_relations(
    documents: Sequence[MaterializedDocument], depth: int, resolver: BoundedResolver
) -> Related:
    """Read the documents related to a response's documents, ``depth`` levels deep.

    Every document of the response is counted into the resolver's budget: each top-level one,
    and each related one every time it appears (as the response would hold it).

    Returns:
        The related documents, for :func:`.convert.documents_to_pb`.

    Raises:
        LimitExceededError: the response would exceed the resolver's budget.
    """
    for document in documents:
        resolver.admit(document)
        _resolve_fields(document, depth, resolver)
    return resolver.related()


def _resolve_fields(document: MaterializedDocument, depth: int, resolver: BoundedResolver) -> None:
    if depth <= 0:
        return
    for value in document.fields.values():
        for target, pinned in relation_targets(value):
            related = resolver(target, pinned)
            if related is not None:
                _resolve_fields(related, depth - 1, resolver)
