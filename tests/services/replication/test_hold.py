"""The hold buffer between real processes: entries a peer sends before their dependency are
held up to ``replication_hold_items``, the rest dropped, and ``ListSessions`` reports both."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio

from pandanode.core import KeyPair
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import FieldDefinitionLog

from .support import log_entries, replication_settings


async def test_entries_without_their_dependency_are_held_to_the_bound_and_reported(
    tmp_path: Path,
) -> None:
    settings = replication_settings(tmp_path / "a", replication_hold_items=2)
    log = FieldDefinitionLog(KeyPair(), 0)
    async with Node(settings) as node:
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            call = stub.Sync()  # type: ignore[call-arg]
            peer = pb.Announce(protocol_version=1, node_id=KeyPair().public_key(), schema_ids=["*"])
            await call.write(pb.SyncMessage(announce=peer))
            await call.write(pb.SyncMessage(have_digest=pb.HaveDigest(digest=b"x" * 32)))
            for _ in range(2):  # the node's Announce and HaveDigest
                assert isinstance(await call.read(), pb.SyncMessage)
            await call.write(pb.SyncMessage(have=pb.Have(last=True)))
            # Entries 2, 3, 4 of a log whose entry 1 never comes: all wait for it.
            orphans = [log.entry(seq) for seq in (1, 2, 3, 4)][1:]
            await call.write(pb.SyncMessage(entries=pb.Entries(items=orphans)))
            await call.write(pb.SyncMessage(sync_done=pb.SyncDone()))
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
            assert await call.code() == grpc.StatusCode.OK
            listed = await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
        (session,) = listed.sessions
        assert (session.held_peak, session.held_dropped) == (2, 1)
        assert session.error_reason == "" and session.entries_rejected == 0
        assert await log_entries(node.address) == set()
