"""kill -9 of a ``pandanode up`` node in the middle of a catch-up: after a restart the next
session completes it, and no log has a hole."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.runtime.nats_server import free_port
from tests.services.support import FieldDefinitionLog, NodeProcess, eventually

from .support import log_entries, set_hash, up

LOGS = 20
ENTRIES_PER_LOG = 60


def has_no_hole(entries: set[tuple[str, int, int, str]]) -> bool:
    logs: dict[tuple[str, int], list[int]] = {}
    for public_key, log_id, seq_num, _ in entries:
        logs.setdefault((public_key, log_id), []).append(seq_num)
    return all(sorted(seqs) == list(range(1, len(seqs) + 1)) for seqs in logs.values())


async def test_kill_9_mid_sync_then_restart_completes_the_sync_without_holes(
    tmp_path: Path,
) -> None:
    a_address = f"127.0.0.1:{free_port()}"
    b_address = f"127.0.0.1:{free_port()}"
    a = up(tmp_path / "a", a_address)
    b: NodeProcess | None = None
    try:
        await a.wait_serving(a_address)
        requests = [
            log.entry(seq)
            for log in (FieldDefinitionLog(KeyPair(), 0) for _ in range(LOGS))
            for seq in range(1, ENTRIES_PER_LOG + 1)
        ]
        async with grpc.aio.insecure_channel(a_address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            batches = [
                ipb.PublishStreamRequest(items=requests[i : i + 200])
                for i in range(0, len(requests), 200)
            ]
            async for response in stub.PublishStream(iter(batches)):
                assert all(r.HasField("ok") for r in response.results)
        total = len(requests)

        b = up(tmp_path / "b", b_address, "--bootstrap-peers", a_address)
        await b.wait_serving(b_address)

        async def some_arrived() -> int:
            count = len(await log_entries(b_address))
            return count if count > 0 else 0

        arrived = await eventually(some_arrived, timeout=60, interval=0.01, what="entries on B")
        b.kill()
        partial = arrived < total  # usually: B was killed mid-sync

        b = up(tmp_path / "b", b_address, "--bootstrap-peers", a_address)
        await b.wait_serving(b_address)
        after_restart = await log_entries(b_address)
        assert has_no_hole(after_restart), "an entry acknowledged by ingest after a gap"

        expected = set_hash(await log_entries(a_address))

        async def complete() -> bool:
            return set_hash(await log_entries(b_address)) == expected

        await eventually(complete, timeout=90, what="B completing the sync after the restart")
        assert has_no_hole(await log_entries(b_address))
        assert partial or arrived == total
    finally:
        for process in (a, b):
            if process is not None:
                process.close()
