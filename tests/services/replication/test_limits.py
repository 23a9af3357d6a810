"""``max_sync_sessions`` between real nodes: a full node dials nobody and refuses incoming
sessions (RESOURCE_EXHAUSTED, TOO_MANY_SESSIONS); a refused dialer backs off, is not banned,
and syncs once a slot is free."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.core import KeyPair
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.replication.driver import SessionRecord
from tests.services.support import eventually

from .support import StartNode, node_id, starter
from .test_bad_peers import reason_of


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


def announce() -> pb.SyncMessage:
    peer = pb.Announce(protocol_version=1, node_id=KeyPair().public_key(), schema_ids=["*"])
    return pb.SyncMessage(announce=peer)


async def test_a_full_node_refuses_sessions_without_holding_it_against_the_dialer(
    start: StartNode,
) -> None:
    async with start("a", max_sync_sessions=1, sync_idle_timeout=60.0) as a:
        assert a.replication is not None
        async with grpc.aio.insecure_channel(a.address) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            # A peer that announces itself and then says nothing holds A's only slot.
            holder = stub.Sync()  # type: ignore[call-arg]
            await holder.write(announce())
            assert isinstance(await holder.read(), pb.SyncMessage)
            assert a.replication.full

            # Refused as it is accepted, before A reads a message: a write here would race the
            # refusal, and a write that loses makes grpc-python end the call INTERNAL instead.
            second = stub.Sync()  # type: ignore[call-arg]
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await second.read()
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert reason_of(raised.value) == "TOO_MANY_SESSIONS"

            async with start("b", bootstrap_peers=a.address, peer_ban_after=1) as b:
                assert b.replication is not None
                replication = b.replication
                a_id = node_id(a)

                async def refused_twice() -> list[SessionRecord]:
                    tries = [s for s in replication.ended if s.node_id == a_id]
                    return tries if len(tries) >= 2 else []

                tries = await eventually(refused_twice, timeout=30, what="B refused twice")
                assert {s.error_reason for s in tries} <= {
                    "PEER_ENDED_RESOURCE_EXHAUSTED",
                    "STREAM_BROKEN",
                }
                assert not any(s.entries_received for s in tries)
                # A ban would follow one counted failure (peer_ban_after = 1): none followed.
                assert not replication.refused(a_id)
                assert replication.peers[a_id].failures == []
                # Full, A dialed nobody.
                assert not [s for s in a.replication.sessions() if s.initiator]

                holder.cancel()

                async def synced() -> bool:
                    return any(
                        s.node_id == a_id and s.phase.value in ("live", "done")
                        for s in replication.sessions()
                    )

                await eventually(synced, timeout=30, what="B's session with A once a slot is free")
