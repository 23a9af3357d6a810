"""A full disk (a real tmpfs the test mounts and fills): clean refusals, and recovery on its own.

Each store is filled on its own (the data directory, or nats-server's store on a volume of its
own) so each recovery path is taken for sure; the fault loop in test_kills.py fills one volume
holding both.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2

from pandanode.ingest.v1 import ingest_pb2_grpc
from tests.services.support import eventually

from .harness import ROUNDS, TIMEOUT, Tally, Up, Writer, fill, health_of, running, tmpfs, verdict

pytestmark = pytest.mark.timeout(TIMEOUT)

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INGEST = "pandanode.ingest.v1.IngestService"
# Fill-and-free cycles per case: a supervisor gives nats-server up after 5 restarts a minute.
CYCLES = min(ROUNDS, 3)


async def test_a_full_data_disk_refuses_publishes_cleanly_and_the_node_recovers_when_space_returns(
    tmp_path: Path, tally: Tally
) -> None:
    data_dir = tmp_path / "data"
    with tmpfs(data_dir, 64), tmpfs(data_dir / "nats", 64):
        up = Up(data_dir, tmp_path / "node.log")
        async with running(up):
            writer = Writer(up.address)
            writer.start()
            await writer.wait_for(200)
            for _ in range(CYCLES):
                await disk_fills_and_empties(up, writer, data_dir)
                tally.faults += 1
            await writer.stop()
            await writer.materialized()
            output = up.output()
            assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
            failures = output.count("writing to the log store failed")
            assert failures <= 3 * CYCLES, f"{failures} lines about failed writes: rate-limit them"
            assert output.count("pandanode: ingest restarts to recover (it asked to)") == CYCLES
            assert await up.stop() == 0
            await verdict(data_dir, writer, tally)


async def disk_fills_and_empties(up: Up, writer: Writer, data_dir: Path) -> None:
    """Fill the data directory's disk under load, check the refusals, free it, check recovery."""
    writer.errors.clear()
    filler = fill(data_dir, leave=1 << 20)

    async def refused() -> bool:
        return bool(writer.errors)

    await eventually(refused, timeout=60, what="a publish refused on the full disk")
    await writer.stop()
    acknowledged = writer.acknowledged
    # While the disk stays full, nothing more is acknowledged, and each refusal is a clean,
    # retryable status.
    log = writer.logs[0]
    async with grpc.aio.insecure_channel(up.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for _ in range(5):
            try:
                await stub.Publish(log.entry(writer.acked[0] + 1), timeout=10)
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                assert "log store" in (err.details() or ""), err.details()
            else:
                raise AssertionError("a publish was acknowledged on the full disk")

    async def not_serving() -> bool:
        overall = await health_of(up.address)
        return bool(overall == await health_of(up.address, INGEST) == NOT_SERVING)

    await eventually(not_serving, timeout=30, what="NOT_SERVING while the disk is full")
    assert writer.acknowledged == acknowledged

    filler.unlink()  # space returns: no restart of the node from outside
    await up.wait_serving(timeout=60)
    writer.start()
    await writer.wait_for(200)
    await writer.materialized()


async def test_jetstream_switched_off_by_a_full_disk_is_restarted_when_space_returns(
    tmp_path: Path, tally: Tally
) -> None:
    data_dir = tmp_path / "data"
    with tmpfs(data_dir / "nats", 32):
        up = Up(data_dir, tmp_path / "node.log")
        async with running(up):
            writer = Writer(up.address)
            writer.start()
            await writer.wait_for(200)
            for _ in range(CYCLES):
                filler = fill(data_dir / "nats", leave=256 << 10)

                async def not_serving() -> bool:
                    return bool(await health_of(up.address) == NOT_SERVING)

                # The log store has space: publishes go on (stored, in the outbox) meanwhile.
                await eventually(not_serving, timeout=60, what="NOT_SERVING once JetStream is off")
                await writer.wait_for(100)
                tally.faults += 1

                filler.unlink()
                await up.wait_serving(timeout=60)
                await writer.wait_for(100)
                # All acknowledged, during the outage too, is materialized: no node restart.
                await writer.materialized()
            await writer.stop()
            output = up.output()
            assert "switched JetStream off (" in output
            restarts = output.count("had switched JetStream off; restarting")
            assert restarts == CYCLES, output[-3000:]
            assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
            assert await up.stop() == 0
            await verdict(data_dir, writer, tally)
