"""Discovery between real nodes: bootstrap probes, LAN multicast on loopback, peer exchange,
and the peer events on JetStream (real NATS, real gRPC on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.core import KeyPair
from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.discovery.v1 import discovery_pb2_grpc
from pandanode.services.discovery.lan import encode_announcement
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from tests.services.ingest.helpers import rejection
from tests.services.support import eventually

from .support import (
    fast_settings,
    free_udp_port,
    get_node_info,
    list_peers,
    node_id,
    peer_events,
)

Start = Callable[..., AbstractAsyncContextManager[Node]]


@pytest.fixture
def start(tmp_path: Path) -> Start:
    """Start a node with fast discovery: ``async with start("a", bootstrap_peers=…) as node``."""

    @asynccontextmanager
    async def running(name: str, **changes: Any) -> AsyncIterator[Node]:
        async with Node(fast_settings(tmp_path / name, **changes)) as node:
            yield node

    return running


def listed(peers: list[pb.Peer], wanted: str) -> pb.Peer | None:
    return next((peer for peer in peers if peer.node_id == wanted), None)


async def test_get_node_info_answers_the_node_id_kept_in_the_data_dir(start: Start) -> None:
    async with start("a") as a:
        info = await get_node_info(a.address)
        key = (a.data_dir / "node.key").read_text()
        assert info.node_id == KeyPair(key).public_key() == node_id(a)
        assert info.address == a.address
        async with grpc.aio.insecure_channel(a.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service="pandanode.discovery.v1.DiscoveryService")
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
    async with start("a") as again:
        assert node_id(again) == info.node_id, "the node id survives a restart"


async def test_list_peers_shows_a_bootstrap_peer_once_it_answers(start: Start) -> None:
    async with start("a") as a, start("b", bootstrap_peers=a.address) as b:

        async def a_listed() -> pb.Peer | None:
            return listed(await list_peers(b), node_id(a))

        peer = await eventually(a_listed, what="A in B's peers")
        assert list(peer.addresses) == [a.address]
        assert peer.source == pb.PEER_SOURCE_BOOTSTRAP
        assert peer.reachable
        assert peer.first_seen.ToNanoseconds() <= peer.last_seen.ToNanoseconds()
        assert await list_peers(a) == [], "A was not told about B (peer exchange only asks)"


async def test_a_discovered_peer_is_announced_on_jetstream(start: Start) -> None:
    async with start("a") as a, start("b", bootstrap_peers=a.address) as b:

        async def announced() -> list[Any]:
            return await peer_events(b.nats_url)

        (message,) = await eventually(announced, what="peer.discovered on B's stream")
        a_id = node_id(a)
        assert message.subject == f"pandanode.v1.evt.peer.discovered.{a_id}"
        assert message.event.peer.node_id == a_id
        assert message.event.observer_node_id == node_id(b)
        first_seen_us = message.event.peer.first_seen.ToMicroseconds()
        assert message.message_id == f"{a_id}.discovered.{first_seen_us}"


async def test_a_stopped_peer_is_lost_after_the_ttl_and_announced(start: Start) -> None:
    async with start("b_side_a") as a:
        a_id, address = node_id(a), a.address
        async with start("b", bootstrap_peers=address) as b:

            async def a_listed() -> pb.Peer | None:
                return listed(await list_peers(b), a_id)

            await eventually(a_listed, what="A in B's peers")
            await a.stop()

            async def a_gone() -> bool:
                return listed(await list_peers(b), a_id) is None

            await eventually(a_gone, what="A lost by B")

            async def two_events() -> list[Any] | None:
                events = await peer_events(b.nats_url)
                return events if len(events) == 2 else None

            discovered, lost = await eventually(two_events, what="peer.lost on B's stream")
    assert lost.subject == f"pandanode.v1.evt.peer.lost.{a_id}"
    assert lost.event.peer.node_id == a_id
    assert not lost.event.peer.reachable, "the probes after the stop went unanswered"
    sighting = discovered.message_id.rsplit(".", 1)[1]
    assert lost.message_id == f"{a_id}.lost.{sighting}", "lost names the sighting it ends"


async def test_a_peer_found_again_after_being_lost_is_announced_again(start: Start) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with start("a", listen=address) as a:
        a_id = node_id(a)
        async with start("b", bootstrap_peers=address) as b:

            def count(wanted: int) -> Callable[[], Awaitable[list[Any] | None]]:
                async def check() -> list[Any] | None:
                    events = await peer_events(b.nats_url)
                    return events if len(events) >= wanted else None

                return check

            await eventually(count(1), what="A discovered")
            await a.stop()
            await eventually(count(2), what="A lost")
            async with start("a", listen=address):
                events = await eventually(count(3), what="A discovered again")
    assert [event.subject.split(".")[4] for event in events] == ["discovered", "lost", "discovered"]
    assert all(event.event.peer.node_id == a_id for event in events)
    assert events[2].message_id != events[0].message_id, "a new sighting is not deduplicated"


async def test_an_unanswered_bootstrap_peer_is_tried_again_until_it_answers(start: Start) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with start("b", bootstrap_peers=address) as b:
        assert b.discovery is not None
        await b.discovery.probe_round()  # nothing listens there yet
        assert await list_peers(b) == []
        async with start("a", listen=address) as a:

            async def a_listed() -> pb.Peer | None:
                return listed(await list_peers(b), node_id(a))

            await eventually(a_listed, what="A in B's peers once it is up")


async def test_our_own_address_in_the_bootstrap_list_is_ignored(start: Start) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with start("a") as a:
        bootstrap = f"{address},{a.address}"
        async with start("b", listen=address, bootstrap_peers=bootstrap) as b:

            async def a_listed() -> pb.Peer | None:
                return listed(await list_peers(b), node_id(a))

            await eventually(a_listed, what="A in B's peers")
            assert [peer.node_id for peer in await list_peers(b)] == [node_id(a)]


async def test_peer_exchange_finds_a_peer_of_a_peer(start: Start) -> None:
    async with (
        start("a") as a,
        start("b", bootstrap_peers=a.address) as b,
        start("c", bootstrap_peers=b.address) as c,
    ):

        async def a_listed_by_c() -> pb.Peer | None:
            return listed(await list_peers(c), node_id(a))

        peer = await eventually(a_listed_by_c, what="A in C's peers, learned from B")
        assert peer.source == pb.PEER_SOURCE_EXCHANGE
        assert list(peer.addresses) == [a.address] and peer.reachable
        assert listed(await list_peers(c), node_id(b)) is not None


async def test_without_peer_exchange_only_the_bootstrap_peer_is_known(start: Start) -> None:
    async with (
        start("a") as a,
        start("b", bootstrap_peers=a.address) as b,
        start("c", bootstrap_peers=b.address, peer_exchange=False) as c,
    ):

        async def a_listed_by_b() -> pb.Peer | None:
            return listed(await list_peers(b), node_id(a))

        await eventually(a_listed_by_b, what="A in B's peers")
        assert c.discovery is not None
        await c.discovery.probe_round()
        await c.discovery.probe_round()  # a second round would probe exchanged candidates
        assert [peer.node_id for peer in await list_peers(c)] == [node_id(b)]


# -- LAN multicast on loopback -------------------------------------------------------------------


async def test_nodes_on_one_machine_find_each_other_by_lan_multicast(start: Start) -> None:
    lan = {"lan_discovery": True, "lan_port": free_udp_port()}
    async with start("a", **lan) as a, start("b", **lan) as b:
        assert a.discovery is not None and a.discovery.lan_running

        async def found() -> tuple[pb.Peer, pb.Peer] | None:
            b_in_a = listed(await list_peers(a), node_id(b))
            a_in_b = listed(await list_peers(b), node_id(a))
            return (b_in_a, a_in_b) if b_in_a and a_in_b else None

        b_in_a, a_in_b = await eventually(found, what="A and B in each other's peers")
        assert b_in_a.source == a_in_b.source == pb.PEER_SOURCE_LAN
        assert list(b_in_a.addresses) == [b.address] and b_in_a.reachable
        assert listed(await list_peers(a), node_id(a)) is None, "a node ignores its own datagrams"


def send_datagrams(port: int, *datagrams: bytes) -> None:
    """Send datagrams to the default LAN group on the loopback interface, as another node would."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sender:
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        for datagram in datagrams:
            sender.sendto(datagram, ("239.255.70.22", port))


async def test_malformed_datagrams_are_dropped_and_lan_discovery_goes_on(start: Start) -> None:
    port = free_udp_port()
    async with start("a", lan_discovery=True, lan_port=port) as a, start("b") as b:
        assert a.discovery is not None
        garbage = [
            b"\x00\xff\x13garbage",
            b"{}",
            encode_announcement("not-a-node-id", b.address),
            b"\x0a" * 2000,
        ]
        send_datagrams(port, *garbage)

        async def all_dropped() -> bool:
            assert a.discovery is not None
            return a.discovery.dropped_datagrams == len(garbage)

        await eventually(all_dropped, what="the malformed datagrams dropped")
        # B does not announce itself (LAN off); a valid datagram naming it still gets through.
        send_datagrams(port, encode_announcement(node_id(b), f"0.0.0.0:{b.address.split(':')[1]}"))

        async def b_listed() -> pb.Peer | None:
            return listed(await list_peers(a), node_id(b))

        peer = await eventually(b_listed, what="B in A's peers")
        assert peer.source == pb.PEER_SOURCE_LAN
        assert list(peer.addresses) == [b.address], "0.0.0.0 stands for the sender's address"


async def test_pandanode_serve_discovery_runs_discovery_alone(
    tmp_path: Path, nats_server: EmbeddedNats, start: Start
) -> None:
    address = f"127.0.0.1:{free_port()}"
    async with start("a") as a:
        a_id = node_id(a)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pandanode.services.cli", "serve", "discovery",
            "--nats", nats_server.url, "--data-dir", str(tmp_path / "discovery"),
            "--listen", address, "--bootstrap-peers", a.address, "--no-lan-discovery",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:

            async def a_listed() -> pb.Peer | None:
                try:
                    async with grpc.aio.insecure_channel(address) as channel:
                        stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
                        response = await stub.ListPeers(pb.ListPeersRequest(), timeout=1)
                except grpc.aio.AioRpcError:
                    return None  # still starting
                return listed(list(response.peers), a_id)

            await eventually(a_listed, timeout=30, what="A in the lone discovery service's peers")
            key = (tmp_path / "discovery" / "node.key").read_text()
            assert (await get_node_info(address)).node_id == KeyPair(key).public_key()
        finally:
            process.terminate()
            assert await process.wait() == 0
    events = await peer_events(nats_server.url)
    assert [event.subject for event in events][:1] == [f"pandanode.v1.evt.peer.discovered.{a_id}"]


async def test_list_peers_pages_by_node_id_and_rejects_a_tampered_page_token(
    start: Start,
) -> None:
    async with (
        start("b") as b,
        start("c") as c,
        start("a", bootstrap_peers=f"{b.address},{c.address}") as a,
    ):

        async def both_listed() -> list[pb.Peer] | None:
            peers = await list_peers(a)
            return peers if len(peers) == 2 else None

        await eventually(both_listed, what="B and C in A's peers")
        async with grpc.aio.insecure_channel(a.address) as channel:
            stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
            first = await stub.ListPeers(pb.ListPeersRequest(page_size=1), timeout=5)
            assert len(first.peers) == 1 and first.next_page_token
            second = await stub.ListPeers(
                pb.ListPeersRequest(page_size=1, page_token=first.next_page_token), timeout=5
            )
            assert len(second.peers) == 1 and not second.next_page_token
            assert [first.peers[0].node_id, second.peers[0].node_id] == sorted(
                [node_id(b), node_id(c)]
            )
            tampered = (
                first.next_page_token[:-2]
                + ("A" if first.next_page_token[-2] != "A" else "B")
                + first.next_page_token[-1]
            )
            rejected = await rejection(
                stub.ListPeers(pb.ListPeersRequest(page_token=tampered), timeout=5)
            )
        assert (rejected.code, rejected.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_PAGE_TOKEN",
        )
        assert [field for field, _ in rejected.violations] == ["page_token"]
