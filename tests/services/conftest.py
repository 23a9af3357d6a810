"""Fixtures for service tests: real NATS (per test, free port), real RocksDB, real gRPC.

The in-process ``node`` and its ``settings`` are fixtures of the whole suite (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port

from .support import NodeProcess


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A standalone NATS server with JetStream on a free loopback port."""
    server = EmbeddedNats(store_dir=tmp_path / "nats-standalone")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def channel(node: Node) -> AsyncIterator[grpc.aio.Channel]:
    """A gRPC channel to :func:`node`."""
    async with grpc.aio.insecure_channel(node.address) as opened:
        yield opened


@pytest.fixture
def ingest(channel: grpc.aio.Channel) -> ingest_pb2_grpc.IngestServiceStub:
    """A stub of the ingest service of :func:`node`."""
    return ingest_pb2_grpc.IngestServiceStub(channel)


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, str, Path]]:
    """``pandanode up`` as a subprocess: the process, its public address, its data directory."""
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(
        ["up", "--data-dir", str(data_dir), "--listen", address, "--no-lan-discovery"]
    )
    process.start()
    try:
        await process.wait_serving(address, timeout=60)
        yield process, address, data_dir
    finally:
        process.close()
