"""Helpers of the discovery tests: fast settings, nodes, gRPC stubs, the peer events."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import nats
from nats.js.api import DeliverPolicy

from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.discovery.v1 import discovery_pb2_grpc
from pandanode.events.v1.events_pb2 import PeerDiscovered, PeerLost
from pandanode.services.node import Node
from pandanode.services.runtime.events import STREAM_NAME
from pandanode.services.runtime.nats_server import free_port
from pandanode.services.runtime.settings import Settings
from tests.services.support import node_settings

PEER_EVENTS = "pandanode.v1.evt.peer.>"

# Short intervals so a test sees a peer come and go in about two seconds; the TTL keeps a
# margin over the probe deadline, so a slow round on a busy machine does not lose a live peer.
FAST: dict[str, Any] = {
    "discovery_probe_interval": 0.2,
    "discovery_probe_timeout": 1.0,
    "lan_announce_interval": 0.2,
    "peer_ttl": 1.5,
}


def fast_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of a test node on a free loopback port with fast discovery."""
    return node_settings(data_dir, **{**FAST, **changes})


def free_udp_port() -> int:
    """A UDP port nothing uses right now (each LAN test gets its own, so tests stay apart).

    From the worker's own range (:func:`free_port`), so the other worker cannot take it.
    """
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def node_id(node: Node) -> str:
    """The node id of a running node."""
    assert node.discovery is not None
    return node.discovery.node_id


async def list_peers(node: Node) -> list[pb.Peer]:
    """``ListPeers`` of a node, over gRPC."""
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        response = await stub.ListPeers(pb.ListPeersRequest(), timeout=5)
        return list(response.peers)


async def get_node_info(address: str) -> pb.GetNodeInfoResponse:
    """``GetNodeInfo`` of the node at ``address``."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        response: pb.GetNodeInfoResponse = await stub.GetNodeInfo(
            pb.GetNodeInfoRequest(), timeout=5
        )
        return response


@dataclass(frozen=True)
class PeerEventMessage:
    """One peer event as it sits in the stream."""

    subject: str
    message_id: str
    event: PeerDiscovered | PeerLost


async def peer_events(nats_url: str) -> list[PeerEventMessage]:
    """Every ``peer.*`` event in the node's stream, in stream order."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info(STREAM_NAME, subjects_filter=PEER_EVENTS)
        count = sum((info.state.subjects or {}).values())
        if count == 0:
            return []
        subscription = await js.subscribe(
            PEER_EVENTS, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        found = []
        for _ in range(count):
            message = await subscription.next_msg(timeout=10)
            event: PeerDiscovered | PeerLost = (
                PeerDiscovered() if ".peer.discovered." in message.subject else PeerLost()
            )
            event.ParseFromString(message.data)
            message_id = (message.headers or {}).get("Nats-Msg-Id", "")
            found.append(PeerEventMessage(message.subject, message_id, event))
        await subscription.unsubscribe()
        return found
    finally:
        await client.close()
