"""The gateway as a service: a child of ``pandanode up``, or alone in front of remote services."""

from __future__ import annotations

from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2

from pandanode.core import KeyPair
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import free_port
from tests.services.gateway.helpers import data
from tests.services.support import (
    NodeProcess,
    children_of,
    eventually,
    gone,
    health_of,
    node_settings,
)

NEXT_ARGS = "query N($pk: String!) { nextArgs(publicKey: $pk) { logId seqNum } }"


async def test_pandanode_up_runs_the_gateway_in_its_own_process_and_prints_its_address(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    http_address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(
        [
            *("up", "--data-dir", str(tmp_path / "data"), "--listen", address),
            *("--http-listen", http_address, "--no-lan-discovery"),
        ]
    )
    process.start()
    assert process.process is not None
    try:
        await process.wait_serving(address)
        assert "gateway" in children_of(process.process.pid)
        async with httpx.AsyncClient(base_url=f"http://{http_address}") as http:
            result = await data(http, NEXT_ARGS, {"pk": KeyPair().public_key()})
        assert result["nextArgs"]["seqNum"] == "1"
        assert process.terminate() == 0
        assert f"HTTP (GraphQL) on http://{http_address}" in process.output()
    finally:
        if process.process.poll() is None:
            pids = list(children_of(process.process.pid).values())
            process.kill()
            await gone(pids)


async def test_a_gateway_alone_calls_remote_services_and_is_serving_only_while_they_are(
    tmp_path: Path,
) -> None:
    upstream = Node(node_settings(tmp_path / "upstream"), ("ingest", "query"))
    await upstream.start()
    stopped = False
    try:
        settings = node_settings(
            tmp_path / "gateway", ingest_address=upstream.address, query_address=upstream.address
        )
        async with Node(settings, ("gateway",)) as gateway:
            assert gateway.nats_url == ""  # the gateway needs no NATS: none was started
            assert await health_of(gateway.address) == health_pb2.HealthCheckResponse.SERVING
            async with httpx.AsyncClient(base_url=f"http://{gateway.http_address}") as http:
                result = await data(http, NEXT_ARGS, {"pk": KeyPair().public_key()})
            assert result["nextArgs"] == {"logId": "0", "seqNum": "1"}
            await upstream.stop()
            stopped = True

            async def not_serving() -> bool:
                status = await health_of(gateway.address)
                return bool(status == health_pb2.HealthCheckResponse.NOT_SERVING)

            await eventually(not_serving, what="the gateway NOT_SERVING without its upstreams")
    finally:
        if not stopped:
            await upstream.stop()
