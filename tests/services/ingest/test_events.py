"""Events on NATS JetStream: the PANDANODE stream announces every stored entry exactly once, in
``operations.ingested`` messages (one per commit), with the entry, operation, ids and position."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nats.js import JetStreamContext

from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.services.runtime.events import STREAM_NAME

from .helpers import (
    FIELD_DEFINITION,
    Author,
    Signed,
    publish,
    publish_batches,
    publish_schema,
    stream_events,
    wait_for_stream_count,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


async def test_every_stored_entry_is_announced_once_with_its_entry_ids_and_position(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    alice, bob = Author(), Author()
    schema_id = await publish_schema(ingest, alice, "note", {"title": "str", "body": "str"})
    note = alice.create(schema_id, {"body": "Hello", "title": "Hi"})
    await publish(ingest, note)
    edits = [
        alice.update(schema_id, note.hash, [note.hash], {"title": "Hi!"}),
        bob.update(schema_id, note.hash, [note.hash], {"body": "Hello!"}),
    ]
    for edit in edits:
        await publish(ingest, edit)
    merge = bob.update(schema_id, note.hash, [edits[0].hash, edits[1].hash], {"body": "Hey"})
    (results,) = await publish_batches(ingest, [[merge]])
    assert results[0].WhichOneof("outcome") == "ok"
    # Every entry the authors wrote, with its document and schema.
    expected: dict[str, tuple[Signed, str, str]] = {}
    for author in (alice, bob):
        for document_id, log_id in author.documents.items():
            for signed in author.logs[log_id]:
                schema = schema_id if document_id == note.hash else ""
                expected[signed.hash] = (signed, document_id, schema)
    assert len(expected) == 7

    await wait_for_stream_count(js, len(expected))
    events = await stream_events(js)

    assert sorted(e.payload.operation_id for e in events) == sorted(expected)
    sequences = [e.payload.sequence for e in events]
    assert sequences == list(range(1, len(expected) + 1)), "store sequences count up from 1"
    positions: dict[tuple[str, int], list[int]] = {}
    for event in events:
        signed, document_id, schema = expected[event.payload.operation_id]
        payload = event.payload
        assert event.subject == "pandanode.v1.evt.operations.ingested"
        assert payload.entry == signed.entry
        assert payload.operation == signed.operation
        assert payload.operation_id == signed.hash
        assert payload.document_id == document_id
        assert payload.public_key == signed.public_key
        assert (payload.log_id, payload.seq_num) == (signed.log_id, signed.seq_num)
        if schema:
            assert payload.schema_id == schema
        positions.setdefault((payload.public_key, payload.log_id), []).append(payload.seq_num)
    for seq_nums in positions.values():
        assert seq_nums == list(range(1, len(seq_nums) + 1)), "announced out of log order"
    system = {e.payload.schema_id for e in events if e.payload.document_id != note.hash}
    assert system == {"schema_field_definition_v1", "schema_definition_v1"}


async def test_the_event_stream_collects_every_ingested_subject(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    info = await js.stream_info(STREAM_NAME)
    assert info.config.subjects == ["pandanode.v1.evt.>"]
    assert info.state.messages == 0
    response = await ingest.GetLogHeights(pb.GetLogHeightsRequest())
    assert list(response.log_heights) == []


async def test_a_commit_is_announced_as_one_message_with_an_id_naming_its_store_sequences(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    fields = [author.create(FIELD_DEFINITION, {"name": f"f{i}", "type": "str"}) for i in range(30)]
    (results,) = await publish_batches(ingest, [fields])
    assert all(result.WhichOneof("outcome") == "ok" for result in results)

    await wait_for_stream_count(js, len(fields))
    events = await stream_events(js)

    assert [e.payload.operation_id for e in events] == [f.hash for f in fields]
    messages = {e.stream_sequence: e.message_id for e in events}
    # One batch was written by at most a few group commits, not one message per entry.
    assert len(messages) < len(fields)
    for sequence, message_id in messages.items():
        carried = [e.payload for e in events if e.stream_sequence == sequence]
        assert message_id == (
            f"ops.{carried[0].sequence}.{carried[-1].sequence}.{carried[-1].operation_id}"
        )
