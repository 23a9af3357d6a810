"""Live watches: the matching documents now, then every change, exactly once and in order.

A :class:`Watch` is registered as a listener of the materializer *before* the snapshot of
current documents is read, so no change can fall between the two; changes already contained in
the snapshot (their stream sequence is at or below the snapshot's) are skipped. Each watch has
a bounded queue: a client too slow to keep up is disconnected rather than buffered forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from pandanode.services.runtime.errors import LimitExceededError

from .model import ChangeKind, DocumentChange, MaterializedDocument

__all__ = ["Watch", "WatchEvent", "WatchKind", "classify"]


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


class Watch:
    """One client's watch of one schema.

    Args:
        schema_id: Only changes of this schema's documents are considered.
        matches: The watch's filter.
        max_queue: Most changes buffered for a slow client before it is cut off.
    """

    def __init__(
        self,
        schema_id: str,
        matches: Callable[[MaterializedDocument], bool],
        max_queue: int = 10_000,
    ) -> None:
        self.schema_id = schema_id
        self._matches = matches
        self._queue: asyncio.Queue[DocumentChange | None] = asyncio.Queue(maxsize=max_queue)
        self._overflowed = False

    def on_change(self, change: DocumentChange) -> None:
        """Listener callback of the materializer; never blocks."""
        if change.document.schema_id != self.schema_id or self._overflowed:
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self._overflowed = True
            self._queue = asyncio.Queue(maxsize=1)
            self._queue.put_nowait(None)

    async def events(
        self, snapshot: Iterable[MaterializedDocument], snapshot_sequence: int
    ) -> AsyncIterator[WatchEvent]:
        """Yield EXISTING for every matching document of the snapshot, CAUGHT_UP, then changes.

        Raises:
            LimitExceededError: the client fell too far behind.
        """
        for document in snapshot:
            if self._matches(document):
                yield WatchEvent(WatchKind.EXISTING, document)
        yield WatchEvent(WatchKind.CAUGHT_UP, None)
        while True:
            change = await self._queue.get()
            if change is None:
                raise LimitExceededError(
                    "watch cut off: the client read changes too slowly; watch again to resume"
                )
            if change.sequence <= snapshot_sequence:
                continue
            kind = classify(change, self._matches)
            if kind is not None:
                yield WatchEvent(kind, change.document)
