"""Fixtures for service tests: real NATS (per test, free port), real RocksDB, real gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import EmbeddedNats
from pandanode.services.runtime.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings of a node with its data in a fresh temporary directory, on a free port."""
    return Settings(data_dir=tmp_path / "data", listen="127.0.0.1:0")


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
async def node(settings: Settings) -> AsyncIterator[Node]:
    """An all-in-one node (embedded NATS, every service) serving on 127.0.0.1:<free port>."""
    async with Node(settings) as running:
        yield running


@pytest.fixture
async def channel(node: Node) -> AsyncIterator[grpc.aio.Channel]:
    """A gRPC channel to :func:`node`."""
    async with grpc.aio.insecure_channel(node.address) as opened:
        yield opened


@pytest.fixture
def ingest(channel: grpc.aio.Channel) -> ingest_pb2_grpc.IngestServiceStub:
    """A stub of the ingest service of :func:`node`."""
    return ingest_pb2_grpc.IngestServiceStub(channel)
