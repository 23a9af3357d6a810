"""Distributed mode: the entry point's hop, and Publish throughput next to the all-in-one node.

The split deployment is :mod:`bench.deployment` (a 3-node NATS cluster with the stream kept 3
times, ingest, two query replicas, discovery, ``pandanode proxy``), plus nginx with
deploy/nginx/pandanode.conf.template when the ``nginx`` binary is installed (its rows are left
out, with a note, when it is not).

``distributed.hop``: sequential unary calls (``DiscoveryService/GetNodeInfo``, the cheapest
call) straight to the service, through ``pandanode proxy`` and through nginx; the hop's cost is
the difference of the median latencies. ``distributed.publish``: unary Publish at 16 calls in
flight through the all-in-one node's public address and through each entry point of the split
deployment, until answered (durable) and until announced on the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio

from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.runtime.nats_server import free_port

from ..client import CHANNEL_OPTIONS, publish_unary, wait_announced
from ..context import Context
from ..deployment import Deployment, Nginx, deployment, find_nginx, nginx_config
from ..registry import Option, ScenarioResult, scenario
from ..workload import bench_schema, short_logs

__all__ = ["hop", "publish"]

CONCURRENCY = 16
LOG_LENGTH = 10
_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def _split(ctx: Context, name: str, out: ScenarioResult) -> AsyncIterator[dict[str, str]]:
    """The split deployment; yields the address of each way in (direct ones included)."""
    root = ctx.work_dir / name
    async with deployment(root) as deployed:
        addresses = {"pandanode proxy": deployed.entry.address}
        nginx = await _nginx(root, deployed, out)
        try:
            if nginx is not None:
                addresses["nginx"] = nginx.address
            addresses["direct discovery"] = deployed.discovery.address
            addresses["direct ingest"] = deployed.ingest.address
            # One server of the cluster, as the admin NATS user (the servers take no one else).
            addresses["nats"] = deployed.nats_url.split(",")[1]
            yield addresses
        finally:
            if nginx is not None:
                nginx.stop()


async def _nginx(root: Path, deployed: Deployment, out: ScenarioResult) -> Nginx | None:
    binary = find_nginx()
    if binary is None:
        out.notes["nginx"] = "not installed: its rows are left out (apt-get install nginx-light)"
        return None
    address = f"127.0.0.1:{free_port()}"
    nginx = Nginx(binary, nginx_config(root, address, deployed), address)
    await nginx.start()
    return nginx


async def _sequential_calls(address: str, calls: int) -> list[float]:
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        request = discovery_pb2.GetNodeInfoRequest()
        for _ in range(min(calls, 100)):  # warm up: connection, caches
            await stub.GetNodeInfo(request, timeout=_TIMEOUT)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await stub.GetNodeInfo(request, timeout=_TIMEOUT)
            samples.append(time.perf_counter() - start)
        return samples


async def _concurrent_calls(address: str, calls: int) -> float:
    """Seconds for ``calls`` calls with :data:`CONCURRENCY` in flight."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = discovery_pb2_grpc.DiscoveryServiceStub(channel)
        request = discovery_pb2.GetNodeInfoRequest()
        left = calls

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await stub.GetNodeInfo(request, timeout=_TIMEOUT)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start


@scenario(
    "distributed.hop",
    title="Entry point hop: a unary call direct vs through pandanode proxy and nginx",
    options=(Option("--hop-calls", int, 4000, "unary calls per way in", smoke=100),),
)
async def hop(ctx: Context, out: ScenarioResult) -> None:
    """Median µs of a sequential unary call each way in; the hop is the difference."""
    calls = ctx.args.hop_calls
    async with _split(ctx, "hop", out) as addresses:
        ways = {
            "direct": addresses["direct discovery"],
            "via pandanode proxy": addresses["pandanode proxy"],
        }
        if "nginx" in addresses:
            ways["via nginx"] = addresses["nginx"]
        medians = {}
        for row, address in ways.items():
            samples = await _sequential_calls(address, calls)
            medians[row] = statistics.median(samples) * 1e6
            out.latency(row, samples, series=f"GetNodeInfo {row}")
            out.metric(row, "median µs/call", medians[row], "µs", "latency")
            seconds = await _concurrent_calls(address, calls)
            out.rate(row, calls, seconds, column=f"calls/s c={CONCURRENCY}")
        for row in ways:
            if row != "direct":
                out.metric(row, "hop µs/call", medians[row] - medians["direct"], "µs", "cost")


@scenario(
    "distributed.publish",
    title="Publish: split deployment (3-node NATS, stream R3) next to the all-in-one node",
    options=(
        Option("--distributed-entries", int, 6000, "entries published per way in", smoke=100),
    ),
)
async def publish(ctx: Context, out: ScenarioResult) -> None:
    """Unary Publish at 16 in flight: entries/s answered and announced, each deployment."""
    schema = bench_schema()
    logs_per_run = max(ctx.args.distributed_entries // LOG_LENGTH, 1)
    runs = ["all-in-one (pandanode up)", "split via pandanode proxy", "split via nginx"]
    logs = short_logs(schema.schema_id, logs_per_run * len(runs), LOG_LENGTH)
    batches = {run: logs[i * logs_per_run : (i + 1) * logs_per_run] for i, run in enumerate(runs)}

    async def measure(row: str, address: str, nats_url: str, published: int) -> int:
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            if published == 0:
                stub = ingest_pb2_grpc.IngestServiceStub(channel)
                for request in schema.setup:
                    await stub.Publish(request, timeout=_TIMEOUT)
                published = len(schema.setup)
            start = time.perf_counter()
            run = await publish_unary(channel, batches[row], CONCURRENCY)
            published += run.count
            announced = await wait_announced(nats_url, published)
        out.rate(row, run.count, run.seconds)
        out.rate(row, run.count, announced - start, column="durable + announced entries/s")
        out.latency(row, run.latencies, series=f"Publish unary {row}")
        return published

    async with ctx.node(out) as node:
        node.published = await measure(runs[0], node.address, node.nats_url, 0)
    async with _split(ctx, "publish", out) as addresses:
        published = await measure(runs[1], addresses["pandanode proxy"], addresses["nats"], 0)
        if "nginx" in addresses:
            await measure(runs[2], addresses["nginx"], addresses["nats"], published)
