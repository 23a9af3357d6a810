"""Live queries with the ``graphql-ws`` npm client: a subscriber sees another client's writes.

The subscriber (``subscribe_flow.mjs``) asks for the existing documents first: once the one
published before it subscribed arrives, its watch is running, and what shirokuma then creates,
updates and deletes through the gateway must reach it as CREATED, UPDATED and DELETED.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pandanode.client import Client, generate_key_pair
from pandanode.services.node import Node
from tests.interop.test_gateway_shirokuma import run_flow

pytestmark = pytest.mark.interop

INTEROP_DIR = Path(__file__).parent
SUBSCRIBER = INTEROP_DIR / "subscribe_flow.mjs"


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    async with Client.connect(node.address, key_pair=generate_key_pair()) as opened:
        yield opened


async def read_change(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line:
        assert process.stderr is not None
        raise AssertionError((await process.stderr.read()).decode(errors="replace"))
    change: dict[str, Any] = json.loads(line)
    return change


async def test_a_graphql_ws_subscriber_receives_documents_another_client_publishes(
    node: Node, client: Client
) -> None:
    node_js = shutil.which("node")
    assert node_js is not None, "the interop tests need Node.js (make setup)"
    assert (INTEROP_DIR / "node_modules" / "graphql-ws").is_dir(), "npm install in tests/interop"
    schema_id = await client.create_schema("post", "A post", {"title": "str", "count": "int"})
    before = await client.create(schema_id, {"title": "before", "count": 1})
    await client.get_document(before.document_id, after=before)
    process = await asyncio.create_subprocess_exec(
        *(node_js, str(SUBSCRIBER), f"ws://{node.http_address}/graphql", schema_id, "4"),
        cwd=INTEROP_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        existing = await read_change(process)
        assert existing == {
            "kind": "EXISTING",
            "documentId": before.document_id,
            "viewId": before.view_id,
            "fields": {"title": "before"},
        }
        flow = await run_flow(f"http://{node.http_address}/graphql", schema_id)
        changes = [await read_change(process) for _ in range(3)]
        assert [(c["kind"], c["viewId"]) for c in changes] == [
            ("CREATED", flow["created"]),
            ("UPDATED", flow["updated"]),
            ("DELETED", flow["deleted"]),
        ]
        assert changes[0]["fields"] == {"title": "from shirokuma"}
        assert changes[1]["fields"] == {"title": "updated by shirokuma"}
        assert {c["documentId"] for c in changes} == {flow["created"]}
        assert await read_change(process) == {"done": True, "seen": 4}
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
