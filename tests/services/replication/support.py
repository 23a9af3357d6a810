"""Helpers of the replication tests: nodes wired by bootstrap peers, their log sets."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from pandanode.core import decode_entry
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.settings import Settings
from tests.services.support import NodeProcess, node_settings

# Fast discovery (peers found within a second) and short idle timeouts; LAN discovery off.
FAST: dict[str, Any] = {
    "discovery_probe_interval": 0.2,
    "discovery_probe_timeout": 1.0,
    "lan_announce_interval": 0.2,
    "peer_ttl": 3.0,
    "replication_interval": 0.5,
    "sync_idle_timeout": 10.0,
}

# The same for ``pandanode up`` subprocesses (read from the environment).
UP_ENV = {
    "PANDANODE_DISCOVERY_PROBE_INTERVAL": "0.2",
    "PANDANODE_DISCOVERY_PROBE_TIMEOUT": "1.0",
    "PANDANODE_PEER_TTL": "5.0",
    "PANDANODE_LAN_ANNOUNCE_INTERVAL": "0.2",
    "PANDANODE_REPLICATION_INTERVAL": "0.5",
}

StartNode = Callable[..., AbstractAsyncContextManager[Node]]


def replication_settings(data_dir: Path, **changes: Any) -> Settings:
    """Settings of a replicating test node on a free loopback port."""
    return node_settings(data_dir, **{**FAST, **changes})


def starter(tmp_path: Path) -> StartNode:
    """``async with start("a", bootstrap_peers=…) as node`` starts an in-process node."""

    @asynccontextmanager
    async def running(name: str, **changes: Any) -> AsyncIterator[Node]:
        async with Node(replication_settings(tmp_path / name, **changes)) as node:
            yield node

    return running


def node_id(node: Node) -> str:
    """The node id of a running node."""
    assert node.replication is not None
    return node.replication.node_id


async def log_entries(address: str) -> set[tuple[str, int, int, str]]:
    """Every (public key, log id, seq num, entry hash) the node at ``address`` stores."""
    out: set[tuple[str, int, int, str]] = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        heights = await stub.GetLogHeights(ipb.GetLogHeightsRequest(), timeout=10)
        for height in heights.log_heights:
            request = ipb.ReadLogRequest(public_key=height.public_key, log_id=height.log_id)
            async for page in stub.ReadLog(request, timeout=10):
                for stored in page.entries:
                    entry = decode_entry(stored.entry, verify=False)
                    out.add((entry.public_key, entry.log_id, entry.seq_num, entry.hash))
    return out


def set_hash(entries: set[tuple[str, int, int, str]]) -> str:
    """A hash of the sorted set: equal sets, equal hashes."""
    digest = hashlib.sha256()
    for item in sorted(entries):
        digest.update(repr(item).encode())
    return digest.hexdigest()


async def entry_count(address: str) -> int:
    """How many entries the node at ``address`` stores: the sum of its log heights."""
    total = 0
    token = ""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while True:
            page = await stub.GetLogHeights(ipb.GetLogHeightsRequest(page_token=token), timeout=10)
            total += sum(height.seq_num for height in page.log_heights)
            token = page.next_page_token
            if not token:
                return total


def up(data_dir: Path, address: str, *flags: str) -> NodeProcess:
    """Start ``pandanode up`` (LAN discovery off) as a subprocess."""
    process = NodeProcess(
        ["up", "--data-dir", str(data_dir), "--listen", address, "--no-lan-discovery", *flags],
        env=UP_ENV,
    )
    process.start()
    return process
