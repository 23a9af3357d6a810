"""shirokuma 0.1.3 (and the p2panda-js inside it) against the node's GraphQL gateway.

An app's write flow runs in Node (``shirokuma_flow.mjs``): create, update, delete through
``nextArgs`` + ``publish`` over HTTP; the documents are then read back over gRPC and GraphQL.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pandanode.client import Client, generate_key_pair
from pandanode.services.node import Node
from tests.services.gateway.helpers import data

pytestmark = pytest.mark.interop

INTEROP_DIR = Path(__file__).parent
FLOW = INTEROP_DIR / "shirokuma_flow.mjs"


async def run_flow(endpoint: str, schema_id: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "the interop tests need Node.js (make setup)"
    assert (INTEROP_DIR / "node_modules" / "shirokuma").is_dir(), "npm install in tests/interop"
    process = await asyncio.create_subprocess_exec(
        node,
        str(FLOW),
        endpoint,
        schema_id,
        cwd=INTEROP_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


@pytest.fixture
async def client(node: Node) -> AsyncIterator[Client]:
    async with Client.connect(node.address, key_pair=generate_key_pair()) as opened:
        yield opened


async def test_shirokuma_session_creates_updates_and_deletes_through_the_gateway(
    node: Node, client: Client
) -> None:
    schema_id = await client.create_schema("post", "A post", {"title": "str", "count": "int"})
    flow = await run_flow(f"http://{node.http_address}/graphql", schema_id)
    document_id = flow["created"]
    created = await client.get_document(view_id=flow["created"], after=flow["created"])
    assert created.fields == {"title": "from shirokuma", "count": 1099511627783}
    assert created.owner == flow["publicKey"]
    updated = await client.get_document(view_id=flow["updated"], after=flow["updated"])
    assert updated.id == document_id
    assert updated.fields == {"title": "updated by shirokuma", "count": 1099511627783}
    deleted = await client.get_document(document_id, after=flow["deleted"])
    assert deleted.deleted and deleted.view_id == flow["deleted"]


async def test_shirokuma_writes_read_over_graphql_as_the_app_would(
    node: Node, client: Client
) -> None:
    schema_id = await client.create_schema("post", "A post", {"title": "str", "count": "int"})
    flow = await run_flow(f"http://{node.http_address}/graphql", schema_id)
    await client.get_document(flow["created"], after=flow["deleted"])
    async with httpx.AsyncClient(base_url=f"http://{node.http_address}") as http:
        query = f"""query Views($viewId: String!) {{
            {schema_id}(viewId: $viewId) {{ meta {{ documentId owner }} fields {{ title count }} }}
            all_{schema_id}(meta: {{deleted: {{eq: true}}}}) {{ totalCount }}
        }}"""
        result = await data(http, query, {"viewId": flow["updated"]})
    assert result[schema_id] == {
        "meta": {"documentId": flow["created"], "owner": flow["publicKey"]},
        "fields": {"title": "updated by shirokuma", "count": 1099511627783},
    }
    assert result[f"all_{schema_id}"]["totalCount"] == 1
