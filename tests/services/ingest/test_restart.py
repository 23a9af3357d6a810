"""A node restarted on the same data directory keeps every entry, continues every log, still
knows its application schemas, and announces nothing twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import nats
from nats.js import JetStreamContext

from pandanode.core import PinnedRelationList
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceStub
from pandanode.services.node import Node
from pandanode.services.runtime.settings import Settings
from tests.services.support import assert_checks_clean

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
    expected_next_args,
    publish,
    publish_batches,
    publish_schema,
    rejection,
    stored_state,
    stream_events,
    wait_for_stream_count,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


@dataclass
class Running:
    node: Node
    ingest: IngestServiceAsyncStub
    js: JetStreamContext


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Running]:
    """Start a node on ``settings`` with a gRPC stub and a JetStream connection; stop it after."""
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        client = await nats.connect(node.nats_url, name="restart-test")
        try:
            yield Running(node, IngestServiceStub(channel), client.jetstream())
        finally:
            await client.close()


async def test_restarted_node_keeps_every_entry_and_continues_every_log(
    settings: Settings,
) -> None:
    alice, bob = Author(), Author()
    async with running(settings) as first:
        schema_id = await publish_schema(first.ingest, alice, "note", {"title": "str"})
        note = alice.create(schema_id, {"title": "before"})
        await publish(first.ingest, note)
        chain: list[Signed] = [bob.create(FIELD_DEFINITION, {"name": "chain", "type": "str"})]
        for index in range(1, 20):
            chain.append(
                bob.update(FIELD_DEFINITION, chain[0].hash, [chain[-1].hash], {"name": f"c{index}"})
            )
        await publish_batches(first.ingest, [chain])
        before = await stored_state(first.ingest)
        count = sum(before.heights.values())
        assert count == 23
        await wait_for_stream_count(first.js, count)

    async with running(settings) as second:
        assert await stored_state(second.ingest) == before
        # The stream survived too, without a single event announced again.
        await wait_for_stream_count(second.js, count)
        # Next args continue both of Bob's and Alice's logs.
        request = pb.NextArgsRequest(public_key=bob.public_key, document_view_id=chain[-1].hash)
        continued = (await second.ingest.NextArgs(request)).next_args
        assert continued == expected_next_args(0, bob.hashes(0))
        assert continued.seq_num == 21
        request = pb.NextArgsRequest(public_key=alice.public_key)
        assert (await second.ingest.NextArgs(request)).next_args.log_id == 3
        more = bob.update(FIELD_DEFINITION, chain[0].hash, [chain[-1].hash], {"name": "after"})
        response = await publish(second.ingest, more)
        assert response.next_args == expected_next_args(0, bob.hashes(0))
        # The application schema is still known.
        edit = alice.update(schema_id, note.hash, [note.hash], {"title": "after"})
        await publish(second.ingest, edit)
        other = Author().create(schema_id, {"title": "new"})
        await publish(second.ingest, other)
        await wait_for_stream_count(second.js, count + 3)
        events = await stream_events(second.js)
        assert len({e.payload.operation_id for e in events}) == count + 3
        announced = [e.payload.operation_id for e in events[-3:]]
        assert announced == [more.hash, edit.hash, other.hash]
    await assert_checks_clean(settings.data_dir)


async def test_schema_definition_waiting_for_a_field_before_a_restart_completes_after_it(
    settings: Settings,
) -> None:
    author = Author()
    title = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    late = author.create(FIELD_DEFINITION, {"name": "late", "type": "int"})
    definition = author.create(
        SCHEMA_DEFINITION,
        {
            "description": "Completed after a restart",
            "fields": PinnedRelationList([[title.hash], [late.hash]]),
            "name": "pending",
        },
    )
    document = Author().create(f"pending_{definition.hash}", {"late": 1, "title": "x"})
    async with running(settings) as first:
        await publish(first.ingest, title)
        await publish(first.ingest, definition)
        rejected = await rejection(publish(first.ingest, document))
        assert rejected.reason == "SCHEMA_NOT_FOUND"

    async with running(settings) as second:
        await publish(second.ingest, late)
        response = await publish(second.ingest, document)
        assert response.document_id == document.hash
    await assert_checks_clean(settings.data_dir)
