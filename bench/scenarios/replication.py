"""Replication: nodes syncing their logs over ``ReplicationService/Sync``, on loopback.

Every node is a fresh ``pandanode up`` (LAN discovery off). Three scenarios:

* ``replication.two_nodes`` — two unwired nodes; B catches up with A through
  ``ReplicationService/SyncWith`` (one session, answered when it ended):

  - *initial sync* of N pre-signed entries (short logs of 10) that A holds, in entries/s, next
    to ``PublishStream`` of the same entries into A measured just before (the same-run ingest
    baseline; goal ≥ 0.5);
  - *wire bytes per entry*: the serialized ``SyncMessage`` bytes B received (the session's
    ``bytes_received``; gRPC/HTTP-2 framing not included) per entry, next to the raw entry +
    operation bytes;
  - *in sync*: a second session once both hold the same N/10 logs — only Announce, HaveDigest
    and SyncDone (bytes both ways);
  - *1 % / 1 % / 98 % split*: A and B each get 1 % of the union the other lacks, then one session
    (bytes both ways, time until both hold the union).

* ``replication.live_latency`` — B wired to A by ``--bootstrap-peers``, a live session: the
  time from A's answer to a unary ``Publish`` of a new document until B's ``GetDocument`` with
  consistency on that operation answers, one document at a time, idle and while A ingests a
  paced background ``PublishStream`` that B also takes live (goal p99 < 1 s).

* ``replication.three_nodes`` — A, B (bootstrap A), C (bootstrap B), live; a third of N
  entries published on each node at once: the time from the first write until every node holds
  all of them (and the time after the last write was answered).

Discovery probes every second instead of 5 s (``PANDANODE_DISCOVERY_PROBE_INTERVAL``), so a
wired pair finds each other quickly; the clocks start only once the sessions run.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import grpc.aio

from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as q
from pandanode.query.v1 import query_pb2_grpc
from pandanode.replication.v1 import replication_pb2 as rpb
from pandanode.replication.v1 import replication_pb2_grpc

from ..client import CHANNEL_OPTIONS, publish_stream
from ..context import QUERY_SERVICE, Context
from ..procs import NodeProcess
from ..registry import Option, ScenarioResult, requirement, scenario
from ..workload import bench_schema, flatten, short_logs

__all__ = ["live_latency", "three_nodes", "two_nodes"]

REPLICATION_SERVICE = "pandanode.replication.v1.ReplicationService"
LOG_LENGTH = 10
ENV = {"PANDANODE_DISCOVERY_PROBE_INTERVAL": "1.0"}
_TIMEOUT = 600.0
_MIB = 1024 * 1024
_POLL = 0.05
# Keeps document titles of the workloads apart (they are signed once per run, then cached).
_FIRST = {"two": 1_000_000, "extra": 2_000_000, "docs": 3_000_000, "load": 4_000_000}


@requirement("replication")
async def _replicating(ctx: Context) -> str | None:
    if ctx.args.node_mode != "up":
        return "replication runs in the all-in-one node (--node-mode up)"
    return None


@contextlib.asynccontextmanager
async def _nodes(
    ctx: Context, out: ScenarioResult, labels: Sequence[str], bootstrap: dict[str, str]
) -> AsyncIterator[dict[str, NodeProcess]]:
    """Fresh nodes by label; ``bootstrap`` maps a label to the label of its bootstrap peer.

    Each node's peak RSS (node and nats-server) is recorded as it stops.
    """
    root = Path(tempfile.mkdtemp(prefix="replication-", dir=ctx.work_dir))
    nodes = {
        label: NodeProcess(root / label, root / f"{label}.log", ctx.args.node_mode, env=ENV)
        for label in labels
    }
    for label, peer in bootstrap.items():
        nodes[label].args = ("--bootstrap-peers", nodes[peer].address)
    try:
        await asyncio.gather(*(node.start() for node in nodes.values()))
        yield nodes
        for label, node in nodes.items():
            node_rss, nats_rss = node.peak_rss()
            row = f"node {label}"
            out.metric(row, "node peak RSS MiB", node_rss / _MIB, "MiB", "resource")
            out.metric(row, "nats peak RSS MiB", nats_rss / _MIB, "MiB", "resource")
    finally:
        await asyncio.gather(*(node.stop() for node in nodes.values()))
        shutil.rmtree(root, ignore_errors=True)


def _logs(ctx: Context, key: str, logs: int) -> list[list[pb.PublishRequest]]:
    schema_id = bench_schema().schema_id
    return ctx.cached(
        f"replication-{key}-{logs}",
        lambda: short_logs(schema_id, logs, LOG_LENGTH, first=_FIRST[key]),
    )


async def _publish(node: NodeProcess, requests: Sequence[pb.PublishRequest], batch: int) -> float:
    """Stream ``requests`` into ``node``; their durable entries/s."""
    async with grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel:
        run = await publish_stream(channel, requests, batch)
    node.published += run.count
    return run.count / run.seconds


async def _held(node: NodeProcess) -> int:
    """How many entries ``node`` holds (the sum of its log heights)."""
    total = 0
    token = ""
    async with grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while True:
            response = await stub.GetLogHeights(
                pb.GetLogHeightsRequest(page_token=token), timeout=60
            )
            total += sum(height.seq_num for height in response.log_heights)
            token = response.next_page_token
            if not token:
                return total


async def _until_held(nodes: Sequence[NodeProcess], count: int, timeout: float = _TIMEOUT) -> float:
    """Wait until every node holds ``count`` entries; the ``perf_counter`` then."""
    deadline = time.monotonic() + timeout
    while True:
        held = await asyncio.gather(*(_held(node) for node in nodes))
        if all(h >= count for h in held):
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise TimeoutError(f"nodes hold {held} entries after {timeout} s, not {count}")
        await asyncio.sleep(_POLL)  # poll: replication is under way


async def _sync_with(node: NodeProcess, peer: NodeProcess) -> rpb.Session:
    """One catch-up session of ``node`` with ``peer``, run to its end."""
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        session = await stub.SyncWith(rpb.SyncWithRequest(address=peer.address), timeout=_TIMEOUT)
    if session.error_reason:
        raise RuntimeError(f"the session with {peer.address} failed: {session.error_reason}")
    return session


async def _until_live(node: NodeProcess, sessions: int, timeout: float = 120.0) -> None:
    """Wait until ``node`` runs ``sessions`` live sessions."""
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = replication_pb2_grpc.ReplicationServiceStub(channel)
        while True:
            listed = await stub.ListSessions(rpb.ListSessionsRequest(), timeout=10)
            live = {s.node_id for s in listed.sessions if s.state == rpb.SESSION_STATE_LIVE}
            if len(live) >= sessions:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} live sessions after {timeout} s, not {sessions}")
            await asyncio.sleep(_POLL)  # poll: discovery and the first catch-up are under way


def _raw_bytes(requests: Sequence[pb.PublishRequest]) -> int:
    return sum(len(r.entry) + len(r.operation) for r in requests)


@scenario(
    "replication.two_nodes",
    title="SyncWith between two nodes: initial sync, wire bytes, in-sync session, 1/1/98 % split",
    requires=("replication",),
    options=(
        Option(
            "--replication-entries",
            int,
            100_000,
            "entries B catches up with (short logs of 10)",
            smoke=300,
        ),
    ),
)
async def two_nodes(ctx: Context, out: ScenarioResult) -> None:
    """Initial sync, bytes per entry, an in-sync session and a 1 %/1 %/98 % split."""
    logs = max(1, ctx.args.replication_entries // LOG_LENGTH)
    schema = bench_schema()
    workload = [*schema.setup, *flatten(_logs(ctx, "two", logs))]
    # Each side's 1 % of the union (the union being the shared 98 % and both 1 %).
    extra_logs = max(1, math.ceil(len(workload) / 98 / LOG_LENGTH))
    extra = _logs(ctx, "extra", 2 * extra_logs)
    only_a, only_b = flatten(extra[:extra_logs]), flatten(extra[extra_logs:])
    batch = ctx.args.stream_batch
    async with _nodes(ctx, out, ("A", "B"), {}) as nodes:
        a, b = nodes["A"], nodes["B"]
        ingest_rate = await _publish(a, workload, batch)
        ingest_row = f"PublishStream into A, {batch}/message"
        out.metric(ingest_row, "entries/s", ingest_rate, "/s", "throughput")

        started = time.perf_counter()
        session = await _sync_with(b, a)
        seconds = time.perf_counter() - started
        if session.entries_received != len(workload) or await _held(b) != len(workload):
            raise RuntimeError(f"B received {session.entries_received} of {len(workload)}")
        b.published += len(workload)
        rate = out.rate(
            "initial sync", len(workload), seconds, baseline=f"{out.name}/{ingest_row}/entries/s"
        )
        out.metric("initial sync", "÷ PublishStream", rate / ingest_rate, "×", "ratio")
        raw = _raw_bytes(workload) / len(workload)
        wire = session.bytes_received / len(workload)
        out.metric("initial sync", "wire B/entry", wire, "B", "cost")
        out.metric("initial sync", "entry + operation B/entry", raw, "B", "cost")
        out.metric("initial sync", "wire ÷ raw", wire / raw, "×", "ratio")

        in_sync = await _sync_with(b, a)
        if in_sync.entries_received or in_sync.entries_sent:
            raise RuntimeError("nodes in sync exchanged entries")
        row = f"in sync, {logs + len(schema.setup):,} logs"
        out.metric(row, "session B", in_sync.bytes_sent + in_sync.bytes_received, "B", "cost")

        await _publish(a, only_a, batch)
        await _publish(b, only_b, batch)
        union = len(workload) + len(only_a) + len(only_b)
        started = time.perf_counter()
        split = await _sync_with(b, a)
        wire_bytes = split.bytes_sent + split.bytes_received
        exchanged = split.entries_sent + split.entries_received
        # SyncWith answers once both sides stored what they were sent (a session's end waits
        # for the peer's): both hold the union now.
        held = await asyncio.gather(_held(a), _held(b))
        if min(held) < union:
            raise RuntimeError(f"after the split session A, B hold {held}, not {union} each")
        converged = time.perf_counter()
        row = "1 % / 1 % / 98 % split"
        out.metric(row, "session B", wire_bytes, "B", "cost")
        out.metric(row, "entries exchanged", exchanged, "", "count")
        out.metric(row, "seconds", converged - started, "s", "latency")
        out.metric(
            row,
            "wire B/entry exchanged",
            wire_bytes / max(exchanged, 1),
            "B",
            "cost",
        )
        out.notes.update(
            entries=len(workload),
            logs=logs + len(schema.setup),
            split_union=union,
            split_each_side=len(only_a),
        )


async def _paced(
    node: NodeProcess, requests: Sequence[pb.PublishRequest], rate: float, stop: asyncio.Event
) -> tuple[int, float]:
    """Stream ``requests`` into ``node`` at about ``rate`` entries/s until ``stop`` is set.

    Returns:
        Entries answered, and seconds.
    """
    tick = 0.05
    per_tick = max(1, round(rate * tick))
    started = time.perf_counter()

    async def messages() -> AsyncIterator[pb.PublishStreamRequest]:
        for index, start in enumerate(range(0, len(requests), per_tick)):
            if stop.is_set():
                return
            # Pacing: the load is a steady rate, not as fast as the node takes it.
            await asyncio.sleep(max(0.0, started + index * tick - time.perf_counter()))
            yield pb.PublishStreamRequest(items=requests[start : start + per_tick])

    answered = 0
    async with grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        async for response in stub.PublishStream(messages(), timeout=_TIMEOUT):
            answered += len(response.results)
    node.published += answered
    return answered, time.perf_counter() - started


async def _document_latencies(
    a: NodeProcess, b: NodeProcess, creates: Sequence[pb.PublishRequest], stop: asyncio.Event
) -> list[float]:
    """Publish each CREATE on A; seconds from A's answer to B's GetDocument answer."""
    samples: list[float] = []
    query_address = b.endpoints.get(QUERY_SERVICE, b.address)
    async with (
        grpc.aio.insecure_channel(a.ingest_address) as to_a,
        grpc.aio.insecure_channel(query_address) as to_b,
    ):
        ingest = ingest_pb2_grpc.IngestServiceStub(to_a)
        query = query_pb2_grpc.QueryServiceStub(to_b)
        for request in creates:
            if stop.is_set():
                break
            answer = await ingest.Publish(request, timeout=60)
            acked = time.perf_counter()
            await query.GetDocument(
                q.GetDocumentRequest(
                    document_id=answer.operation_id,
                    consistency=q.Consistency(operation_id=answer.operation_id, timeout_ms=30_000),
                ),
                timeout=60,
            )
            samples.append(time.perf_counter() - acked)
            a.published += 1
    return samples


@scenario(
    "replication.live_latency",
    title="Live: A's Publish answered → B's GetDocument answers, idle and under load",
    requires=("replication", "query"),
    options=(
        Option(
            "--replication-live-documents",
            int,
            200,
            "documents timed one at a time, idle and again under load",
            smoke=10,
        ),
        Option(
            "--replication-load-rate",
            float,
            1000.0,
            "entries/s of the background PublishStream into A (the load)",
            smoke=200.0,
        ),
        Option(
            "--replication-load-entries",
            int,
            60_000,
            "pre-signed background entries (the load stops when they run out)",
            smoke=600,
        ),
    ),
)
async def live_latency(ctx: Context, out: ScenarioResult) -> None:
    """Live pushes between two wired nodes: latency idle, then under a paced load."""
    documents = ctx.args.replication_live_documents
    schema = bench_schema()
    creates = flatten(short_logs(schema.schema_id, 2 * documents, 1, first=_FIRST["docs"]))
    load = flatten(_logs(ctx, "load", math.ceil(ctx.args.replication_load_entries / LOG_LENGTH)))
    async with _nodes(ctx, out, ("A", "B"), {"B": "A"}) as nodes:
        a, b = nodes["A"], nodes["B"]
        await _until_live(b, 1)
        await _publish(a, schema.setup, len(schema.setup))
        await _until_held((b,), len(schema.setup))

        never = asyncio.Event()
        idle = await _document_latencies(a, b, creates[:documents], never)
        out.latency("idle", idle, series="replication live, idle")

        rate = ctx.args.replication_load_rate
        stop = asyncio.Event()
        background = asyncio.create_task(_paced(a, load, rate, stop))
        # Let the load reach its pace (and B's live session its backlog) before timing.
        await asyncio.sleep(1.0)
        measuring = asyncio.create_task(_document_latencies(a, b, creates[documents:], stop))
        done, _ = await asyncio.wait({background, measuring}, return_when=asyncio.FIRST_COMPLETED)
        loaded = await measuring if measuring in done else None
        stop.set()
        answered, seconds = await background
        stopped = time.perf_counter()
        if loaded is None:
            loaded = await measuring
        if not loaded:
            raise RuntimeError("the load ran out before a document was timed")
        row = f"under load ({rate:,.0f} entries/s into A)"
        out.latency(row, loaded, series="replication live, under load")
        out.metric(row, "load entries/s", answered / seconds, "/s", "throughput")
        out.metric(row, "documents timed", len(loaded), "", "count")
        total = len(schema.setup) + len(idle) + len(loaded) + answered
        caught_up = await _until_held((b,), total)
        out.notes.update(documents_idle=len(idle), documents_under_load=len(loaded))
        out.notes["b_caught_up_after_load_s"] = round(caught_up - stopped, 3)


@scenario(
    "replication.three_nodes",
    title="Three nodes A–B–C (bootstrap chain), a third of N entries written on each at once",
    requires=("replication",),
    options=(
        Option(
            "--replication-three-entries",
            int,
            10_000,
            "entries written (a third on each node)",
            smoke=120,
        ),
    ),
)
async def three_nodes(ctx: Context, out: ScenarioResult) -> None:
    """Convergence time of three live nodes taking writes at once."""
    schema = bench_schema()
    per_node = max(1, ctx.args.replication_three_entries // 3 // LOG_LENGTH)
    logs = _logs(ctx, "load", 3 * per_node)
    parts = [flatten(logs[i * per_node : (i + 1) * per_node]) for i in range(3)]
    async with _nodes(ctx, out, ("A", "B", "C"), {"B": "A", "C": "B"}) as nodes:
        a, b, c = nodes["A"], nodes["B"], nodes["C"]
        await asyncio.gather(_until_live(a, 1), _until_live(b, 2), _until_live(c, 1))
        await _publish(a, schema.setup, len(schema.setup))
        await _until_held((a, b, c), len(schema.setup))
        total = len(schema.setup) + sum(len(part) for part in parts)

        started = time.perf_counter()

        async def write(node: NodeProcess, part: list[pb.PublishRequest]) -> float:
            await _publish(node, part, ctx.args.stream_batch)
            return time.perf_counter()

        acked = max(
            await asyncio.gather(*(write(n, p) for n, p in zip((a, b, c), parts, strict=True)))
        )
        converged = await _until_held((a, b, c), total)
        written = total - len(schema.setup)
        row = f"{written:,} entries, a third on each"
        out.metric(row, "converged s", converged - started, "s", "latency")
        out.metric(row, "after last write s", converged - acked, "s", "latency")
        out.rate(row, written, converged - started)
        out.notes.update(entries=written, logs=3 * per_node)
