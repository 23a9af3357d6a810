"""Concurrent publishing: different logs proceed side by side; racing writes to one log are
serialized, so a log never gets a hole or a fork."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
from nats.js import JetStreamContext

from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import node_settings

from .helpers import (
    FIELD_DEFINITION,
    Author,
    Signed,
    create_operation,
    log_heights,
    publish,
    publish_batches,
    read_log,
    rejection_of,
    stored_state,
    wait_for_stream_count,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


def grow(author: Author, length: int, name: str) -> list[Signed]:
    created = author.create(FIELD_DEFINITION, {"name": name, "type": "str"})
    log = [created]
    for index in range(1, length):
        log.append(
            author.update(
                FIELD_DEFINITION, created.hash, [log[-1].hash], {"name": f"{name}{index}"}
            )
        )
    return log


async def attempt(ingest: IngestServiceAsyncStub, signed: Signed) -> pb.PublishResponse | str:
    """Publish; the response, or the rejection reason (only SEQ_NUM_MISMATCH is expected)."""
    try:
        return await publish(ingest, signed)
    except grpc.aio.AioRpcError as err:
        rejected = rejection_of(err)
        assert rejected.code == grpc.StatusCode.FAILED_PRECONDITION, rejected
        return rejected.reason


async def test_concurrent_publishes_to_different_logs_all_succeed(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    authors = [Author() for _ in range(40)]
    logs = [grow(author, 3, f"a{index}") for index, author in enumerate(authors)]
    # One author opening many logs at once, with log ids of its own choosing.
    busy = Author()
    operation = create_operation(FIELD_DEFINITION, {"name": "busy", "type": "str"})
    opened = [busy.sign_at(operation, log_id=log_id, seq_num=1) for log_id in range(30)]
    for seq_index in range(3):
        round_ = [log[seq_index] for log in logs] + (opened if seq_index == 0 else [])
        responses = await asyncio.gather(*(publish(ingest, s) for s in round_))
        assert [r.operation_id for r in responses] == [s.hash for s in round_]
    expected = {(a.public_key, 0): 3 for a in authors}
    expected.update({(busy.public_key, log_id): 1 for log_id in range(30)})
    assert await log_heights(ingest) == expected
    await wait_for_stream_count(js, 40 * 3 + 30)


async def test_racing_out_of_order_publishes_to_one_log_leave_no_holes(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    log = grow(author, 30, "race")
    rng = random.Random(3)
    remaining = list(log)
    rounds = 0
    while remaining:
        rounds += 1
        assert rounds <= len(log), "a round made no progress"
        rng.shuffle(remaining)
        outcomes = await asyncio.gather(*(attempt(ingest, s) for s in remaining))
        stored = [s for s, o in zip(remaining, outcomes, strict=True) if not isinstance(o, str)]
        rejected = [o for o in outcomes if isinstance(o, str)]
        assert stored, "the entry right after the log's tip always goes in"
        assert set(rejected) <= {"SEQ_NUM_MISMATCH"}
        # No holes: the log holds exactly a prefix of the signed entries, byte for byte.
        height = (await log_heights(ingest))[(author.public_key, 0)]
        entries = await read_log(ingest, author.public_key, 0)
        assert [(e.seq_num, e.entry) for e in entries] == [
            (s.seq_num, s.entry) for s in log[:height]
        ]
        remaining = [s for s in remaining if s.seq_num > height]
    assert rounds > 1, "the shuffle raced nothing"
    await wait_for_stream_count(js, len(log))


async def test_racing_rival_entries_for_one_position_store_exactly_one(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    rivals = [
        author.sign_at(
            create_operation(FIELD_DEFINITION, {"name": f"rival{index}", "type": "str"}),
            log_id=0,
            seq_num=1,
        )
        for index in range(20)
    ]
    outcomes = await asyncio.gather(*(attempt(ingest, s) for s in rivals))
    winners = [s for s, o in zip(rivals, outcomes, strict=True) if not isinstance(o, str)]
    assert len(winners) == 1
    assert [o for o in outcomes if isinstance(o, str)] == ["SEQ_NUM_MISMATCH"] * 19
    entries = await read_log(ingest, author.public_key, 0)
    assert [e.entry for e in entries] == [winners[0].entry]
    await wait_for_stream_count(js, 1)


async def test_racing_copies_of_one_entry_are_all_answered_and_stored_once(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    signed = author.create(FIELD_DEFINITION, {"name": "copy", "type": "str"})
    responses = await asyncio.gather(*(publish(ingest, signed) for _ in range(20)))
    assert all(response == responses[0] for response in responses)
    assert responses[0].operation_id == signed.hash
    assert await log_heights(ingest) == {(author.public_key, 0): 1}
    await wait_for_stream_count(js, 1)


async def test_concurrent_streams_and_unary_calls_on_different_logs_all_succeed(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    streamed = [grow(Author(), 300, f"s{index}") for index in range(3)]
    unary = grow(Author(), 40, "u")

    async def stream(log: list[Signed]) -> list[str]:
        results = await publish_batches(ingest, [log[i : i + 50] for i in range(0, len(log), 50)])
        return [r.ok.operation_id for batch in results for r in batch]

    async def one_by_one(log: list[Signed]) -> list[str]:
        return [(await publish(ingest, s)).operation_id for s in log]

    answers = await asyncio.gather(*(stream(log) for log in streamed), one_by_one(unary))
    for log, answer in zip([*streamed, unary], answers, strict=True):
        assert answer == [s.hash for s in log]
    state = await stored_state(ingest)
    assert state.heights == {(log[0].public_key, 0): len(log) for log in [*streamed, unary]}
    await wait_for_stream_count(js, 3 * 300 + 40)


async def test_two_streams_racing_with_the_same_log_both_get_ok_for_every_entry(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    # As when two peers replicate the same log to this node at the same time.
    log = grow(Author(), 200, "twice")
    batches = [log[start : start + 25] for start in range(0, len(log), 25)]
    first, second = await asyncio.gather(
        publish_batches(ingest, batches), publish_batches(ingest, batches)
    )
    for results in (first, second):
        flat = [r for batch in results for r in batch]
        assert [r.ok.operation_id for r in flat] == [s.hash for s in log]
    entries = await read_log(ingest, log[0].public_key, 0)
    assert [e.entry for e in entries] == [s.entry for s in log]
    await wait_for_stream_count(js, len(log))


async def test_more_calls_in_flight_than_max_concurrent_streams_queue_instead_of_being_refused(
    tmp_path: Path,
) -> None:
    # grpc's HTTP/2 overload protection counted streams the busy event loop had not yet
    # released and refused new ones (RST_STREAM REFUSED_STREAM → UNAVAILABLE) well below the
    # advertised limit; beyond the limit a client must wait, not fail.
    settings = node_settings(tmp_path / "data", max_concurrent_streams=4)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        authors = [Author() for _ in range(200)]
        answers = await asyncio.gather(
            *(
                stub.NextArgs(pb.NextArgsRequest(public_key=a.key_pair.public_key()), timeout=60)
                for a in authors
            )
        )
    assert [answer.next_args.seq_num for answer in answers] == [1] * len(authors)
