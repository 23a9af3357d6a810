"""Bulk publishing through PublishStream: 10k operations, back-pressure, export and import."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.client import Client, Create, Delete, KeyPair, Published, Update
from pandanode.core import encode_operation, sign_and_encode_entry
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import node_settings

OPERATIONS = 10_000


async def raw_stream_rate(client: Client, schema_id: str, count: int) -> float:
    """The node's own rate: pre-signed entries over one PublishStream, batches of 500."""
    authors = [KeyPair() for _ in range(50)]
    requests = []
    for index in range(count):
        operation = encode_operation(schema_id=schema_id, fields={"n": index})
        entry = sign_and_encode_entry(operation, authors[index % 50], log_id=index // 50)
        requests.append(pb.PublishRequest(entry=entry, operation=operation))
    stub = ingest_pb2_grpc.IngestServiceStub(client._shared.channel)

    async def batches() -> AsyncIterator[pb.PublishStreamRequest]:
        for start in range(0, count, 500):
            yield pb.PublishStreamRequest(items=requests[start : start + 500])

    started = time.perf_counter()
    accepted = 0
    async for response in stub.PublishStream(batches()):
        accepted += sum(1 for result in response.results if result.HasField("ok"))
    elapsed = time.perf_counter() - started
    assert accepted == count
    return count / elapsed


async def test_bulk_import_of_10k_operations(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    schema_id = await client.create_schema("reading", "A sensor reading", {"n": "int"})
    done: list[int] = []
    started = time.perf_counter()
    result = await client.publish_many(
        [Create(schema_id, {"n": n}) for n in range(OPERATIONS)],
        progress=lambda count, total: done.append(count),
    )
    client_rate = OPERATIONS / (time.perf_counter() - started)
    assert len(result) == OPERATIONS
    assert not result.errors
    assert done[-1] == OPERATIONS and done == sorted(done)
    assert len({p.log_id for p in result.published}) == OPERATIONS
    status = await client.status()
    assert status.entries is not None and status.entries >= OPERATIONS

    node_rate = await raw_stream_rate(client, schema_id, OPERATIONS)
    with capsys.disabled():
        print(
            f"\nbulk import of {OPERATIONS} operations: client publish_many "
            f"{client_rate:,.0f} ops/s (sign + stream), node raw PublishStream "
            f"{node_rate:,.0f} entries/s (pre-signed), same process"
        )


async def test_back_pressure_bounds_what_is_in_flight(client: Client) -> None:
    schema_id = await client.create_schema("tick", "A tick", {"n": "int"})
    pulled = 0
    done = 0
    worst = 0

    async def operations() -> AsyncIterator[Create]:
        nonlocal pulled, worst
        for n in range(600):
            pulled += 1
            worst = max(worst, pulled - done)
            yield Create(schema_id, {"n": n})

    def progress(count: int, total: int | None) -> None:
        nonlocal done
        done = count

    result = await client.publish_many(
        operations(), batch_size=20, max_in_flight=2, progress=progress
    )
    assert len(result.published) == 600
    # Two batches unanswered, one being filled, one item pulled ahead.
    assert worst <= 20 * 3 + 1


async def test_updates_and_deletes_in_bulk_follow_each_log(client: Client) -> None:
    schema_id = await client.create_schema("item", "An item", {"n": "int"})
    first = await client.publish_many([Create(schema_id, {"n": n}) for n in range(40)])
    created = first.published
    other = client.with_key_pair(KeyPair())
    second = await other.publish_many([Update(doc, {"n": -1}) for doc in created])
    assert all(p.seq_num == 1 for p in second.published)
    # Many updates of one document in one stream: links are computed locally (skiplinks too).
    third = await client.publish_many([Update(created[0], {"n": n}) for n in range(1, 30)])
    assert [p.seq_num for p in third.published] == list(range(2, 31))
    fourth = await client.publish_many([Delete(doc) for doc in created[1:5]])
    assert len(fourth.published) == 4
    # The client's view of its logs stays right for unary writes afterwards.
    after = await client.update(created[0].document_id, {"n": 99})
    assert after.seq_num == 31


async def test_a_second_connection_streams_onto_a_log_it_did_not_write_then_writes_once(
    client: Client, node: Node, key_pair: KeyPair
) -> None:
    schema_id = await client.create_schema("counter", "A counter", {"n": "int"})
    created = await client.create(schema_id, {"n": 0})
    first = await client.publish_many([Update(created.document_id, {"n": n}) for n in range(1, 10)])
    assert [p.seq_num for p in first.published] == list(range(2, 11))
    # Another connection knows nothing of the log: its links (skiplinks to entries it never
    # signed, too) come from the node.
    async with Client.connect(node.address, key_pair=key_pair) as second:
        streamed = await second.publish_many(
            [Update(created.document_id, {"n": n}) for n in range(10, 30)]
        )
        assert [p.seq_num for p in streamed.published] == list(range(11, 31))
        single = await second.update(created.document_id, {"n": 30})
        assert single.seq_num == 31
        assert single.log_id == created.log_id


async def export_all(client: Client) -> list[tuple[bytes, bytes]]:
    return [pair async for pair in client.export()]


async def test_export_then_import_into_another_node_in_any_order(
    client: Client, tmp_path: Path
) -> None:
    schema_id = await client.create_schema("song", "A song", {"title": "str", "plays": "int"})
    songs = await client.publish_many(
        [Create(schema_id, {"title": f"s{n}", "plays": n}) for n in range(5)]
    )
    fan = client.with_key_pair(KeyPair())
    for song in songs.published:
        await fan.update(song, {"plays": 1000})
    exported = await export_all(client)
    assert len(exported) == 3 + 5 + 5  # 2 field definitions + the definition, creates, updates

    settings = node_settings(tmp_path / "second")
    async with (
        Node(settings) as second,
        Client.connect(second.address) as importer,
    ):
        # Reversed: updates before their documents, documents before their schema.
        result = await importer.bulk_import(list(reversed(exported)), batch_size=4)
        assert not result.errors, result.errors[:3]
        assert all(isinstance(r, Published) for r in result.results)
        assert sorted(await export_all(importer)) == sorted(exported)
        again = await importer.bulk_import(exported)  # idempotent
        assert not again.errors
