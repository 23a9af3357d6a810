"""Live watches: the matching documents now, then every change, exactly once and in order.

A :class:`Watch` is registered as a listener of the materializer *before* the snapshot of
current documents is read, so no change can fall between the two; changes already contained in
the snapshot (their stream sequence is at or below the snapshot's) are skipped.

Changes are handed out in batches: everything that queued up while the previous batch was being
sent goes out together (up to :data:`BATCH_BYTES`). Sending one gRPC message costs a round trip
through the event loop, so a watch sending one change per message falls behind as soon as the
loop is busy (ingest and materialization share it); a batch costs the same round trip.

Each watch's queue is bounded in bytes (an estimate of the memory the queued documents hold,
:func:`document_bytes`) and in count. A client too slow to keep up is cut off: its queue is
dropped at once, and once the changes already handed to gRPC are sent, the watch ends with
RESOURCE_EXHAUSTED (reason ``WATCH_TOO_SLOW``). It then watches again: the new watch's
EXISTING documents are the current state, so nothing is lost except the intermediate versions.
Coalescing to the latest version per document instead would keep memory bounded only by the
number of documents, and would hide from the client that versions were skipped.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pandanode.core.errors import Reason
from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.services.runtime.errors import LimitExceededError
from pandanode.services.runtime.settings import Settings

from .model import ChangeKind, DocumentChange, MaterializedDocument, TypedValue

__all__ = [
    "BATCH_BYTES",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "Watch",
    "WatchEvent",
    "WatchKind",
    "WatchStats",
    "classify",
    "document_bytes",
]

BATCH_BYTES = 1024 * 1024
"""A batch stops growing at this many (estimated) bytes of documents; one document always fits.

Well below gRPC's default 4 MiB receive limit of clients, given that one operation (and so one
document) is at most ``max_operation_bytes`` (272 KiB by default).
"""

DEFAULT_MAX_QUEUE = 10_000
"""Most changes queued for one watch (tiny documents are bounded by this, not by bytes)."""

DEFAULT_MAX_QUEUE_BYTES = Settings().watch_queue_bytes
"""Most bytes of documents queued for one watch (the default of ``watch_queue_bytes``)."""

_DOCUMENT_OVERHEAD = 512
"""Bytes counted per document besides its values: the objects, ids and the queue slot."""

_VALUE_OVERHEAD = 64
"""Bytes counted per field besides its value's own size: the name and the mapping slot."""


class WatchKind(StrEnum):
    """What a watch reports about a document."""

    EXISTING = "existing"
    CAUGHT_UP = "caught_up"
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a watch; ``document`` is None only for CAUGHT_UP."""

    kind: WatchKind
    document: MaterializedDocument | None


@dataclass(frozen=True, slots=True)
class WatchStats:
    """What one watch holds right now.

    Attributes:
        schema_id: The watched schema.
        queued_changes: Changes waiting to be sent.
        queued_bytes: Estimated bytes of their documents (:func:`document_bytes`).
        max_queue_bytes: The byte budget of the queue.
        cut_off: The watch fell too far behind and ends once what was sent is delivered.
    """

    schema_id: str
    queued_changes: int
    queued_bytes: int
    max_queue_bytes: int
    cut_off: bool


def _value_bytes(value: TypedValue) -> int:
    if isinstance(value, str | bytes):
        return sys.getsizeof(value)
    if isinstance(value, Relation):
        return sys.getsizeof(value.document_id)
    if isinstance(value, RelationList):
        return sum(sys.getsizeof(d) for d in value.document_ids)
    if isinstance(value, PinnedRelation):
        return sum(sys.getsizeof(o) for o in value.view_id)
    if isinstance(value, PinnedRelationList):
        return sum(sys.getsizeof(o) for view in value.view_ids for o in view)
    return 32  # bool, int, float


def document_bytes(document: MaterializedDocument) -> int:
    """An estimate of the memory a document holds: its values, ids and a fixed overhead.

    Strings and bytes count with their in-memory size (``sys.getsizeof``), so a field of
    non-ASCII text counts up to four bytes per character, as Python stores it.
    """
    total = _DOCUMENT_OVERHEAD + len(document.view_id)
    for value in document.fields.values():
        total += _VALUE_OVERHEAD + _value_bytes(value)
    return total


def classify(
    change: DocumentChange, matches: Callable[[MaterializedDocument], bool]
) -> WatchKind | None:
    """How a change looks to a watch with this filter; None when the watch does not care."""
    now = matches(change.document)
    before = change.previous is not None and matches(change.previous)
    if change.kind is ChangeKind.DELETED:
        return WatchKind.DELETED if before or now else None
    if now:
        return WatchKind.UPDATED if change.previous is not None else WatchKind.CREATED
    return WatchKind.LEFT if before else None


@dataclass(frozen=True, slots=True)
class _Queued:
    sequence: int
    event: WatchEvent
    size: int


class Watch:
    """One client's watch of one schema.

    Args:
        schema_id: Only changes of this schema's documents are considered.
        matches: The watch's filter.
        max_queue: Most changes queued for a slow client before it is cut off.
        max_queue_bytes: Most bytes of documents (:func:`document_bytes`) queued for a slow
            client before it is cut off.
    """

    def __init__(
        self,
        schema_id: str,
        matches: Callable[[MaterializedDocument], bool],
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ) -> None:
        self.schema_id = schema_id
        self._matches = matches
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._arrived = asyncio.Event()
        self._cut_off: str | None = None

    def stats(self) -> WatchStats:
        """What the watch holds now."""
        return WatchStats(
            schema_id=self.schema_id,
            queued_changes=len(self._queue),
            queued_bytes=self._queued_bytes,
            max_queue_bytes=self._max_queue_bytes,
            cut_off=self._cut_off is not None,
        )

    def on_change(self, change: DocumentChange) -> None:
        """Listener callback of the materializer; never blocks.

        Only changes the watch reports are queued, and only their new document is kept.
        """
        if change.document.schema_id != self.schema_id or self._cut_off is not None:
            return
        kind = classify(change, self._matches)
        if kind is None:
            return
        size = document_bytes(change.document)
        if len(self._queue) >= self._max_queue:
            self._cut(f"{len(self._queue)} changes")
        elif self._queued_bytes + size > self._max_queue_bytes:
            self._cut(f"{self._queued_bytes + size} bytes of changes")
        else:
            self._queue.append(_Queued(change.sequence, WatchEvent(kind, change.document), size))
            self._queued_bytes += size
        self._arrived.set()

    def _cut(self, backlog: str) -> None:
        self._cut_off = (
            f"watch cut off: {backlog} were waiting for this client, over the node's limit "
            f"({self._max_queue} changes, watch_queue_bytes {self._max_queue_bytes}); the "
            "client read too slowly. Watch again: it starts from the current documents"
        )
        self._queue.clear()  # let go of the documents now, not when the client reads again
        self._queued_bytes = 0

    async def batches(
        self,
        snapshot: Iterable[MaterializedDocument],
        snapshot_sequence: int,
        max_batch_bytes: int = BATCH_BYTES,
    ) -> AsyncIterator[list[WatchEvent]]:
        """Yield EXISTING for every matching document of the snapshot, CAUGHT_UP, then changes.

        Each list is sent as one message: as many events as are waiting, up to about
        ``max_batch_bytes`` of documents; never empty.

        Raises:
            LimitExceededError: the client fell too far behind (reason ``WATCH_TOO_SLOW``).
        """
        batch: list[WatchEvent] = []
        size = 0
        for document in snapshot:
            if self._matches(document):
                batch.append(WatchEvent(WatchKind.EXISTING, document))
                size += document_bytes(document)
                if size >= max_batch_bytes:
                    yield batch
                    batch, size = [], 0
        batch.append(WatchEvent(WatchKind.CAUGHT_UP, None))
        yield batch
        while True:
            while not self._queue and self._cut_off is None:
                self._arrived.clear()
                await self._arrived.wait()
            if self._cut_off is not None:
                raise LimitExceededError(self._cut_off, Reason.WATCH_TOO_SLOW)
            batch, size = [], 0
            while self._queue and size < max_batch_bytes:
                queued = self._queue.popleft()
                self._queued_bytes -= queued.size
                if queued.sequence > snapshot_sequence:
                    batch.append(queued.event)
                    size += queued.size
            if batch:
                yield batch
