"""ReadMissingEntries: every entry a peer lacks (spec §8.3), per log in seq order, logs merged
in store order so that dependencies come first; batches bounded; the have-set bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest

from pandanode.core.hash import generate_hash
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import node_settings

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
    log_heights,
    publish,
    publish_schema,
    rejection,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

Have = Sequence[tuple[str, int, int]]


async def read_missing(
    ingest: IngestServiceAsyncStub,
    have: Have = (),
    *,
    schema_ids: Sequence[str] = (),
    max_batch_items: int = 0,
    max_batch_bytes: int = 0,
    chunk: int = 2,
) -> list[list[pb.MissingEntry]]:
    """Send a have-set in chunks of ``chunk`` heights; return the batches answered."""

    async def requests() -> AsyncIterator[pb.ReadMissingEntriesRequest]:
        heights = [pb.LogHeight(public_key=k, log_id=log, seq_num=s) for k, log, s in have]
        chunks = [heights[i : i + chunk] for i in range(0, len(heights), chunk)] or [[]]
        for index, part in enumerate(chunks):
            first = index == 0
            yield pb.ReadMissingEntriesRequest(
                schema_ids=list(schema_ids) if first else [],
                have=part,
                last=index == len(chunks) - 1,
                max_batch_items=max_batch_items if first else 0,
                max_batch_bytes=max_batch_bytes if first else 0,
            )

    return [list(r.entries) async for r in ingest.ReadMissingEntries(requests())]


def flat(batches: Iterable[Sequence[pb.MissingEntry]]) -> list[pb.MissingEntry]:
    return [entry for batch in batches for entry in batch]


def hashes(entries: Iterable[pb.MissingEntry | Signed]) -> list[str]:
    return [generate_hash(entry.entry) for entry in entries]


async def publish_all(ingest: IngestServiceAsyncStub, signed: Iterable[Signed]) -> list[Signed]:
    published = []
    for item in signed:
        await publish(ingest, item)
        published.append(item)
    return published


async def two_authors_sharing_a_document(
    ingest: IngestServiceAsyncStub,
) -> tuple[Author, Author, str, list[Signed]]:
    """A defines a schema and a note, B updates A's note, both go on; in publish order.

    Returns (A, B, the schema id, every entry A and B published after the schema).
    """
    a, b = Author(), Author()
    notes = await publish_schema(ingest, a, "note", {"text": "str"})
    note = a.create(notes, {"text": "a1"})
    await publish(ingest, note)
    b_first = b.update(notes, note.hash, [note.hash], {"text": "b1"})
    a_second = a.update(notes, note.hash, [b_first.hash], {"text": "a2"})
    b_second = b.update(notes, note.hash, [a_second.hash], {"text": "b2"})
    other = b.create(notes, {"text": "b's own"})
    rest = await publish_all(ingest, [b_first, a_second, b_second, other])
    return a, b, notes, [note, *rest]


async def test_a_peer_lacking_everything_gets_every_entry_in_store_order_dependencies_first(
    ingest: IngestServiceAsyncStub,
) -> None:
    a, _, _, documents = await two_authors_sharing_a_document(ingest)
    entries = flat(await read_missing(ingest))
    # Published one by one, so the store order is the publish order: the field definition and
    # the schema definition, then A's CREATE before B's UPDATE of it, and so on.
    definitions = a.logs[0] + a.logs[1]
    assert hashes(entries) == hashes(definitions) + hashes(documents)
    sequences = [entry.sequence for entry in entries]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert sequences[0] >= 1
    first = entries[2]
    assert (first.public_key, first.log_id, first.seq_num) == (a.public_key, 2, 1)
    assert first.operation == documents[0].operation


async def test_a_peer_at_height_h_gets_entries_from_h_plus_1_and_unknown_logs_from_1(
    ingest: IngestServiceAsyncStub,
) -> None:
    a, b, _, documents = await two_authors_sharing_a_document(ingest)
    stranger = Author()
    have = [
        (a.public_key, 0, 1),  # the field definition: held
        (a.public_key, 1, 1),  # the schema definition: held
        (a.public_key, 2, 1),  # A's note: held up to the CREATE
        (stranger.public_key, 0, 5),  # a log this node does not have: ignored
    ]
    entries = flat(await read_missing(ingest, have))
    assert [(e.public_key, e.log_id, e.seq_num) for e in entries] == [
        (b.public_key, 0, 1),
        (a.public_key, 2, 2),
        (b.public_key, 0, 2),
        (b.public_key, 1, 1),
    ]
    assert hashes(entries) == hashes(documents[1:])


async def test_a_peer_holding_everything_gets_nothing(ingest: IngestServiceAsyncStub) -> None:
    await two_authors_sharing_a_document(ingest)
    heights = await log_heights(ingest)
    have = [(key, log_id, seq_num) for (key, log_id), seq_num in heights.items()]
    assert await read_missing(ingest, have) == []
    ahead = [(key, log_id, seq_num + 3) for key, log_id, seq_num in have]
    assert await read_missing(ingest, ahead) == [], "a peer further along lacks nothing"


async def test_a_log_named_twice_in_the_have_set_counts_with_its_highest_seq_num(
    ingest: IngestServiceAsyncStub,
) -> None:
    a, _, _, _ = await two_authors_sharing_a_document(ingest)
    have = [(a.public_key, 2, 2), (a.public_key, 2, 1)]
    entries = flat(await read_missing(ingest, have))
    assert (a.public_key, 2) not in {(e.public_key, e.log_id) for e in entries}


async def test_missing_entries_can_be_limited_to_documents_of_some_schemas(
    ingest: IngestServiceAsyncStub,
) -> None:
    a, _, notes, documents = await two_authors_sharing_a_document(ingest)
    tasks = await publish_schema(ingest, a, "task", {"done": "bool"})
    task = a.create(tasks, {"done": False})
    await publish(ingest, task)
    only_notes = flat(await read_missing(ingest, schema_ids=[notes]))
    assert hashes(only_notes) == hashes(documents)
    only_tasks = flat(await read_missing(ingest, schema_ids=[tasks]))
    assert hashes(only_tasks) == hashes([task])
    definitions = flat(await read_missing(ingest, schema_ids=[FIELD_DEFINITION, SCHEMA_DEFINITION]))
    assert len(definitions) == 4
    assert all(e.public_key == a.public_key for e in definitions)
    assert hashes(flat(await read_missing(ingest, schema_ids=["nothing_stored"]))) == []


async def test_batches_hold_at_most_max_batch_items_and_max_batch_bytes(
    ingest: IngestServiceAsyncStub,
) -> None:
    await two_authors_sharing_a_document(ingest)
    everything = flat(await read_missing(ingest))
    by_items = await read_missing(ingest, max_batch_items=3)
    assert [len(batch) for batch in by_items] == [3, 3, 1]
    assert hashes(flat(by_items)) == hashes(everything)
    smallest = min(len(e.entry) + len(e.operation) for e in everything)
    by_bytes = await read_missing(ingest, max_batch_bytes=smallest)
    assert [len(batch) for batch in by_bytes] == [1] * len(everything), "one entry, however big"
    assert hashes(flat(by_bytes)) == hashes(everything)
    two = 2 * max(len(e.entry) + len(e.operation) for e in everything)
    for batch in await read_missing(ingest, max_batch_bytes=two):
        assert sum(len(e.entry) + len(e.operation) for e in batch) <= two


async def test_batch_limits_above_the_node_s_are_lowered_to_them(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "data", max_batch_items=2)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        await publish_schema(ingest, Author(), "note", {"text": "str", "n": "int"})
        batches = await read_missing(ingest, max_batch_items=1000)
        assert [len(batch) for batch in batches] == [2, 1]


async def test_a_have_set_over_max_have_logs_is_refused(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "data", max_have_logs=3)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        key = Author().public_key
        three = [(key, log_id, 1) for log_id in range(3)]
        assert await read_missing(ingest, three + three) == [], "three logs, named twice: fine"
        refused = await rejection(read_missing(ingest, [*three, (key, 3, 1)]))
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.reason == "LIMIT_EXCEEDED"
        assert "max_have_logs" in refused.message
        # The node goes on serving.
        assert await read_missing(ingest, three) == []


async def test_a_malformed_public_key_in_the_have_set_is_invalid_argument(
    ingest: IngestServiceAsyncStub,
) -> None:
    refused = await rejection(read_missing(ingest, [("not hex" * 20, 0, 1)]))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.reason == "INVALID_PUBLIC_KEY"
    assert len(refused.message) < 300, "quotes only a bounded slice of the input"


async def test_a_have_set_ended_by_closing_the_stream_is_answered(
    ingest: IngestServiceAsyncStub,
) -> None:
    a = Author()
    await publish_schema(ingest, a, "note", {"text": "str"})

    async def requests() -> AsyncIterator[pb.ReadMissingEntriesRequest]:
        yield pb.ReadMissingEntriesRequest(have=[pb.LogHeight(public_key=a.public_key, seq_num=1)])

    answered = [list(r.entries) async for r in ingest.ReadMissingEntries(requests())]
    assert [(e.log_id, e.seq_num) for e in flat(answered)] == [(1, 1)]


async def test_store_order_survives_a_restart_and_goes_on_after_it(tmp_path: Path) -> None:
    settings = node_settings(tmp_path / "data")
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        a, _, notes, _ = await two_authors_sharing_a_document(ingest)
        before = flat(await read_missing(ingest))
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        after = flat(await read_missing(ingest))
        assert [(e.sequence, e.entry) for e in after] == [(e.sequence, e.entry) for e in before]
        later = await publish_all(ingest, [a.create(notes, {"text": "after restart"})])
        entries = flat(await read_missing(ingest))
        assert hashes(entries) == hashes(before) + hashes(later)
        assert entries[-1].sequence > before[-1].sequence


@pytest.mark.parametrize("have_recent", [True, False])
async def test_a_peer_lacking_only_recent_entries_gets_them_in_store_order(
    ingest: IngestServiceAsyncStub, have_recent: bool
) -> None:
    a, b = Author(), Author()
    notes = await publish_schema(ingest, a, "note", {"text": "str"})
    old = await publish_all(ingest, [a.create(notes, {"text": f"old {i}"}) for i in range(5)])
    heights = await log_heights(ingest)
    recent = await publish_all(
        ingest,
        [
            b.create(notes, {"text": "b"}),
            a.update(notes, old[0].hash, [old[0].hash], {"text": "a again"}),
            b.update(notes, old[1].hash, [old[1].hash], {"text": "b on a's"}),
        ],
    )
    have = [(key, log_id, seq_num) for (key, log_id), seq_num in heights.items()]
    if not have_recent:
        have = [h for h in have if h[1] != old[0].log_id]  # lacks A's first note whole
    entries = flat(await read_missing(ingest, have))
    expected = recent if have_recent else [old[0], *recent]
    assert hashes(entries) == hashes(expected)
