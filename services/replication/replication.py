"""The replication use cases: whom to sync with, sessions, bad peers, live feeds.

* **Who** — every peer in discovery's table, learned from the ``peer.discovered`` and
  ``peer.lost`` events (both replayed from the stream's start, the later of the two per node
  wins). Each present peer is dialed (live) unless a session with it runs, it is backed off,
  banned, blocked, or this node itself. A session that ends is followed by a redial after
  ``replication_interval`` (completed) or a back-off of 1 s doubling to 5 min (failed).
* **Limits** — at most ``max_sync_sessions`` sessions, whoever dialed: a full node dials
  nobody and refuses an incoming session (``RESOURCE_EXHAUSTED``, ``TOO_MANY_SESSIONS``);
  being refused so backs the dialer off but never counts towards a ban.
* **One session per peer** — claimed when the peer's Announce names it; of two crossed dials
  the one dialed by the smaller node id wins, the other ends with ``DUPLICATE_SESSION``.
* **Bad peers** — a session failing by the peer's fault counts; ``peer_ban_after`` of them
  within 10 minutes refuse the peer both ways (``PERMISSION_DENIED``, ``PEER_REFUSED``) for
  ``peer_ban_seconds``. ``block_peer_ids`` / ``allow_peer_ids`` refuse for good.
* **Live** — a session's live feed is an ephemeral ordered consumer of
  ``operations.ingested``, opened before its heights snapshot is read. Every
  ``replication_interval`` both sides compare digests; a drift ends the session
  (``LIVE_DRIFT``, not counted) and the peer is redialed at once.

It stays one module: whom to dial, the sessions, the bans and the live feeds all change the
one state of :class:`Replication` (its peer records and running sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio

from pandanode.core.errors import SchemaIdError
from pandanode.core.keypair import KeyPair
from pandanode.core.schema_id import parse_schema_id
from pandanode.events.v1.events_pb2 import PeerDiscovered, PeerLost
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.runtime.bus import Bus, Consumer
from pandanode.services.runtime.dial import Dial, insecure_dial
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    PEER_DISCOVERED,
    PEER_LOST,
    EventKind,
    parse_operations_ingested,
)
from pandanode.services.runtime.peers import PeerDialer
from pandanode.services.runtime.settings import Settings

from .driver import PeerUnreachableError, SessionIO, SessionRecord, Transport, run_session
from .ingest_client import IngestClient
from .session import ANY_SCHEMA, Phase, ReceivedEntry, SessionConfig

if TYPE_CHECKING:
    from pandanode.replication.v1.replication_pb2_grpc import ReplicationServiceAsyncStub

__all__ = [
    "FIRST_BACKOFF",
    "MAX_BACKOFF",
    "NOT_COUNTED",
    "PeerRecord",
    "Replication",
    "SessionsFullError",
    "replicated_schema_ids",
]

log = logging.getLogger(__name__)

_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]
FIRST_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 300.0
FAILURE_WINDOW: Final = 600.0
# Most ended sessions ListSessions remembers.
KEEP_ENDED: Final = 100
# Session ends that are not the peer's fault: backed off, never counted towards a ban.
NOT_COUNTED: Final = frozenset(
    {
        "DUPLICATE_SESSION",
        "INGEST_UNAVAILABLE",
        "INTERNAL",
        "LIVE_DRIFT",
        "SELF_SYNC",
        "PEER_CLOSED",
        "PEER_UNREACHABLE",
        "STREAM_BROKEN",
        "PEER_REFUSED",
        "TOO_MANY_SESSIONS",
        "UNEXPECTED_NODE_ID",
        "STOPPING",
    }
)


class SessionsFullError(Exception):
    """``max_sync_sessions`` sessions run already."""


@dataclass
class PeerRecord:
    """What replication knows about one peer.

    Attributes:
        node_id: Its node id.
        address: Where discovery saw it.
        discovered: Stream sequence of its last ``peer.discovered`` (0: none).
        lost: Stream sequence of its last ``peer.lost`` (0: none).
        failures: When its sessions failed by its fault (within the last 10 minutes).
        consecutive: Failed sessions in a row (the back-off's exponent).
        retry_after: Not dialed before this time.
        banned_until: Refused both ways until this time.
        last_error_reason: Why its last session failed.
    """

    node_id: str
    address: str = ""
    discovered: int = 0
    lost: int = 0
    failures: list[float] = field(default_factory=list)
    consecutive: int = 0
    retry_after: float = 0.0
    banned_until: float = 0.0
    last_error_reason: str = ""

    @property
    def present(self) -> bool:
        """In discovery's table now."""
        return self.discovered > self.lost


@dataclass(eq=False)
class _Running:
    record: SessionRecord
    dialer: str  # the node id of the side that dialed
    stop: Callable[[str], None] | None = None


class _LiveFeed:
    """New entries from ``operations.ingested``, from when it was opened."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._consumer.close()

    async def batches(self) -> AsyncIterator[tuple[ReceivedEntry, ...]]:
        try:
            while True:
                try:
                    deliveries = await self._consumer.take(256, 5.0)
                except TimeoutError:
                    continue
                items: list[ReceivedEntry] = []
                for delivery in deliveries:
                    try:
                        event = parse_operations_ingested(delivery.payload)
                    except Exception:
                        continue
                    items.extend(
                        ReceivedEntry(
                            public_key=op.public_key,
                            log_id=op.log_id,
                            seq_num=op.seq_num,
                            schema_id=op.schema_id,
                            entry=op.entry,
                            operation=op.operation,
                        )
                        for op in event.operations
                    )
                if deliveries:
                    await self._consumer.ack(deliveries[-1])
                if items:
                    yield tuple(items)
        finally:
            await self.close()


class _CallTransport:
    """The dialer's side of a Sync call."""

    def __init__(self, call: grpc.aio.StreamStreamCall[pb.SyncMessage, pb.SyncMessage]) -> None:
        self._call = call

    async def send(self, message: pb.SyncMessage) -> None:
        try:
            await self._call.write(message)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as err:
            raise ConnectionError(f"the stream ended: {err}") from None

    async def receive(self) -> pb.SyncMessage | None:
        message = await self._call.read()
        if message is _EOF:
            return None
        assert isinstance(message, pb.SyncMessage)
        return message

    async def close_send(self) -> None:
        await self._call.done_writing()


class _UnreachableTransport:
    """The dialer's side of a Sync call that could not be made: no connection to the peer."""

    def __init__(self, address: str) -> None:
        self._address = address

    async def send(self, message: pb.SyncMessage) -> None:
        raise PeerUnreachableError(f"no connection to {self._address}")

    async def receive(self) -> pb.SyncMessage | None:
        raise PeerUnreachableError(f"no connection to {self._address}")

    async def close_send(self) -> None:
        return None


async def _connects(channel: grpc.aio.Channel, timeout: float) -> bool:
    """Whether ``channel`` connects within ``timeout`` seconds.

    False once gRPC gave up its first attempt (TRANSIENT_FAILURE: refused, no route, unknown
    host, failed TLS handshake): the call would fail the same way, but as a broken stream.
    """
    deadline = time.monotonic() + timeout
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or state in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        ):
            return False
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            return False
        state = channel.get_state(try_to_connect=True)
    return True


def replicated_schema_ids(
    replication_schema_ids: str, supported: frozenset[str] | None
) -> tuple[str, ...]:
    """The schema ids we replicate (and announce): the setting, within the node's allow list.

    With an allow list (``supported``, see :attr:`Settings.supported_schemas`), ``*`` becomes
    the list itself and ids outside it are dropped: a peer is never asked for entries ingest
    would refuse (which would fail the session and count against the peer).

    Args:
        replication_schema_ids: The setting (comma-separated ids; ``*``: any; empty: none).
        supported: The schema ids the node accepts; None: any.
    """
    wanted = _ids(replication_schema_ids)
    if supported is not None:
        if ANY_SCHEMA in wanted:
            wanted = supported
        else:
            wanted = frozenset(i for i in wanted if _canonical(i) in supported)
    return tuple(sorted(wanted))


def _canonical(schema_id: str) -> str:
    try:
        return str(parse_schema_id(schema_id))
    except SchemaIdError:
        return schema_id


def _ids(text: str) -> frozenset[str]:
    return frozenset(item.strip() for item in text.split(",") if item.strip())


class Replication:
    """This node's replication: its sessions and the peers it knows.

    Args:
        settings: The replication settings.
        bus: The event stream (peer events, ``operations.ingested``).
        node_key: The node key (our node id is its public key).
        dial: How to dial ingest (mutual TLS between a deployment's services).
    """

    def __init__(
        self, settings: Settings, bus: Bus, node_key: KeyPair, *, dial: Dial = insecure_dial
    ) -> None:
        self.settings = settings
        self._dialer = PeerDialer(settings)
        self._dial_ingest = dial
        self.bus = bus
        self.node_id = node_key.public_key()
        self.schema_ids = replicated_schema_ids(
            settings.replication_schema_ids, settings.supported_schemas
        )
        self.allow = _ids(settings.allow_peer_ids)
        self.block = _ids(settings.block_peer_ids)
        self.peers: dict[str, PeerRecord] = {}
        self.running: dict[str, _Running] = {}
        self.ended: list[SessionRecord] = []
        self.unclaimed: set[SessionRecord] = set()  # running, peer not known yet
        self.self_addresses: set[str] = set()
        self.ingest: IngestClient | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._dials: set[asyncio.Task[SessionRecord]] = set()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, own_address: str) -> None:
        """Connect to ingest, follow discovery's peer events, start dialing."""
        self.self_addresses.add(own_address)
        if self.settings.advertise_address:
            self.self_addresses.add(self.settings.advertise_address)
        address = self.settings.ingest_address or own_address
        self.ingest = IngestClient(address, self.settings.max_message_bytes, self._dial_ingest)
        for kind in (PEER_DISCOVERED, PEER_LOST):
            consumer = await self.bus.consume(kind, start_sequence=1, max_pending=1024)
            self._tasks.append(asyncio.create_task(self._follow(kind, consumer), name=kind.name))
        self._tasks.append(asyncio.create_task(self._dial_loop(), name="replication-dial"))

    @property
    def healthy(self) -> bool:
        """Every background task runs."""
        return bool(self._tasks) and all(not task.done() for task in self._tasks)

    async def stop(self) -> None:
        """End every session and background task."""
        for running in list(self.running.values()):
            if running.stop is not None:
                running.stop("STOPPING")
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._dials]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        if self.ingest is not None:
            await self.ingest.close()
            self.ingest = None

    # -- peers ------------------------------------------------------------------------------

    def _peer(self, node_id: str) -> PeerRecord:
        peer = self.peers.get(node_id)
        if peer is None:
            peer = self.peers[node_id] = PeerRecord(node_id)
        return peer

    async def _follow(self, kind: EventKind, consumer: Consumer) -> None:
        try:
            while True:
                try:
                    deliveries = await consumer.take(256, 5.0)
                except TimeoutError:
                    continue
                for delivery in deliveries:
                    event: PeerDiscovered | PeerLost = (
                        PeerDiscovered() if kind is PEER_DISCOVERED else PeerLost()
                    )
                    try:
                        event.ParseFromString(delivery.payload)
                    except Exception:
                        continue
                    node_id = event.peer.node_id
                    if not node_id or node_id == self.node_id:
                        continue
                    peer = self._peer(node_id)
                    if kind is PEER_DISCOVERED:
                        peer.discovered = max(peer.discovered, delivery.sequence)
                        if event.peer.addresses:
                            peer.address = event.peer.addresses[0]
                    else:
                        peer.lost = max(peer.lost, delivery.sequence)
                        running = self.running.get(node_id)
                        if running is not None and running.stop is not None and not peer.present:
                            running.stop("PEER_LOST")
                if deliveries:
                    await consumer.ack(deliveries[-1])
                    self._wake.set()
        finally:
            with contextlib.suppress(Exception):
                await consumer.close()

    def refused(self, node_id: str, now: float | None = None) -> bool:
        """Whether ``node_id`` is blocked, not allowed, or banned now."""
        if node_id in self.block or (ANY_SCHEMA not in self.allow and node_id not in self.allow):
            return True
        peer = self.peers.get(node_id)
        return peer is not None and peer.banned_until > (now or time.time())

    @property
    def session_count(self) -> int:
        """Sessions running now, those being dialed or not yet announced included."""
        return len(self.running) + len(self.unclaimed)

    @property
    def full(self) -> bool:
        """``max_sync_sessions`` sessions run: no dial, and an incoming one is refused."""
        return self.session_count >= self.settings.max_sync_sessions

    def _due(self, peer: PeerRecord, now: float) -> bool:
        return (
            peer.present
            and bool(peer.address)
            and peer.node_id != self.node_id
            and peer.address not in self.self_addresses
            and peer.node_id not in self.running
            and peer.retry_after <= now
            and not self.refused(peer.node_id, now)
            and not self.full
        )

    def dial_due(self, now: float | None = None) -> int:
        """Dial (live) every peer due now, up to ``max_sync_sessions``; how many were dialed."""
        now = time.time() if now is None else now
        dialed = 0
        for peer in list(self.peers.values()):
            if self._due(peer, now):
                peer.retry_after = now + self.settings.replication_interval
                # Counted from now, not from when the dial gets going: a pass dialing several
                # peers stops at the limit.
                record = SessionRecord(initiator=True, address=peer.address, node_id=peer.node_id)
                self.unclaimed.add(record)
                task = asyncio.create_task(self._dial(record, live=True), name="dial")
                self._dials.add(task)
                task.add_done_callback(self._dials.discard)
                dialed += 1
        return dialed

    async def _dial_loop(self) -> None:
        # A session needs ingest: one dialed before it serves fails (INGEST_UNAVAILABLE).
        assert self.ingest is not None
        await self.ingest.wait_serving()
        while True:
            self.dial_due()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)

    # -- sessions ---------------------------------------------------------------------------

    def _config(self, *, live: bool, expected: str = "") -> SessionConfig:
        return SessionConfig(
            node_id=self.node_id,
            schema_ids=self.schema_ids,
            live=live,
            max_have_logs=self.settings.max_have_logs,
            max_batch_items=self.settings.max_batch_items,
            expected_node_id=expected,
        )

    async def _subscribe(self) -> _LiveFeed:
        start = await self.bus.last_sequence(OPERATIONS_INGESTED) + 1
        consumer = await self.bus.consume(OPERATIONS_INGESTED, start_sequence=start)
        return _LiveFeed(consumer)

    async def _store_version(self) -> int:
        return await self.bus.last_sequence(OPERATIONS_INGESTED)

    def _io(self) -> SessionIO:
        assert self.ingest is not None, "replication is not started"
        return SessionIO(
            ingest=self.ingest,
            idle_timeout=self.settings.sync_idle_timeout,
            hold_items=self.settings.replication_hold_items,
            hold_bytes=self.settings.replication_hold_bytes,
            drift_interval=self.settings.replication_interval,
            store_version=self._store_version,
            subscribe=self._subscribe,
        )

    def _claim(self, record: SessionRecord, node_id: str) -> str:
        """Register ``record`` as the session with ``node_id``; a reason to refuse it, or ""."""
        if self.refused(node_id):
            return "PEER_REFUSED"
        dialer = self.node_id if record.initiator else node_id
        existing = self.running.get(node_id)
        if existing is not None and existing.record is not record:
            winner = min(self.node_id, node_id)
            if existing.dialer == winner and dialer != winner:
                return "DUPLICATE_SESSION"
            if existing.stop is not None:
                existing.stop("DUPLICATE_SESSION")
        self.unclaimed.discard(record)
        self.running[node_id] = _Running(record, dialer, record.stop)
        if not record.address:
            peer = self.peers.get(node_id)
            record.address = peer.address if peer is not None else ""
        return ""

    async def _run(
        self, config: SessionConfig, transport: Transport, record: SessionRecord
    ) -> SessionRecord:
        self.unclaimed.add(record)
        try:
            state = await run_session(
                config,
                transport,
                self._io(),
                record,
                on_announce=lambda node_id: self._claim(record, node_id),
            )
        finally:
            self.unclaimed.discard(record)
            running = self.running.get(record.node_id)
            if running is not None and running.record is record:
                del self.running[record.node_id]
            if record.ended is None:
                record.ended = time.time()
            self.ended.insert(0, record)
            del self.ended[KEEP_ENDED:]
            self._wake.set()
        self._account(record, state.reason)
        return record

    def _account(self, record: SessionRecord, reason: str) -> None:
        node_id = record.node_id
        if reason == "SELF_SYNC" and record.address:
            self.self_addresses.add(record.address)
        if not node_id or node_id == self.node_id:
            return
        peer = self._peer(node_id)
        now = time.time()
        if not reason:
            peer.consecutive = 0
            peer.retry_after = now + self.settings.replication_interval
            return
        peer.last_error_reason = reason
        if reason == "DUPLICATE_SESSION":
            return
        if reason == "LIVE_DRIFT":
            # Not a failure: redial at once, the new session's catch-up heals the drift.
            peer.retry_after = now
            return
        peer.consecutive += 1
        backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (peer.consecutive - 1))
        peer.retry_after = now + backoff
        if reason in NOT_COUNTED or reason.startswith("PEER_ENDED_") or reason == "PEER_LOST":
            return
        peer.failures = [t for t in peer.failures if t > now - FAILURE_WINDOW] + [now]
        log.warning("replication: session with %s failed: %s", node_id, reason)
        if len(peer.failures) >= self.settings.peer_ban_after:
            peer.banned_until = now + self.settings.peer_ban_seconds
            log.warning(
                "replication: %s failed %d sessions; refused for %.0f s",
                node_id,
                len(peer.failures),
                self.settings.peer_ban_seconds,
            )

    async def accept(self, transport: Transport, address: str = "") -> SessionRecord:
        """Run a session a peer dialed (the ``Sync`` servicer).

        Raises:
            SessionsFullError: ``max_sync_sessions`` run already (not held against the peer:
                it is not known yet, and a busy node is not its fault).
        """
        if self.full:
            raise SessionsFullError(f"{self.settings.max_sync_sessions} sessions run already")
        record = SessionRecord(initiator=False, address=address)
        return await self._run(self._config(live=True), transport, record)

    async def _dial(self, record: SessionRecord, *, live: bool) -> SessionRecord:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
        ]
        try:
            async with self._dialer.channel(record.address, options) as channel:
                config = self._config(live=live, expected=record.node_id)
                if not await _connects(channel, self.settings.sync_idle_timeout):
                    # Failed as PEER_UNREACHABLE (not STREAM_BROKEN), backed off as any failure.
                    await self._run(config, _UnreachableTransport(record.address), record)
                    return record
                stub: ReplicationServiceAsyncStub = replication_pb2_grpc.ReplicationServiceStub(
                    channel
                )
                call = stub.Sync()  # type: ignore[call-arg]
                try:
                    await self._run(config, _CallTransport(call), record)
                    return record
                finally:
                    call.cancel()
        finally:
            self.unclaimed.discard(record)

    async def sync_with(self, address: str) -> SessionRecord:
        """One catch-up session (not live) with the node at ``address``, run to its end.

        When ``max_sync_sessions`` run already, nothing is dialed: the record answered has
        failed with ``TOO_MANY_SESSIONS``.
        """
        record = SessionRecord(initiator=True, address=address)
        if self.full:
            record.phase = Phase.FAILED
            record.error_reason = "TOO_MANY_SESSIONS"
            record.ended = time.time()
            return record
        self.unclaimed.add(record)
        return await self._dial(record, live=False)

    def sessions(self) -> list[SessionRecord]:
        """Running sessions, then ended ones (newest first)."""
        running = [r.record for r in self.running.values()] + list(self.unclaimed)
        return running + self.ended

    def troubled_peers(self) -> list[PeerRecord]:
        """Peers backed off after a failure, banned or blocked."""
        now = time.time()
        return [
            peer
            for peer in sorted(self.peers.values(), key=lambda p: p.node_id)
            if peer.banned_until > now
            or (peer.consecutive and peer.retry_after > now)
            or self.refused(peer.node_id, now)
        ]
