"""Publishing is idempotent: the exact same entry again is OK with the same answer, stored and
announced once. Anything else at an occupied position is rejected."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from nats.js import JetStreamContext

from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    Author,
    assert_rejected,
    assert_unchanged,
    baseline,
    create_operation,
    publish,
    publish_batches,
    read_log,
    update_operation,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


async def test_publishing_the_same_entry_twice_answers_the_same_and_stores_it_once(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    signed = author.create(FIELD_DEFINITION, {"name": "once", "type": "str"})
    first = await publish(ingest, signed)
    before = await baseline(ingest, js)
    assert before.events == 1
    second = await publish(ingest, signed)
    assert second == first
    await assert_unchanged(ingest, js, before)
    stored = await read_log(ingest, author.public_key, 0)
    assert [(e.seq_num, e.entry, e.operation) for e in stored] == [
        (1, signed.entry, signed.operation)
    ]


async def test_republishing_an_older_entry_of_a_grown_log_changes_nothing(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "n1", "type": "str"})
    answers = [await publish(ingest, created)]
    previous = created
    entries = [created]
    for seq_num in range(2, 6):
        signed = author.update(
            FIELD_DEFINITION, created.hash, [previous.hash], {"name": f"n{seq_num}"}
        )
        answers.append(await publish(ingest, signed))
        entries.append(signed)
        previous = signed
    before = await baseline(ingest, js)
    for signed, answer in zip(entries, answers, strict=True):
        assert await publish(ingest, signed) == answer, f"seq {signed.seq_num} answered otherwise"
    await assert_unchanged(ingest, js, before)


async def test_the_same_entry_with_another_operation_is_rejected(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    signed = Author().create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    await publish(ingest, signed)
    forged = create_operation(FIELD_DEFINITION, {"name": "tithe", "type": "str"})
    request = pb.PublishRequest(entry=signed.entry, operation=forged)
    await assert_rejected(
        ingest, js, request, grpc.StatusCode.FAILED_PRECONDITION, "PAYLOAD_HASH_MISMATCH"
    )


async def test_a_different_entry_at_an_occupied_position_is_rejected(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    await publish(ingest, created)
    first = author.sign_next(
        update_operation(FIELD_DEFINITION, [created.hash], {"name": "a"}), created.hash
    )
    rival = author.sign_next(
        update_operation(FIELD_DEFINITION, [created.hash], {"name": "b"}), created.hash
    )
    assert (first.log_id, first.seq_num) == (rival.log_id, rival.seq_num) == (0, 2)
    await publish(ingest, first)
    await assert_rejected(
        ingest, js, rival, grpc.StatusCode.FAILED_PRECONDITION, "SEQ_NUM_MISMATCH"
    )


async def test_duplicates_inside_and_across_stream_batches_are_stored_once(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    updated = author.update(FIELD_DEFINITION, created.hash, [created.hash], {"name": "head"})
    results = await publish_batches(
        ingest, [[created, created, updated, created], [updated, created]]
    )
    flat = [result for batch in results for result in batch]
    assert [result.WhichOneof("outcome") for result in flat] == ["ok"] * 6
    assert flat[0].ok == flat[1].ok == flat[3].ok == flat[5].ok
    assert flat[2].ok == flat[4].ok
    assert flat[0].ok.next_args.seq_num == 2
    assert flat[2].ok.next_args.seq_num == 3
    before = await baseline(ingest, js)
    assert before.state.heights == {(author.public_key, 0): 2}
    assert before.events == 2
    # The same answers over unary calls, and still nothing new.
    assert await publish(ingest, created) == flat[0].ok
    assert await publish(ingest, updated) == flat[2].ok
    await assert_unchanged(ingest, js, before)
