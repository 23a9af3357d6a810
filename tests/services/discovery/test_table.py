"""The peer table is a value: observe / mark_unreachable / expire return a new table and events."""

from __future__ import annotations

import pytest

from pandanode.services.discovery.table import (
    MAX_ADDRESSES,
    PeerSource,
    PeerTable,
    Sighting,
    expire,
    mark_unreachable,
    observe,
)

A = "a" * 64
B = "b" * 64


def test_a_new_node_enters_the_table_with_one_discovered_event() -> None:
    empty = PeerTable()
    table, events = observe(empty, Sighting(A, "10.0.0.1:2020", PeerSource.BOOTSTRAP, True), 100.0)
    assert len(empty) == 0, "the old table is left as it was"
    peer = table.get(A)
    assert peer is not None
    assert (peer.addresses, peer.source, peer.first_seen, peer.last_seen, peer.reachable) == (
        ("10.0.0.1:2020",),
        PeerSource.BOOTSTRAP,
        100.0,
        100.0,
        True,
    )
    assert [(event.name, event.peer) for event in events] == [("discovered", peer)]


def test_seeing_a_known_node_again_refreshes_it_without_an_event() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "10.0.0.1:2020", PeerSource.LAN, True), 100.0)
    table, events = observe(table, Sighting(A, "10.0.0.2:2020", PeerSource.EXCHANGE), 105.0)
    peer = table.get(A)
    assert peer is not None and events == ()
    assert peer.addresses == ("10.0.0.2:2020", "10.0.0.1:2020"), "most recent address first"
    assert peer.source is PeerSource.LAN, "the source is how it was found first"
    assert (peer.first_seen, peer.last_seen) == (100.0, 105.0)
    assert peer.reachable, "an announcement leaves reachability as the last probe found it"


def test_an_announced_but_never_probed_node_is_not_reachable_yet() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "10.0.0.1:2020", PeerSource.LAN), 1.0)
    peer = table.get(A)
    assert peer is not None and not peer.reachable


def test_a_peer_keeps_only_its_most_recent_addresses() -> None:
    table = PeerTable()
    for port in range(MAX_ADDRESSES + 3):
        table, _ = observe(table, Sighting(A, f"h:{port}", PeerSource.LAN), float(port))
    peer = table.get(A)
    assert peer is not None
    assert peer.addresses == tuple(f"h:{port}" for port in range(MAX_ADDRESSES + 2, 2, -1))


def test_a_late_sighting_does_not_move_last_seen_back() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "h:1", PeerSource.LAN), 10.0)
    table, _ = observe(table, Sighting(A, "h:1", PeerSource.LAN), 9.0)
    peer = table.get(A)
    assert peer is not None and peer.last_seen == 10.0


def test_an_unanswered_probe_marks_a_peer_unreachable_but_does_not_refresh_it() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "h:1", PeerSource.BOOTSTRAP, True), 10.0)
    marked = mark_unreachable(table, A)
    peer = marked.get(A)
    assert peer is not None and not peer.reachable and peer.last_seen == 10.0
    assert mark_unreachable(marked, A) is marked, "nothing changes twice"
    assert mark_unreachable(table, B) is table, "an unknown node is ignored"


def test_expire_drops_peers_silent_for_longer_than_the_ttl_with_lost_events() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "h:1", PeerSource.LAN), 10.0)
    table, _ = observe(table, Sighting(B, "h:2", PeerSource.LAN), 20.0)
    kept, events = expire(table, now=20.0, ttl=10.0)
    assert kept is table and events == (), "exactly the TTL old is still alive"
    after, events = expire(table, now=20.5, ttl=10.0)
    assert [peer.node_id for peer in after] == [B]
    assert [(event.name, event.peer.node_id, event.peer.first_seen) for event in events] == [
        ("lost", A, 10.0)
    ]


def test_a_lost_node_seen_again_is_a_new_sighting_with_a_new_first_seen() -> None:
    table, _ = observe(PeerTable(), Sighting(A, "h:1", PeerSource.BOOTSTRAP, True), 10.0)
    table, lost = expire(table, now=50.0, ttl=10.0)
    table, found = observe(table, Sighting(A, "h:1", PeerSource.BOOTSTRAP, True), 60.0)
    assert [event.name for event in (*lost, *found)] == ["lost", "discovered"]
    assert found[0].peer.first_seen == 60.0 != lost[0].peer.first_seen


def test_the_table_iterates_by_node_id_and_cannot_be_changed_in_place() -> None:
    table, _ = observe(PeerTable(), Sighting(B, "h:2", PeerSource.LAN), 1.0)
    table, _ = observe(table, Sighting(A, "h:1", PeerSource.LAN), 2.0)
    assert [peer.node_id for peer in table] == [A, B]
    assert A in table and "c" * 64 not in table
    with pytest.raises(TypeError):
        table.peers[A] = table.peers[B]  # type: ignore[index]
