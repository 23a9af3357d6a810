"""``Client.sync_with`` / ``sessions`` and ``pandanode sync`` / ``pandanode sessions`` against a
real node catching up with a real second node (no bootstrap peers: only the explicit sync)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.client import Client, KeyPair, SyncSession
from pandanode.services.node import Node
from tests.client.conftest import Cli
from tests.services.replication.support import log_entries, replication_settings


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[Node]:
    """A second node holding one schema and one document."""
    async with Node(replication_settings(tmp_path / "other")) as running:
        async with Client.connect(running.address, key_pair=KeyPair()) as author:
            venue = await author.create_schema("venue", "A place", {"name": "str"})
            await author.create(venue, {"name": "Hall"})
        yield running


async def test_sync_with_catches_up_and_sessions_lists_it(client: Client, other: Node) -> None:
    session = await client.sync_with(other.address)
    assert isinstance(session, SyncSession)
    assert session.state == "done" and session.error_reason == ""
    assert session.entries_received == len(await log_entries(other.address))
    assert session.initiator and session.ended is not None
    listed, peers = await client.sessions()
    assert any(s.node_id == session.node_id for s in listed)
    assert peers == []


async def test_pandanode_sync_and_sessions_print_json_and_tables(
    pandanode: Cli, other: Node
) -> None:
    ran = await pandanode("sync", other.address, "--json")
    assert ran.code == 0, ran.stderr
    assert ran.json()["state"] == "done"
    assert ran.json()["entries_received"] == 3
    listed = await pandanode("sessions", "--json")
    assert listed.code == 0, listed.stderr
    assert [s["state"] for s in listed.json()["sessions"]] == ["done"]
    table = await pandanode("sessions")
    assert "done" in table.stdout


async def test_pandanode_sync_with_a_node_that_is_not_there_fails_as_unreachable_naming_it(
    pandanode: Cli,
) -> None:
    ran = await pandanode("sync", "127.0.0.1:1")  # nothing listens on port 1: refused
    assert ran.code != 0
    assert ran.stdout.strip() == (
        "sync with 127.0.0.1:1 failed: PEER_UNREACHABLE (the node could not connect to 127.0.0.1:1)"
    )
    listed = await pandanode("sessions", "--json")
    [session] = listed.json()["sessions"]
    assert session["address"] == "127.0.0.1:1" and session["state"] == "failed"
    assert session["error_reason"] == "PEER_UNREACHABLE"
