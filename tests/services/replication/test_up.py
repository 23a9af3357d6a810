"""Replication in ``pandanode up``, where it runs in its own process next to ingest."""

from __future__ import annotations

from pathlib import Path

import grpc.aio

from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.runtime.nats_server import free_port
from tests.services.support import eventually

from .support import up


async def test_the_first_session_after_up_waits_for_ingest_instead_of_failing(
    tmp_path: Path,
) -> None:
    # Replication's process may be ready before ingest's: a session dialed then failed with
    # INGEST_UNAVAILABLE and the peer was retried only after a back-off.
    a_address, b_address = (f"127.0.0.1:{free_port()}" for _ in range(2))
    a = up(tmp_path / "a", a_address)
    b = None
    try:
        await a.wait_serving(a_address)
        b = up(tmp_path / "b", b_address, "--bootstrap-peers", a_address)
        await b.wait_serving(b_address)
        async with grpc.aio.insecure_channel(b_address) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)

            async def live() -> pb.ListSessionsResponse | None:
                listed = await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
                states = {s.state for s in listed.sessions}
                return listed if pb.SESSION_STATE_LIVE in states else None

            listed = await eventually(live, timeout=60, what="a live session on B")
        assert [s.error_reason for s in listed.sessions if s.error_reason] == []
        assert list(listed.peers) == []
    finally:
        for process in (a, b):
            if process is not None:
                process.close()
