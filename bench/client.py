"""The benchmark client: drives ingest with pre-signed entries and times every call.

Unary publishing runs ``concurrency`` workers; each takes a whole log and publishes its entries
in order (an entry can only be stored after its backlink), so concurrency spreads over logs.
Stream publishing sends pre-built batches on one ``PublishStream`` as fast as flow control
lets it, and times each batch from the moment it is handed to gRPC to its response.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio
import nats
from nats.aio.msg import Msg

from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as q
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    STREAM_NAME,
    operations_ingested_range,
)

from .procs import NodeProcess
from .workload import bench_schema, flatten, short_logs

__all__ = [
    "CHANNEL_OPTIONS",
    "StreamRun",
    "UnaryRun",
    "creates",
    "paced_stream",
    "publish_setup",
    "publish_stream",
    "publish_unary",
    "wait_announced",
    "wait_count",
    "wait_schema",
]

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
_TIMEOUT = 120.0
_PACED_TIMEOUT = 600.0
_CONSUMER_TIMEOUT = 60.0  # seconds a JetStream API request of the bench may take


@dataclass
class UnaryRun:
    """What a unary run measured.

    Attributes:
        count: Entries published.
        seconds: Wall time from the first call to the last answer.
        latencies: Seconds of each call, in completion order.
    """

    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


@dataclass
class StreamRun:
    """What a stream run measured.

    Attributes:
        count: Entries published.
        started: ``perf_counter`` when the stream was opened.
        seconds: Wall time from opening the stream to the last response.
        latencies: Seconds from handing each batch to gRPC to its response, in order.
        done_at: ``perf_counter`` of each batch's response, in order.
        done_count: Entries answered once each batch's response arrived, in order.
    """

    count: int = 0
    started: float = 0.0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    done_count: list[int] = field(default_factory=list)


def _check(response: pb.PublishResponse | pb.PublishResult) -> None:
    if isinstance(response, pb.PublishResult) and not response.HasField("ok"):
        raise RuntimeError(f"the node rejected an entry: {response.error.message}")


async def publish_setup(channel: grpc.aio.Channel, node: NodeProcess) -> str:
    """Publish the benchmark schema's definitions; return its schema id."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    schema = bench_schema()
    for request in schema.setup:
        await stub.Publish(request, timeout=_TIMEOUT)
    node.published += len(schema.setup)
    return schema.schema_id


async def publish_unary(
    channel: grpc.aio.Channel,
    logs: Sequence[Sequence[pb.PublishRequest]],
    concurrency: int,
) -> UnaryRun:
    """Publish ``logs`` through unary ``Publish`` with ``concurrency`` calls in flight."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    pending = deque(logs)
    run = UnaryRun()

    async def worker() -> None:
        while pending:
            log = pending.popleft()
            for request in log:
                start = time.perf_counter()
                await stub.Publish(request, timeout=_TIMEOUT)
                run.latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - start
    run.count = len(run.latencies)
    return run


async def publish_stream(
    channel: grpc.aio.Channel,
    requests: Sequence[pb.PublishRequest],
    batch: int,
    on_batch: Callable[[int], None] | None = None,
) -> StreamRun:
    """Publish ``requests`` on one ``PublishStream``, ``batch`` entries per message.

    Args:
        channel: A channel to the node.
        requests: The entries, in an order the node can store them in.
        batch: Entries per message.
        on_batch: Called with each batch's index as its response arrives (e.g. to sample CPU).

    Raises:
        RuntimeError: the node rejected an entry.
    """
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    messages = [
        pb.PublishStreamRequest(items=requests[i : i + batch])
        for i in range(0, len(requests), batch)
    ]
    sent: list[float] = []

    async def send() -> AsyncIterator[pb.PublishStreamRequest]:
        for message in messages:
            sent.append(time.perf_counter())
            yield message

    run = StreamRun(started=time.perf_counter())
    call = stub.PublishStream(send(), timeout=max(_TIMEOUT, len(requests) / 200))
    async for response in call:
        now = time.perf_counter()
        index = len(run.done_at)
        for result in response.results:
            _check(result)
        run.count += len(response.results)
        run.latencies.append(now - sent[index])
        run.done_at.append(now)
        run.done_count.append(run.count)
        if on_batch is not None:
            on_batch(index)
    run.seconds = time.perf_counter() - run.started
    if run.count != len(requests):
        raise RuntimeError(f"the stream answered {run.count} of {len(requests)} entries")
    return run


async def wait_announced(nats_url: str, expected: int, timeout: float = 300.0) -> float:
    """Wait until the event stream announced ``expected`` entries; the ``perf_counter`` then.

    Follows the ``operations.ingested`` messages by their headers only: each message id names
    the store sequences it carries, and the last one counts the entries announced (the node
    starts on an empty data directory).

    Raises:
        TimeoutError: fewer entries after ``timeout`` seconds.
    """
    if expected <= 0:
        return time.perf_counter()
    # A few attempts, not nats-py's minutes of them: a refused user is a bench bug to report.
    client = await nats.connect(nats_url, name="pandanode-bench", max_reconnect_attempts=3)
    announced = 0
    reached = asyncio.Event()

    async def seen(message: Msg) -> None:
        nonlocal announced
        span = operations_ingested_range((message.headers or {}).get("Nats-Msg-Id", ""))
        if span is not None:
            announced = max(announced, span[1])
            if announced >= expected:
                reached.set()

    try:
        # Creating the consumer is a JetStream API request; on a 3-node cluster under load
        # (a smoke run next to the test suite) it outlasted nats-py's 5 s default.
        js = client.jetstream(timeout=_CONSUMER_TIMEOUT)
        subscription = await js.subscribe(
            OPERATIONS_INGESTED.subject_filter,
            stream=STREAM_NAME,
            cb=seen,
            ordered_consumer=True,
            headers_only=True,
        )
        try:
            await asyncio.wait_for(reached.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{announced} of {expected} entries announced after {timeout} s"
            ) from None
        finished = time.perf_counter()
        await subscription.unsubscribe()
        return finished
    finally:
        await client.close()


def creates(count: int, first: int = 0) -> list[pb.PublishRequest]:
    """``count`` CREATEs of the benchmark schema (one-entry logs), numbered from ``first``."""
    logs = short_logs(bench_schema().schema_id, count, 1, first=first)
    return flatten(logs)


async def paced_stream(
    channel: grpc.aio.Channel,
    requests: Sequence[pb.PublishRequest],
    *,
    rate: float,
    batch: int,
    on_ok: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Publish at ``rate`` entries/s in batches; the ``perf_counter`` each entry was answered OK.

    Keys are the operation ids (for a CREATE: the document id). ``on_ok`` is called with each
    as its answer arrives.
    """
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    messages = [requests[i : i + batch] for i in range(0, len(requests), batch)]
    start = time.perf_counter()

    async def send() -> AsyncIterator[pb.PublishStreamRequest]:
        for index, items in enumerate(messages):
            due = start + index * batch / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: the offered load is `rate`
            yield pb.PublishStreamRequest(items=items)

    ok_at: dict[str, float] = {}
    async for response in stub.PublishStream(send(), timeout=_PACED_TIMEOUT):
        now = time.perf_counter()
        for result in response.results:
            if not result.HasField("ok"):
                raise RuntimeError(f"the node rejected an entry: {result.error.message}")
            ok_at[result.ok.operation_id] = now
            if on_ok is not None:
                on_ok(result.ok.operation_id, now)
    return ok_at


async def wait_schema(channel: grpc.aio.Channel, schema_id: str, timeout: float = 60) -> None:
    """Wait until the query service knows ``schema_id`` (it materializes it from the stream)."""
    stub = query_pb2_grpc.QueryServiceStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await stub.GetSchema(q.GetSchemaRequest(schema_id=schema_id), timeout=30)
            return
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)  # poll: the query service is materializing the schema


async def wait_count(channel: grpc.aio.Channel, schema_id: str, count: int) -> None:
    """Wait until ListDocuments counts ``count`` documents of ``schema_id``."""
    stub = query_pb2_grpc.QueryServiceStub(channel)
    deadline = time.monotonic() + _PACED_TIMEOUT
    while True:
        response = await stub.ListDocuments(
            q.ListDocumentsRequest(schema_id=schema_id, page_size=1), timeout=30
        )
        if response.total_size >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{response.total_size} of {count} documents after {_PACED_TIMEOUT} s"
            )
        await asyncio.sleep(0.05)  # poll: the query service is materializing
