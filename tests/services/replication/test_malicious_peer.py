"""A malicious peer (:mod:`.harness`) against a real node, one misbehaviour per test.

Each bad session ends with its reason, stores nothing invalid (the node's log entries before
and after are compared), and the node keeps serving (an honest catch-up session after it gets
every entry). An honest node syncing meanwhile completes; after ``peer_ban_after`` failed
sessions the malicious node id is refused both ways.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
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
    # An entry of ``maybe`` may still land between the two reads, so the catch-up is compared
    # with what the node held before it and after it.
    served = await catch_up(node.address)
    held_after = await log_entries(node.address)
    assert held <= served <= held_after <= stored | maybe


@dataclass(frozen=True)
class Sent:
    """What the peer sends once its session is open, and the valid entries among it."""

    messages: tuple[pb.SyncMessage, ...]
    stored: frozenset[Entry] = frozenset()
    """Valid entries the node then holds too."""
    maybe: frozenset[Entry] = frozenset()
    """Valid entries that may have reached ingest before the session ended."""


@dataclass(frozen=True)
class Misbehaviour:
    """One way a peer misbehaves in a session, and how the node must end it.

    ``send`` is given the node's own log (entries 1 and 2 held, see :func:`seeded`).
    """

    send: Callable[[FieldDefinitionLog], Sent]
    reason: str
    code: grpc.StatusCode = BAD
    before_have: bool = False
    """Sent right after the handshake, before the peer's Have (else after an empty Have)."""
    peer: dict[str, Any] = field(default_factory=dict)
    node: dict[str, Any] = field(default_factory=dict)


def fresh_entry(seq_num: int = 1) -> ipb.PublishRequest:
    """Entry ``seq_num`` of a new author's field definition log."""
    return FieldDefinitionLog(KeyPair(), 0).entry(seq_num)


def wrong_backlink(_: FieldDefinitionLog) -> Sent:
    log = FieldDefinitionLog(KeyPair(), 0)
    first = log.entry(1)
    # The peer's own log is inconsistent: its entry 2 does not link to its entry 1.
    return Sent((entries(first, with_wrong_backlink(log, 2)),), stored=frozenset({key(first)}))


def out_of_order(_: FieldDefinitionLog) -> Sent:
    log = FieldDefinitionLog(KeyPair(), 0)
    one, two = log.entry(1), log.entry(2)
    return Sent((entries(two, one),))


def sent_twice(_: FieldDefinitionLog) -> Sent:
    one = fresh_entry()
    return Sent((entries(one), entries(one)), maybe=frozenset({key(one)}))


def have_over_the_limit(_: FieldDefinitionLog) -> Sent:
    logs = [(KeyPair().public_key(), 0, 1) for _ in range(12)]
    # Chunks within the limit (max_have_logs=10) each, over it together.
    return Sent((have(logs[:6], last=False), have(logs[6:])))


MISBEHAVIOURS = {
    "a_forged_signature": Misbehaviour(
        lambda _: Sent((entries(forged(fresh_entry())),)), "INVALID_SIGNATURE"
    ),
    "an_entry_with_a_wrong_backlink": Misbehaviour(wrong_backlink, "BACKLINK_MISMATCH"),
    "entries_out_of_order_within_a_log": Misbehaviour(out_of_order, "ENTRY_OUT_OF_ORDER"),
    "an_entry_sent_twice": Misbehaviour(sent_twice, "ENTRY_OUT_OF_ORDER"),
    "an_entry_outside_the_target_set": Misbehaviour(
        lambda _: Sent((entries(fresh_entry()),)),  # a field definition
        "ENTRY_OUTSIDE_TARGET_SET",
        peer={"schema_ids": ["schema_definition_v1"]},
    ),
    "an_entry_at_a_position_the_node_announced_holding": Misbehaviour(
        lambda log: Sent((entries(log.entry(2)),)), "ENTRY_ALREADY_HELD"
    ),
    "a_have_over_max_have_logs": Misbehaviour(
        have_over_the_limit, "HAVE_TOO_LARGE", before_have=True, node={"max_have_logs": 10}
    ),
    "a_second_have": Misbehaviour(lambda _: Sent((have([]),)), "SECOND_HAVE"),
    # SyncDone before the peer's Have: it cannot have sent what the node lacks.
    "a_message_out_of_state": Misbehaviour(
        lambda _: Sent((pb.SyncMessage(sync_done=pb.SyncDone()),)),
        "PROTOCOL_VIOLATION",
        before_have=True,
    ),
    # Nothing more: no entries, no SyncDone, the stream left open.
    "silence_before_sync_done": Misbehaviour(
        lambda _: Sent(()), "SYNC_IDLE_TIMEOUT", code=grpc.StatusCode.DEADLINE_EXCEEDED
    ),
}


@pytest.mark.parametrize("case", MISBEHAVIOURS.values(), ids=MISBEHAVIOURS.keys())
async def test_a_misbehaving_peers_session_ends_with_its_reason_and_nothing_invalid_is_stored(
    start: StartNode, case: Misbehaviour
) -> None:
    async with start("a", **IDLE | case.node) as node:
        log, before = await seeded(node)
        sent = case.send(log)
        async with SyncPeer(node.address, **case.peer) as peer:
            await (peer.handshake() if case.before_have else peer.open_sync())
            await peer.send(*sent.messages)
            ended = await peer.ended()
        expected = Ended(case.code, case.reason)
        await assert_contained(node, ended, expected, before | sent.stored, sent.maybe)


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
