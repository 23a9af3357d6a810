"""Replication's rules without a network: one session per peer, back-off and bans, the hold
buffer's bound."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.services.replication.driver import SessionRecord
from pandanode.services.replication.ingest_client import HoldBuffer
from pandanode.services.replication.replication import (
    Replication,
    SessionsFullError,
    replicated_schema_ids,
)
from pandanode.services.runtime.bus import InMemoryBus
from pandanode.services.runtime.settings import Settings

from .support import replication_settings


def replication(tmp_path: Path, key: KeyPair, **changes: object) -> Replication:
    return Replication(replication_settings(tmp_path, **changes), InMemoryBus(), key)


def ordered_keys() -> tuple[KeyPair, KeyPair]:
    one, two = KeyPair(), KeyPair()
    return (one, two) if one.public_key() < two.public_key() else (two, one)


@pytest.mark.parametrize("we_are_smaller", [True, False])
def test_of_two_crossed_dials_the_one_dialed_by_the_smaller_node_id_wins(
    tmp_path: Path, we_are_smaller: bool
) -> None:
    small, large = ordered_keys()
    me, peer = (small, large) if we_are_smaller else (large, small)
    node = replication(tmp_path, me)
    stopped: list[str] = []
    ours = SessionRecord(initiator=True)
    ours.stop = stopped.append
    theirs = SessionRecord(initiator=False)
    theirs.stop = stopped.append
    assert node._claim(ours, peer.public_key()) == ""
    answer = node._claim(theirs, peer.public_key())
    if we_are_smaller:
        assert answer == "DUPLICATE_SESSION"
        assert node.running[peer.public_key()].record is ours
    else:
        assert answer == ""
        assert stopped == ["DUPLICATE_SESSION"]
        assert node.running[peer.public_key()].record is theirs


def test_failed_sessions_back_off_and_peer_ban_after_of_them_ban_the_peer(
    tmp_path: Path,
) -> None:
    node = replication(tmp_path, KeyPair(), peer_ban_after=3, peer_ban_seconds=60.0)
    peer = KeyPair().public_key()
    waits = []
    for _ in range(3):
        assert not node.refused(peer)
        record = SessionRecord(initiator=True, node_id=peer)
        node._account(record, "ENTRY_OUTSIDE_TARGET_SET")
        waits.append(node.peers[peer].retry_after - record.started)
    assert waits[0] < waits[1] < waits[2]
    assert node.refused(peer)
    assert node._claim(SessionRecord(initiator=False), peer) == "PEER_REFUSED"


def test_failures_that_are_not_the_peers_fault_back_off_but_never_ban(tmp_path: Path) -> None:
    node = replication(tmp_path, KeyPair(), peer_ban_after=1)
    peer = KeyPair().public_key()
    reasons = (
        "PEER_CLOSED",
        "INGEST_UNAVAILABLE",
        "PEER_ENDED_UNAVAILABLE",
        "STREAM_BROKEN",
        "PEER_UNREACHABLE",
    )
    for reason in reasons:
        node._account(SessionRecord(initiator=True, node_id=peer), reason)
    assert not node.refused(peer)
    assert node.peers[peer].consecutive == len(reasons)


def test_a_completed_session_resets_the_back_off(tmp_path: Path) -> None:
    node = replication(tmp_path, KeyPair())
    peer = KeyPair().public_key()
    node._account(SessionRecord(initiator=True, node_id=peer), "PEER_CLOSED")
    node._account(SessionRecord(initiator=True, node_id=peer), "")
    assert node.peers[peer].consecutive == 0


def test_blocked_and_not_allowed_node_ids_are_refused(tmp_path: Path) -> None:
    allowed, blocked, other = (KeyPair().public_key() for _ in range(3))
    node = replication(tmp_path, KeyPair(), allow_peer_ids=f"{allowed},{blocked}")
    node.block = frozenset({blocked})
    assert not node.refused(allowed)
    assert node.refused(blocked)
    assert node.refused(other)


def held(n: int, size: int = 10) -> list[ipb.PublishRequest]:
    """``n`` distinct items of ``size`` bytes each (entry + operation)."""
    return [ipb.PublishRequest(entry=bytes([i]) * (size - 2), operation=b"op") for i in range(n)]


def test_the_hold_buffer_keeps_the_oldest_up_to_its_item_bound_and_counts_the_dropped() -> None:
    hold = HoldBuffer(max_items=3, max_bytes=1_000_000)
    items = held(5)
    hold.hold(items)
    assert len(hold) == 3 and hold.dropped == 2 and hold.peak == 3
    assert hold.take() == items[:3]
    assert len(hold) == 0 and hold.bytes == 0


def test_the_hold_buffer_is_bounded_by_bytes() -> None:
    hold = HoldBuffer(max_items=1000, max_bytes=25)
    items = held(4, size=10)
    hold.hold(items)
    assert hold.take() == items[:2]
    assert hold.dropped == 2
    # An item larger than the whole bound is never held; smaller ones still are.
    hold.hold([held(1, size=26)[0], *held(1, size=10)])
    assert len(hold) == 1 and hold.bytes == 10 and hold.dropped == 3


def test_the_hold_buffer_frees_its_bound_when_taken_and_remembers_its_peak() -> None:
    hold = HoldBuffer(max_items=2, max_bytes=1_000_000)
    hold.hold(held(2))
    again = hold.take()
    hold.hold(again[:1])
    hold.hold(held(1))
    assert len(hold) == 2 and hold.dropped == 0 and hold.peak == 2


def test_live_drift_redials_at_once_and_is_not_held_against_the_peer(tmp_path: Path) -> None:
    node = replication(tmp_path, KeyPair(), peer_ban_after=1)
    peer = KeyPair().public_key()
    record = SessionRecord(initiator=True, node_id=peer)
    node._account(record, "LIVE_DRIFT")
    assert not node.refused(peer)
    assert node.peers[peer].failures == [] and node.peers[peer].consecutive == 0
    assert node.peers[peer].retry_after <= record.started + 1.0


async def test_a_node_running_max_sync_sessions_dials_no_more_and_refuses_incoming(
    tmp_path: Path,
) -> None:
    node = replication(tmp_path, KeyPair(), max_sync_sessions=2)
    release = asyncio.Event()
    dialed: list[str] = []

    async def dial(record: SessionRecord, *, live: bool) -> SessionRecord:
        dialed.append(record.node_id)
        await release.wait()
        node.unclaimed.discard(record)
        return record

    node._dial = dial  # type: ignore[method-assign]
    peers = [node._peer(KeyPair().public_key()) for _ in range(3)]
    for port, peer in enumerate(peers, start=1000):
        peer.discovered, peer.address = 1, f"127.0.0.1:{port}"
    # One pass over three due peers stops at the limit, before any dial got going.
    assert node.dial_due() == 2
    assert node.full and node.dial_due() == 0
    with pytest.raises(SessionsFullError):
        await node.accept(transport=Any)  # type: ignore[arg-type]
    refused = await node.sync_with("127.0.0.1:2000")
    assert refused.error_reason == "TOO_MANY_SESSIONS" and refused.phase.value == "failed"
    await asyncio.sleep(0)
    assert len(dialed) == 2
    release.set()
    await asyncio.gather(*node._dials)
    assert node.session_count == 0
    # The third peer's turn; the first two wait for replication_interval.
    assert node.dial_due() == 1
    await asyncio.gather(*node._dials)
    assert set(dialed) == {peer.node_id for peer in peers}


def test_being_refused_for_too_many_sessions_backs_off_but_is_not_a_failure(
    tmp_path: Path,
) -> None:
    node = replication(tmp_path, KeyPair(), peer_ban_after=1)
    peer = KeyPair().public_key()
    for reason in ("PEER_ENDED_RESOURCE_EXHAUSTED", "TOO_MANY_SESSIONS"):
        node._account(SessionRecord(initiator=True, node_id=peer), reason)
    assert not node.refused(peer) and node.peers[peer].failures == []
    assert node.peers[peer].consecutive == 2


def test_the_replicated_schema_ids_stay_within_the_schema_allow_list() -> None:
    venue = "venue_0020" + "ab" * 32
    band = "band_0020" + "cd" * 32
    supported = Settings(supported_schema_ids=venue).supported_schemas
    definitions = ["schema_definition_v1", "schema_field_definition_v1"]
    # No allow list: the setting as it is.
    assert replicated_schema_ids("*", None) == ("*",)
    assert replicated_schema_ids(f"{band},{venue}", None) == tuple(sorted([band, venue]))
    # An allow list: * becomes the list, and ids outside it are dropped.
    assert replicated_schema_ids("*", supported) == tuple(sorted([*definitions, venue]))
    assert replicated_schema_ids(f"{band},{venue}", supported) == (venue,)
    assert replicated_schema_ids("blob_v01", supported) == ()
    assert replicated_schema_ids("", supported) == ()
