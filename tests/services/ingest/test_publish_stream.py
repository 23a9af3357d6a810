"""PublishStream: batches of many items, one result per item in order; a rejected item yields
its error and the rest go on; limits; bulk import read back byte for byte."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from nats.js import JetStreamContext

from pandanode.core import PinnedRelationList
from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
    create_operation,
    log_heights,
    publish,
    publish_batches,
    read_log,
    rejection,
    rejection_of,
    stored_state,
    update_operation,
    wait_for_stream_count,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

FAILED = grpc.StatusCode.FAILED_PRECONDITION.value[0]
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def grow(author: Author, length: int, name: str = "f") -> list[Signed]:
    """Sign (and record) a new document of ``length`` entries: a CREATE, then UPDATEs."""
    created = author.create(FIELD_DEFINITION, {"name": name, "type": "str"})
    log = [created]
    for index in range(1, length):
        log.append(
            author.update(
                FIELD_DEFINITION, created.hash, [log[-1].hash], {"name": f"{name}{index}"}
            )
        )
    return log


def corrupt(signed: Signed) -> pb.PublishRequest:
    """The entry with a flipped signature bit."""
    entry = bytearray(signed.entry)
    entry[-1] ^= 0x01
    return pb.PublishRequest(entry=bytes(entry), operation=signed.operation)


def outcome(result: pb.PublishResult) -> tuple[str, int, str]:
    """("ok", 0, operation id) or ("error", code, reason)."""
    if result.WhichOneof("outcome") == "ok":
        return ("ok", 0, result.ok.operation_id)
    return ("error", result.error.code, result.error.reason)


async def stream_requests(
    ingest: IngestServiceAsyncStub, batches: list[list[pb.PublishRequest]]
) -> list[list[pb.PublishResult]]:
    async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
        for batch in batches:
            yield pb.PublishStreamRequest(items=batch)

    return [list(response.results) async for response in ingest.PublishStream(requests())]


async def test_stream_answers_one_result_per_item_in_order(
    ingest: IngestServiceAsyncStub,
) -> None:
    authors = [Author() for _ in range(5)]
    logs = [grow(author, 12, f"a{index}") for index, author in enumerate(authors)]
    interleaved = [signed for row in itertools.zip_longest(*logs) for signed in row if signed]
    batches = [interleaved[:1], interleaved[1:18], [], interleaved[18:]]
    results = await publish_batches(ingest, batches)
    assert [len(batch) for batch in results] == [1, 17, 0, 42]
    for batch, answers in zip(batches, results, strict=True):
        for signed, result in zip(batch, answers, strict=True):
            assert outcome(result) == ("ok", 0, signed.hash)
            assert result.ok.next_args.seq_num == signed.seq_num + 1
            assert result.ok.next_args.backlink == signed.hash
    assert await log_heights(ingest) == {(a.public_key, 0): 12 for a in authors}


async def test_a_rejected_item_yields_its_error_and_the_rest_go_on(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    alice, bob = Author(), Author()
    a = grow(alice, 5, "alice")
    b = grow(bob, 4, "bob")
    unknown_schema = Author().create(f"event_{'0020' + 'ee' * 32}", {"title": "x"})
    batch = [
        a[0].request(),
        b[0].request(),
        a[1].request(),
        corrupt(a[2]),  # bad signature
        b[1].request(),
        a[3].request(),  # builds on the rejected entry: rejected too
        unknown_schema.request(),
        b[2].request(),
        a[4].request(),  # likewise
        b[3].request(),
    ]
    (results,) = await stream_requests(ingest, [batch])
    assert [outcome(r) for r in results] == [
        ("ok", 0, a[0].hash),
        ("ok", 0, b[0].hash),
        ("ok", 0, a[1].hash),
        ("error", INVALID, "INVALID_SIGNATURE"),
        ("ok", 0, b[1].hash),
        ("error", FAILED, "SEQ_NUM_MISMATCH"),
        ("error", FAILED, "SCHEMA_NOT_FOUND"),
        ("ok", 0, b[2].hash),
        ("error", FAILED, "SEQ_NUM_MISMATCH"),
        ("ok", 0, b[3].hash),
    ]
    assert all(r.error.message for r in results if r.WhichOneof("outcome") == "error")
    assert await log_heights(ingest) == {(alice.public_key, 0): 2, (bob.public_key, 0): 4}
    await wait_for_stream_count(js, 6)
    # The stream keeps going: the rest of Alice's log, once the rejected entry is sent right.
    (results,) = await publish_batches(ingest, [a[2:]])
    assert [outcome(r) for r in results] == [("ok", 0, s.hash) for s in a[2:]]
    await wait_for_stream_count(js, 9)


async def test_stream_items_are_rejected_with_the_code_and_reason_of_a_unary_publish(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    await publish(ingest, created)
    gap = author.sign_at(
        update_operation(FIELD_DEFINITION, [created.hash], {"name": "gap"}),
        log_id=0,
        seq_num=3,
        backlink=created.hash,
    )
    wrong_backlink = author.sign_at(
        update_operation(FIELD_DEFINITION, [created.hash], {"name": "x"}),
        log_id=0,
        seq_num=2,
        backlink=gap.hash,
    )
    cases = [
        pb.PublishRequest(),
        corrupt(created),
        pb.PublishRequest(entry=created.entry + bytes(2048), operation=created.operation),
        pb.PublishRequest(
            entry=created.entry,
            operation=create_operation(FIELD_DEFINITION, {"name": "headline", "type": "str"}),
        ),
        gap.request(),
        wrong_backlink.request(),
        Author()
        .sign_next(create_operation(FIELD_DEFINITION, {"name": "x", "type": "?"}))
        .request(),
        Author().sign_next(create_operation(f"ghost_{created.hash}", {"x": 1})).request(),
        Author().sign_next(update_operation(FIELD_DEFINITION, [gap.hash], {"name": "y"})).request(),
    ]
    (results,) = await stream_requests(ingest, [cases])
    for request, result in zip(cases, results, strict=True):
        unary = await rejection(ingest.Publish(request))
        assert outcome(result) == ("error", unary.code.value[0], unary.reason)
        assert result.error.message == unary.message
    assert await log_heights(ingest) == {(author.public_key, 0): 1}


async def test_a_batch_over_max_batch_items_ends_the_stream_with_invalid_argument(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    operation = create_operation(FIELD_DEFINITION, {"name": "many", "type": "str"})
    first = [author.sign_at(operation, log_id=log_id, seq_num=1) for log_id in range(2)]
    too_many = [author.sign_at(operation, log_id=log_id, seq_num=1) for log_id in range(2, 1003)]
    after = [author.sign_at(operation, log_id=2000, seq_num=1)]
    received: list[list[pb.PublishResult]] = []
    try:
        async for response in ingest.PublishStream(
            iter(
                [
                    pb.PublishStreamRequest(items=[s.request() for s in first]),
                    pb.PublishStreamRequest(items=[s.request() for s in too_many]),
                    pb.PublishStreamRequest(items=[s.request() for s in after]),
                ]
            )
        ):
            received.append(list(response.results))
    except grpc.aio.AioRpcError as err:
        rejected = rejection_of(err)
    else:
        raise AssertionError("a batch of 1001 items was accepted")
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
    )
    assert "1000" in rejected.message
    assert [[outcome(r) for r in batch] for batch in received] == [
        [("ok", 0, s.hash) for s in first]
    ]
    assert await log_heights(ingest) == {(author.public_key, 0): 1, (author.public_key, 1): 1}
    await wait_for_stream_count(js, 2)
    # The node still serves streams.
    (results,) = await publish_batches(ingest, [after])
    assert [outcome(r) for r in results] == [("ok", 0, after[0].hash)]


async def test_a_schema_defined_early_in_a_batch_is_usable_later_in_the_same_batch(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    title = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    definition = author.create(
        SCHEMA_DEFINITION,
        {"description": "Notes", "fields": PinnedRelationList([[title.hash]]), "name": "note"},
    )
    schema_id = f"note_{definition.hash}"
    note = author.create(schema_id, {"title": "first"})
    edit = author.update(schema_id, note.hash, [note.hash], {"title": "edited"})
    other = Author()
    second = other.create(schema_id, {"title": "second"})
    (results,) = await publish_batches(ingest, [[title, definition, note, second, edit]])
    assert [outcome(r) for r in results] == [
        ("ok", 0, s.hash) for s in [title, definition, note, second, edit]
    ]
    heights = await log_heights(ingest, [schema_id])
    assert heights == {(author.public_key, 2): 2, (other.public_key, 0): 1}


async def test_bulk_import_of_thousands_of_entries_reads_back_exactly(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    authors = [Author() for _ in range(40)]
    logs: list[list[Signed]] = []
    for index, author in enumerate(authors):
        logs.append(grow(author, 30, f"a{index}x"))
        logs.append(grow(author, 20, f"a{index}y"))
    logs.append(grow(Author(), 450, "long"))  # longer than one ReadLog page
    total = sum(len(log) for log in logs)
    assert total >= 2000
    # Round robin over the logs, so every batch continues logs of earlier batches.
    order = [signed for row in itertools.zip_longest(*logs) for signed in row if signed]
    batches = [order[start : start + 500] for start in range(0, total, 500)]
    results = await publish_batches(ingest, batches)
    flat = [result for batch in results for result in batch]
    assert len(flat) == total
    failures = [outcome(r) for r in flat if r.WhichOneof("outcome") != "ok"]
    assert failures == []
    assert [r.ok.operation_id for r in flat] == [s.hash for s in order]

    state = await stored_state(ingest)
    assert state.heights == {(log[0].public_key, log[0].log_id): len(log) for log in logs}
    for log in logs:
        stored = state.entries[(log[0].public_key, log[0].log_id)]
        assert stored == tuple((s.seq_num, s.entry, s.operation) for s in log)
    long_log = logs[-1]
    tail = await read_log(ingest, long_log[0].public_key, long_log[0].log_id, from_seq_num=333)
    assert [(e.seq_num, e.entry) for e in tail] == [(s.seq_num, s.entry) for s in long_log[332:]]
    await wait_for_stream_count(js, total, timeout=30)


async def test_many_small_batches_keep_their_order_through_the_pipeline(
    ingest: IngestServiceAsyncStub,
) -> None:
    # Each batch continues the log of the one before, so batches must be applied in order.
    log = grow(Author(), 150, "tiny")
    results = await publish_batches(ingest, [[signed] for signed in log])
    assert [outcome(batch[0]) for batch in results] == [("ok", 0, s.hash) for s in log]


async def test_a_stream_without_batches_ends_without_results(
    ingest: IngestServiceAsyncStub,
) -> None:
    assert await publish_batches(ingest, []) == []


async def test_stream_item_errors_carry_the_same_error_info_metadata_as_unary_publish(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    ghost_schema = "ghost_0020" + "ab" * 32
    unknown = "0020" + "cd" * 32
    rename = update_operation(FIELD_DEFINITION, [unknown], {"name": "renamed"})
    field = create_operation(FIELD_DEFINITION, {"name": "f", "type": "str"})
    items = {
        "unknown schema": author.sign_at(
            create_operation(ghost_schema, {"name": "boo"}), log_id=0, seq_num=1
        ),
        "update of an unknown document": author.sign_at(rename, log_id=1, seq_num=1),
        "gap in the log": author.sign_at(field, log_id=2, seq_num=2, backlink=unknown),
        "entry over the size limit": Signed(b"\x00" * 4096, field, author.public_key, 0, 1),
    }
    for what, signed in items.items():
        unary = await rejection(ingest.Publish(signed.request()))
        ((item,),) = await publish_batches(ingest, [[signed]])
        assert item.WhichOneof("outcome") == "error", what
        streamed = (item.error.code, item.error.reason, dict(item.error.metadata))
        assert streamed == (unary.code.value[0], unary.reason, unary.metadata), what
        assert unary.metadata, f"{what}: nothing to compare"
    ((item,),) = await publish_batches(ingest, [[items["unknown schema"]]])
    assert dict(item.error.metadata) == {
        "schema_id": ghost_schema,
        "public_key": author.public_key,
        "log_id": "0",
        "seq_num": "1",
    }
