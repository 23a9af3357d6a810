"""The peer table as a value: pure functions take a table and return the next one and events.

Nothing here does I/O or reads a clock; the discovery service passes ``now`` (seconds since the
epoch) and owns the one current table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "MAX_ADDRESSES",
    "Peer",
    "PeerEvent",
    "PeerSource",
    "PeerTable",
    "Sighting",
    "expire",
    "mark_unreachable",
    "observe",
]

MAX_ADDRESSES: Final = 4
"""Most addresses kept per peer (the most recent ones)."""


class PeerSource(StrEnum):
    """How a peer was found first."""

    BOOTSTRAP = "bootstrap"
    LAN = "lan"
    EXCHANGE = "exchange"


@dataclass(frozen=True, slots=True)
class Peer:
    """One entry of the peer table.

    Attributes:
        node_id: The peer's node id (public key of its node key, hex).
        addresses: Where it was seen, most recent first.
        source: How it was found.
        first_seen: When this sighting began (it was found, or found again after being lost).
        last_seen: When it last answered a probe or announced itself.
        reachable: Whether it answered the last probe.
    """

    node_id: str
    addresses: tuple[str, ...]
    source: PeerSource
    first_seen: float
    last_seen: float
    reachable: bool


@dataclass(frozen=True, slots=True)
class Sighting:
    """Evidence that a node is alive at an address.

    Attributes:
        node_id: The node id it gave.
        address: Where it was seen.
        source: Where the address came from.
        reachable: True when it answered a probe at ``address``; None when it only announced
            itself (reachability unchanged, unknown for a new peer).
    """

    node_id: str
    address: str
    source: PeerSource
    reachable: bool | None = None


@dataclass(frozen=True, slots=True)
class PeerEvent:
    """A change worth announcing: a peer entered the table or left it.

    Attributes:
        name: ``discovered`` or ``lost``.
        peer: The peer as it entered (or as it was when it left).
    """

    name: Literal["discovered", "lost"]
    peer: Peer


def _frozen(peers: Mapping[str, Peer]) -> Mapping[str, Peer]:
    return MappingProxyType(dict(peers))


@dataclass(frozen=True, slots=True)
class PeerTable:
    """The peers a node knows, by node id (read-only; the functions below make new tables).

    Attributes:
        peers: Node id → :class:`Peer`.
    """

    peers: Mapping[str, Peer] = field(default_factory=lambda: _frozen({}))

    def get(self, node_id: str) -> Peer | None:
        """The peer with this node id, if known."""
        return self.peers.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.peers

    def __len__(self) -> int:
        return len(self.peers)

    def __iter__(self) -> Iterator[Peer]:
        """The peers, ordered by node id."""
        return iter(sorted(self.peers.values(), key=lambda peer: peer.node_id))


def observe(
    table: PeerTable, sighting: Sighting, now: float
) -> tuple[PeerTable, tuple[PeerEvent, ...]]:
    """Record a sighting.

    A new node enters the table (``discovered``); a known one gets ``now`` as ``last_seen``, the
    address in front of its addresses and, from a probe, its reachability. Its source stays how
    it was found first.

    Returns:
        The new table and the events (one ``discovered``, or none).
    """
    known = table.get(sighting.node_id)
    if known is None:
        peer = Peer(
            node_id=sighting.node_id,
            addresses=(sighting.address,),
            source=sighting.source,
            first_seen=now,
            last_seen=now,
            reachable=bool(sighting.reachable),
        )
        events: tuple[PeerEvent, ...] = (PeerEvent("discovered", peer),)
    else:
        others = tuple(address for address in known.addresses if address != sighting.address)
        peer = replace(
            known,
            addresses=(sighting.address, *others)[:MAX_ADDRESSES],
            last_seen=max(known.last_seen, now),
            reachable=known.reachable if sighting.reachable is None else sighting.reachable,
        )
        events = ()
    return PeerTable(_frozen({**table.peers, peer.node_id: peer})), events


def mark_unreachable(table: PeerTable, node_id: str) -> PeerTable:
    """Record that a known peer did not answer a probe (``last_seen`` stays, so it can expire)."""
    known = table.get(node_id)
    if known is None or not known.reachable:
        return table
    return PeerTable(_frozen({**table.peers, node_id: replace(known, reachable=False)}))


def expire(table: PeerTable, now: float, ttl: float) -> tuple[PeerTable, tuple[PeerEvent, ...]]:
    """Drop every peer not seen for more than ``ttl`` seconds.

    Returns:
        The new table and a ``lost`` event per dropped peer (ordered by node id).
    """
    lost = tuple(PeerEvent("lost", peer) for peer in table if now - peer.last_seen > ttl)
    if not lost:
        return table, ()
    gone = {event.peer.node_id for event in lost}
    kept = {node_id: peer for node_id, peer in table.peers.items() if node_id not in gone}
    return PeerTable(_frozen(kept)), lost
