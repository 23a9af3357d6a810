"""Runs one session's state machine over a stream: the I/O around :func:`.session.step`.

:func:`run_session` is the same for the acceptor (the ``Sync`` servicer) and the initiator
(the dialer); each gives it a :class:`Transport` (send a message, receive the next one) and a
:class:`SessionIO` (this node's ingest, its live entries). A test harness can drive a real
node's ``Sync`` with its own transport, or run a session against its own I/O.

Received entries are ingested in order by one worker, at most ``IN_FLIGHT_BATCHES`` batches
ahead of the stream (the stream is not read further meanwhile: back-pressure reaches the
peer). Entries failing only on a missing dependency are held (bounded) and retried after
every batch that stored something.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import grpc

from pandanode.core import decode_entry, decode_operation
from pandanode.core.errors import PandanodeError
from pandanode.core.replication import log_heights_digest
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.replication.v1 import replication_pb2 as pb

from .ingest_client import HoldBuffer, IngestClient, Publisher
from .session import (
    AnnounceReceived,
    DigestReceived,
    DoneReceived,
    EntriesReceived,
    Event,
    Finish,
    HaveReceived,
    HeightsLoaded,
    IdleTimeout,
    Ingest,
    IngestResult,
    LoadHeights,
    LocalStored,
    Log,
    MessageInvalid,
    MissingSent,
    PeerClosed,
    Phase,
    ReceivedEntry,
    Send,
    SendMissing,
    SessionConfig,
    SessionState,
    Start,
    StartLive,
    Target,
    new_session,
    step,
)

__all__ = [
    "IN_FLIGHT_BATCHES",
    "LiveFeed",
    "SessionIO",
    "SessionRecord",
    "Transport",
    "decode_message",
    "run_session",
]

log = logging.getLogger(__name__)

IN_FLIGHT_BATCHES: Final = 4


class Transport(Protocol):
    """One Sync stream, from one side."""

    async def send(self, message: pb.SyncMessage) -> None:
        """Send a message to the peer."""
        ...

    async def receive(self) -> pb.SyncMessage | None:
        """The peer's next message; None when its side ended."""
        ...


class LiveFeed(Protocol):
    """The entries this node stores from some point on (live mode)."""

    def batches(self) -> AsyncIterator[tuple[ReceivedEntry, ...]]:
        """New entries in store order, as they are stored."""
        ...

    async def close(self) -> None:
        """Stop following (also when :meth:`batches` was never iterated)."""
        ...


@dataclass
class SessionIO:
    """What a session needs from its node.

    Attributes:
        ingest: The ingest client (heights, reads, publishing).
        idle_timeout: Seconds of silence from the peer before SyncDone that end the session.
        hold_items: Most entries held for a missing dependency.
        subscribe: Called on ``LoadHeights`` with subscription: returns the new entries stored
            from now on, in store order (live mode), started before the heights are read.
    """

    ingest: IngestClient
    idle_timeout: float = 30.0
    hold_items: int = 10_000
    subscribe: Callable[[], Awaitable[LiveFeed]] | None = None


@dataclass(eq=False)
class SessionRecord:
    """What is known about one session, for ``ListSessions`` and for tests.

    Attributes mirror ``pandanode.replication.v1.Session``; ``sent_kinds`` / ``received_kinds``
    and ``bytes_by_kind`` count messages and bytes per SyncMessage kind.
    """

    initiator: bool
    address: str = ""
    node_id: str = ""
    phase: Phase = Phase.START
    target: tuple[str, ...] = ()
    entries_sent: int = 0
    entries_received: int = 0
    entries_rejected: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    started: float = field(default_factory=time.time)
    ended: float | None = None
    error_reason: str = ""
    error_message: str = ""
    sent_kinds: Counter[str] = field(default_factory=Counter)
    received_kinds: Counter[str] = field(default_factory=Counter)
    bytes_by_kind: Counter[str] = field(default_factory=Counter)
    forks: int = 0
    stop: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def __hash__(self) -> int:
        return id(self)

    def count_sent(self, message: pb.SyncMessage) -> None:
        """Account for a message sent."""
        kind = str(message.WhichOneof("message"))
        size = message.ByteSize()
        self.sent_kinds[kind] += 1
        self.bytes_by_kind[kind] += size
        self.bytes_sent += size
        if kind == "entries":
            self.entries_sent += len(message.entries.items)

    def count_received(self, message: pb.SyncMessage) -> None:
        """Account for a message received."""
        kind = str(message.WhichOneof("message"))
        size = message.ByteSize()
        self.received_kinds[kind] += 1
        self.bytes_by_kind[kind] += size
        self.bytes_received += size


def _decode_entries(entries: pb.Entries) -> Event:
    items: list[ReceivedEntry] = []
    for item in entries.items:
        try:
            entry = decode_entry(item.entry, verify=False)
            operation = decode_operation(item.operation)
        except PandanodeError as err:
            return MessageInvalid("INVALID_ENTRY", f"an entry does not decode: {err.reason}")
        items.append(
            ReceivedEntry(
                public_key=entry.public_key,
                log_id=entry.log_id,
                seq_num=entry.seq_num,
                schema_id=operation.schema_id,
                entry=item.entry,
                operation=item.operation,
            )
        )
    return EntriesReceived(tuple(items))


def decode_message(message: pb.SyncMessage) -> Event:
    """The session event of a message the peer sent."""
    kind = message.WhichOneof("message")
    if kind == "announce":
        a = message.announce
        return AnnounceReceived(a.protocol_version, a.node_id, tuple(a.schema_ids), a.live)
    if kind == "have_digest":
        return DigestReceived(message.have_digest.digest, message.have_digest.log_count)
    if kind == "have":
        heights = tuple(
            (author.public_key, height.log_id, height.seq_num)
            for author in message.have.authors
            for height in author.logs
        )
        return HaveReceived(heights, message.have.last)
    if kind == "entries":
        return _decode_entries(message.entries)
    if kind == "sync_done":
        return DoneReceived(message.sync_done.live)
    return MessageInvalid("PROTOCOL_VIOLATION", "an empty SyncMessage")


class _Run:
    """The tasks of one running session."""

    def __init__(
        self,
        config: SessionConfig,
        transport: Transport,
        io: SessionIO,
        record: SessionRecord,
        on_announce: Callable[[str], str] | None,
    ) -> None:
        self.state = new_session(config)
        self.transport = transport
        self.io = io
        self.record = record
        self.on_announce = on_announce
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.ingest_queue: asyncio.Queue[tuple[ReceivedEntry, ...] | None] = asyncio.Queue()
        self.in_flight = asyncio.Semaphore(IN_FLIGHT_BATCHES)
        self.tasks: list[asyncio.Task[None]] = []
        self.live: LiveFeed | None = None
        self.hold = HoldBuffer(io.hold_items)
        self.finish: Finish | None = None
        # Per log, the seq num of the last entry of this peer's that ingest stored when first
        # published (not on a retry of held entries): a link mismatch right after it is the
        # peer's fault, not a fork.
        self.peer_stored: dict[Log, int] = {}

    def spawn(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        async def guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except ConnectionError as err:
                self.events.put_nowait(MessageInvalid("STREAM_BROKEN", f"{name}: {err}"))
            except grpc.aio.AioRpcError as err:
                self.events.put_nowait(
                    MessageInvalid("INGEST_UNAVAILABLE", f"{name}: ingest {err.code().name}")
                )
            except Exception as err:
                log.exception("replication session: %s failed", name)
                self.events.put_nowait(MessageInvalid("INTERNAL", f"{name}: {err}"))

        self.tasks.append(asyncio.create_task(guarded(), name=name))

    async def send(self, message: pb.SyncMessage) -> None:
        self.record.count_sent(message)
        await self.transport.send(message)

    async def receive_loop(self) -> None:
        # One read stays pending across idle timeouts: cancelling a read of a gRPC stream
        # would end the stream.
        deadline = time.monotonic() + self.io.idle_timeout
        read: asyncio.Future[pb.SyncMessage | None] | None = None
        try:
            while True:
                if read is None:
                    read = asyncio.ensure_future(self.transport.receive())
                done, _ = await asyncio.wait({read}, timeout=deadline - time.monotonic())
                if not done:
                    self.events.put_nowait(IdleTimeout())
                    deadline = time.monotonic() + self.io.idle_timeout
                    continue
                finished, read = read, None
                try:
                    message = finished.result()
                except grpc.aio.AioRpcError as err:
                    reason = f"PEER_ENDED_{err.code().name}"
                    self.events.put_nowait(MessageInvalid(reason, str(err.details())[:200]))
                    return
                except PandanodeError as err:  # bytes that are not a SyncMessage
                    self.events.put_nowait(MessageInvalid(err.reason.value, err.message[:200]))
                    return
                if message is None:
                    self.events.put_nowait(PeerClosed())
                    return
                self.record.count_received(message)
                if message.WhichOneof("message") is None:
                    # Empty (or of a kind a newer peer knows): ignored, and no sign of life.
                    continue
                deadline = time.monotonic() + self.io.idle_timeout
                event = decode_message(message)
                if isinstance(event, EntriesReceived):
                    await self.in_flight.acquire()
                self.events.put_nowait(event)
        finally:
            if read is not None:
                read.cancel()

    async def load_heights(self, action: LoadHeights) -> None:
        if action.subscribe and self.io.subscribe is not None:
            self.live = await self.io.subscribe()
        heights = await self.io.ingest.log_heights(action.target)
        snapshot = {log: seq for log, (seq, _) in heights.items()}
        digest = log_heights_digest((pk, lid, seq) for (pk, lid), seq in snapshot.items())
        self.events.put_nowait(HeightsLoaded(snapshot, digest))

    async def send_missing(self, action: SendMissing) -> None:
        top: dict[Log, int] = {}
        count = 0
        size = self.state.config.max_batch_items
        async for batch in self.io.ingest.read_missing(action.target, action.peer_heights, size):
            await self.send(pb.SyncMessage(entries=pb.Entries(items=[r for _, _, r in batch])))
            for log_key, seq_num, _ in batch:
                top[log_key] = seq_num
            count += len(batch)
        self.events.put_nowait(MissingSent(top, count))

    async def ingest_loop(self) -> None:
        publisher = self.io.ingest.publisher()
        try:
            while True:
                items = await self.ingest_queue.get()
                if items is None:
                    return
                try:
                    result = await self._ingest(publisher, items)
                finally:
                    self.in_flight.release()
                self.events.put_nowait(result)
        finally:
            publisher.close()

    async def _ingest(self, publisher: Publisher, items: tuple[ReceivedEntry, ...]) -> IngestResult:
        requests = [ipb.PublishRequest(entry=i.entry, operation=i.operation) for i in items]
        outcomes = await publisher.publish(requests)
        stored = held = rejected = 0
        reason = ""
        waiting: list[ipb.PublishRequest] = []
        for item, request, outcome in zip(items, requests, outcomes, strict=True):
            log_key = (item.public_key, item.log_id)
            if outcome.stored:
                stored += 1
                self.peer_stored[log_key] = item.seq_num
            elif outcome.missing_dependency:
                held += 1
                waiting.append(request)
            elif outcome.fork and self.peer_stored.get(log_key) != item.seq_num - 1:
                # A validly signed entry whose links do not fit the log we hold: the author
                # forked the log. Not the peer's fault; the entry is not stored. (Unless the
                # peer itself just gave us the entry before it: then its own log does not
                # link, which no honest peer would have stored.)
                self.record.forks += 1
                log.warning("replication: a forked log entry from %s skipped", self.record.node_id)
            else:
                rejected += 1
                reason = reason or outcome.reason
        if stored and len(self.hold):
            stored += await self._retry_held(publisher)
        self.hold.hold(waiting)
        return IngestResult(stored=stored, held=held, rejected=rejected, reason=reason)

    async def _retry_held(self, publisher: Publisher) -> int:
        """Retry held entries while that stores some; the rest stay held."""
        total = 0
        while len(self.hold):
            items = self.hold.take()
            outcomes = await publisher.publish(items)
            again = [
                item
                for item, outcome in zip(items, outcomes, strict=True)
                if outcome.missing_dependency
            ]
            stored = sum(1 for outcome in outcomes if outcome.stored)
            self.hold.hold(again)
            total += stored
            if not stored:
                break
        return total

    async def live_loop(self) -> None:
        assert self.live is not None
        async for items in self.live.batches():
            self.events.put_nowait(LocalStored(items))

    async def perform(self, action: object) -> None:
        if isinstance(action, Send):
            await self.send(action.message)
        elif isinstance(action, LoadHeights):
            self.spawn(lambda: self.load_heights(action), "load-heights")
        elif isinstance(action, SendMissing):
            self.spawn(lambda: self.send_missing(action), "send-missing")
        elif isinstance(action, Ingest):
            self.ingest_queue.put_nowait(action.items)
        elif isinstance(action, StartLive):
            if self.live is not None:
                self.spawn(self.live_loop, "live")
        elif isinstance(action, Finish):
            self.finish = action

    def update_record(self) -> None:
        state = self.state
        record = self.record
        record.phase = state.phase
        if state.peer is not None:
            record.node_id = state.peer.node_id
        if state.target is not None:
            record.target = state.target.names()
        record.entries_received = state.entries_received
        record.entries_rejected = state.entries_rejected

    async def run(self) -> SessionState:
        self.spawn(self.receive_loop, "receive")
        self.spawn(self.ingest_loop, "ingest")
        self.events.put_nowait(Start())
        try:
            while self.finish is None:
                event = await self.events.get()
                before = self.state.peer
                self.state, actions = step(self.state, event)
                if before is None and self.state.peer is not None and self.on_announce:
                    refusal = self.on_announce(self.state.peer.node_id)
                    if refusal:
                        self.state, actions = step(
                            self.state, MessageInvalid(refusal, "session refused")
                        )
                self.update_record()
                try:
                    for action in actions:
                        await self.perform(action)
                except ConnectionError as err:
                    self.events.put_nowait(MessageInvalid("STREAM_BROKEN", str(err)))
            if not self.finish.reason:
                # Completed: let the received entries reach ingest before ending.
                self.ingest_queue.put_nowait(None)
                ingest = self.tasks[1]
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(ingest), self.io.idle_timeout)
                while not self.events.empty():
                    event = self.events.get_nowait()
                    if isinstance(event, IngestResult):
                        self.state, _ = step(self.state, event)
                self.update_record()
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.live is not None:
                with contextlib.suppress(Exception):
                    await self.live.close()
        return self.state


async def run_session(
    config: SessionConfig,
    transport: Transport,
    io: SessionIO,
    record: SessionRecord,
    *,
    on_announce: Callable[[str], str] | None = None,
) -> SessionState:
    """Run one session to its end; returns the final state (``reason`` set when it failed).

    Args:
        config: This side's session settings.
        transport: The stream.
        io: This node's ingest and live entries.
        record: Updated as the session goes (counts, bytes, phase).
        on_announce: Called with the peer's node id once known; a non-empty answer is a reason
            to end the session (refused, duplicate).
    """
    record.target = Target.of(config.schema_ids).names()
    run = _Run(config, transport, io, record, on_announce)
    record.stop = lambda reason: run.events.put_nowait(
        MessageInvalid(reason, "session ended by this node")
    )
    state = await run.run()
    record.ended = time.time()
    record.error_reason = state.reason
    record.phase = state.phase
    return state
