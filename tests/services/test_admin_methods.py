"""Admin methods (``ReplicationService.SyncWith``: it makes the node dial any address) are taken
from the node's own machine only, unless ``admin_allow_remote``: a client on another address gets
PERMISSION_DENIED (``ADMIN_ONLY``), also through ``pandanode up``'s pass-through and with a forged
client-address header; the peer-to-peer ``Sync`` stream and the read-only methods stay open.

"Another machine" is this machine's own non-loopback address (a node listening on 0.0.0.0 sees
such a client as remote); without one, these tests cannot run here and are skipped.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.client import AdminOnlyError, Client
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.clients import (
    CLIENT_ADDRESS_KEY,
    client_address,
    host_of_peer,
    is_loopback,
)
from pandanode.services.runtime.nats_server import free_port
from pandanode.services.runtime.settings import Settings
from tests.services.replication.harness import _reason, catch_up

from .support import NodeProcess, node_settings

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]
# Nothing listens there: SyncWith from loopback reaches the session, which fails to connect.
NOBODY = "127.0.0.1:1"


def outside_address() -> str | None:
    """This machine's address on its default route (not loopback), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no datagram is sent
        except OSError:
            return None
        host = str(probe.getsockname()[0])
    return None if is_loopback(host) else host


OUTSIDE = outside_address()
needs_outside = pytest.mark.skipif(OUTSIDE is None, reason="no non-loopback address")


def port_of(address: str) -> str:
    return address.rsplit(":", 1)[1]


async def sync_with(address: str, *metadata: tuple[str, str]) -> pb.Session:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        session: pb.Session = await stub.SyncWith(
            pb.SyncWithRequest(address=NOBODY), metadata=metadata or None, timeout=30
        )
        return session


async def refused_reason(address: str, *metadata: tuple[str, str]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await sync_with(address, *metadata)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED, raised.value
    return _reason(raised.value)


# -- who the client is ------------------------------------------------------------------------


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer = peer
        self._metadata = metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def test_peer_strings_of_grpc_give_the_host_and_loopback_is_told_apart() -> None:
    assert host_of_peer("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert host_of_peer("ipv6:[::1]:5000") == "::1"
    assert host_of_peer("ipv6:[::ffff:127.0.0.2]:5000") == "127.0.0.2"
    assert host_of_peer("ipv4:203.0.113.7:80") == "203.0.113.7"
    assert host_of_peer("unix:/tmp/socket") == "unix"
    assert host_of_peer("") == "unknown"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "unix"))
    assert not any(is_loopback(h) for h in ("203.0.113.7", "0.0.0.0", "unknown", "fd00::2"))


def test_a_client_address_header_is_believed_from_loopback_only() -> None:
    named = ((CLIENT_ADDRESS_KEY, "203.0.113.7"),)
    assert client_address(_Context("ipv4:127.0.0.1:4000", named)) == "203.0.113.7"
    assert client_address(_Context("ipv4:198.51.100.1:4000", named)) == "198.51.100.1"
    claimed_local = ((CLIENT_ADDRESS_KEY, "127.0.0.1"),)
    assert client_address(_Context("ipv4:198.51.100.1:4000", claimed_local)) == "198.51.100.1"
    assert client_address(_Context("ipv6:[::1]:4000")) == "::1"


# -- an in-process node on every interface --------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return node_settings(tmp_path / "data", listen="0.0.0.0:0")


@needs_outside
async def test_sync_with_from_another_address_is_refused_admin_only(node: Node) -> None:
    remote = f"{OUTSIDE}:{port_of(node.address)}"
    assert await refused_reason(remote) == "ADMIN_ONLY"
    # Claiming to be a pass-through's loopback client changes nothing from outside.
    assert await refused_reason(remote, (CLIENT_ADDRESS_KEY, "127.0.0.1")) == "ADMIN_ONLY"
    async with Client.connect(remote) as client:
        with pytest.raises(AdminOnlyError, match="admin method"):
            await client.sync_with(NOBODY)
        sessions, _ = await client.sessions()  # read-only: open to anyone
    assert sessions == []


@needs_outside
async def test_sync_with_from_loopback_is_taken(node: Node) -> None:
    session = await sync_with(f"127.0.0.1:{port_of(node.address)}")
    assert session.state == pb.SESSION_STATE_FAILED and session.initiator


async def test_a_loopback_caller_naming_a_remote_client_is_refused(node: Node) -> None:
    """What a pass-through of the node's machine says about its client is what counts."""
    local = f"127.0.0.1:{port_of(node.address)}"
    assert await refused_reason(local, (CLIENT_ADDRESS_KEY, "203.0.113.7")) == "ADMIN_ONLY"


@needs_outside
async def test_peers_on_other_addresses_still_sync_with_the_node(node: Node) -> None:
    assert await catch_up(f"{OUTSIDE}:{port_of(node.address)}") == set()


@needs_outside
async def test_admin_allow_remote_takes_sync_with_from_anywhere(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "data", listen="0.0.0.0:0", admin_allow_remote=True)
    async with Node(settings) as node:
        session = await sync_with(f"{OUTSIDE}:{port_of(node.address)}")
    assert session.state == pb.SESSION_STATE_FAILED and session.initiator


# -- pandanode up: through the supervisor's pass-through --------------------------------------


@pytest.fixture
async def up_everywhere(tmp_path: Path) -> AsyncIterator[str]:
    """``pandanode up`` listening on 0.0.0.0, one stream per remote client; its port."""
    port = str(free_port())
    process = NodeProcess(
        ["up", "--data-dir", str(tmp_path / "data"), "--listen", f"0.0.0.0:{port}"],
        env={"PANDANODE_METRICS_LISTEN": "off", "PANDANODE_MAX_STREAMS_PER_CLIENT": "1"},
    )
    process.start()
    try:
        await process.wait_serving(f"127.0.0.1:{port}", timeout=60)
        yield port
    finally:
        process.close()


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [*PANDANODE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


@needs_outside
async def test_pandanode_sync_works_on_the_nodes_machine_and_is_refused_from_another_address(
    up_everywhere: str,
) -> None:
    port = up_everywhere
    local = await cli("--node", f"127.0.0.1:{port}", "sync", NOBODY, "--json")
    assert local.returncode != 0  # the session failed: nobody listens at NOBODY ...
    assert "PEER_UNREACHABLE" in local.stdout, local.stdout + local.stderr  # ... but it ran
    remote = await cli("--node", f"{OUTSIDE}:{port}", "sync", NOBODY)
    assert remote.returncode == 1, remote.stdout + remote.stderr
    assert "admin method" in remote.stderr and "PEER_UNREACHABLE" not in remote.stdout
    # The replication process's own endpoint judges a caller from outside the same way.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        endpoints = await node_pb2_grpc.NodeServiceStub(channel).GetEndpoints(
            node_pb2.GetEndpointsRequest(), timeout=5
        )
    direct = endpoints.endpoints[pb.DESCRIPTOR.services_by_name["ReplicationService"].full_name]
    assert await refused_reason(f"{OUTSIDE}:{port_of(direct)}") == "ADMIN_ONLY"
