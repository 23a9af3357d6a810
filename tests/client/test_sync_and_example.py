"""The blocking client, through the venues-and-events example (run in a worker thread, since
the node under test runs on this test's event loop)."""

from __future__ import annotations

import asyncio

from pandanode.client import KeyPair, Published, connect_sync
from pandanode.client.examples.venues import Created, run, tiny_png
from pandanode.services.node import Node


def example(address: str) -> tuple[Created, int | None]:
    with connect_sync(address, key_pair=KeyPair()) as node:
        made = run(node, say=False)
        entries = node.status().entries
        assert node.get_schema(made.event_schema).name == "event"
        next_args = node.next_args(made.events[0])
        assert (next_args.log_id, next_args.seq_num) == (made.events[0].log_id, 2)
        exported = list(node.export(schema_ids=[made.venue_schema]))
        assert len(exported) == 2
    return made, entries


async def test_the_example_runs_on_the_sync_client(node: Node) -> None:
    made, entries = await asyncio.to_thread(example, node.address)
    assert made.picture is not None and made.picture.schema_id == "blob_v1"
    assert [v.schema_id for v in made.venues] == [made.venue_schema] * 2
    assert all(isinstance(e, Published) for e in made.events)
    # 4 + 1 and 5 + 1 schema entries, 1 piece + 1 blob, 2 venues, 3 events, update, delete
    assert entries == 5 + 6 + 2 + 2 + 3 + 1 + 1
    if made.listed is not None:  # the node serves queries
        assert made.listed == ["Launch party"]


def test_tiny_png_is_a_png() -> None:
    data = tiny_png(1, 2, 3)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
