"""Replication as a client of ingest: log heights, the entries a peer lacks, publishing.

The replication process talks to ingest over gRPC like any client (``--ingest HOST:PORT``).
Reading what a peer lacks is ingest's ``ReadMissingEntries`` (logs merged in store order, so
dependencies travel first). An entry that still arrives before its dependency (sent by a peer
with another store order) is held and retried (:class:`HoldBuffer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import grpc
import grpc.aio

from pandanode.core.errors import Reason
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.runtime.dial import serving

from ..runtime.dial import Dial, insecure_dial
from .session import Log, Target

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

__all__ = [
    "DEPENDENCY_REASONS",
    "FORK_REASONS",
    "HoldBuffer",
    "IngestClient",
    "PublishOutcome",
]

# Rejections that only mean "not yet": a dependency (schema, previous operation, an earlier
# entry of the log) has not arrived. Such entries are held and retried, not held against the
# peer.
DEPENDENCY_REASONS: Final = frozenset(
    {
        Reason.SCHEMA_NOT_FOUND.value,
        Reason.PREVIOUS_NOT_FOUND.value,
        Reason.SEQ_NUM_MISMATCH.value,
        Reason.SKIPLINK_MISSING.value,
    }
)
INGEST_SERVICE: Final = ipb.DESCRIPTOR.services_by_name["IngestService"].full_name
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
# Rejections of a validly signed entry that does not fit the log we hold: the author forked it.
FORK_REASONS: Final = frozenset({Reason.BACKLINK_MISMATCH.value, Reason.SKIPLINK_MISMATCH.value})
# Log heights per ReadMissingEntries request.
_HAVE_CHUNK: Final = 10_000


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What publishing one item gave: stored (or already held), held back, or rejected."""

    stored: bool
    reason: str = ""

    @property
    def fork(self) -> bool:
        """Rejected for links that do not fit the log we hold: a forked log.

        Ingest checks the signature before the links, so the entry is validly signed.
        """
        return not self.stored and self.reason in FORK_REASONS

    @property
    def missing_dependency(self) -> bool:
        """Rejected only because a dependency is not stored yet."""
        return not self.stored and self.reason in DEPENDENCY_REASONS


class IngestClient:
    """Ingest's API as replication uses it, over one channel.

    Args:
        address: Ingest's gRPC ``host:port``.
        max_message_bytes: The gRPC message size limit.
        dial: How to open the channel (mutual TLS between a deployment's services).
    """

    def __init__(self, address: str, max_message_bytes: int, dial: Dial = insecure_dial) -> None:
        self.address = address
        self.max_message_bytes = max_message_bytes
        self._channel = dial(
            address,
            [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
        )
        self._stub: IngestServiceAsyncStub = ingest_pb2_grpc.IngestServiceStub(self._channel)

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close(None)

    async def wait_serving(self, interval: float = 0.2) -> None:
        """Return once ingest's health says SERVING (it may start after replication)."""
        while not await serving(self._channel, INGEST_SERVICE):
            await asyncio.sleep(interval)  # poll: ingest is starting

    async def log_heights(self, target: Target) -> dict[Log, tuple[int, str]]:
        """The latest seq num (and schema id) of every log of ``target``, all pages."""
        if not target.any and not target.schema_ids:
            return {}
        schema_ids = [] if target.any else sorted(target.schema_ids)
        heights: dict[Log, tuple[int, str]] = {}
        token = ""
        while True:
            response = await self._stub.GetLogHeights(
                ipb.GetLogHeightsRequest(schema_ids=schema_ids, page_token=token)
            )
            for height in response.log_heights:
                heights[(height.public_key, height.log_id)] = (height.seq_num, height.schema_id)
            token = response.next_page_token
            if not token:
                return heights

    async def read_missing(
        self, target: Target, peer_heights: Mapping[Log, int], max_items: int
    ) -> AsyncIterator[list[tuple[Log, int, ipb.PublishRequest]]]:
        """Every entry of ``target`` above ``peer_heights``, in batches of up to ``max_items``.

        Ingest's ``ReadMissingEntries``: per log in ascending seq num, logs merged in this
        node's store order, so every dependency comes before what depends on it.

        Yields:
            Batches of ((public key, log id), seq num, entry + operation).
        """
        if not target.any and not target.schema_ids:
            return
        call = self._stub.ReadMissingEntries()  # type: ignore[call-arg]
        try:
            logs = sorted(peer_heights.items())
            for start in range(0, max(len(logs), 1), _HAVE_CHUNK):
                chunk = logs[start : start + _HAVE_CHUNK]
                await call.write(
                    ipb.ReadMissingEntriesRequest(
                        schema_ids=[] if target.any else sorted(target.schema_ids),
                        have=[
                            ipb.LogHeight(public_key=public_key, log_id=log_id, seq_num=seq)
                            for (public_key, log_id), seq in chunk
                        ],
                        last=start + _HAVE_CHUNK >= len(logs),
                        max_batch_items=max_items,
                    )
                )
            await call.done_writing()
            while True:
                response = await call.read()
                if response is _EOF:
                    return
                assert isinstance(response, ipb.ReadMissingEntriesResponse)
                yield [
                    (
                        (item.public_key, item.log_id),
                        item.seq_num,
                        ipb.PublishRequest(entry=item.entry, operation=item.operation),
                    )
                    for item in response.entries
                ]
        finally:
            call.cancel()

    def publisher(self) -> Publisher:
        """A PublishStream to hand batches to, one at a time."""
        return Publisher(self._stub)


class Publisher:
    """One ``PublishStream`` call: a batch in, one outcome per item out."""

    def __init__(self, stub: IngestServiceAsyncStub) -> None:
        self._call = stub.PublishStream()  # type: ignore[call-arg]

    async def publish(self, items: list[ipb.PublishRequest]) -> list[PublishOutcome]:
        """Publish ``items`` as one batch; their outcomes, in order.

        Raises:
            grpc.aio.AioRpcError: ingest is not reachable or ended the stream.
        """
        await self._call.write(ipb.PublishStreamRequest(items=items))
        response = await self._call.read()
        if response is _EOF:
            raise ConnectionError("ingest ended the publish stream")
        assert isinstance(response, ipb.PublishStreamResponse)
        return [
            PublishOutcome(stored=True)
            if result.WhichOneof("outcome") == "ok"
            else PublishOutcome(stored=False, reason=result.error.reason)
            for result in response.results
        ]

    def close(self) -> None:
        """End the call."""
        self._call.cancel()


class HoldBuffer:
    """Entries waiting for a missing dependency, bounded by count and bytes, in arrival order.

    Past a bound the newest are dropped, not the oldest: within a log the held entries stay a
    prefix (entry 5 kept while 6 and 7 go, never the other way round, which would leave 6 and 7
    waiting for a 5 that is gone). What is dropped comes again with a later session.

    Args:
        max_items: Most entries held.
        max_bytes: Most bytes held (entry + operation of each).

    Attributes:
        peak: The most entries held at once.
        dropped: Entries dropped at a bound.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: list[ipb.PublishRequest] = []
        self.bytes = 0
        self.peak = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def hold(self, items: Iterable[ipb.PublishRequest]) -> None:
        """Keep ``items`` for a retry, as far as the bounds allow."""
        for item in items:
            size = len(item.entry) + len(item.operation)
            if len(self._items) >= self.max_items or self.bytes + size > self.max_bytes:
                self.dropped += 1
                continue
            self._items.append(item)
            self.bytes += size
        self.peak = max(self.peak, len(self._items))

    def take(self) -> list[ipb.PublishRequest]:
        """Everything held (the buffer is empty after)."""
        items, self._items = self._items, []
        self.bytes = 0
        return items
