"""Fixtures of the client tests: a real node (reused from the service tests) and clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from pandanode.client import Client, KeyPair
from pandanode.services.node import Node
from tests.services.conftest import node, settings  # noqa: F401 - fixtures


@pytest.fixture
def key_pair() -> KeyPair:
    """The key pair of the main author."""
    return KeyPair()


@pytest.fixture
async def client(node: Node, key_pair: KeyPair) -> AsyncIterator[Client]:  # noqa: F811
    """A client of :func:`node` that signs with :func:`key_pair`."""
    async with Client.connect(node.address, key_pair=key_pair, timeout=10.0) as opened:
        yield opened
