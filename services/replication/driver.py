"""Runs one session's state machine over a stream: the I/O around :func:`.session.step`.

:func:`run_session` is the same for the acceptor (the ``Sync`` servicer) and the initiator
(the dialer); each gives it a :class:`Transport` (send a message, receive the next one) and a
:class:`SessionIO` (this node's ingest, its live entries). A test harness can drive a real
node's ``Sync`` with its own transport, or run a session against its own I/O.

Received entries are ingested in order by one worker, at most ``IN_FLIGHT_BATCHES`` full
messages' worth of bytes ahead of the stream (the stream is not read further meanwhile:
back-pressure reaches the peer). Whatever waits when ingest is free goes in one PublishStream
batch, so under load batches grow and a slow ingest round trip is paid once for many entries,
not once per peer message. Live pushes are batched the same way on the sending side: the next
batch is taken from the live feed only once the previous one is sent. Entries failing only on
a missing dependency are held (bounded by ``hold_items`` and ``hold_bytes``) and retried after
every batch that stored something.

It is over 500 lines: one runner (:func:`run_session`, with :class:`_Run`) carries out the
pure session's actions over a transport, and its parts share the run's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import grpc
import grpc.aio

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
    DriftTick,
    EntriesReceived,
    Event,
    Finish,
    HaveReceived,
    HeightsLoaded,
    IdleTimeout,
    Ingest,
    IngestResult,
    LiveDigest,
    LoadDigest,
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
    "PeerUnreachableError",
    "SessionIO",
    "SessionRecord",
    "Transport",
    "decode_message",
    "run_session",
]

log = logging.getLogger(__name__)

IN_FLIGHT_BATCHES: Final = 4


class _Budget:
    """Bytes of received entries not through ingest yet; the one taker waits while spent."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._freed = asyncio.Event()

    async def take(self, amount: int) -> int:
        """Wait until ``amount`` (at most the total) is free and take it; what was taken."""
        amount = min(amount, self.total)
        while self.free < amount:
            self._freed.clear()
            await self._freed.wait()
        self.free -= amount
        return amount

    def give(self, amount: int) -> None:
        """Return ``amount``."""
        self.free += amount
        self._freed.set()


def _digest(heights: dict[Log, int]) -> bytes:
    # Run in a thread: at a million logs this is seconds the event loop must not stall for.
    return log_heights_digest((pk, lid, seq) for (pk, lid), seq in heights.items())


def _size(items: tuple[ReceivedEntry, ...]) -> int:
    # Entry + operation, and a little for each item's framing in a PublishStream request.
    return sum(len(item.entry) + len(item.operation) + 16 for item in items)


class PeerUnreachableError(ConnectionError):
    """No connection to the peer's address could be made: the session never started."""


class Transport(Protocol):
    """One Sync stream, from one side.

    :meth:`send` and :meth:`receive` raise :class:`ConnectionError` when the stream broke, and
    :class:`PeerUnreachableError` when it could not be opened at all.
    """

    async def send(self, message: pb.SyncMessage) -> None:
        """Send a message to the peer."""
        ...

    async def receive(self) -> pb.SyncMessage | None:
        """The peer's next message; None when its side ended."""
        ...

    async def close_send(self) -> None:
        """End our side of the stream: we send nothing more (the peer reads its end)."""
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
        hold_bytes: Most bytes (entry + operation) held for a missing dependency.
        drift_interval: Seconds between two live drift checks (0: none).
        store_version: A number that changes whenever this node stores an entry (the event
            stream's last ``operations.ingested`` sequence): a drift check reuses the last
            digest while it stays the same, instead of reading every log height again.
        subscribe: Called on ``LoadHeights`` with subscription: returns the new entries stored
            from now on, in store order (live mode), started before the heights are read.
    """

    ingest: IngestClient
    idle_timeout: float = 30.0
    hold_items: int = 10_000
    hold_bytes: int = 16 * 1024 * 1024
    drift_interval: float = 0.0
    store_version: Callable[[], Awaitable[int]] | None = None
    subscribe: Callable[[], Awaitable[LiveFeed]] | None = None


@dataclass(eq=False)
class SessionRecord:
    """What is known about one session, for ``ListSessions`` and for tests.

    Attributes mirror ``pandanode.replication.v1.Session``; ``sent_kinds`` / ``received_kinds``
    and ``bytes_by_kind`` count messages and bytes per SyncMessage kind; ``held_peak`` and
    ``held_dropped`` are the hold buffer's (entries waiting for a missing dependency).
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
    held_peak: int = 0
    held_dropped: int = 0
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
        # Batches to ingest with the budget they hold; None: no more.
        self.ingest_queue: deque[tuple[tuple[ReceivedEntry, ...], int] | None] = deque()
        self.ingest_ready = asyncio.Event()
        self.budget = _Budget(IN_FLIGHT_BATCHES * io.ingest.max_message_bytes)
        # The budget each EntriesReceived event in the event queue holds, in order.
        self.entries_costs: deque[int] = deque()
        # Set when the last live batch is sent: the live feed waits for it (back-pressure).
        self.live_sent = asyncio.Event()
        self.live_sent.set()
        self.tasks: list[asyncio.Task[None]] = []
        self.live: LiveFeed | None = None
        self.hold = HoldBuffer(io.hold_items, io.hold_bytes)
        self.finish: Finish | None = None
        # Per log, the seq num of the last entry of this peer's that ingest stored when first
        # published (not on a retry of held entries): a link mismatch right after it is the
        # peer's fault, not a fork.
        self.peer_stored: dict[Log, int] = {}
        # (store version, digest, log count) of the last drift check.
        self.digest_cache: tuple[int, bytes, int] | None = None

    def spawn(self, work: Callable[[], Awaitable[None]], name: str) -> asyncio.Task[None]:
        async def guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except PeerUnreachableError as err:
                self.events.put_nowait(MessageInvalid("PEER_UNREACHABLE", str(err)))
            except ConnectionError as err:
                self.events.put_nowait(MessageInvalid("STREAM_BROKEN", f"{name}: {err}"))
            except grpc.aio.AioRpcError as err:
                self.events.put_nowait(
                    MessageInvalid("INGEST_UNAVAILABLE", f"{name}: ingest {err.code().name}")
                )
            except Exception as err:
                log.exception("replication session: %s failed", name)
                self.events.put_nowait(MessageInvalid("INTERNAL", f"{name}: {err}"))

        # A live session spawns a task per drift check: forget the finished ones.
        self.tasks = [task for task in self.tasks if not task.done()]
        task = asyncio.create_task(guarded(), name=name)
        self.tasks.append(task)
        return task

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
                    self.entries_costs.append(await self.budget.take(message.ByteSize()))
                self.events.put_nowait(event)
        finally:
            if read is not None:
                read.cancel()

    async def load_heights(self, action: LoadHeights) -> None:
        if action.subscribe and self.io.subscribe is not None:
            self.live = await self.io.subscribe()
        heights = await self.io.ingest.log_heights(action.target)
        snapshot = {log: seq for log, (seq, _) in heights.items()}
        digest = await asyncio.to_thread(_digest, snapshot)
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

    def queue_ingest(self, batch: tuple[tuple[ReceivedEntry, ...], int] | None) -> None:
        self.ingest_queue.append(batch)
        self.ingest_ready.set()

    def _next_ingest(self) -> tuple[tuple[ReceivedEntry, ...], int] | None:
        """The first waiting batch merged with those after it, as far as one request allows."""
        first = self.ingest_queue.popleft()
        if first is None:
            return None
        items, cost = first
        size = _size(items)
        max_items = self.state.config.max_batch_items
        max_bytes = self.io.ingest.max_message_bytes // 2
        merged = list(items)
        while self.ingest_queue:
            following = self.ingest_queue[0]
            if following is None:
                break
            more = _size(following[0])
            if len(merged) + len(following[0]) > max_items or size + more > max_bytes:
                break
            self.ingest_queue.popleft()
            merged.extend(following[0])
            size += more
            cost += following[1]
        return tuple(merged), cost

    async def ingest_loop(self) -> None:
        publisher = self.io.ingest.publisher()
        try:
            while True:
                while not self.ingest_queue:
                    self.ingest_ready.clear()
                    await self.ingest_ready.wait()
                batch = self._next_ingest()
                if batch is None:
                    return
                items, cost = batch
                try:
                    result = await self._ingest(publisher, items)
                finally:
                    self.budget.give(cost)
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
            # One batch at a time: while it is being sent, new entries gather in the feed and
            # go as one bigger batch next (and nothing piles up here when the peer is slow).
            await self.live_sent.wait()
            self.live_sent.clear()
            self.events.put_nowait(LocalStored(items))

    async def load_digest(self, action: LoadDigest) -> None:
        version = await self.io.store_version() if self.io.store_version is not None else None
        cached = self.digest_cache
        if version is not None and cached is not None and cached[0] == version:
            self.events.put_nowait(LiveDigest(cached[1], cached[2]))
            return
        heights = await self.io.ingest.log_heights(action.target)
        snapshot = {log: seq for log, (seq, _) in heights.items()}
        digest = await asyncio.to_thread(_digest, snapshot)
        if version is not None:
            # The version was read first: a later change makes the next check read again.
            self.digest_cache = (version, digest, len(snapshot))
        self.events.put_nowait(LiveDigest(digest, len(snapshot)))

    async def drift_timer(self) -> None:
        while True:
            await asyncio.sleep(self.io.drift_interval)
            self.events.put_nowait(DriftTick())

    async def perform(self, action: object) -> None:
        if isinstance(action, Send):
            await self.send(action.message)
        elif isinstance(action, LoadHeights):
            self.spawn(lambda: self.load_heights(action), "load-heights")
        elif isinstance(action, SendMissing):
            self.spawn(lambda: self.send_missing(action), "send-missing")
        elif isinstance(action, Ingest):
            self.queue_ingest((action.items, self.entries_costs.popleft()))
        elif isinstance(action, StartLive):
            if self.live is not None:
                self.spawn(self.live_loop, "live")
            if self.io.drift_interval > 0:
                self.spawn(self.drift_timer, "drift-timer")
        elif isinstance(action, LoadDigest):
            self.spawn(lambda: self.load_digest(action), "load-digest")
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
        record.held_peak = self.hold.peak
        record.held_dropped = self.hold.dropped

    async def run(self) -> SessionState:
        receive = self.spawn(self.receive_loop, "receive")
        ingest = self.spawn(self.ingest_loop, "ingest")
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
                if isinstance(event, EntriesReceived) and not any(
                    isinstance(action, Ingest) for action in actions
                ):
                    self.budget.give(self.entries_costs.popleft())  # refused: not ingested
                try:
                    for action in actions:
                        await self.perform(action)
                except PeerUnreachableError as err:
                    self.events.put_nowait(MessageInvalid("PEER_UNREACHABLE", str(err)))
                except ConnectionError as err:
                    self.events.put_nowait(MessageInvalid("STREAM_BROKEN", str(err)))
                finally:
                    if isinstance(event, LocalStored):
                        self.live_sent.set()
            if not self.finish.reason:
                # Completed: let the received entries reach ingest before ending.
                self.queue_ingest(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(ingest), self.io.idle_timeout)
                while not self.events.empty():
                    event = self.events.get_nowait()
                    if isinstance(event, IngestResult):
                        self.state, _ = step(self.state, event)
                self.update_record()
                # The peer may still be storing what we sent: tearing the stream down now
                # (cancelling our pending read) would cancel its side, and what it received
                # but had not stored would be lost until a later session. Close our side and
                # wait until the peer, done too, closes its own.
                with contextlib.suppress(Exception):
                    await self.transport.close_send()
                    await asyncio.wait_for(asyncio.shield(receive), self.io.idle_timeout)
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
