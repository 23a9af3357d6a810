"""Processes killed, stopped and restarted under load: nothing acknowledged is lost.

Each case runs ``pandanode up`` as a person would, writes under load with a client that keeps
its own ledger of OKs (:class:`~.harness.Writer`), injects its faults at seeded random points,
then judges the stopped node: ``pandanode check`` passes and every acknowledged entry is
stored, exactly as signed (:func:`~.harness.verdict`). ``PANDANODE_FAULT_ROUNDS`` sets the
rounds (``make soak``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.services.support import eventually

from .harness import ROUNDS, TIMEOUT, Tally, Up, Writer, health_of, rng, running, verdict

pytestmark = pytest.mark.timeout(TIMEOUT)

SERVICES = ("ingest", "query", "discovery", "replication", "gateway")
# A supervisor gives a part up after 5 deaths within a minute: each node run kills each part
# at most this often, and the node is restarted between runs.
ROUNDS_PER_RUN = 3
QUERY = "pandanode.query.v1.QueryService"


async def kill_child(up: Up, name: str) -> None:
    """kill -9 the node's child ``name``; wait for its successor and for the node to serve."""
    old = up.children()[name]
    os.kill(old, signal.SIGKILL)

    async def restarted() -> bool:
        pid = up.children().get(name)
        return pid is not None and pid != old

    await eventually(restarted, timeout=60, what=f"a new {name} process")
    await up.wait_serving(timeout=60)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def test_kill_9_of_each_service_process_at_random_points_under_load_loses_nothing(
    tmp_path: Path, tally: Tally
) -> None:
    random = rng("services")
    data_dir = tmp_path / "data"
    up = Up(data_dir, tmp_path / "node.log")
    writer: Writer | None = None
    rounds = 0
    while rounds < ROUNDS:
        async with running(up):
            if writer is None:
                writer = Writer(up.address)
            writer.start()
            for _ in range(min(ROUNDS_PER_RUN, ROUNDS - rounds)):
                for name in random.sample(SERVICES, len(SERVICES)):
                    await writer.wait_for(random.randint(10, 150))
                    await kill_child(up, name)
                    tally.faults += 1
                rounds += 1
            await writer.wait_for(50)
            await writer.stop()
            await writer.materialized()
            assert await up.stop() == 0
        await verdict(data_dir, writer, tally)


async def test_kill_9_of_pandanode_up_and_restart_under_load_loses_nothing(
    tmp_path: Path, tally: Tally
) -> None:
    random = rng("up")
    data_dir = tmp_path / "data"
    up = Up(data_dir, tmp_path / "node.log")
    writer: Writer | None = None
    for _ in range(ROUNDS + 1):
        async with running(up):
            if writer is None:
                writer = Writer(up.address)
            # What the last run acknowledged is materialized after the restart.
            await writer.materialized()
            writer.start()
            await writer.wait_for(random.randint(20, 300))
            if tally.faults == ROUNDS:
                await writer.stop()
                assert await up.stop() == 0
            else:
                await up.kill()  # mid-stream: the writer's call in flight is cut
                tally.faults += 1
                await writer.stop()
        await verdict(data_dir, writer, tally)


async def test_kill_9_of_nats_server_during_ingest_and_during_materialization_loses_nothing(
    tmp_path: Path, tally: Tally
) -> None:
    random = rng("nats")
    data_dir = tmp_path / "data"
    up = Up(data_dir, tmp_path / "node.log")
    writer: Writer | None = None
    rounds = 0
    while rounds < ROUNDS:
        async with running(up):
            if writer is None:
                writer = Writer(up.address)
            # Two kills a round: a node run stays within the supervisor's restart budget.
            for _ in range(min(ROUNDS_PER_RUN - 1, ROUNDS - rounds)):
                # During ingest: the writer is publishing.
                writer.start()
                await writer.wait_for(random.randint(20, 200))
                await kill_child(up, "nats-server")
                tally.faults += 1
                await writer.wait_for(50)
                await writer.stop()
                # During materialization: a backlog built while the query process was stopped
                # is being applied when nats-server dies.
                query = up.children()["query"]
                os.kill(query, signal.SIGSTOP)
                try:
                    writer.start()
                    await writer.wait_for(random.randint(200, 600))
                    await writer.stop()
                finally:
                    os.kill(query, signal.SIGCONT)
                await kill_child(up, "nats-server")
                tally.faults += 1
                await writer.materialized()
                rounds += 1
            assert await up.stop() == 0
        await verdict(data_dir, writer, tally)


async def test_sigstop_of_the_query_process_keeps_its_backlog_bounded_and_it_catches_up(
    tmp_path: Path, tally: Tally
) -> None:
    random = rng("sigstop")
    data_dir = tmp_path / "data"
    up = Up(data_dir, tmp_path / "node.log")
    async with running(up):
        writer = Writer(up.address)
        writer.start()
        await writer.wait_for(100)
        for _ in range(ROUNDS):
            query = up.children()["query"]
            ingest = up.children()["ingest"]
            before = {"query": rss_bytes(query), "ingest": rss_bytes(ingest)}
            os.kill(query, signal.SIGSTOP)
            tally.faults += 1
            try:

                async def query_not_serving() -> bool:
                    return bool(
                        await health_of(up.address, QUERY)
                        == health_pb2.HealthCheckResponse.NOT_SERVING
                    )

                await eventually(query_not_serving, timeout=30, what="query NOT_SERVING")
                # Publishing goes on while the query process is stopped.
                await writer.wait_for(random.randint(500, 1500))
            finally:
                os.kill(query, signal.SIGCONT)
            await up.wait_serving(timeout=60)
            await writer.materialized(timeout=120)
            grown = {
                "query": rss_bytes(query) - before["query"],
                "ingest": rss_bytes(ingest) - before["ingest"],
            }
            # The backlog waits in JetStream, not in either process's memory.
            assert all(growth < 64 << 20 for growth in grown.values()), grown
        await writer.stop()
        assert await up.stop() == 0
    await verdict(data_dir, writer, tally)
