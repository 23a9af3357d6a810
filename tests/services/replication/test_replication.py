"""Replication between real nodes on loopback, wired only by bootstrap peers (LAN off)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.client import Client, KeyPair, ResourceNotFoundError, SchemaNotFoundError
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.replication.driver import SessionRecord
from tests.services.support import eventually

from .support import StartNode, log_entries, node_id, set_hash, starter


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


async def converged(*nodes: Node) -> str | None:
    """The common log set's hash once every node holds the same non-empty set."""
    hashes = {set_hash(await log_entries(node.address)) for node in nodes}
    sets = [await log_entries(node.address) for node in nodes]
    if len(hashes) == 1 and sets[0]:
        return hashes.pop()
    return None


async def readable(node: Node, document_id: str, field: str, value: object) -> bool:
    async with Client.connect(node.address) as client:
        try:
            document = await client.get_document(document_id)
        except ResourceNotFoundError:
            return False
        return bool(document.fields.get(field) == value)


async def test_two_nodes_converge_on_the_documents_made_on_each(start: StartNode) -> None:
    async with start("a") as a:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str", "seats": "int"})
            hall = await alice.create(venue, {"name": "Hall", "seats": 120})
            await alice.update(hall, {"seats": 150})
        async with start("b", bootstrap_peers=a.address) as b:
            async with Client.connect(b.address, key_pair=KeyPair()) as bob:
                band = await bob.create_schema("band", "A band", {"name": "str"})
                duo = await bob.create(band, {"name": "Duo"})
            await eventually(lambda: converged(a, b), timeout=30, what="the same log sets")
            # Materialized on both: A's document on B, B's on A.
            await eventually(
                lambda: readable(b, hall.document_id, "seats", 150), what="A's venue on B"
            )
            await eventually(lambda: readable(a, duo.document_id, "name", "Duo"), what="B's on A")


async def test_a_schema_defined_on_one_node_is_used_on_the_other(start: StartNode) -> None:
    async with start("a") as a, start("b", bootstrap_peers=a.address) as b:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})

        async def schema_on_b() -> bool:
            async with Client.connect(b.address) as client:
                try:
                    await client.get_schema(venue)
                except (ResourceNotFoundError, SchemaNotFoundError):
                    return False
                return True

        await eventually(schema_on_b, timeout=30, what="A's schema on B")
        async with Client.connect(b.address, key_pair=KeyPair()) as bob:
            place = await bob.create(venue, {"name": "Bob's place"})
            await alice_update_on_a(a, place.document_id)
        await eventually(lambda: converged(a, b), timeout=30, what="the same log sets")


async def alice_update_on_a(a: Node, document_id: str) -> None:
    """A multi-author document: Bob's document (made on B) updated by Carol on A."""

    async def on_a() -> bool:
        return await readable(a, document_id, "name", "Bob's place")

    await eventually(on_a, timeout=30, what="B's document on A")
    async with Client.connect(a.address, key_pair=KeyPair()) as carol:
        await carol.update(document_id, {"name": "Carol's place"})


async def test_live_mode_pushes_a_new_document_before_the_replication_interval(
    start: StartNode,
) -> None:
    # A short idle timeout: silence in live mode must not end the session.
    slow = {"replication_interval": 3600.0, "sync_idle_timeout": 0.2}
    async with start("a", **slow) as a, start("b", bootstrap_peers=a.address, **slow) as b:

        async def live() -> bool:
            sessions = [*_sessions(a), *_sessions(b)]
            return any(s.phase.value == "live" for s in sessions)

        await eventually(live, timeout=30, what="a live session")
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
            hall = await alice.create(venue, {"name": "Live hall"})
        # Well before the hour-long interval: only the live push can bring it.
        await eventually(
            lambda: readable(b, hall.document_id, "name", "Live hall"),
            timeout=20,
            what="A's document on B",
        )
        # And nothing is echoed back: A never received an entry.
        assert all(s.entries_received == 0 for s in _sessions(a))
        ended = [s.error_reason for node in (a, b) for s in _sessions(node) if s.ended]
        assert not {"SYNC_IDLE_TIMEOUT", "PEER_CLOSED", "STREAM_BROKEN"} & set(ended)


def _sessions(node: Node) -> list[SessionRecord]:
    assert node.replication is not None
    return list(node.replication.sessions())


async def test_nodes_in_sync_exchange_only_announce_digest_and_sync_done(
    start: StartNode,
) -> None:
    async with start("a") as a:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
            await alice.create(venue, {"name": "Hall"})
        async with start("b", bootstrap_peers=a.address) as b:
            await eventually(lambda: converged(a, b), timeout=30, what="the same log sets")
        async with start("b", bootstrap_peers=a.address) as b:
            assert b.replication is not None
            replication = b.replication

            async def in_sync_session() -> SessionRecord | None:
                return next(
                    (s for s in replication.ended if not s.error_reason),
                    None,
                ) or next(
                    (
                        s
                        for s in replication.sessions()
                        if s.phase.value == "live" and s.sent_kinds["sync_done"]
                    ),
                    None,
                )

            session = await eventually(in_sync_session, timeout=30, what="a session with A")
            assert set(session.sent_kinds) == {"announce", "have_digest", "sync_done"}
            assert set(session.received_kinds) == {"announce", "have_digest", "sync_done"}
            assert session.bytes_by_kind["entries"] == 0
            assert session.bytes_sent < 300


async def test_a_node_on_its_own_bootstrap_list_never_syncs_with_itself(
    start: StartNode,
) -> None:
    async with start("a") as a:
        async with grpc.aio.insecure_channel(a.address) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            session = await stub.SyncWith(pb.SyncWithRequest(address=a.address), timeout=30)
        assert session.state == pb.SESSION_STATE_FAILED
        assert session.error_reason == "SELF_SYNC"
        assert session.entries_received == 0


async def test_a_blocked_node_id_is_refused_both_ways(start: StartNode) -> None:
    async with start("a") as a:
        a_id = node_id(a)
        async with start("b", block_peer_ids=a_id) as b:
            async with Client.connect(a.address, key_pair=KeyPair()) as alice:
                venue = await alice.create_schema("venue", "A place", {"name": "str"})
                await alice.create(venue, {"name": "Hall"})
            for dialer, target, reason in (
                (a, b, "PEER_ENDED_PERMISSION_DENIED"),
                (b, a, "PEER_REFUSED"),
            ):
                async with grpc.aio.insecure_channel(dialer.address) as channel:
                    stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                    session = await stub.SyncWith(
                        pb.SyncWithRequest(address=target.address), timeout=30
                    )
                assert session.state == pb.SESSION_STATE_FAILED
                assert session.error_reason == reason
            assert await log_entries(b.address) == set()


async def test_sync_with_catches_up_once_and_list_sessions_shows_it(start: StartNode) -> None:
    async with start("a") as a, start("b") as b:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
            await alice.create(venue, {"name": "Hall"})
        async with grpc.aio.insecure_channel(b.address) as channel:
            stub = replication_pb2_grpc.ReplicationServiceStub(channel)
            session = await stub.SyncWith(pb.SyncWithRequest(address=a.address), timeout=30)
            assert session.error_reason == ""
            assert session.state == pb.SESSION_STATE_DONE
            assert session.node_id == node_id(a)
            assert session.entries_received == len(await log_entries(a.address))
            listed = await stub.ListSessions(pb.ListSessionsRequest(), timeout=10)
        assert any(s.node_id == node_id(a) and s.initiator for s in listed.sessions)
        assert await converged(a, b)
        # The acceptor completed its side too.
        accepted = [s for s in _sessions(a) if s.node_id == node_id(b)]
        assert [(s.phase.value, s.error_reason, s.initiator) for s in accepted] == [
            ("done", "", False)
        ]


async def test_three_nodes_converge_on_many_authors_logs_and_multi_author_documents(
    start: StartNode,
) -> None:
    async with (
        start("a") as a,
        start("b", bootstrap_peers=a.address) as b,
        start("c", bootstrap_peers=b.address) as c,
    ):
        nodes = (a, b, c)
        made: list[str] = []
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
        for index, node in enumerate(nodes):
            await eventually(partial(readable_schema, node, venue), timeout=30, what="schema")
            for author in range(2):
                async with Client.connect(node.address, key_pair=KeyPair()) as writer:
                    for n in range(3):
                        doc = await writer.create(venue, {"name": f"{index}-{author}-{n}"})
                        made.append(doc.document_id)
        hashes = await eventually(
            lambda: converged(*nodes), timeout=60, what="the same log sets on three nodes"
        )
        assert hashes
        # Another author updates a document made elsewhere; everyone sees the update.
        async with Client.connect(c.address, key_pair=KeyPair()) as carol:
            await carol.update(made[0], {"name": "renamed"})
        for node in nodes:
            await eventually(
                partial(readable, node, made[0], "name", "renamed"),
                timeout=30,
                what="the update everywhere",
            )
        await eventually(lambda: converged(*nodes), timeout=60, what="the same log sets")
        for node in nodes:
            for document_id in made[1:]:
                await eventually(
                    partial(exists, node, document_id),
                    timeout=30,
                    what="every document materialized on every node",
                )


async def readable_schema(node: Node, schema_id: str) -> bool:
    async with Client.connect(node.address) as client:
        try:
            await client.get_schema(schema_id)
        except (ResourceNotFoundError, SchemaNotFoundError):
            return False
        return True


async def exists(node: Node, document_id: str) -> bool:
    async with Client.connect(node.address) as client:
        try:
            await client.get_document(document_id)
        except ResourceNotFoundError:
            return False
        return True


async def test_replication_schema_ids_limit_what_a_node_takes(start: StartNode) -> None:
    async with start("a") as a:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
            band = await alice.create_schema("band", "A band", {"name": "str"})
            hall = await alice.create(venue, {"name": "Hall"})
            duo = await alice.create(band, {"name": "Duo"})
        wanted = f"schema_definition_v1,schema_field_definition_v1,{venue}"
        async with start("b", replication_schema_ids=wanted) as b:
            async with grpc.aio.insecure_channel(b.address) as channel:
                stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                session = await stub.SyncWith(pb.SyncWithRequest(address=a.address), timeout=30)
            assert session.error_reason == ""
            assert sorted(session.target_schema_ids) == sorted(wanted.split(","))
            await eventually(lambda: exists(b, hall.document_id), what="the venue on B")
            assert not await exists(b, duo.document_id)
            logs_on_b = {entry[:2] for entry in await log_entries(b.address)}
            assert len(logs_on_b) < len({entry[:2] for entry in await log_entries(a.address)})


async def test_a_node_with_a_schema_allow_list_replicates_only_the_listed_schemas(
    start: StartNode,
) -> None:
    async with start("a") as a:
        async with Client.connect(a.address, key_pair=KeyPair()) as alice:
            venue = await alice.create_schema("venue", "A place", {"name": "str"})
            band = await alice.create_schema("band", "A band", {"name": "str"})
            hall = await alice.create(venue, {"name": "Hall"})
            duo = await alice.create(band, {"name": "Duo"})
        # replication_schema_ids stays *: the allow list narrows it, so A is never asked for
        # the band entries ingest would refuse (which would fail the session and count
        # against A).
        async with start("b", supported_schema_ids=venue) as b:
            async with grpc.aio.insecure_channel(b.address) as channel:
                stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                session = await stub.SyncWith(pb.SyncWithRequest(address=a.address), timeout=30)
            assert session.error_reason == ""
            assert sorted(session.target_schema_ids) == sorted(
                ["schema_definition_v1", "schema_field_definition_v1", venue]
            )
            await eventually(lambda: exists(b, hall.document_id), what="the venue on B")
            assert not await exists(b, duo.document_id)
            assert b.replication is not None
            peer = b.replication.peers.get(node_id(a))
            assert peer is None or not peer.failures, "a session counted against A"


async def test_sync_with_answers_only_once_the_peer_stored_what_it_was_sent(
    start: StartNode,
) -> None:
    # The dialer used to tear the stream down as soon as its own side was done; the acceptor's
    # handler was cancelled with entries received but not yet stored (lost until a later
    # session). Widest when only the dialer has news: the acceptor's SyncDone comes at once.
    # Each round: fresh entries on the dialer, one SyncWith, then the acceptor holds them at
    # once, without waiting.
    async with start("a") as a, start("b") as b:
        async with Client.connect(b.address, key_pair=KeyPair()) as bob:
            venue = await bob.create_schema("venue", "A place", {"name": "str"})
            async with grpc.aio.insecure_channel(b.address) as channel:
                stub = replication_pb2_grpc.ReplicationServiceStub(channel)
                for round_ in range(20):
                    hall = await bob.create(venue, {"name": f"Hall {round_}"})
                    for seats in range(5):
                        await bob.update(hall, {"name": f"Hall {round_}.{seats}"})
                    request = pb.SyncWithRequest(address=a.address)
                    session = await stub.SyncWith(request, timeout=30)
                    assert session.error_reason == ""
                    held_a, held_b = await log_entries(a.address), await log_entries(b.address)
                    assert held_a == held_b, f"round {round_}: A {len(held_a)}, B {len(held_b)}"
        accepted = [s for s in _sessions(a) if s.node_id == node_id(b)]
        assert {(s.phase.value, s.error_reason) for s in accepted} == {("done", "")}
