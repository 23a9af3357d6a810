"""Reads other services rely on: GetLogHeights (optionally by schema) and ReadLog; and the raw
bytes rule: what was received is stored, served and announced unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from nats.js import JetStreamContext

from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    Author,
    Signed,
    create_operation,
    log_heights,
    publish,
    publish_schema,
    read_log,
    rejection,
    stream_events,
    wait_for_stream_count,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


async def test_log_heights_can_be_limited_to_documents_of_some_schemas(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    notes = await publish_schema(ingest, author, "note", {"text": "str"})
    tasks = await publish_schema(ingest, author, "task", {"done": "bool"})
    note = author.create(notes, {"text": "hi"})
    task = author.create(tasks, {"done": False})
    for signed in (note, task):
        await publish(ingest, signed)
    done = author.update(tasks, task.hash, [task.hash], {"done": True})
    await publish(ingest, done)
    pk = author.public_key
    assert await log_heights(ingest, [notes]) == {(pk, note.log_id): 1}
    assert await log_heights(ingest, [tasks]) == {(pk, task.log_id): 2}
    assert await log_heights(ingest, [notes, tasks]) == {(pk, note.log_id): 1, (pk, task.log_id): 2}
    assert await log_heights(ingest, [FIELD_DEFINITION]) == {(pk, 0): 1, (pk, 2): 1}
    assert await log_heights(ingest, [f"note_{'0020' + '00' * 32}"]) == {}
    assert len(await log_heights(ingest)) == 6


async def test_read_log_serves_a_log_from_any_seq_num_in_order(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "n", "type": "str"})
    log = [created]
    for index in range(1, 10):
        log.append(
            author.update(FIELD_DEFINITION, created.hash, [log[-1].hash], {"name": f"n{index}"})
        )
    for signed in log:
        await publish(ingest, signed)

    def expect(entries: list[Signed]) -> list[tuple[int, bytes, bytes]]:
        return [(s.seq_num, s.entry, s.operation) for s in entries]

    async def read(from_seq_num: int) -> list[tuple[int, bytes, bytes]]:
        stored = await read_log(ingest, author.public_key, 0, from_seq_num)
        return [(e.seq_num, e.entry, e.operation) for e in stored]

    assert await read(0) == await read(1) == expect(log)
    assert await read(7) == expect(log[6:])
    assert await read(10) == expect(log[9:])
    assert await read(11) == []
    assert await read_log(ingest, author.public_key, 1) == []
    assert await read_log(ingest, Author().public_key, 0) == []


async def test_read_log_rejects_a_malformed_public_key(ingest: IngestServiceAsyncStub) -> None:
    for public_key in ("", "xyz", "zz" * 32, "ab" * 33):
        rejected = await rejection(read_log(ingest, public_key, 0))
        assert (rejected.code, rejected.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        ), public_key


async def test_received_bytes_are_stored_served_and_announced_unchanged(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    operation = create_operation(FIELD_DEFINITION, {"name": "raw", "type": "str"})
    # p2panda accepts a non-minimal integer head and bytes after the operation's array …
    lenient = b"\x84\x18\x01" + operation[2:] + b"\x00"
    first = author.sign_at(lenient, log_id=0, seq_num=1)
    # … and ignores the tag byte of an entry (1 would mean "end of log" in Bamboo).
    unsigned = b"\x01" + author.sign_at(operation, log_id=1, seq_num=1).entry[1:-64]
    tagged = unsigned + author.key_pair.sign(unsigned)
    second = Signed(tagged, operation, author.public_key, 1, 1)
    for signed in (first, second):
        response = await publish(ingest, signed)
        assert response.operation_id == signed.hash
        (stored,) = await read_log(ingest, author.public_key, signed.log_id)
        assert (stored.entry, stored.operation) == (signed.entry, signed.operation)
    await wait_for_stream_count(js, 2)
    events = {e.payload.operation_id: e.payload for e in await stream_events(js)}
    for signed in (first, second):
        assert (events[signed.hash].entry, events[signed.hash].operation) == (
            signed.entry,
            signed.operation,
        )


async def test_next_args_after_the_highest_possible_log_id_is_a_clear_error(
    ingest: IngestServiceAsyncStub,
) -> None:
    # p2panda-rs answers "max log id reached" (a validation error); the node must answer with a
    # rich status too, not crash on a log id that does not fit a uint64.
    author = Author()
    operation = create_operation(FIELD_DEFINITION, {"name": "last", "type": "str"})
    last = author.sign_at(operation, log_id=2**64 - 1, seq_num=1)
    response = await publish(ingest, last)
    assert response.next_args == pb.NextArguments(log_id=2**64 - 1, seq_num=2, backlink=last.hash)
    request = pb.NextArgsRequest(public_key=author.public_key)
    rejected = await rejection(ingest.NextArgs(request))
    assert rejected.code == grpc.StatusCode.FAILED_PRECONDITION, rejected
    assert rejected.reason
