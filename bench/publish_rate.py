"""Measure ingest's publish rate (unary and stream) against the raw Ed25519 verify rate.

Runs ``pandanode up`` as a separate process (so client and node do not share a GIL), with
pre-signed entries, and prints entries/s with the ratio to the raw single-core verify rate
measured in the same run. Writes the figures as JSON when ``--json`` is given.

    .venv/bin/python bench/publish_rate.py [--entries 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import nacl.signing
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.core import KeyPair, encode_operation, sign_and_encode_entry
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.runtime.nats_server import free_port


def raw_verify_rate(count: int = 5000) -> float:
    """Ed25519 verifications per second on one core (PyNaCl), on entry-sized messages."""
    key = nacl.signing.SigningKey.generate()
    verify = key.verify_key
    messages = [os.urandom(140) for _ in range(count)]
    signed = [(m, key.sign(m).signature) for m in messages]
    start = time.perf_counter()
    for message, signature in signed:
        verify.verify(message, signature)
    return count / (time.perf_counter() - start)


def make_entries(count: int) -> list[pb.PublishRequest]:
    """``count`` CREATEs of field definitions, one per log, over 50 authors."""
    authors = [KeyPair() for _ in range(50)]
    requests = []
    for index in range(count):
        author = authors[index % len(authors)]
        operation = encode_operation(
            schema_id="schema_field_definition_v1", fields={"name": f"f{index}", "type": "str"}
        )
        entry = sign_and_encode_entry(operation, author, log_id=index // len(authors))
        requests.append(pb.PublishRequest(entry=entry, operation=operation))
    return requests


async def wait_serving(address: str) -> None:
    """Poll the health service until the node reports SERVING."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=1
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.05)  # poll
    raise RuntimeError("node did not become ready")


async def unary_rate(address: str, requests: list[pb.PublishRequest], concurrency: int) -> float:
    """Entries/s through unary Publish with ``concurrency`` calls in flight."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        queue = list(reversed(requests))

        async def worker() -> None:
            while queue:
                await stub.Publish(queue.pop())

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(requests) / (time.perf_counter() - start)


async def stream_rate(address: str, requests: list[pb.PublishRequest], batch: int) -> float:
    """Entries/s through one PublishStream with ``batch`` entries per message."""
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)

        async def batches():  # type: ignore[no-untyped-def]
            for i in range(0, len(requests), batch):
                yield pb.PublishStreamRequest(items=requests[i : i + batch])

        start = time.perf_counter()
        count = 0
        async for response in stub.PublishStream(batches()):
            for result in response.results:
                if not result.HasField("ok"):
                    raise RuntimeError(result.error.message)
                count += 1
        return count / (time.perf_counter() - start)


async def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20000)
    parser.add_argument("--unary-entries", type=int, default=3000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    verify = raw_verify_rate()
    print(f"raw Ed25519 verify (1 core): {verify:,.0f}/s", flush=True)
    entries = make_entries(args.entries + 3 * args.unary_entries)
    results: dict[str, float] = {"raw_verify_per_s": verify}
    with tempfile.TemporaryDirectory() as data_dir:
        address = f"127.0.0.1:{free_port()}"
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pandanode.services.cli",
                "up",
                "--data-dir",
                data_dir,
                "--listen",
                address,
                "--log-level",
                "WARNING",
            ],
        )
        try:
            await wait_serving(address)
            offset = 0
            for concurrency in (1, 16, 64):
                chunk = entries[offset : offset + args.unary_entries]
                offset += args.unary_entries
                rate = await unary_rate(address, chunk, concurrency)
                results[f"unary_c{concurrency}_per_s"] = rate
                print(
                    f"unary Publish, {concurrency:>2} concurrent: {rate:,.0f}/s "
                    f"({rate / verify:.2f}× raw verify)",
                    flush=True,
                )
            rate = await stream_rate(address, entries[offset:], 100)
            results["stream_b100_per_s"] = rate
            print(
                f"PublishStream, 100 per message: {rate:,.0f}/s ({rate / verify:.2f}× raw verify)"
            )
        finally:
            node.terminate()
            node.wait(30)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
