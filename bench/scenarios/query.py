"""Query: materialization lag, GetDocument / ListDocuments latency, WatchDocuments fan-out.

These need the node to serve ``pandanode.query.v1.QueryService``; until it does they are
reported as skipped (requirement ``query``). Documents are CREATEs of the benchmark schema
(``bench_item``: ``title: str, rank: int, score: float, done: bool``), published through
PublishStream; "visible" means a WatchDocuments subscriber got the document (lag, fan-out) or
ListDocuments counts it (read latency).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import grpc
import grpc.aio

from pandanode.query.v1 import query_pb2 as q
from pandanode.query.v1 import query_pb2_grpc

from ..client import CHANNEL_OPTIONS, creates, paced_stream, publish_setup, wait_count, wait_schema
from ..context import QUERY_SERVICE, Context
from ..registry import Option, ScenarioResult, scenario

__all__: list[str] = []

PEAK = "ingest.stream.short_logs/durable + announced/entries/s"
_TIMEOUT = 600.0
# How long deliveries are awaited after the last publish; what came later counts as missing.
_DELIVERY_WAIT = 120.0
# Channels with equal options share one connection; this one gets its own.
_OWN_CONNECTION = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]


class _Watcher:
    """One WatchDocuments subscriber that notes when each document was first created."""

    def __init__(self, channel: grpc.aio.Channel, schema_id: str) -> None:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        self.call = stub.WatchDocuments(q.WatchDocumentsRequest(schema_id=schema_id))
        self.caught_up = asyncio.Event()
        self.created: dict[str, float] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                now = time.perf_counter()
                for change in response.changes:
                    if change.kind == q.CHANGE_KIND_CAUGHT_UP:
                        self.caught_up.set()
                    elif change.kind == q.CHANGE_KIND_CREATED:
                        self.created.setdefault(change.document.document_id, now)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise

    async def ready(self, timeout: float) -> None:
        """Wait for CAUGHT_UP (the snapshot was sent); raise if the watch failed first."""
        waiter = asyncio.create_task(self.caught_up.wait())
        await asyncio.wait(
            {waiter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if self.caught_up.is_set():
            return
        if self.task.done():
            self.task.result()
            raise RuntimeError("the watch ended before it caught up")
        raise TimeoutError(f"the watch did not catch up within {timeout} s")

    async def wait_for(self, document_ids: Sequence[str], timeout: float) -> bool:
        """Wait until every one of ``document_ids`` was seen; False if some were not in time.

        Raises:
            RuntimeError: the watch ended.
        """
        deadline = time.monotonic() + timeout
        while any(d not in self.created for d in document_ids):
            if self.task.done():
                self.task.result()
                raise RuntimeError("the watch ended early")
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)  # poll: the watch is delivering
        return True

    async def close(self) -> None:
        """Cancel the watch."""
        self.call.cancel()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class _ConsistentReader:
    """Reads documents with ``consistency`` as soon as their CREATE is answered OK.

    The read waits on the node until the operation is materialized, so the time from the OK to
    the answer is the materialization lag as a client reading its own write sees it.
    """

    def __init__(self, channel: grpc.aio.Channel, every: int) -> None:
        self._stub = query_pb2_grpc.QueryServiceStub(channel)
        self._every = every
        self._count = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.answered: dict[str, float] = {}
        self.failed = 0

    def on_ok(self, operation_id: str, _: float) -> None:
        """Read every ``every``-th document published (a callback of :func:`paced_stream`)."""
        self._count += 1
        if self._count % self._every == 0:
            self._tasks.append(asyncio.create_task(self._read(operation_id)))

    async def _read(self, operation_id: str) -> None:
        request = q.GetDocumentRequest(
            document_id=operation_id,
            consistency=q.Consistency(operation_id=operation_id, timeout_ms=60_000),
        )
        try:
            await self._stub.GetDocument(request, timeout=90)
        except grpc.aio.AioRpcError:
            self.failed += 1
            return
        self.answered[operation_id] = time.perf_counter()

    async def finish(self) -> None:
        """Wait for every read started."""
        await asyncio.gather(*self._tasks)


@scenario(
    "query.materialization_lag",
    title=(
        "Materialization lag under load: Publish OK → seen by a WatchDocuments subscriber, "
        "and → answered by GetDocument with consistency (PublishStream, --lag-batch entries "
        "per message)"
    ),
    requires=("query",),
    options=(
        Option("--lag-documents", int, 10_000, "documents published at the paced rate", smoke=100),
        Option(
            "--lag-rate",
            float,
            0.0,
            "offered entries/s (0: half the measured peak stream ingest, or 1000)",
            smoke=300.0,
        ),
        Option(
            "--lag-read-every",
            int,
            10,
            "read every N-th document with GetDocument + consistency right after its OK",
            smoke=5,
        ),
        Option(
            "--lag-batch",
            int,
            100,
            "entries per PublishStream message (the stream peak it is half of is measured at "
            "--stream-batch, 100)",
            smoke=10,
        ),
        Option(
            "--lag-via",
            str,
            "direct",
            "direct: publish to ingest and watch/read at query, each service's own process, as "
            "the Python client does; public: everything through the node's public address",
            smoke="direct",
        ),
    ),
)
async def materialization_lag(ctx: Context, out: ScenarioResult) -> None:
    """Publish CREATEs at half of peak ingest; time each from its OK to its watch event.

    A sample of the documents is also read with ``consistency`` right after its OK (the read
    waits on the node until the document is materialized): the lag without a watch in the way.
    Publisher, watcher and reader each have their own connection. By default they dial the
    ingest and query processes directly (``NodeService/GetEndpoints``), as the Python client
    does and as the peak stream ingest it is half of was measured: through the public address,
    the node's pass-through costs the supervisor ~110 µs of CPU per entry here, more than a
    core's share at this load on 2 cores.
    """
    rate = ctx.args.lag_rate or (ctx.baseline(PEAK) or 2000.0) / 2
    requests = creates(ctx.args.lag_documents)
    if ctx.args.lag_via not in ("direct", "public"):
        raise ValueError(f"--lag-via is direct or public, not {ctx.args.lag_via!r}")
    async with ctx.node(out) as node:
        direct = ctx.args.lag_via == "direct"
        ingest_address = node.ingest_address if direct else node.address
        query_address = node.endpoints.get(QUERY_SERVICE, node.address) if direct else node.address
        out.notes["via"] = ctx.args.lag_via
        out.notes["entries_per_message"] = ctx.args.lag_batch
        async with (
            grpc.aio.insecure_channel(ingest_address, options=CHANNEL_OPTIONS) as channel,
            grpc.aio.insecure_channel(query_address, options=_OWN_CONNECTION) as watch_channel,
            grpc.aio.insecure_channel(query_address, options=_OWN_CONNECTION) as read_channel,
        ):
            schema_id = await publish_setup(channel, node)
            await wait_schema(watch_channel, schema_id)
            watcher = _Watcher(watch_channel, schema_id)
            reader = _ConsistentReader(read_channel, ctx.args.lag_read_every)
            try:
                await watcher.ready(60)
                cpu_before, client_before = node.cpu(), time.process_time()
                start = time.perf_counter()
                ok_at = await paced_stream(
                    channel, requests, rate=rate, batch=ctx.args.lag_batch, on_ok=reader.on_ok
                )
                seconds = time.perf_counter() - start
                node.published += len(ok_at)
                complete = await watcher.wait_for(list(ok_at), _DELIVERY_WAIT)
                await reader.finish()
                # Until everything was seen: work the node put off still counts.
                used = node.cpu() - cpu_before
                client = time.process_time() - client_before
            finally:
                await watcher.close()
    ctx.cpu_per_entry(out, "node, until all seen", used, len(ok_at))
    # The benchmark client shares the 2 cores: publisher, watcher and reader, one process.
    out.metric("bench client", "CPU µs/entry", client / len(ok_at) * 1e6, "µs", "cost")
    lags = [watcher.created[d] - t for d, t in ok_at.items() if d in watcher.created]
    if not lags:
        raise RuntimeError(f"the watch saw none of the documents within {_DELIVERY_WAIT} s")
    reads = [t - ok_at[d] for d, t in reader.answered.items()]
    out.metric("offered load", "entries/s", rate, "/s", "throughput", baseline=PEAK)
    out.rate("achieved", len(ok_at), seconds)
    out.latency("Publish OK → watched", lags, series="materialization lag (watch)")
    if reads:
        out.latency(
            "Publish OK → read with consistency", reads, series="materialization lag (read)"
        )
    out.metric("seen in time", "%", len(lags) / len(ok_at) * 100, "%", "ratio")
    if not complete:
        out.notes["incomplete"] = (
            f"{len(ok_at) - len(lags)} documents unseen after {_DELIVERY_WAIT} s"
        )
    if reader.failed:
        out.notes["consistent_reads_failed"] = reader.failed


@scenario(
    "query.read_latency",
    title="GetDocument and ListDocuments (filter + order + page of 25) at 10k and 100k documents",
    requires=("query",),
    options=(
        Option(
            "--query-documents",
            str,
            "10000,100000",
            "document counts to measure at (comma-separated, growing)",
            smoke="100,300",
        ),
        Option("--query-calls", int, 2000, "calls of each kind per document count", smoke=50),
        Option(
            "--query-seconds",
            float,
            15.0,
            "at most this long for the calls of each kind per document count",
            smoke=5.0,
        ),
    ),
)
async def read_latency(ctx: Context, out: ScenarioResult) -> None:
    """Load documents, then time GetDocument and ListDocuments one call at a time."""
    levels = sorted(int(n) for n in ctx.args.query_documents.split(",") if n.strip())
    requests = creates(levels[-1])
    rng = random.Random(6)
    async with (
        ctx.node(out) as node,
        grpc.aio.insecure_channel(node.address, options=CHANNEL_OPTIONS) as channel,
    ):
        schema_id = await publish_setup(channel, node)
        await wait_schema(channel, schema_id)
        stub = query_pb2_grpc.QueryServiceStub(channel)
        loaded = 0
        document_ids: list[str] = []
        for level in levels:
            ok_at = await paced_stream(channel, requests[loaded:level], rate=1e9, batch=100)
            document_ids.extend(ok_at)
            node.published += len(ok_at)
            loaded = level
            await wait_count(channel, schema_id, level)
            latencies: list[float] = []
            until = time.perf_counter() + ctx.args.query_seconds
            while len(latencies) < ctx.args.query_calls and time.perf_counter() < until:
                request = q.GetDocumentRequest(document_id=rng.choice(document_ids))
                start = time.perf_counter()
                await stub.GetDocument(request, timeout=30)
                latencies.append(time.perf_counter() - start)
            out.latency(f"GetDocument @ {level}", latencies, series=f"GetDocument @ {level}")
            latencies = []
            until = time.perf_counter() + ctx.args.query_seconds
            while len(latencies) < ctx.args.query_calls and time.perf_counter() < until:
                threshold = rng.randrange(level)
                request_list = q.ListDocumentsRequest(
                    schema_id=schema_id,
                    filters=[
                        q.Filter(
                            field="rank",
                            operator=q.FILTER_OPERATOR_GTE,
                            value=q.FilterValue(int_value=threshold),
                        )
                    ],
                    order_by=q.OrderBy(field="rank"),
                    page_size=25,
                )
                start = time.perf_counter()
                await stub.ListDocuments(request_list, timeout=30)
                latencies.append(time.perf_counter() - start)
            out.latency(f"ListDocuments @ {level}", latencies, series=f"ListDocuments @ {level}")


@scenario(
    "query.watch_fanout",
    title="WatchDocuments fan-out: every new document delivered to many watchers",
    requires=("query",),
    options=(
        Option("--watchers", int, 100, "concurrent WatchDocuments subscribers", smoke=5),
        Option("--watch-documents", int, 300, "documents published while watched", smoke=20),
        Option("--watch-rate", float, 100.0, "offered entries/s", smoke=200.0),
    ),
)
async def watch_fanout(ctx: Context, out: ScenarioResult) -> None:
    """Open many watches (over several connections), publish, time every delivery."""
    requests = creates(ctx.args.watch_documents)
    watchers: list[_Watcher] = []
    channels: list[grpc.aio.Channel] = []
    async with ctx.node(out) as node:
        try:
            # A connection carries at most max_concurrent_streams (100) calls: 25 per channel.
            options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
            for _ in range(max(1, -(-ctx.args.watchers // 25))):
                channels.append(grpc.aio.insecure_channel(node.address, options=options))
            schema_id = await publish_setup(channels[0], node)
            await wait_schema(channels[0], schema_id)
            for index in range(ctx.args.watchers):
                watchers.append(_Watcher(channels[index % len(channels)], schema_id))
            await asyncio.gather(*(w.ready(120) for w in watchers))
            publisher = grpc.aio.insecure_channel(node.address, options=options)
            channels.append(publisher)
            start = time.perf_counter()
            ok_at = await paced_stream(publisher, requests, rate=ctx.args.watch_rate, batch=10)
            node.published += len(ok_at)
            ids = list(ok_at)
            complete = all(
                await asyncio.gather(*(w.wait_for(ids, _DELIVERY_WAIT) for w in watchers))
            )
            seconds = max(max(w.created.values(), default=start) for w in watchers) - start
        finally:
            for watcher in watchers:
                await watcher.close()
            for channel in channels:
                await channel.close(None)
    deliveries = [w.created[d] - t for w in watchers for d, t in ok_at.items() if d in w.created]
    expected = len(watchers) * len(ok_at)
    if not deliveries:
        raise RuntimeError(f"no watcher saw any document within {_DELIVERY_WAIT} s")
    out.rate("deliveries", len(deliveries), seconds, column="deliveries/s")
    out.latency("Publish OK → every watcher", deliveries, series="watch fan-out")
    out.metric("delivered in time", "%", len(deliveries) / expected * 100, "%", "ratio")
    if not complete:
        missing = expected - len(deliveries)
        out.notes["incomplete"] = f"{missing} of {expected} deliveries missing after the wait"
