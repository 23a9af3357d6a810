"""Live mode's drift check between real nodes: an entry the live push never delivered is found
by the digest exchange every ``replication_interval`` and healed by the redial's catch-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.client import Client, KeyPair, ResourceNotFoundError
from pandanode.services.node import Node
from pandanode.services.replication.driver import LiveFeed, SessionRecord
from pandanode.services.replication.session import ReceivedEntry
from tests.services.support import eventually

from .support import StartNode, log_entries, starter


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


class _LosingFeed:
    """A live feed that never sees the entries of one author, as if their events were lost."""

    def __init__(self, feed: LiveFeed, lost_author: str) -> None:
        self._feed = feed
        self._lost = lost_author

    async def batches(self) -> AsyncIterator[tuple[ReceivedEntry, ...]]:
        async for items in self._feed.batches():
            kept = tuple(item for item in items if item.public_key != self._lost)
            if kept:
                yield kept

    async def close(self) -> None:
        await self._feed.close()


def lose_live_entries_of(node: Node, author: str) -> None:
    """Make every live session of ``node`` blind to ``author``'s entries (catch-up is not)."""
    replication = node.replication
    assert replication is not None
    subscribe = replication._subscribe

    async def losing() -> LiveFeed:
        return _LosingFeed(await subscribe(), author)

    replication._subscribe = losing  # type: ignore[method-assign,assignment]


def sessions(node: Node) -> list[SessionRecord]:
    assert node.replication is not None
    return list(node.replication.sessions())


async def readable(node: Node, document_id: str) -> bool:
    async with Client.connect(node.address) as client:
        try:
            await client.get_document(document_id)
        except ResourceNotFoundError:
            return False
        return True


async def test_an_entry_live_push_lost_is_found_by_the_drift_check_and_healed(
    start: StartNode,
) -> None:
    timing = {"replication_interval": 0.3, "sync_idle_timeout": 5.0}
    lost = KeyPair()
    async with start("a", **timing) as a:
        lose_live_entries_of(a, lost.public_key())
        async with start("b", bootstrap_peers=a.address, **timing) as b:

            async def live() -> bool:
                return any(s.phase.value == "live" for s in sessions(a))

            await eventually(live, timeout=30, what="a live session")
            async with Client.connect(a.address, key_pair=lost) as writer:
                venue = await writer.create_schema("venue", "A place", {"name": "str"})
                hall = await writer.create(venue, {"name": "Hall"})

            await eventually(lambda: readable(b, hall.document_id), timeout=30, what="on B")
            reasons = {s.error_reason for node in (a, b) for s in sessions(node)}
            assert "LIVE_DRIFT" in reasons
            # Healed: B holds every entry A holds, and no peer was held at fault.
            assert await log_entries(b.address) >= await log_entries(a.address)
            assert b.replication is not None and a.replication is not None
            assert not b.replication.refused(a.replication.node_id)
            assert all(not p.failures for p in a.replication.peers.values())


async def test_nodes_live_and_in_sync_keep_their_session_across_drift_checks(
    start: StartNode,
) -> None:
    timing = {"replication_interval": 0.2, "sync_idle_timeout": 5.0}
    async with start("a", **timing) as a, start("b", bootstrap_peers=a.address, **timing) as b:

        async def live_session() -> SessionRecord | None:
            return next((s for s in sessions(a) if s.phase.value == "live"), None)

        session = await eventually(live_session, timeout=30, what="a live session")
        async with Client.connect(a.address, key_pair=KeyPair()) as writer:
            venue = await writer.create_schema("venue", "A place", {"name": "str"})
            for n in range(5):
                await writer.create(venue, {"name": f"Hall {n}"})

        # Several drift checks each way, each answered by the peer's digest.
        async def checked() -> bool:
            kinds = (session.received_kinds["have_digest"], session.sent_kinds["have_digest"])
            return min(kinds) >= 6

        await eventually(checked, timeout=30, what="drift checks")
        assert session.phase.value == "live" and session.ended is None
        reasons = {s.error_reason for node in (a, b) for s in sessions(node)}
        assert not reasons - {"", "DUPLICATE_SESSION"}
