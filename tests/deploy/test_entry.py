"""The entry point's nginx configuration (deploy/nginx/pandanode.conf.template) in a real nginx
(Debian's, installed by ``make setup``) in front of a real node: public services are routed by
path, the node's internal RPCs and reflection are not."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pandanode.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from pandanode.node.v1 import node_pb2, node_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.node import Node

from .tools import DEPLOY, run

TEMPLATE = DEPLOY / "nginx" / "pandanode.conf.template"


def nginx() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        pytest.fail("nginx is not installed: run `make setup` (Debian package nginx)")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def render(template: str, upstream: str, grpc_port: int, http_port: int) -> str:
    """What the nginx image's envsubst makes of the template, on loopback ports."""
    text = re.sub(r"\$\{PANDANODE_[A-Z]+_ADDR\}", upstream, template)
    text = text.replace("listen 2020 http2;", f"listen 127.0.0.1:{grpc_port} http2;")
    return text.replace("listen 2021;", f"listen 127.0.0.1:{http_port};")


def write_config(directory: Path, site: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pandanode.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"{user}worker_processes 1;\npid {directory}/nginx.pid;\nerror_log stderr warn;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {directory}/body;\n"
        f"  include {directory}/pandanode.conf;\n}}\n"
    )
    return main


def test_entry_config_passes_nginx_t(tmp_path: Path) -> None:
    site = render(TEMPLATE.read_text(), f"127.0.0.1:{free_port()}", free_port(), free_port())
    main = write_config(tmp_path, site)

    answer = run(nginx(), "-t", "-p", tmp_path, "-c", main)

    assert answer.returncode == 0, answer.stderr


def test_nginx_t_fails_on_a_broken_copy(tmp_path: Path) -> None:
    broken = TEMPLATE.read_text().replace("grpc_pass grpc://pandanode_query;", "grpc_pass;", 1)
    site = render(broken, f"127.0.0.1:{free_port()}", free_port(), free_port())
    main = write_config(tmp_path, site)

    answer = run(nginx(), "-t", "-p", tmp_path, "-c", main)

    assert answer.returncode != 0
    assert "grpc_pass" in answer.stderr


@pytest.fixture
def entry_port(node: Node, tmp_path: Path) -> Iterator[int]:
    """nginx with the entry point configuration, every upstream the all-in-one node."""
    port = free_port()
    site = render(TEMPLATE.read_text(), node.address, port, free_port())
    main = write_config(tmp_path / "nginx", site)
    process = subprocess.Popen(
        [nginx(), "-p", str(tmp_path / "nginx"), "-c", str(main), "-g", "daemon off;"],
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
