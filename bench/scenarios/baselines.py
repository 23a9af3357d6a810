"""Baselines, measured in the same run: what the hardware and the libraries can do at best.

Every other figure is reported as a ratio to one of these, so results stay comparable across
machines: Ed25519 verification (PyNaCl), a raw grpc.aio echo service (unary and stream, in its own
process like the node), and RocksDB batched, synced writes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc.aio
import nacl.bindings
import nacl.signing
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from pandanode.core import KeyPair

from ..client import CHANNEL_OPTIONS
from ..context import Context
from ..echo import STREAM, UNARY
from ..procs import MIN_CPU_SECONDS, EchoProcess
from ..registry import Option, ScenarioResult, scenario
from ..workload import bench_schema, document_log

__all__ = [
    "ECHO",
    "ECHO_STREAM_BATCH",
    "ROCKSDB",
    "UNARY_LEVELS",
    "VERIFY",
    "VERIFY_COST",
    "PROBE_ECHO_CALLS",
    "EchoProbe",
    "verify_probe",
]

VERIFY = "baseline.verify/1 core/verifications/s"
"""The raw single-core Ed25519 verify rate (the reference of ingest throughput)."""
VERIFY_COST = "baseline.verify/1 core/µs each"
ROCKSDB = "baseline.rocksdb/WriteBatch of 1000, synced/puts/s"
ECHO = "baseline.grpc_echo"
ECHO_STREAM_BATCH = f"{ECHO}/stream, 100 entries per message/entries/s"
UNARY_LEVELS = (1, 16, 64)


def echo_unary(concurrency: int) -> str:
    """The reference of unary Publish at ``concurrency`` calls in flight."""
    return f"{ECHO}/unary c={concurrency}/calls/s"


def _signed_messages(count: int) -> list[tuple[bytes, bytes, bytes]]:
    """(message, signature, public key) triples of entry-sized messages, 50 signers."""
    keys = [nacl.signing.SigningKey.generate() for _ in range(50)]
    triples = []
    for index in range(count):
        key = keys[index % len(keys)]
        message = os.urandom(100)
        triples.append((message, key.sign(message).signature, bytes(key.verify_key)))
    return triples


def _verify_all(triples: list[tuple[bytes, bytes, bytes]]) -> None:
    for message, signature, public_key in triples:
        # The call pandanode.core's verification makes (VerifyKey.verify), minus the object.
        nacl.bindings.crypto_sign_open(signature + message, public_key)


PROBE_SIGNATURES = 5_000
"""Signatures one :func:`verify_probe` checks (~0.3–0.5 s on one core)."""


def verify_probe(ctx: Context) -> float:
    """The single-core verify rate right now (verifications/s), timed like ``baseline.verify``.

    The machine's speed drifts by tens of percent within minutes (a VM sharing its host), so a
    scenario compared with verification also measures it right before and after itself.
    """
    triples = ctx.cached("verify-probe", lambda: _signed_messages(PROBE_SIGNATURES))
    start = time.perf_counter()
    _verify_all(triples)
    return len(triples) / (time.perf_counter() - start)


@scenario(
    "baseline.verify",
    title="Raw Ed25519 verify (PyNaCl): one core, and two threads (it releases the GIL)",
    options=(Option("--verify-count", int, 40_000, "signatures to verify", smoke=500),),
)
async def verify(ctx: Context, out: ScenarioResult) -> None:
    """Time PyNaCl verification of entry-sized messages on one thread, then on two."""
    triples = _signed_messages(ctx.args.verify_count)
    start = time.perf_counter()
    _verify_all(triples)
    seconds = time.perf_counter() - start
    out.rate("1 core", len(triples), seconds, column="verifications/s")
    out.metric("1 core", "µs each", seconds / len(triples) * 1e6, "µs", "cost")
    half = len(triples) // 2
    with ThreadPoolExecutor(2) as pool:
        start = time.perf_counter()
        list(pool.map(_verify_all, [triples[:half], triples[half:]]))
        seconds = time.perf_counter() - start
    out.rate("2 threads", len(triples), seconds, column="verifications/s")


@scenario(
    "baseline.rocksdb",
    title="Raw RocksDB (rocksdict): WriteBatch of 1000 entry-sized puts, synced (fsync per batch)",
    options=(Option("--rocksdb-batches", int, 200, "synced batches of 1000 puts", smoke=3),),
)
async def rocksdb(ctx: Context, out: ScenarioResult) -> None:
    """Write batches of 1000 puts (45-byte keys, 300-byte values) with ``sync`` on."""
    path = ctx.work_dir / "rocksdb-baseline"
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    db = Rdict(str(path), options=options)
    sync = WriteOptions()
    sync.sync = True
    batches = []
    for b in range(ctx.args.rocksdb_batches):
        pairs = [
            (b"E" + os.urandom(36) + b.to_bytes(8, "big"), os.urandom(300)) for _ in range(1000)
        ]
        batches.append(pairs)
    try:
        start = time.perf_counter()
        for pairs in batches:
            batch = WriteBatch(raw_mode=True)
            for key, value in pairs:
                batch.put(key, value)
            db.write(batch, write_opt=sync)
        seconds = time.perf_counter() - start
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)
    puts = 1000 * len(batches)
    out.rate("WriteBatch of 1000, synced", puts, seconds, column="puts/s")
    out.metric("WriteBatch of 1000, synced", "µs each", seconds / puts * 1e6, "µs", "cost")


@scenario(
    "baseline.grpc_echo",
    title="Raw grpc.aio echo in its own process: unary at 1/16/64 in flight, bidi stream",
    options=(
        Option("--echo-calls", int, 5000, "unary echo calls per concurrency level", smoke=100),
        Option("--echo-stream-messages", int, 20_000, "one-entry stream messages", smoke=200),
        Option("--echo-stream-batches", int, 1000, "100-entry stream messages", smoke=10),
    ),
)
async def grpc_echo(ctx: Context, out: ScenarioResult) -> None:
    """Echo a serialized PublishRequest (unary), then stream messages of 1 and 100 entries."""
    schema = bench_schema()
    sample = document_log(schema.schema_id, KeyPair(), 0, 0, 1)[0]
    payload = sample.SerializeToString()
    # About the size of a 100-entry PublishStreamRequest.
    batch_payload = b"".join([payload] * 100)
    server = EchoProcess()
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address, options=CHANNEL_OPTIONS) as channel:
            unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                UNARY, request_serializer=None, response_deserializer=None
            )
            await unary(payload, timeout=30)  # connect and warm up
            for concurrency in UNARY_LEVELS:
                calls = ctx.args.echo_calls
                cpu = server.cpu()
                seconds, latencies = await _echo_calls(unary, payload, concurrency, calls)
                row = f"unary c={concurrency}"
                out.rate(row, calls, seconds, column="calls/s")
                out.latency(row, latencies, series=f"echo unary c={concurrency}")
                used = server.cpu() - cpu
                if used >= MIN_CPU_SECONDS:
                    out.metric(row, "server CPU µs/call", used / calls * 1e6, "µs", "cost")
            stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                STREAM, request_serializer=None, response_deserializer=None
            )
            for row, message, count, per in (
                ("stream, 1 entry per message", payload, ctx.args.echo_stream_messages, 1),
                (
                    "stream, 100 entries per message",
                    batch_payload,
                    ctx.args.echo_stream_batches,
                    100,
                ),
            ):
                cpu = server.cpu()
                start = time.perf_counter()
                received = await _stream_echo(stream, message, count)
                seconds = time.perf_counter() - start
                out.rate(row, received * per, seconds)
                used = server.cpu() - cpu
                if used >= MIN_CPU_SECONDS:
                    out.metric(row, "server CPU µs/entry", used / (count * per) * 1e6, "µs", "cost")
    finally:
        await server.stop()


async def _echo_calls(
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    payload: bytes,
    concurrency: int,
    calls: int,
) -> tuple[float, list[float]]:
    """``calls`` echo calls, ``concurrency`` in flight: the seconds, and each call's."""
    share = [calls // concurrency + (i < calls % concurrency) for i in range(concurrency)]
    start = time.perf_counter()
    timed = await asyncio.gather(*(_unary_echo(unary, payload, n) for n in share))
    return time.perf_counter() - start, [t for worker in timed for t in worker]


PROBE_ECHO_CALLS = 1_000
"""Echo calls one :meth:`EchoProbe.rate` makes (~0.2–0.7 s)."""


class EchoProbe:
    """The echo server kept running next to a node, to measure its rate around each run.

    Like :func:`verify_probe`: ``baseline.grpc_echo`` runs minutes before the Publish scenarios,
    and the machine's speed drifts meanwhile (echo c=1 measured 0.9k–2.1k calls/s within an
    hour here). An idle echo process costs the node nothing.
    """

    def __init__(self) -> None:
        self._server = EchoProcess()
        self._channel: grpc.aio.Channel | None = None
        self._payload = document_log(bench_schema().schema_id, KeyPair(), 0, 0, 1)[0]

    async def __aenter__(self) -> EchoProbe:
        await self._server.start()
        self._channel = grpc.aio.insecure_channel(self._server.address, options=CHANNEL_OPTIONS)
        await self.rate(1, 10)  # connect and warm up
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._channel is not None:
            await self._channel.close(None)
        await self._server.stop()

    async def rate(self, concurrency: int, calls: int = PROBE_ECHO_CALLS) -> float:
        """Unary echo calls/s right now at ``concurrency`` in flight."""
        assert self._channel is not None
        unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self._channel.unary_unary(
            UNARY, request_serializer=None, response_deserializer=None
        )
        seconds, _ = await _echo_calls(unary, self._payload.SerializeToString(), concurrency, calls)
        return calls / seconds


async def _unary_echo(
    unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], payload: bytes, calls: int
) -> list[float]:
    """Make ``calls`` echo calls one after the other; the seconds each took."""
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        await unary(payload, timeout=30)
        latencies.append(time.perf_counter() - start)
    return latencies


async def _stream_echo(
    stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes], message: bytes, count: int
) -> int:
    """Stream ``count`` copies of ``message`` to the echo server; how many came back."""

    async def requests() -> AsyncIterator[bytes]:
        for _ in range(count):
            yield message

    received = 0
    async for _ in stream(requests(), timeout=300):
        received += 1
    return received
