"""Watches under pressure: batches when changes queue up, a byte budget for a stalled watcher;
a watch that waits for a write first (consistency), as reads do."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.query.model import ChangeKind, DocumentChange, MaterializedDocument
from pandanode.services.query.watch import Watch, WatchKind, document_bytes
from pandanode.services.runtime.errors import LimitExceededError
from pandanode.services.runtime.settings import Settings
from tests.services.ingest.helpers import Author, publish, publish_schema, rejection_of
from tests.services.support import eventually

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

pytestmark = pytest.mark.asyncio

BODY_CHARS = 200_000
# A client that stops reading: no BDP probing, so at most one 64 KiB window is in flight to it.
END_OF_STREAM = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc's stubs
STALLED_CHANNEL = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65_536)]


def _document(number: int, body: str = "") -> MaterializedDocument:
    return MaterializedDocument(
        document_id="doc",
        view_id=f"view{number}",
        schema_id="note",
        owner="me",
        edited=number > 0,
        deleted=False,
        fields={"body": body or f"v{number}"},
    )


def _change(number: int, body: str = "") -> DocumentChange:
    previous = _document(number - 1) if number else None
    kind = ChangeKind.UPDATED if number else ChangeKind.CREATED
    return DocumentChange(kind, _document(number, body), previous, sequence=number + 1)


async def test_changes_that_queue_up_while_a_batch_is_sent_go_out_together_in_order() -> None:
    watch = Watch("note", lambda _: True)
    batches = watch.batches([], snapshot_sequence=0)
    assert [e.kind for e in await anext(batches)] == [WatchKind.CAUGHT_UP]
    watch.on_change(_change(0))
    assert [e.document.view_id for e in await anext(batches) if e.document] == ["view0"]
    for number in range(1, 4):
        watch.on_change(_change(number))
    assert watch.stats().queued_changes == 3
    batch = await anext(batches)
    assert [(e.kind, e.document.view_id if e.document else "") for e in batch] == [
        (WatchKind.UPDATED, "view1"),
        (WatchKind.UPDATED, "view2"),
        (WatchKind.UPDATED, "view3"),
    ]
    assert watch.stats().queued_changes == 0
    assert watch.stats().queued_bytes == 0


async def test_a_batch_stops_growing_at_its_byte_size_but_always_carries_one_change() -> None:
    big = "x" * 10_000
    watch = Watch("note", lambda _: True)
    batches = watch.batches([], snapshot_sequence=0, max_batch_bytes=25_000)
    await anext(batches)  # CAUGHT_UP
    for number in range(5):
        watch.on_change(_change(number, big))
    sizes = [len(await anext(batches)) for _ in range(2)]
    assert sizes == [3, 2]  # 3 × ~10 KB reaches 25 KB; the rest follows
    tiny = Watch("note", lambda _: True)
    one = tiny.batches([], snapshot_sequence=0, max_batch_bytes=1)
    await anext(one)
    tiny.on_change(_change(0, big))
    tiny.on_change(_change(1, big))
    assert len(await anext(one)) == 1


async def test_a_watch_over_its_byte_budget_drops_its_queue_and_ends_watch_too_slow() -> None:
    body = "y" * 50_000
    budget = 3 * document_bytes(_document(0, body)) + 100
    watch = Watch("note", lambda _: True, max_queue_bytes=budget)
    batches = watch.batches([], snapshot_sequence=0)
    await anext(batches)
    for number in range(3):
        watch.on_change(_change(number, body))
    assert watch.stats().queued_bytes == 3 * document_bytes(_document(0, body))
    assert not watch.stats().cut_off
    watch.on_change(_change(3, body))
    stats = watch.stats()
    assert stats.cut_off
    assert (stats.queued_changes, stats.queued_bytes) == (0, 0)
    with pytest.raises(LimitExceededError) as raised:
        await anext(batches)
    assert raised.value.reason == "WATCH_TOO_SLOW"
    assert "watch_queue_bytes" in raised.value.message


async def test_a_watcher_that_never_reads_is_cut_off_with_bounded_memory_while_a_reader_keeps_up(
    node: Node, channel: grpc.aio.Channel, ingest: IngestServiceAsyncStub
) -> None:
    assert node.reads is not None
    budget = Settings().watch_queue_bytes
    author = Author()
    schema_id = await publish_schema(ingest, author, "note", {"body": "str"})
    created = await publish(ingest, author.create(schema_id, {"body": "first"}))
    query = query_pb2_grpc.QueryServiceStub(channel)
    await query.GetDocument(
        qpb.GetDocumentRequest(
            document_id=created.document_id,
            consistency=qpb.Consistency(operation_id=created.operation_id, timeout_ms=10_000),
        )
    )
    reader_seen: list[str] = []

    async def read_all(
        call: grpc.aio.UnaryStreamCall[qpb.WatchDocumentsRequest, qpb.WatchDocumentsResponse],
    ) -> None:
        async for response in call:
            reader_seen.extend(
                c.document.document_view_id
                for c in response.changes
                if c.kind == qpb.CHANGE_KIND_UPDATED
            )

    request = qpb.WatchDocumentsRequest(schema_id=schema_id)
    reader_call = query.WatchDocuments(request)
    reader = asyncio.create_task(read_all(reader_call))
    async with grpc.aio.insecure_channel(node.address, options=STALLED_CHANNEL) as stalled_channel:
        stalled = query_pb2_grpc.QueryServiceStub(stalled_channel).WatchDocuments(request)
        kinds: list[int] = []
        while qpb.CHANGE_KIND_CAUGHT_UP not in kinds:
            response = await asyncio.wait_for(stalled.read(), timeout=10)
            assert isinstance(response, qpb.WatchDocumentsResponse)
            kinds.extend(c.kind for c in response.changes)
        # From here on the stalled watcher reads nothing while large updates pour in.

        def stalled_watch() -> list[int]:
            return [w.queued_bytes for w in node.reads.watches() if w.cut_off]  # type: ignore[union-attr]

        async def two_watches() -> bool:
            return len(node.reads.watches()) == 2  # type: ignore[union-attr]

        await eventually(two_watches, what="both watches to be registered")
        previous = created.operation_id
        published: list[str] = []
        most_queued = 0
        for number in range(60):
            body = f"{number:06d}" + "z" * (BODY_CHARS - 6)
            updated = await publish(
                ingest,
                author.update(schema_id, created.document_id, [previous], {"body": body}),
            )
            previous = updated.operation_id
            published.append(previous)
            await query.GetDocument(
                qpb.GetDocumentRequest(
                    document_id=created.document_id,
                    consistency=qpb.Consistency(operation_id=previous, timeout_ms=10_000),
                )
            )
            for stats in node.reads.watches():
                assert stats.max_queue_bytes == budget
                assert stats.queued_bytes <= budget
                assert stats.queued_bytes >= stats.queued_changes * BODY_CHARS
                most_queued = max(most_queued, stats.queued_bytes)
            if stalled_watch():
                break
        assert stalled_watch() == [0], "the stalled watcher was not cut off (or kept its queue)"
        assert most_queued > budget - 2 * BODY_CHARS  # it really held that much before
        assert len(published) < 60

        # When it reads again it gets what was already on its way, then the reason.
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while await asyncio.wait_for(stalled.read(), timeout=10) is not END_OF_STREAM:
                pass
        rejected = rejection_of(ended.value)
        assert rejected.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert rejected.reason == "WATCH_TOO_SLOW"
        assert "watch again" in rejected.message.lower()

    async def reader_has_all() -> bool:
        return reader_seen == published

    await eventually(reader_has_all, what="the reading watcher to see every update in order")
    assert not reader.done()
    reader_call.cancel()
    await asyncio.gather(reader, return_exceptions=True)

    async def all_released() -> bool:
        return not node.reads.watches()  # type: ignore[union-attr]

    await eventually(all_released, what="both watches to be released on the node")


async def test_a_watch_with_consistency_starts_once_the_write_is_materialized(
    node: Node, channel: grpc.aio.Channel, ingest: IngestServiceAsyncStub
) -> None:
    assert node.reads is not None
    materializer = node.reads.materializer
    author = Author()
    schema_id = await publish_schema(ingest, author, "notice", {"body": "str"})
    later = author.create(schema_id, {"body": "published while the watch waits"})
    query = query_pb2_grpc.QueryServiceStub(channel)
    call = query.WatchDocuments(
        qpb.WatchDocumentsRequest(
            schema_id=schema_id,
            consistency=qpb.Consistency(
                operation_id=later.hash, timeout=duration_pb2.Duration(seconds=15)
            ),
        )
    )
    first = asyncio.create_task(call.read())

    async def waiting() -> bool:
        return later.hash in materializer._operation_waiters

    await eventually(waiting, what="the watch to wait for the write")
    assert not first.done()
    await publish(ingest, later)
    response = await asyncio.wait_for(first, timeout=15)
    assert isinstance(response, qpb.WatchDocumentsResponse)
    # Started after the write: it is an EXISTING document, not a change that came later.
    assert [(c.kind, c.document.document_id) for c in response.changes] == [
        (qpb.CHANGE_KIND_EXISTING, later.hash),
        (qpb.CHANGE_KIND_CAUGHT_UP, ""),
    ]
    call.cancel()


async def test_a_watch_whose_write_is_not_materialized_fails_as_a_read_does(
    channel: grpc.aio.Channel, ingest: IngestServiceAsyncStub
) -> None:
    schema_id = await publish_schema(ingest, Author(), "silence", {"body": "str"})
    unknown = "0020" + "ef" * 32
    query = query_pb2_grpc.QueryServiceStub(channel)

    async def first_of(request: qpb.WatchDocumentsRequest, timeout: float | None = None) -> None:
        async for _ in query.WatchDocuments(request, timeout=timeout):
            raise AssertionError("the watch started without the write")

    short = qpb.Consistency(operation_id=unknown, timeout=duration_pb2.Duration(nanos=300_000_000))
    request = qpb.WatchDocumentsRequest(schema_id=schema_id, consistency=short)
    with pytest.raises(grpc.aio.AioRpcError) as waited:
        await first_of(request)
    rejected = rejection_of(waited.value)
    assert (rejected.code, rejected.reason) == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
    assert rejected.metadata["operation_id"] == unknown
    assert rejected.retry_delay == 1.0
    read = qpb.GetDocumentRequest(document_id=unknown, consistency=short)
    with pytest.raises(grpc.aio.AioRpcError) as read_waited:
        await query.GetDocument(read)
    read_rejected = rejection_of(read_waited.value)
    assert (read_rejected.code, read_rejected.reason) == (rejected.code, rejected.reason)

    # The call's own deadline before the wait's: DEADLINE_EXCEEDED, as for a read.
    long = qpb.Consistency(operation_id=unknown, timeout=duration_pb2.Duration(seconds=60))
    with pytest.raises(grpc.aio.AioRpcError) as deadline:
        await first_of(qpb.WatchDocumentsRequest(schema_id=schema_id, consistency=long), 0.5)
    assert deadline.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # Without a timeout of its own, the wait ends just before the call's deadline: UNAVAILABLE.
    own = qpb.Consistency(operation_id=unknown)
    with pytest.raises(grpc.aio.AioRpcError) as before_deadline:
        await first_of(qpb.WatchDocumentsRequest(schema_id=schema_id, consistency=own), 0.5)
    assert before_deadline.value.code() == grpc.StatusCode.UNAVAILABLE
