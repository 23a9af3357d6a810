"""Ingest: entries/s through Publish (unary) and PublishStream, many short logs and one long log.

Each scenario runs its own fresh node, publishes the benchmark schema, then pre-signed entries.
Throughput counts entries answered OK (durable: synced to RocksDB); stream scenarios also report
"durable + announced" (until the event stream holds every entry). CPU time per entry is the node
process plus its nats-server, from before the first call until every entry was announced;
"main-thread CPU" is the CPU time of the ingest process's main thread alone (its event loop:
gRPC handlers, the writer's rules and hand-over to the announcer; not the verification and
commit threads), over the same span (see :mod:`bench.threads`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
import grpc.aio

from pandanode.ingest.v1 import ingest_pb2 as pb

from ..client import (
    CHANNEL_OPTIONS,
    publish_setup,
    publish_stream,
    publish_unary,
    wait_announced,
)
from ..context import Context
from ..procs import MIN_CPU_SECONDS, CpuTimes, NodeProcess
from ..registry import Option, ScenarioResult, scenario
from ..threads import IngestMainThread
from ..workload import bench_schema, flatten, long_log, short_logs
from .baselines import (
    PROBE_ECHO_CALLS,
    UNARY_LEVELS,
    VERIFY,
    EchoProbe,
    echo_unary,
    verify_probe,
)

__all__ = ["long_log_entries", "short_log_entries"]

Logs = list[list[pb.PublishRequest]]

# Concurrency levels also measured through the node's public address (the pass-through hop).
HOP_LEVELS = (1, 16)

MAIN_THREAD_CPU = "main-thread CPU µs/entry"
NEXT_TO_IT = "verify 1 core, just before and after"
"""Row of the verify rate measured around a stream run (the mean of both probes)."""


def _rate_next_to_verify(
    ctx: Context, out: ScenarioResult, row: str, entries: int, seconds: float, before: float
) -> None:
    """Record ``row``'s rate against the verify rate measured right before and after it.

    ``baseline.verify`` runs minutes earlier; on a machine whose speed drifts, a ratio to the
    mean of two probes around the run itself is the steadier figure (both are reported).
    """
    after = verify_probe(ctx)
    out.metric(NEXT_TO_IT, "verifications/s", (before + after) / 2, "/s", "throughput")
    out.metric(NEXT_TO_IT, "before", before, "/s", "throughput")
    out.metric(NEXT_TO_IT, "after", after, "/s", "throughput")
    out.rate(
        f"{row}, vs verify next to it",
        entries,
        seconds,
        baseline=f"{out.name}/{NEXT_TO_IT}/verifications/s",
    )


def _main_thread_per_entry(
    out: ScenarioResult,
    row: str,
    thread: IngestMainThread,
    before: tuple[int, float],
    entries: int,
) -> None:
    """Record the ingest main thread's CPU µs/entry since ``before`` in ``row``."""
    value = IngestMainThread.per_entry_us(before, thread.cpu(), entries)
    if value is None:
        out.notes.setdefault("main_thread_cpu_not_measured", []).append(row)
        return
    out.metric(row, MAIN_THREAD_CPU, value, "µs", "cost")


def short_log_entries(ctx: Context, key: str, logs: int) -> Logs:
    """``logs`` pre-signed short logs, shared by the scenarios that ask for the same ``key``."""
    schema_id = bench_schema().schema_id
    length = ctx.args.short_log_length
    return ctx.cached(f"{key}-{logs}x{length}", lambda: short_logs(schema_id, logs, length))


def long_log_entries(ctx: Context) -> list[pb.PublishRequest]:
    """The pre-signed long log (one author, one document), shared by the long-log scenarios."""
    schema_id = bench_schema().schema_id
    length = max(ctx.args.long_log_entries, ctx.args.long_log_unary_entries)
    return ctx.cached("long-log", lambda: long_log(schema_id, length))


def _stream_workload(ctx: Context) -> list[pb.PublishRequest]:
    logs = math.ceil(ctx.args.stream_entries / ctx.args.short_log_length)
    return flatten(short_log_entries(ctx, "stream-short-logs", logs))


async def _stream_and_announce(
    ctx: Context,
    out: ScenarioResult,
    node: NodeProcess,
    channel: grpc.aio.Channel,
    requests: Sequence[pb.PublishRequest],
    batch: int,
) -> None:
    """Stream ``requests``; record durable and announced rates, batch latency and CPU/entry."""
    probe = verify_probe(ctx)
    main = IngestMainThread(node.pid, node.data_dir)
    main_before = main.cpu()
    cpu = node.cpu()
    run = await publish_stream(channel, requests, batch)
    announced = await wait_announced(node.nats_url, node.published + run.count)
    used = node.cpu() - cpu
    _main_thread_per_entry(out, "durable + announced", main, main_before, run.count)
    node.published += run.count
    out.rate("durable", run.count, run.seconds, baseline=VERIFY)
    out.rate("durable + announced", run.count, announced - run.started, baseline=VERIFY)
    _rate_next_to_verify(ctx, out, "durable + announced", run.count, announced - run.started, probe)
    out.latency(
        f"batch of {batch}, saturated", run.latencies, series=f"{out.name} batch of {batch}"
    )
    Context.cpu_per_entry(out, "durable + announced", used, run.count)


@scenario(
    "ingest.unary.short_logs",
    title="Publish (unary) at 1/16/64 in flight, many short logs (each worker takes whole logs)",
    options=(
        Option("--unary-entries", int, 3000, "entries per concurrency level", smoke=64),
        Option("--short-log-length", int, 10, "entries per short log", smoke=4),
    ),
)
async def unary_short_logs(ctx: Context, out: ScenarioResult) -> None:
    """Unary Publish of short logs at each concurrency level, on one node.

    The client dials the ingest process directly (as the Python client does once the node
    told it the endpoints); the rows "via public address" go through the node's pass-through.
    """
    per_level = math.ceil(ctx.args.unary_entries / ctx.args.short_log_length)
    levels = [(c, False) for c in UNARY_LEVELS] + [(c, True) for c in HOP_LEVELS]
    logs = short_log_entries(ctx, "unary-short-logs", per_level * len(levels))
    probe_calls = min(PROBE_ECHO_CALLS, max(100, ctx.args.unary_entries // 3))
    async with (
        EchoProbe() as echo,
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.ingest_address) as direct,
        grpc.aio.insecure_channel(node.address) as public,
    ):
        await publish_setup(direct, node)
        main = IngestMainThread(node.pid, node.data_dir)
        for index, (concurrency, hop) in enumerate(levels):
            level = logs[index * per_level : (index + 1) * per_level]
            echo_before = await echo.rate(concurrency, probe_calls)
            main_before = main.cpu()
            cpu = node.cpu()
            run = await publish_unary(public if hop else direct, level, concurrency)
            node.published += run.count
            await wait_announced(node.nats_url, node.published)
            used = node.cpu() - cpu
            row = f"c={concurrency}" + (" via public address" if hop else "")
            _main_thread_per_entry(out, row, main, main_before, run.count)
            out.rate(row, run.count, run.seconds, baseline=echo_unary(concurrency))
            echo_row = f"echo c={concurrency}, just before and after {row}"
            echo_after = await echo.rate(concurrency, probe_calls)
            out.metric(echo_row, "calls/s", (echo_before + echo_after) / 2, "/s", "throughput")
            out.metric(echo_row, "before", echo_before, "/s", "throughput")
            out.metric(echo_row, "after", echo_after, "/s", "throughput")
            out.rate(
                f"{row}, vs echo next to it",
                run.count,
                run.seconds,
                baseline=f"{out.name}/{echo_row}/calls/s",
            )
            out.latency(row, run.latencies, series=f"Publish unary {row}")
            Context.cpu_per_entry(out, row, used, run.count)
        out.notes["direct_address"] = node.ingest_address != node.address


@scenario(
    "ingest.stream.short_logs",
    title="PublishStream, 100 entries per message, many short logs, one stream",
    options=(
        Option("--stream-entries", int, 50_000, "entries streamed", smoke=600),
        Option("--stream-batch", int, 100, "entries per PublishStream message", smoke=100),
    ),
)
async def stream_short_logs(ctx: Context, out: ScenarioResult) -> None:
    """One PublishStream of many short logs, log after log."""
    requests = _stream_workload(ctx)
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel,
    ):
        await publish_setup(channel, node)
        await _stream_and_announce(ctx, out, node, channel, requests, ctx.args.stream_batch)


@scenario(
    "ingest.stream.long_log",
    title="PublishStream of one long log (one author, one document): does the cost stay flat?",
    options=(Option("--long-log-entries", int, 100_000, "entries in the long log", smoke=1000),),
)
async def stream_long_log(ctx: Context, out: ScenarioResult) -> None:
    """Stream one long log; compare the cost per entry of its first and last 10%."""
    requests = long_log_entries(ctx)[: ctx.args.long_log_entries]
    batch = ctx.args.stream_batch
    batches = math.ceil(len(requests) / batch)
    if batches < 10:
        raise ValueError(f"the long log needs at least 10 batches of {batch} entries")
    # The batch whose response closes each tenth of the log.
    marks = {min(batches, math.ceil(batches * d / 10)) - 1: d for d in range(1, 11)}
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.ingest_address, options=CHANNEL_OPTIONS) as channel,
    ):
        await publish_setup(channel, node)
        cpu_marks: dict[int, CpuTimes] = {}

        def on_batch(index: int) -> None:
            if index in marks:
                cpu_marks[marks[index]] = node.cpu()

        main = IngestMainThread(node.pid, node.data_dir)
        main_before = main.cpu()
        start_cpu = node.cpu()
        run = await publish_stream(channel, requests, batch, on_batch=on_batch)
        announced = await wait_announced(node.nats_url, node.published + run.count)
        used = node.cpu() - start_cpu
        _main_thread_per_entry(out, "durable + announced", main, main_before, run.count)
        node.published += run.count
    out.rate("durable", run.count, run.seconds, baseline=VERIFY)
    out.rate("durable + announced", run.count, announced - run.started, baseline=VERIFY)
    out.latency(
        f"batch of {batch}, saturated", run.latencies, series=f"{out.name} batch of {batch}"
    )
    Context.cpu_per_entry(out, "durable + announced", used, run.count)
    # Per-tenth figures from the batch responses that close each tenth.
    wall_us: list[float] = []
    cpu_us: list[float] = []
    coarse = False
    previous_at, previous_count, previous_cpu = run.started, 0, start_cpu
    for decile in range(1, 11):
        index = next(i for i, d in marks.items() if d == decile)
        entries = run.done_count[index] - previous_count
        cpu = (cpu_marks[decile] - previous_cpu).total
        coarse = coarse or cpu < MIN_CPU_SECONDS
        wall_us.append((run.done_at[index] - previous_at) / entries * 1e6)
        cpu_us.append(cpu / entries * 1e6)
        previous_at, previous_count, previous_cpu = (
            run.done_at[index],
            run.done_count[index],
            cpu_marks[decile],
        )
    out.series["wall µs/entry by tenth of the log"] = wall_us
    out.metric("first 10%", "wall µs/entry", wall_us[0], "µs", "cost")
    out.metric("last 10%", "wall µs/entry", wall_us[-1], "µs", "cost")
    out.metric("last ÷ first 10%", "wall µs/entry", wall_us[-1] / wall_us[0], "×", "ratio")
    out.metric("worst ÷ first 10%", "wall µs/entry", max(wall_us) / wall_us[0], "×", "ratio")
    if coarse:  # a tenth of the log took too little CPU time for /proc's clock ticks
        out.notes.setdefault("cpu_too_short_to_measure", []).append("tenths of the log")
        return
    out.series["CPU µs/entry by tenth of the log"] = cpu_us
    out.metric("first 10%", "CPU µs/entry", cpu_us[0], "µs", "cost")
    out.metric("last 10%", "CPU µs/entry", cpu_us[-1], "µs", "cost")
    out.metric("last ÷ first 10%", "CPU µs/entry", cpu_us[-1] / cpu_us[0], "×", "ratio")
    out.metric("worst ÷ first 10%", "CPU µs/entry", max(cpu_us) / cpu_us[0], "×", "ratio")


@scenario(
    "ingest.unary.long_log",
    title="Publish (unary, one in flight: a log is a chain) of the first entries of the long log",
    options=(
        Option("--long-log-unary-entries", int, 2000, "entries published one by one", smoke=200),
    ),
)
async def unary_long_log(ctx: Context, out: ScenarioResult) -> None:
    """Publish the long log's first entries one call at a time; compare first and last 10%."""
    requests = long_log_entries(ctx)[: ctx.args.long_log_unary_entries]
    async with ctx.node(out) as node, grpc.aio.insecure_channel(node.ingest_address) as channel:
        await publish_setup(channel, node)
        main = IngestMainThread(node.pid, node.data_dir)
        main_before = main.cpu()
        cpu = node.cpu()
        run = await publish_unary(channel, [requests], 1)
        node.published += run.count
        await wait_announced(node.nats_url, node.published)
        used = node.cpu() - cpu
        _main_thread_per_entry(out, "c=1", main, main_before, run.count)
    out.rate("c=1", run.count, run.seconds, baseline=echo_unary(1))
    out.latency("c=1", run.latencies, series="Publish unary, one long log")
    Context.cpu_per_entry(out, "c=1", used, run.count)
    tenth = max(1, len(run.latencies) // 10)
    tenths = [sum(run.latencies[i * tenth : (i + 1) * tenth]) / tenth * 1e6 for i in range(10)]
    out.series["wall µs/entry by tenth of the log"] = tenths
    out.metric("first 10%", "wall µs/entry", tenths[0], "µs", "cost")
    out.metric("last 10%", "wall µs/entry", tenths[-1], "µs", "cost")
    out.metric("last ÷ first 10%", "wall µs/entry", tenths[-1] / tenths[0], "×", "ratio")
    out.metric("worst ÷ first 10%", "wall µs/entry", max(tenths) / tenths[0], "×", "ratio")
