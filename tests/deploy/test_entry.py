"""The entry point's nginx configuration (deploy/nginx/pandanode.conf.template) in a real nginx
(Debian's, installed by ``make setup``) in front of a real node: public services are routed by
path, the node's internal RPCs and reflection are not."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bench.deployment import NGINX_TEMPLATE, find_nginx, render_nginx_site, write_nginx_config
from pandanode.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.nats_server import free_port

from .tools import run

UPSTREAMS = ("ingest", "query", "discovery", "replication", "gateway")


def nginx() -> str:
    path = find_nginx()
    if path is None:
        pytest.fail("nginx is not installed: run `make setup` (Debian package nginx)")
    return path


def site(upstream: str, grpc_port: int, http_port: int, template: str | None = None) -> str:
    """The template rendered with every upstream at ``upstream``, on loopback ports."""
    upstreams = {name: [upstream] for name in UPSTREAMS}
    return render_nginx_site(
        upstreams, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}", template=template
    )


def test_entry_config_passes_nginx_t(tmp_path: Path) -> None:
    main = write_nginx_config(tmp_path, site(f"127.0.0.1:{free_port()}", free_port(), free_port()))

    answer = run(nginx(), "-t", "-p", tmp_path, "-c", main)

    assert answer.returncode == 0, answer.stderr


def test_nginx_t_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = NGINX_TEMPLATE.read_text().replace(
        "grpc_pass grpc://pandanode_query;", "grpc_pass;", 1
    )
    rendered = site(f"127.0.0.1:{free_port()}", free_port(), free_port(), template=broken)
    main = write_nginx_config(tmp_path, rendered)

    answer = run(nginx(), "-t", "-p", tmp_path, "-c", main)

    assert answer.returncode != 0
    assert "grpc_pass" in answer.stderr


@pytest.fixture
def entry_port(node: Node, tmp_path: Path) -> Iterator[int]:
    """nginx with the entry point configuration, every upstream the all-in-one node."""
    port = free_port()
    main = write_nginx_config(tmp_path / "nginx", site(node.address, port, free_port()))
    process = subprocess.Popen(
        [nginx(), "-p", str(tmp_path / "nginx"), "-c", str(main)],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # poll: nginx is starting
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "nginx did not listen within 30 s"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.fixture
async def entry(entry_port: int) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{entry_port}") as channel:
        yield channel


async def test_entry_routes_public_services_to_the_node(entry: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(entry)
    ingest = ingest_pb2_grpc.IngestServiceStub(entry)
    query = query_pb2_grpc.QueryServiceStub(entry)

    checked = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    heights = await ingest.GetLogHeights(ingest_pb2.GetLogHeightsRequest(), timeout=10)
    schemas = await query.ListSchemas(query_pb2.ListSchemasRequest(), timeout=10)

    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert list(heights.log_heights) == []
    assert schemas.schemas  # the system schemas


async def test_entry_refuses_the_nodes_internal_rpcs_and_reflection(
    entry: grpc.aio.Channel,
) -> None:
    node = node_pb2_grpc.NodeServiceStub(entry)
    reflection = reflection_pb2_grpc.ServerReflectionStub(entry)

    with pytest.raises(grpc.aio.AioRpcError) as internal:
        await node.GetEndpoints(node_pb2.GetEndpointsRequest(), timeout=10)
    # The request goes from an iterator: nginx may end the call before a write would finish.
    reflected = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )

    assert internal.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # nginx answers a stream before reading its body; grpc-core sometimes sees the reset of the
    # unread request first (INTERNAL, 1 run in ~35 here). Either way nothing is reflected.
    assert await reflected.code() in {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL}
