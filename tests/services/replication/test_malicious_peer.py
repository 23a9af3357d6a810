"""A malicious peer (:mod:`.harness`) against a real node, one misbehaviour per test.

Each bad session ends with its reason, stores nothing invalid (the node's log entries before
and after are compared), and the node keeps serving (an honest catch-up session after it gets
every entry). An honest node syncing meanwhile completes; after ``peer_ban_after`` failed
sessions the malicious node id is refused both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from pandanode.core import KeyPair, decode_entry
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import FieldDefinitionLog

from .harness import (
    Ended,
    PeerServer,
    SyncPeer,
    announce,
    catch_up,
    entries,
    forged,
    have,
    send_raw,
    with_wrong_backlink,
)
from .support import StartNode, log_entries, starter

Entry = tuple[str, int, int, str]
# Short enough for the silent-peer case; an honest harness session answers well within it.
IDLE: dict[str, Any] = {"sync_idle_timeout": 1.0, "peer_ban_after": 100}
BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


def key(request: ipb.PublishRequest) -> Entry:
    entry = decode_entry(request.entry, verify=False)
    return (entry.public_key, entry.log_id, entry.seq_num, entry.hash)


async def publish(node: Node, requests: list[ipb.PublishRequest]) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        batches = [
            ipb.PublishStreamRequest(items=requests[i : i + 500])
            for i in range(0, len(requests), 500)
        ]
        async for response in stub.PublishStream(iter(batches), timeout=60):
            assert all(r.HasField("ok") for r in response.results)


async def seeded(node: Node) -> tuple[FieldDefinitionLog, set[Entry]]:
    """The node holding entries 1 and 2 of one log; that log and the node's entries."""
    log = FieldDefinitionLog(KeyPair(), 0)
    await publish(node, [log.entry(1), log.entry(2)])
    return log, await log_entries(node.address)


async def assert_contained(
    node: Node,
    ended: Ended,
    expected: Ended,
    stored: set[Entry],
    maybe: AbstractSet[Entry] = frozenset(),
) -> None:
    """The session ended as ``expected``, the node holds ``stored`` (and perhaps the valid
    entries ``maybe``, in flight to ingest when the session failed), and it serves an honest
    catch-up session all of it."""
    assert ended == expected
    held = await log_entries(node.address)
    assert stored <= held <= stored | maybe
    assert await catch_up(node.address) == held


async def test_a_forged_signature_ends_the_session_and_is_not_stored(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            await peer.send(entries(forged(FieldDefinitionLog(KeyPair(), 0).entry(1))))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "INVALID_SIGNATURE"), before)


async def test_an_entry_with_a_wrong_backlink_ends_the_session_and_is_not_stored(
    start: StartNode,
) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        log = FieldDefinitionLog(KeyPair(), 0)
        first = log.entry(1)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            # The peer's own log is inconsistent: its entry 2 does not link to its entry 1.
            await peer.send(entries(first, with_wrong_backlink(log, 2)))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "BACKLINK_MISMATCH"), before | {key(first)})


async def test_entries_out_of_order_within_a_log_end_the_session_unstored(
    start: StartNode,
) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        log = FieldDefinitionLog(KeyPair(), 0)
        one, two = log.entry(1), log.entry(2)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            await peer.send(entries(two, one))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "ENTRY_OUT_OF_ORDER"), before)


async def test_an_entry_sent_twice_ends_the_session(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        one = FieldDefinitionLog(KeyPair(), 0).entry(1)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            await peer.send(entries(one), entries(one))
            ended = await peer.ended()
        # The first copy may have reached ingest before the second ended the session.
        await assert_contained(node, ended, Ended(BAD, "ENTRY_OUT_OF_ORDER"), before, {key(one)})


async def test_an_entry_outside_the_target_set_ends_the_session_unstored(
    start: StartNode,
) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        # The peer replicates schema definitions only; it sends a field definition.
        async with SyncPeer(node.address, schema_ids=["schema_definition_v1"]) as peer:
            await peer.open_sync()
            await peer.send(entries(FieldDefinitionLog(KeyPair(), 0).entry(1)))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "ENTRY_OUTSIDE_TARGET_SET"), before)


async def test_an_entry_at_a_position_the_node_announced_holding_ends_the_session(
    start: StartNode,
) -> None:
    async with start("a", **IDLE) as node:
        log, before = await seeded(node)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            await peer.send(entries(log.entry(2)))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "ENTRY_ALREADY_HELD"), before)


async def test_a_have_over_max_have_logs_ends_the_session(start: StartNode) -> None:
    async with start("a", **IDLE, max_have_logs=10) as node:
        _, before = await seeded(node)
        logs = [(KeyPair().public_key(), 0, 1) for _ in range(12)]
        async with SyncPeer(node.address) as peer:
            await peer.handshake()
            # Chunks within the limit each, over it together.
            await peer.send(have(logs[:6], last=False), have(logs[6:]))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "HAVE_TOO_LARGE"), before)


async def test_a_second_have_ends_the_session(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            await peer.send(have([]))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "SECOND_HAVE"), before)


async def test_a_message_out_of_state_ends_the_session(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        async with SyncPeer(node.address) as peer:
            await peer.handshake()
            # SyncDone before the peer's Have: it cannot have sent what the node lacks.
            await peer.send(pb.SyncMessage(sync_done=pb.SyncDone()))
            ended = await peer.ended()
        await assert_contained(node, ended, Ended(BAD, "PROTOCOL_VIOLATION"), before)


async def test_a_peer_silent_before_its_sync_done_is_timed_out(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        async with SyncPeer(node.address) as peer:
            await peer.open_sync()
            # Nothing more: no entries, no SyncDone, the stream left open.
            ended = await peer.ended()
        expected = Ended(grpc.StatusCode.DEADLINE_EXCEEDED, "SYNC_IDLE_TIMEOUT")
        await assert_contained(node, ended, expected, before)


async def test_garbage_bytes_end_the_session_as_a_malformed_request(start: StartNode) -> None:
    async with start("a", **IDLE) as node:
        _, before = await seeded(node)
        hello = announce(KeyPair().public_key()).SerializeToString()
        ended = await send_raw(node.address, [hello, b"\xff\xff\xff\xff"])
        await assert_contained(node, ended, Ended(BAD, "MALFORMED_REQUEST"), before)


async def test_an_honest_node_syncing_meanwhile_completes(start: StartNode) -> None:
    async with start("a", **IDLE) as a, start("b", **IDLE) as b:
        logs = [FieldDefinitionLog(KeyPair(), 0) for _ in range(20)]
        await publish(a, [log.entry(seq) for log in logs for seq in range(1, 16)])
        expected = await log_entries(a.address)

        async def malicious() -> Ended:
            async with SyncPeer(a.address) as peer:
                await peer.open_sync()
                await peer.send(entries(forged(FieldDefinitionLog(KeyPair(), 0).entry(1))))
                return await peer.ended()

        async def honest() -> pb.Session:
            async with grpc.aio.insecure_channel(b.address) as channel:
                stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                return await stub.SyncWith(pb.SyncWithRequest(address=a.address), timeout=60)

        honest_task = asyncio.create_task(honest())
        bad = await asyncio.gather(*(malicious() for _ in range(5)))
        session = await honest_task
        assert all(ended == Ended(BAD, "INVALID_SIGNATURE") for ended in bad)
        assert (session.state, session.error_reason) == (pb.SESSION_STATE_DONE, "")
        assert session.entries_received == len(expected)
        assert await log_entries(b.address) == expected
        assert await log_entries(a.address) == expected


async def test_a_peer_failing_peer_ban_after_sessions_is_refused_both_ways(
    start: StartNode,
) -> None:
    async with start("a", sync_idle_timeout=1.0, peer_ban_after=3) as node:
        _, before = await seeded(node)
        peer_id = KeyPair().public_key()
        reasons = []
        for bad in (
            entries(forged(FieldDefinitionLog(KeyPair(), 0).entry(1))),
            have([]),
            pb.SyncMessage(announce=pb.Announce(protocol_version=1)),
        ):
            async with SyncPeer(node.address, node_id=peer_id) as peer:
                await peer.open_sync()
                await peer.send(bad)
                reasons.append((await peer.ended()).reason)
        assert reasons == ["INVALID_SIGNATURE", "SECOND_HAVE", "PROTOCOL_VIOLATION"]

        # It dials: refused once its Announce names it.
        async with SyncPeer(node.address, node_id=peer_id) as peer:
            await peer.send(announce(peer_id))
            ended = await peer.ended()
        assert ended == Ended(grpc.StatusCode.PERMISSION_DENIED, "PEER_REFUSED")

        # The node dials it: the session ends at its Announce, nothing else is sent.
        async with (
            PeerServer(peer_id) as server,
            grpc.aio.insecure_channel(node.address) as channel,
        ):
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            session = await stub.SyncWith(pb.SyncWithRequest(address=server.address))
            listed = await stub.ListSessions(pb.ListSessionsRequest())
        assert (session.node_id, session.error_reason) == (peer_id, "PEER_REFUSED")
        assert set(server.served.kinds) <= {"announce"}
        (banned,) = [p for p in listed.peers if p.node_id == peer_id]
        assert banned.failures == 3 and banned.banned_until.seconds > 0

        # Another peer is not affected.
        assert await catch_up(node.address) == before
