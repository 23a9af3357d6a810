"""The materializer across disorder and failure: events out of order or twice, restarts, a
rebuild from the stream (in-process and from the command line), and kill -9 mid-stream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import nats
import pytest

from pandanode.core import PinnedRelationList
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.cli import build_parser
from pandanode.services.node import Node
from pandanode.services.query.materializer import rebuild
from pandanode.services.query.reads import StoredSchemas, read_blob
from pandanode.services.query.store import QueryStore
from pandanode.services.runtime.bus import NatsBus, connect_bus
from pandanode.services.runtime.events import OPERATIONS_INGESTED, STREAM_NAME, Outgoing
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from pandanode.services.runtime.settings import Settings
from tests.services.ingest.helpers import (
    Author,
    log_heights,
    publish,
    publish_batches,
    publish_schema,
    wait_for_stream_count,
)
from tests.services.support import NodeProcess, assert_checks_clean, eventually, node_settings

from .materializer_helpers import (
    Feed,
    Recorder,
    corpus,
    running_materializer,
    snapshot,
    wait_caught_up,
)

PANDANODE = [sys.executable, "-m", "pandanode.services.cli"]


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[NatsBus]:
    """A connection to a standalone NATS server with the event stream in place."""
    connected = await connect_bus(nats_server.url, name="materializer-tests")
    try:
        yield connected
    finally:
        await connected.close()


async def test_events_out_of_order_and_twice_give_the_same_views_as_in_order(
    tmp_path: Path, bus: NatsBus
) -> None:
    operations = corpus()
    in_order = Feed(bus)
    in_order.learn(operations)
    for signed in operations:
        await in_order.send(signed)
    async with running_materializer(tmp_path / "in-order", bus, durable="a") as materializer:
        await wait_caught_up(materializer, bus)
        expected = snapshot(materializer.store, checkpoint=False)
        assert materializer.store.pending_views() == []
        assert materializer.store.pending_documents() == {}
        assert materializer.store.pending_blobs() == {}

    # Another stream where every operation comes after what depends on it, some twice.
    other_nats = EmbeddedNats(store_dir=tmp_path / "nats-reversed")
    await other_nats.start()
    try:
        other = await connect_bus(other_nats.url)
        reversed_feed = Feed(other)
        reversed_feed.learn(operations)
        for index, signed in enumerate(reversed(operations)):
            await reversed_feed.send(signed)
            if index % 5 == 0:
                await reversed_feed.send(signed, message_id=f"again-{signed.hash}")
        async with running_materializer(tmp_path / "reversed", other, batch_size=7) as late:
            await wait_caught_up(late, other)
            assert snapshot(late.store, checkpoint=False) == expected
        await other.close()
    finally:
        await other_nats.stop()


async def test_redelivered_events_change_nothing(tmp_path: Path, bus: NatsBus) -> None:
    operations = corpus()
    feed = Feed(bus)
    feed.learn(operations)
    for signed in operations:
        await feed.send(signed)
    path = tmp_path / "query"
    async with running_materializer(path, bus, batch_size=10) as materializer:
        await wait_caught_up(materializer, bus)
        before = snapshot(materializer.store)
        checkpoint = materializer.checkpoint

    # Forget the checkpoint: the whole stream is delivered and applied again.
    store = QueryStore(path)
    batch = store.begin()
    batch.set_checkpoint(0)
    store.commit(batch)
    store.close()
    recorder = Recorder()
    async with running_materializer(path, bus) as materializer:
        materializer.add_listener(recorder)
        await wait_caught_up(materializer, bus)
        assert materializer.checkpoint == checkpoint
        assert snapshot(materializer.store) == before
    assert recorder.changes == []


async def test_a_malformed_event_is_skipped_and_the_stream_goes_on(
    tmp_path: Path, bus: NatsBus
) -> None:
    operations = corpus()[:3]
    feed = Feed(bus)
    feed.learn(operations)
    await feed.send(operations[0])
    malformed = Outgoing(
        OPERATIONS_INGESTED, OPERATIONS_INGESTED.subject_filter, "malformed", b"\x0a\x03not"
    )
    await bus.publish([malformed])
    for signed in operations[1:]:
        await feed.send(signed)
    async with running_materializer(tmp_path / "query", bus) as materializer:
        await wait_caught_up(materializer, bus)
        assert materializer.checkpoint == 4
        assert all(materializer.store.is_folded(s.hash) for s in operations)


async def test_restart_resumes_from_the_checkpoint_with_pending_work_kept(
    settings: Settings,
) -> None:
    alice, bob = Author(), Author()
    later = bob.create("blob_piece_v1", {"data": b"late"})
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        assert node.query is not None
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        schema_id = await publish_schema(ingest, alice, "note", {"title": "str"})
        first = alice.create(schema_id, {"title": "first"})
        await publish(ingest, first)
        blob = alice.create(
            "blob_v1",
            {"length": 4, "mime_type": "text/plain", "pieces": PinnedRelationList([[later.hash]])},
        )
        await publish(ingest, blob)
        assert await node.query.wait_for_operation(blob.hash, 15)
        assert node.query.store.pending_views() == [later.hash]
        checkpoint = node.query.checkpoint

    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        assert node.query is not None
        assert node.query.checkpoint == checkpoint
        recorder = Recorder()
        node.query.add_listener(recorder)
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        second = alice.update(schema_id, first.hash, [first.hash], {"title": "second"})
        await publish_batches(ingest, [[second, later]])
        assert await node.query.wait_for_operation(later.hash, 15)
        assert await node.query.wait_for_operation(second.hash, 15)
        # Only what happened after the restart is reported.
        assert sorted(c.document.view_id for c in recorder.changes) == sorted(
            [second.hash, later.hash]
        )
        assert node.query.checkpoint > checkpoint
        found = read_blob(node.query.store, document_id=blob.hash)
        assert found is not None and b"".join(found.chunks) == b"late"
        assert node.query.store.pending_views() == []
        assert node.query.store.pending_blobs() == {}


async def test_rebuild_gives_the_same_store_for_any_batch_size(node: Node, tmp_path: Path) -> None:
    assert node.query is not None
    operations = corpus()
    async with grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        await publish_batches(ingest, [operations[:10], operations[10:]])
    client = await nats.connect(node.nats_url)
    try:
        js = client.jetstream()
        bus = NatsBus(client, js)
        query = node.query

        async def all_stored() -> bool:
            # Publish answers once an entry is durable; its event is announced a moment later.
            return all(query.store.operation(op.hash) is not None for op in operations)

        await eventually(all_stored, what="every operation in the query store")
        await wait_caught_up(query, bus)
        live = snapshot(node.query.store)
        # Other services' consumers (replication follows the peer events) stay as they are.
        before = {info.name for info in await js.consumers_info(STREAM_NAME)}
        assert "query" in before
        for batch_size in (1, 6, 1000):
            path = tmp_path / f"rebuilt-{batch_size}"
            applied = await rebuild(path, bus, batch_size=batch_size)
            assert applied == len(operations)
            store = QueryStore(path)
            try:
                assert snapshot(store) == live, f"rebuild with batches of {batch_size} differs"
            finally:
                store.close()
        # The rebuild's own consumers are gone; the service's durable one is untouched.
        assert {info.name for info in await js.consumers_info(STREAM_NAME)} == before
    finally:
        await client.close()


async def test_rebuild_command_rebuilds_and_refuses_a_store_in_use(
    node: Node, tmp_path: Path
) -> None:
    assert node.query is not None
    operations = corpus()
    async with grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        await publish_batches(ingest, [operations])
    client = await nats.connect(node.nats_url)
    try:
        await wait_caught_up(node.query, NatsBus(client, client.jetstream()))
    finally:
        await client.close()

    data_dir = tmp_path / "elsewhere"
    command = [*PANDANODE, "query", "rebuild", "--nats", node.nats_url, "--data-dir"]
    done = await asyncio.to_thread(
        subprocess.run, [*command, str(data_dir)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"rebuilt from {len(operations)} events" in done.stdout
    store = QueryStore(data_dir / "query")
    try:
        assert snapshot(store) == snapshot(node.query.store)
    finally:
        store.close()

    in_use = await asyncio.to_thread(
        subprocess.run,
        [*command, str(node.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert in_use.returncode == 1
    assert "rebuild failed" in in_use.stderr
    assert node.query.store.document(operations[0].hash) is not None  # untouched


async def test_rebuild_through_a_checkpoint_equals_the_store_at_that_checkpoint(
    node: Node, tmp_path: Path
) -> None:
    assert node.query is not None
    operations = corpus()
    client = await nats.connect(node.nats_url)
    try:
        js = client.jetstream()
        bus = NatsBus(client, js)
        async with grpc.aio.insecure_channel(node.address) as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)
            await publish_batches(ingest, [operations[:10]])
            await wait_for_stream_count(js, 10)
            await wait_caught_up(node.query, bus)
            checkpoint = node.query.checkpoint
            then = snapshot(node.query.store)
            await publish_batches(ingest, [operations[10:]])
            await wait_for_stream_count(js, len(operations))
            await wait_caught_up(node.query, bus)
        assert node.query.checkpoint > checkpoint
        applied = await rebuild(tmp_path / "rebuilt", bus, through=checkpoint)
        assert applied == 10
        store = QueryStore(tmp_path / "rebuilt")
        try:
            assert store.checkpoint() == checkpoint
            assert snapshot(store) == then
        finally:
            store.close()
    finally:
        await client.close()


async def test_kill_9_mid_stream_then_restart_equals_a_rebuild(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    process = NodeProcess(["up", "--data-dir", str(data_dir), "--listen", address])
    process.start()
    authors = [Author() for _ in range(4)]
    try:
        await process.wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            ingest = ingest_pb2_grpc.IngestServiceStub(channel)
            schema_id = await publish_schema(ingest, authors[0], "note", {"title": "str"})
            documents = [author.create(schema_id, {"title": "0"}) for author in authors]
            await publish_batches(ingest, [documents])
            tips = {document.hash: [document.hash] for document in documents}
            killed = False

            async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
                for index in range(1, 400):
                    # Two authors per document build on the same tips (a fork); the next
                    # round's updates merge the two branches.
                    updates = []
                    forks: dict[str, list[str]] = {}
                    for position, author in enumerate(authors):
                        target = documents[(position // 2 + index) % len(documents)].hash
                        title = {"title": f"{index} by {position}"}
                        update = author.update(schema_id, target, tips[target], title)
                        updates.append(update)
                        forks.setdefault(target, []).append(update.hash)
                    tips.update(forks)
                    yield pb.PublishStreamRequest(items=[u.request() for u in updates])
                    if killed:
                        return

            acknowledged = 0
            try:
                async for response in ingest.PublishStream(requests()):
                    for result in response.results:
                        assert result.HasField("ok"), result.error
                    acknowledged += len(response.results)
                    if acknowledged >= 600 and not killed:
                        process.kill()
                        killed = True
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE
            assert killed, "the stream ended before the node was killed"
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()

    async with Node(node_settings(data_dir)) as node:
        assert node.query is not None
        client = await nats.connect(node.nats_url)
        try:
            js = client.jetstream()
            async with grpc.aio.insecure_channel(node.address) as channel:
                stored = sum(
                    (await log_heights(ingest_pb2_grpc.IngestServiceStub(channel))).values()
                )
            # Ingest re-announces what it had stored but not announced before the kill.
            await wait_for_stream_count(js, stored, timeout=15)
            await wait_caught_up(node.query, NatsBus(client, js))
            live = snapshot(node.query.store)
            assert len([key for key, _ in live if key[:1] == b"D"]) == 6  # 2 definitions, 4 notes
        finally:
            await client.close()

    await assert_checks_clean(data_dir)

    # Rebuild in place, as a person would: the command starts the node's embedded NATS.
    rebuilt = await asyncio.to_thread(
        subprocess.run,
        [*PANDANODE, "query", "rebuild", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    store = QueryStore(data_dir / "query")
    try:
        assert snapshot(store) == live
    finally:
        store.close()


async def test_query_replicas_each_have_their_own_durable_consumer(
    tmp_path: Path, bus: NatsBus
) -> None:
    operations = corpus()
    feed = Feed(bus)
    feed.learn(operations)
    for signed in operations[:20]:
        await feed.send(signed)
    async with (
        running_materializer(tmp_path / "one", bus, durable="replica-1") as one,
        running_materializer(tmp_path / "two", bus, durable="replica-2", batch_size=3) as two,
    ):
        for signed in operations[20:]:
            await feed.send(signed)
        await wait_caught_up(one, bus)
        await wait_caught_up(two, bus)
        consumers = {info.name for info in await bus.js.consumers_info(STREAM_NAME)}
        assert {"replica-1", "replica-2"} <= consumers
        assert snapshot(one.store) == snapshot(two.store)


async def test_serve_query_runs_the_query_service_alone(tmp_path: Path, bus: NatsBus) -> None:
    args = build_parser().parse_args(["serve", "query", "--nats", "nats://127.0.0.1:1"])
    assert (args.command, args.service) == ("serve", "query")
    operations = corpus()[:3]
    feed = Feed(bus)
    feed.learn(operations)
    settings = node_settings(tmp_path / "query-only")
    nats_url = bus.client.connected_url
    assert nats_url is not None
    url = f"nats://{nats_url.hostname}:{nats_url.port}"
    async with Node(settings.with_changes(nats_url=url), ("query",)) as node:
        assert node.query is not None and node.ingest is None
        for signed in operations:
            await feed.send(signed)
        await wait_caught_up(node.query, bus)
        assert "post" in [schema.name for schema in StoredSchemas(node.query.store).all()]
    assert (settings.data_dir / "query").is_dir()
    assert not (settings.data_dir / "ingest").exists()
