"""The blocking client, through the venues-and-events example (run in a worker thread, since
the node under test runs on this test's event loop)."""

from __future__ import annotations

import asyncio

from pandanode.client import KeyPair, Published, connect_sync
from pandanode.client.examples.venues import Created, run, tiny_png
from pandanode.services.node import Node
from tests.services.support import eventually


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
    assert made.listed == ["Launch party"]  # the node serves queries


def sync_reads(address: str) -> tuple[list[str], list[str], list[str], str]:
    with connect_sync(address, key_pair=KeyPair()) as node:
        schema_id = node.create_schema("row", "Rows", {"n": "int"})
        made = [node.create(schema_id, {"n": n}) for n in range(7)]
        listed = [str(d["n"]) for d in node.documents(schema_id, order_by="-n", after=made[-1])]
        paged = [
            ",".join(str(d["n"]) for d in page.documents)
            for page in node.pages(schema_id, order_by="n", page_size=3)
        ]
        kinds: list[str] = []
        for change in node.watch(schema_id, filter={"n__lt": 2}):
            kinds.append(change.kind)
            if change.kind == "caught_up":
                break  # closing the iterator ends the call on the node
        return listed, paged, kinds, str(node.get_document(made[0].document_id)["n"])


async def test_the_sync_client_lists_pages_and_watches(node: Node) -> None:
    assert node.query is not None
    listeners = node.query.listener_count
    listed, paged, kinds, first = await asyncio.to_thread(sync_reads, node.address)
    assert listed == ["6", "5", "4", "3", "2", "1", "0"]
    assert paged == ["0,1,2", "3,4,5", "6"]
    assert kinds == ["existing", "existing", "caught_up"]
    assert first == "0"
    query = node.query

    async def dropped() -> bool:
        return query.listener_count == listeners

    await eventually(dropped, timeout=10, what="the node to drop the watch of a closed iterator")


def test_tiny_png_is_a_png() -> None:
    data = tiny_png(1, 2, 3)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
