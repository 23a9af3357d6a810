"""Replication's rules without a network: one session per peer, back-off and bans, the hold
buffer's bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.services.replication.driver import SessionRecord
from pandanode.services.replication.ingest_client import HoldBuffer
from pandanode.services.replication.replication import Replication, replicated_schema_ids
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
    for reason in ("PEER_CLOSED", "INGEST_UNAVAILABLE", "PEER_ENDED_UNAVAILABLE", "STREAM_BROKEN"):
        node._account(SessionRecord(initiator=True, node_id=peer), reason)
    assert not node.refused(peer)
    assert node.peers[peer].consecutive == 4


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


def test_the_hold_buffer_keeps_the_newest_up_to_its_bound() -> None:
    hold = HoldBuffer(max_items=3)
    items = [ipb.PublishRequest(entry=bytes([i])) for i in range(5)]
    hold.hold(items)
    assert len(hold) == 3 and hold.dropped == 2
    assert hold.take() == items[2:]
    assert len(hold) == 0


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
