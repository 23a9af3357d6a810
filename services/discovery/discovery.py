"""The discovery use cases: probe, listen, keep the peer table, announce its changes.

Sources of peers:

* **bootstrap** — the ``bootstrap_peers`` addresses are probed every
  ``discovery_probe_interval`` seconds with ``GetNodeInfo`` (deadline
  ``discovery_probe_timeout``); a node appears in the table once it answers.
* **lan** — UDP multicast announcements (:mod:`.lan`). An unknown announcer is probed at once
  and joins once it answers; a known one is refreshed by every announcement.
* **exchange** — with ``peer_exchange``, every answering peer is also asked for its reachable
  peers (``ListPeers``); unknown ones are probed in the next round.

Every known peer is probed each round too: an answer refreshes it, silence marks it
unreachable. A peer neither answering nor announcing itself for ``peer_ttl`` seconds is lost.
Entering and leaving the table are announced on JetStream as ``peer.discovered`` and
``peer.lost``, in order, retried until NATS takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import grpc
import grpc.aio

from pandanode.core.hexid import is_public_key_hex
from pandanode.core.keypair import KeyPair
from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.discovery.v1 import discovery_pb2_grpc
from pandanode.services.runtime import metrics
from pandanode.services.runtime.bus import Bus
from pandanode.services.runtime.events import peer_discovered, peer_lost
from pandanode.services.runtime.peers import PeerDialer, advertised, split_scheme
from pandanode.services.runtime.settings import Settings

from .convert import peer_to_pb
from .lan import LanTransport, lan_interface_for
from .table import (
    Peer,
    PeerEvent,
    PeerSource,
    PeerTable,
    Sighting,
    expire,
    mark_unreachable,
    observe,
)

if TYPE_CHECKING:
    from pandanode.discovery.v1.discovery_pb2_grpc import DiscoveryServiceAsyncStub

__all__ = ["Discovery", "NodeInfo", "probe"]

log = logging.getLogger(__name__)

_MAX_CANDIDATES: Final = 64


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node and where it answers.

    Attributes:
        node_id: Its node id.
        address: Its gRPC ``host:port``.
    """

    node_id: str
    address: str


async def probe(
    address: str, timeout: float, *, exchange: bool = False, dialer: PeerDialer | None = None
) -> tuple[NodeInfo | None, tuple[NodeInfo, ...]]:
    """Ask the node at ``address`` who it is (and, with ``exchange``, whom it knows).

    Args:
        address: The gRPC ``host:port`` to dial.
        timeout: Deadline of each call, seconds.
        exchange: Also ask for its reachable peers (``ListPeers``).
        dialer: How to dial ``address`` (``tls://`` addresses over TLS); None: plaintext.

    Returns:
        The node at ``address`` (None when it did not answer, or answered nonsense) and the
        peers it named (empty without ``exchange``).
    """
    channel_of = dialer.channel if dialer is not None else grpc.aio.insecure_channel
    async with channel_of(address) as channel:
        stub: DiscoveryServiceAsyncStub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        try:
            answer = await stub.GetNodeInfo(pb.GetNodeInfoRequest(), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            log.debug("probe of %s failed: %s", address, err.code().name)
            return None, ()
        if not is_public_key_hex(answer.node_id, lowercase=True):
            log.debug("probe of %s: %r is not a node id", address, answer.node_id[:80])
            return None, ()
        named: tuple[NodeInfo, ...] = ()
        if exchange:
            named = await _listed_peers(stub, address, timeout)
        return NodeInfo(answer.node_id, address), named


EXCHANGE_PAGES: Final = 10
"""Most ListPeers pages (of up to 100 peers) peer exchange reads from one peer per probe."""


async def _listed_peers(
    stub: DiscoveryServiceAsyncStub, address: str, timeout: float
) -> tuple[NodeInfo, ...]:
    """The reachable peers the node at ``address`` lists (the first pages; none on failure)."""
    named: list[NodeInfo] = []
    token = ""
    for _ in range(EXCHANGE_PAGES):
        try:
            listed = await stub.ListPeers(pb.ListPeersRequest(page_token=token), timeout=timeout)
        except grpc.aio.AioRpcError as err:
            log.debug("ListPeers of %s failed: %s", address, err.code().name)
            break
        named += [
            NodeInfo(peer.node_id, peer.addresses[0])
            for peer in listed.peers
            if peer.reachable and peer.addresses and is_public_key_hex(peer.node_id, lowercase=True)
        ]
        token = listed.next_page_token
        if not token:
            break
    return tuple(named)


class Discovery:
    """The peer table of one node and the tasks that keep it.

    Args:
        settings: The discovery settings (``bootstrap_peers``, intervals, ``peer_ttl``, LAN).
        bus: Where ``peer.discovered`` / ``peer.lost`` go.
        node_key: The node key; its public key is the node id.
        clock: Wall-clock time in seconds since the epoch (``first_seen``, ``last_seen``).

    Attributes:
        node_id: This node's id.
        address: The address this node advertises (set by :meth:`start`).
        table: The current peer table.
    """

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        node_key: KeyPair,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.node_id = node_key.public_key()
        self.address = ""
        self.table = PeerTable()
        self._bus = bus
        self._clock = clock
        self._dialer = PeerDialer(settings)
        self._events: asyncio.Queue[PeerEvent] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._candidates: dict[str, PeerSource] = {}
        self._own_addresses: set[str] = set()
        self._lan: LanTransport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._publisher: asyncio.Task[None] | None = None

    @property
    def dropped_datagrams(self) -> int:
        """How many malformed LAN datagrams were dropped."""
        return 0 if self._lan is None else self._lan.dropped

    @property
    def lan_running(self) -> bool:
        """Whether LAN discovery is announcing and listening."""
        return self._lan is not None

    def info(self) -> NodeInfo:
        """This node's id and advertised address."""
        return NodeInfo(self.node_id, self.address)

    def peers(self) -> list[Peer]:
        """The known peers, ordered by node id."""
        return list(self.table)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, bound_address: str) -> None:
        """Start announcing, listening and probing.

        Args:
            bound_address: The gRPC address the node is bound to; advertised unless the
                ``advertise_address`` setting says otherwise.
        """
        self.address = advertised(self.settings.advertise_address or bound_address, self.settings)
        self._own_addresses = {self.address, bound_address, split_scheme(self.address)[1]}
        if self.settings.lan_discovery:
            interface = lan_interface_for(self.address, self.settings.lan_interface)
            lan = LanTransport(
                self.settings.lan_group, self.settings.lan_port, interface, self._on_announcement
            )
            try:
                await lan.start()
            except OSError as err:
                log.warning(
                    "LAN discovery is off: cannot use multicast group %s:%d on %s: %s",
                    self.settings.lan_group,
                    self.settings.lan_port,
                    interface,
                    err,
                )
            else:
                self._lan = lan
                self._tasks.append(asyncio.create_task(self._announce(), name="discovery-lan"))
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="discovery-probe"))
        self._publisher = asyncio.create_task(self._publish_loop(), name="discovery-events")
        log.info(
            "discovery: node id %s, advertising %s, %d bootstrap peer(s), LAN %s",
            self.node_id,
            self.address,
            len(self.settings.bootstrap_addresses),
            "on" if self._lan is not None else "off",
        )

    async def stop(self) -> None:
        """Stop probing and announcing; publish the pending events (briefly), then stop."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._lan is not None:
            self._lan.close()
            self._lan = None
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events.join(), timeout=5.0)
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher

    # -- sources --------------------------------------------------------------------------------

    def _on_announcement(self, node_id: str, address: str) -> None:
        if node_id == self.node_id:
            return
        if node_id in self.table:
            self._apply(
                *observe(self.table, Sighting(node_id, address, PeerSource.LAN), self._clock())
            )
        elif address not in self._own_addresses and len(self._candidates) < _MAX_CANDIDATES:
            self._candidates.setdefault(address, PeerSource.LAN)
            self._wake.set()

    async def _announce(self) -> None:
        while True:
            if self._lan is not None:
                self._lan.announce(self.node_id, self.address)
            await asyncio.sleep(self.settings.lan_announce_interval)  # the announce interval

    async def _probe_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.probe_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discovery round failed")
            with contextlib.suppress(TimeoutError):  # next round: the interval, or woken early
                await asyncio.wait_for(
                    self._wake.wait(), timeout=self.settings.discovery_probe_interval
                )

    async def probe_round(self) -> None:
        """Probe every bootstrap address, known peer and candidate once; then expire peers."""
        targets: dict[str, PeerSource] = {
            address: PeerSource.BOOTSTRAP
            for address in self.settings.bootstrap_addresses
            if address not in self._own_addresses
        }
        probed: dict[str, list[str]] = {}  # address → known peers expected to answer there
        for peer in self.table:
            targets.setdefault(peer.addresses[0], peer.source)
            probed.setdefault(peer.addresses[0], []).append(peer.node_id)
        for address, source in self._candidates.items():
            if address not in self._own_addresses:
                targets.setdefault(address, source)
        self._candidates.clear()
        timeout = self.settings.discovery_probe_timeout
        exchange = self.settings.peer_exchange
        results = await asyncio.gather(
            *(
                probe(address, timeout, exchange=exchange, dialer=self._dialer)
                for address in targets
            )
        )
        now = self._clock()
        for (address, source), (answer, named) in zip(targets.items(), results, strict=True):
            for node_id in probed.get(address, ()):
                if answer is None or answer.node_id != node_id:
                    self.table = mark_unreachable(self.table, node_id)
            if answer is None:
                continue
            if answer.node_id == self.node_id:
                self._own_addresses.add(address)  # we are on our own bootstrap list
                continue
            self._apply(*observe(self.table, Sighting(answer.node_id, address, source, True), now))
            for other in named:
                if (
                    other.node_id != self.node_id
                    and other.node_id not in self.table
                    and other.address not in self._own_addresses
                    and len(self._candidates) < _MAX_CANDIDATES
                ):
                    self._candidates.setdefault(other.address, PeerSource.EXCHANGE)
        self._apply(*expire(self.table, self._clock(), self.settings.peer_ttl))

    # -- events ---------------------------------------------------------------------------------

    def _apply(self, table: PeerTable, events: tuple[PeerEvent, ...]) -> None:
        self.table = table
        metrics.peers.set(len(table))
        metrics.peers_reachable.set(sum(1 for peer in table.peers.values() if peer.reachable))
        for event in events:
            peer = event.peer
            log.info(
                "peer %s %s (%s, %s)",
                peer.node_id,
                event.name,
                peer.source,
                peer.addresses[0],
                extra={"peer": peer.node_id, "address": peer.addresses[0]},
            )
            self._events.put_nowait(event)

    async def _publish_loop(self) -> None:
        while True:
            event = await self._events.get()
            backoff = 0.05
            while True:
                try:
                    await self._publish(event)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("announcing peer.%s failed, retrying: %s", event.name, err)
                    await asyncio.sleep(backoff)  # back off before retrying NATS
                    backoff = min(backoff * 2, 2.0)
            self._events.task_done()

    async def _publish(self, event: PeerEvent) -> None:
        peer = event.peer
        make = peer_discovered if event.name == "discovered" else peer_lost
        await self._bus.publish([make(peer_to_pb(peer), self.node_id, peer.first_seen)])
