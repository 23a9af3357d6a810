"""Peer table values to protobuf messages (the API and the events share them)."""

from __future__ import annotations

from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from pandanode.discovery.v1 import discovery_pb2 as pb

from .table import Peer, PeerSource

__all__ = ["peer_to_pb", "source_to_pb"]

_SOURCES: Final = {
    PeerSource.BOOTSTRAP: pb.PEER_SOURCE_BOOTSTRAP,
    PeerSource.LAN: pb.PEER_SOURCE_LAN,
    PeerSource.EXCHANGE: pb.PEER_SOURCE_EXCHANGE,
}


def source_to_pb(source: PeerSource) -> pb.PeerSource.ValueType:
    """The protobuf enum value of a peer source."""
    return _SOURCES[source]


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1_000_000_000))
    return stamp


def peer_to_pb(peer: Peer) -> pb.Peer:
    """A peer as the ``pandanode.discovery.v1.Peer`` message."""
    return pb.Peer(
        node_id=peer.node_id,
        addresses=list(peer.addresses),
        source=source_to_pb(peer.source),
        first_seen=_timestamp(peer.first_seen),
        last_seen=_timestamp(peer.last_seen),
        reachable=peer.reachable,
    )
