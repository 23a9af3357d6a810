"""``Client.peers`` and ``pandanode peers``: the node's discovery peer table, as objects, as JSON
for scripts and as a table for people, against a real node that found a real second node."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pandanode.client import Client, NotServedError, Peer, connect_sync
from pandanode.services.node import Node
from pandanode.services.runtime.settings import Settings
from tests.client.conftest import PANDANODE, Cli, runner
from tests.services.discovery.support import fast_settings, node_id
from tests.services.support import eventually


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[Node]:
    """A second node, which :func:`node` has in its bootstrap list."""
    async with Node(fast_settings(tmp_path / "other")) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, other: Node) -> Settings:
    """The settings of :func:`node` (overrides the shared fixture): it bootstraps from other."""
    return fast_settings(tmp_path / "data", bootstrap_peers=other.address)


async def found(client: Client) -> list[Peer]:
    async def listed() -> list[Peer]:
        return await client.peers()

    return await eventually(listed, what="the node to find the other node")


async def test_peers_are_the_nodes_the_node_found(client: Client, other: Node) -> None:
    (peer,) = await found(client)
    assert isinstance(peer, Peer)
    assert peer.node_id == node_id(other)
    assert peer.addresses == (other.address,)
    assert peer.source == "bootstrap" and peer.reachable
    assert peer.first_seen.tzinfo is UTC and peer.first_seen <= peer.last_seen
    assert peer.last_seen <= datetime.now(UTC)
    as_json = json.loads(json.dumps(peer.to_dict()))
    assert as_json["node_id"] == peer.node_id and as_json["addresses"] == [other.address]
    assert datetime.fromisoformat(as_json["first_seen"]) == peer.first_seen


def sync_peers(address: str) -> list[Peer]:
    with connect_sync(address) as node:
        return node.peers()


async def test_the_sync_client_lists_the_same_peers(client: Client, node: Node) -> None:
    expected = await found(client)
    listed = await asyncio.to_thread(sync_peers, node.address)
    assert [peer.node_id for peer in listed] == [peer.node_id for peer in expected]


async def test_peers_of_a_node_without_discovery_is_not_served(tmp_path: Path) -> None:
    async with (
        Node(fast_settings(tmp_path / "ingest-only"), ("ingest",)) as ingest_only,
        Client.connect(ingest_only.address) as client,
    ):
        with pytest.raises(NotServedError, match="does not serve DiscoveryService"):
            await client.peers()


async def test_pandanode_peers_json_lists_the_peers(
    pandanode: Cli, client: Client, other: Node
) -> None:
    await found(client)
    ran = await pandanode("peers", "--json")
    assert ran.code == 0, ran.stderr
    (peer,) = ran.json()
    assert set(peer) == {"node_id", "addresses", "source", "first_seen", "last_seen", "reachable"}
    assert (peer["node_id"], peer["addresses"], peer["source"], peer["reachable"]) == (
        node_id(other),
        [other.address],
        "bootstrap",
        True,
    )


async def test_pandanode_peers_prints_a_table_for_people(
    pandanode: Cli, client: Client, other: Node
) -> None:
    await found(client)
    ran = await pandanode("peers")
    assert ran.code == 0, ran.stderr
    assert node_id(other) in ran.stdout and other.address in ran.stdout
    assert "bootstrap" in ran.stdout and "1 peer" in ran.stdout


async def test_pandanode_peers_exit_codes(
    pandanode: Cli, cli_env: dict[str, str], tmp_path: Path
) -> None:
    unreachable = await pandanode("peers", "--node", "127.0.0.1:1", "--timeout", "2")
    assert unreachable.code == 3 and "unreachable" in unreachable.stderr
    async with Node(fast_settings(tmp_path / "ingest-only"), ("ingest",)) as ingest_only:
        run = runner([PANDANODE], {**cli_env, "PANDANODE_NODE": ingest_only.address})
        not_served = await run("peers", "--json")
    assert not_served.code == 1
    assert "DiscoveryService" in not_served.stderr and "pandanode up" in not_served.stderr


async def test_a_node_that_found_no_one_says_so(tmp_path: Path) -> None:
    async with Node(fast_settings(tmp_path / "alone")) as alone:
        run = runner([PANDANODE], {**os.environ, "PANDANODE_NODE": alone.address})
        human, as_json = await asyncio.gather(run("peers"), run("peers", "--json"))
    assert human.code == 0 and "knows no peers" in human.stdout
    assert as_json.code == 0 and as_json.json() == []
