"""Fixtures of the gateway tests: a real node (its gateway on a free port), clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from pandanode.client import Client, generate_key_pair
from pandanode.services.node import Node
from tests.services.gateway.helpers import Catalog, make_catalog


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    """A signing gRPC client of the node."""
    async with Client.connect(node.address, key_pair=generate_key_pair()) as opened:
        yield opened


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the node's gateway."""
    async with httpx.AsyncClient(base_url=f"http://{node.http_address}", timeout=30) as opened:
        yield opened


@pytest.fixture
async def catalog(client: Client) -> Catalog:
    """The catalog of :func:`tests.services.gateway.helpers.make_catalog`, published."""
    return await make_catalog(client)
