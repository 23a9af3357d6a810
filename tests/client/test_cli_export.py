"""``pandanode export`` and ``import`` between nodes, as a person runs them: the console script
as a subprocess against real nodes (the suite's node and a fresh one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.client import Client, Create, load_key_pair, relation
from pandanode.services.node import Node
from tests.client.conftest import CLI_DEADLINE, PANDANODE, Cli
from tests.services.support import eventually, node_settings


@pytest.fixture
async def author(pandanode: Cli, node: Node, cli_env: dict[str, str]) -> AsyncIterator[Client]:
    """A client signing with the key file the CLI uses."""
    made = await pandanode("key", "new")
    assert made.code == 0, made.stderr
    key_pair = load_key_pair(cli_env["PANDANODE_KEY_FILE"])
    async with Client.connect(node.address, key_pair=key_pair) as client:
        yield client


@pytest.fixture
async def fresh_node(tmp_path: Path) -> AsyncIterator[Node]:
    """A second node, empty: it knows none of the first node's schemas."""
    async with Node(node_settings(tmp_path / "fresh")) as running:
        yield running


async def events_at_venues(author: Client, count: int) -> tuple[str, str]:
    """A venue schema, an event schema relating to it, ``count`` events; the two schema ids."""
    venue = await author.create_schema("venue", "A place", {"name": "str"})
    hall = await author.create(venue, {"name": "Panda Hall"})
    event = await author.create_schema(
        "event", "At a venue", {"title": "str", "venue": relation(venue)}
    )
    result = await author.publish_many(
        [Create(event, {"title": f"Gig {n}", "venue": hall}) for n in range(count)]
    )
    assert not result.errors
    return venue, event


async def test_export_of_a_schema_imports_whole_into_a_fresh_node(
    pandanode: Cli, author: Client, fresh_node: Node, tmp_path: Path
) -> None:
    venue_id, event_id = await events_at_venues(author, 40)
    exported = await pandanode("export", "--schema", event_id, "-o", str(tmp_path / "events.jsonl"))
    assert exported.code == 0, exported.stderr
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    # The 40 events, after the definitions: event's two fields and schema, venue's field and
    # schema (event relates to venue). Not the venue document: a relation may point anywhere.
    assert len(lines) == 40 + 2 + 1 + 1 + 1

    imported = await pandanode(
        "import", str(tmp_path / "events.jsonl"), "--json", "--node", fresh_node.address
    )
    assert imported.code == 0, imported.stderr
    summary = imported.json()
    assert (summary["published"], summary["rejected"]) == (len(lines), 0)

    async def all_listed() -> bool:
        ran = await pandanode(
            "documents", "list", event_id, "--all", "--json", "--node", fresh_node.address
        )
        assert ran.code == 0, ran.stderr
        return len(ran.json()) == 40

    await eventually(all_listed, what="the fresh node to materialize the 40 events")
    shown = await pandanode("schema", "show", venue_id, "--json", "--node", fresh_node.address)
    assert shown.code == 0 and shown.json()["fields"] == {"name": "str"}


async def test_a_partly_rejected_import_exits_1_and_keeps_the_rest(
    pandanode: Cli, author: Client, fresh_node: Node, tmp_path: Path
) -> None:
    _, event_id = await events_at_venues(author, 10)
    exported = await pandanode("export", "--schema", event_id)
    assert exported.code == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    forged = lines[-1]["entry"]
    lines[-1]["entry"] = forged[:-2] + f"{int(forged[-2:], 16) ^ 1:02x}"  # a bad signature
    path = tmp_path / "forged.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    imported = await pandanode("import", str(path), "--json", "--node", fresh_node.address)
    assert imported.code == 1, imported.stderr
    summary = imported.json()
    assert (summary["published"], summary["rejected"]) == (len(lines) - 1, 1)
    assert summary["errors"][0]["line"] == len(lines)
    human = await pandanode("import", str(path), "--node", fresh_node.address)
    assert human.code == 1 and f"line {len(lines)}:" in human.stderr


async def test_export_into_a_pipe_that_closes_early_ends_quietly(
    author: Client, cli_env: dict[str, str]
) -> None:
    schema = await author.create_schema("blobby", "Big rows", {"data": "bytes"})
    result = await author.publish_many(
        [Create(schema, {"data": bytes(200) + n.to_bytes(2, "big")}) for n in range(400)]
    )
    assert not result.errors  # some 400 lines of ~800 characters: more than a pipe buffer
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        f"set -o pipefail; {PANDANODE} export | head -n 2",
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_DEADLINE)
    assert err.decode() == ""
    assert process.returncode == 0  # pipefail: export's own exit code
    assert len(out.decode().splitlines()) == 2
