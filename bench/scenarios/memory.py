"""Node memory under a long run of large updates to few documents, with or without a stalled watch.

Every cache and queue of the node is meant to be bounded by bytes, so the resident memory of
``pandanode up`` (the supervisor and its service processes, summed; nats-server apart) should
level off: the figure to watch is ``growth ×``, RSS at the end over RSS half-way (after
:data:`WARM_UP` of the updates, when the budgets are full). The schema is listed once before
the run (a listing index then follows every change), and in the second run a WatchDocuments
stream is opened and never read. The two runs are two scenarios (each on a node of its own),
sized by the same flags.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import grpc.aio

from pandanode.core import (
    KeyPair,
    encode_operation,
    generate_hash,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as q
from pandanode.query.v1 import query_pb2_grpc

from ..client import CHANNEL_OPTIONS, publish_setup, wait_schema
from ..context import Context
from ..procs import NodeProcess
from ..registry import Option, ScenarioResult, scenario
from ..workload import bench_schema, create_fields

__all__ = ["memory_under_large_updates", "memory_with_a_stalled_watcher", "rss_bytes"]

WARM_UP = 0.5
"""Share of the updates published before the first reading: by then every byte budget (decoded
operations, memtables, listing change log) is full at the default sizes."""
_MIB = 1024 * 1024
_SAMPLE_INTERVAL = 0.5
_TIMEOUT = 300.0


def rss_bytes(pid: int) -> int:
    """Resident set size of a process now (``VmRSS``), in bytes; 0 when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def node_rss(node: NodeProcess) -> int:
    """RSS of the node's own processes: the supervisor and every service, summed."""
    return sum(rss_bytes(pid) for pid in [node.pid, *node.service_pids.values()])


class _Document:
    """One document's log: a CREATE, then UPDATEs whose title is ``size`` bytes long."""

    def __init__(self, schema_id: str, number: int, size: int) -> None:
        self.schema_id = schema_id
        self.number = number
        self.size = size
        self.key_pair = KeyPair()
        self.hashes: list[str] = []

    def next(self) -> pb.PublishRequest:
        seq_num = len(self.hashes) + 1
        if seq_num == 1:
            operation = encode_operation(
                schema_id=self.schema_id, fields=create_fields(self.number)
            )
        else:
            # A different large value each time: nothing is shared between versions.
            filler = os.urandom(self.size // 2).hex()
            operation = encode_operation(
                action="update",
                schema_id=self.schema_id,
                previous=[self.hashes[-1]],
                fields={"title": filler, "rank": seq_num},
            )
        entry = sign_and_encode_entry(
            operation,
            self.key_pair,
            log_id=0,
            seq_num=seq_num,
            backlink=self.hashes[-1] if self.hashes else None,
            skiplink=self.hashes[lipmaa(seq_num) - 1] if is_skiplink_required(seq_num) else None,
        )
        self.hashes.append(generate_hash(entry))
        return pb.PublishRequest(entry=entry, operation=operation)


async def _publish(stub: ingest_pb2_grpc.IngestServiceAsyncStub, request: pb.PublishRequest) -> str:
    response = await stub.Publish(request, timeout=_TIMEOUT)
    return str(response.operation_id)


async def _materialized(channel: grpc.aio.Channel, document: _Document) -> None:
    """Wait until the query service shows the document's last version."""
    stub = query_pb2_grpc.QueryServiceStub(channel)
    consistency = q.Consistency(operation_id=document.hashes[-1])
    consistency.timeout.FromSeconds(int(_TIMEOUT))
    await stub.GetDocument(
        q.GetDocumentRequest(document_id=document.hashes[0], consistency=consistency),
        timeout=_TIMEOUT,
    )


class _Sampler:
    """Reads the node's RSS every :data:`_SAMPLE_INTERVAL` seconds in the background."""

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read
        self.samples: list[int] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.samples.append(self._read())
            await asyncio.sleep(_SAMPLE_INTERVAL)  # sampling period

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def _stalled_watch(
    channel: grpc.aio.Channel, schema_id: str, open_it: bool
) -> AsyncIterator[None]:
    """A WatchDocuments call opened and never read, for the block (none if not ``open_it``)."""
    if not open_it:
        yield
        return
    stub = query_pb2_grpc.QueryServiceStub(channel)
    call = stub.WatchDocuments(q.WatchDocumentsRequest(schema_id=schema_id))
    await call.initial_metadata()
    try:
        yield
    finally:
        call.cancel()


async def _run(
    ctx: Context, out: ScenarioResult, row: str, *, watcher: bool, documents: int, updates: int
) -> None:
    size = ctx.args.memory_update_bytes
    schema = bench_schema()
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as channel,
    ):
        await publish_setup(channel, node)
        await wait_schema(channel, schema.schema_id)
        stub: ingest_pb2_grpc.IngestServiceAsyncStub
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        docs = [_Document(schema.schema_id, n, size) for n in range(documents)]
        for document in docs:
            await _publish(stub, document.next())
        # Listed once: the listing index of the schema follows every change from now on.
        query = query_pb2_grpc.QueryServiceStub(channel)
        await query.ListDocuments(
            q.ListDocumentsRequest(schema_id=schema.schema_id, page_size=10), timeout=60
        )
        async with _stalled_watch(channel, schema.schema_id, watcher):
            sampler = _Sampler(lambda: node_rss(node))
            warm_up = max(1, int(updates * WARM_UP))
            started = time.perf_counter()
            after_warm_up = 0
            try:
                for index in range(updates):
                    await asyncio.gather(*(_publish(stub, d.next()) for d in docs))
                    node.published += len(docs)
                    if index + 1 == warm_up:
                        await asyncio.gather(*(_materialized(channel, d) for d in docs))
                        after_warm_up = node_rss(node)
                await asyncio.gather(*(_materialized(channel, d) for d in docs))
                elapsed = time.perf_counter() - started
                at_end = node_rss(node)
                by_process = {
                    name: round(rss_bytes(pid) / _MIB)
                    for name, pid in [("supervisor", node.pid), *node.service_pids.items()]
                }
            finally:
                await sampler.stop()
    out.metric(row, "RSS half-way MiB", after_warm_up / _MIB, "MiB", "count")
    out.metric(row, "RSS at end MiB", at_end / _MIB, "MiB", "count")
    out.metric(row, "RSS max MiB", max(sampler.samples, default=at_end) / _MIB, "MiB", "count")
    out.metric(row, "growth ×", at_end / max(after_warm_up, 1), "×", "ratio")
    out.metric(row, "updates/s", updates * documents / elapsed, "/s", "throughput")
    out.notes[f"{row}: RSS MiB by process at the end"] = by_process
    out.notes[f"{row}: MiB published"] = round(updates * documents * size / _MIB, 1)


_OPTIONS = (
    Option("--memory-documents", int, 4, "documents updated over and over", smoke=2),
    Option("--memory-updates", int, 400, "updates of each document", smoke=10),
    Option(
        "--memory-update-bytes",
        int,
        128 * 1024,
        "bytes of the large field each update sets",
        smoke=16 * 1024,
    ),
)


@scenario(
    "memory.large_updates",
    title="Node RSS over a long run of large updates to few documents (schema listed once)",
    requires=("query",),
    options=_OPTIONS,
)
async def memory_under_large_updates(ctx: Context, out: ScenarioResult) -> None:
    """RSS of ``pandanode up`` half-way and at the end."""
    await _run(
        ctx,
        out,
        "no watcher",
        watcher=False,
        documents=ctx.args.memory_documents,
        updates=ctx.args.memory_updates,
    )


@scenario(
    "memory.large_updates_stalled_watcher",
    title="The same with a WatchDocuments stream of the schema that is never read",
    requires=("query",),
    options=(),
)
async def memory_with_a_stalled_watcher(ctx: Context, out: ScenarioResult) -> None:
    """RSS of ``pandanode up`` half-way and at the end, with a stalled watcher."""
    await _run(
        ctx,
        out,
        "stalled watcher",
        watcher=True,
        documents=ctx.args.memory_documents,
        updates=ctx.args.memory_updates,
    )
