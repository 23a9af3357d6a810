"""Fixtures of the ingest tests: a JetStream connection to the node's NATS server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.js import JetStreamContext

from pandanode.services.node import Node


@pytest.fixture
async def js(node: Node) -> AsyncIterator[JetStreamContext]:
    """JetStream of the NATS server the node announces on (a connection of the test's own)."""
    client = await nats.connect(node.nats_url, name="ingest-tests")
    try:
        yield client.jetstream()
    finally:
        await client.close()
