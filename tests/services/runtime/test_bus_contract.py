"""The bus contract: the same cases against NATS JetStream (a real server per test) and the
in-memory bus that unit tests of the layers above use."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.discovery.v1.discovery_pb2 import Peer
from pandanode.services.runtime.bus import (
    Bus,
    Delivery,
    InMemoryBus,
    MessageTooLargeError,
    connect_bus,
)
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    PEER_DISCOVERED,
    IngestedOperation,
    Outgoing,
    operations_ingested,
    parse_operations_ingested,
    peer_discovered,
)
from pandanode.services.runtime.nats_server import EmbeddedNats

TIMEOUT = 10.0


@pytest.fixture(params=["nats", "memory"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """The real bus on its own NATS server, or the in-memory one."""
    if request.param == "memory":
        yield InMemoryBus()
        return
    server = EmbeddedNats(store_dir=tmp_path / "nats")
    await server.start()
    try:
        connected = await connect_bus(server.url, name="bus-contract")
        try:
            yield connected
        finally:
            await connected.close()
    finally:
        await server.stop()


def _operation(sequence: int, size: int = 10) -> IngestedOperation:
    return IngestedOperation(
        entry=b"e" * size,
        operation=b"o" * size,
        operation_id=f"0020{sequence:064x}",
        document_id=f"0020{1:064x}",
        schema_id="schema_field_definition_v1",
        public_key="ab" * 32,
        log_id=0,
        seq_num=sequence,
        sequence=sequence,
    )


def _commit(first: int, count: int, size: int = 10) -> list[Outgoing]:
    return operations_ingested(
        [_operation(s, size) for s in range(first, first + count)], 1024 * 1024
    )


def _sequences(deliveries: list[Delivery]) -> list[int]:
    return [
        operation.sequence
        for delivery in deliveries
        for operation in parse_operations_ingested(delivery.payload).operations
    ]


async def _take_all(bus: Bus, start: int, count: int) -> list[Delivery]:
    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=start)
    taken: list[Delivery] = []
    try:
        while len(taken) < count:
            taken.extend(await consumer.take(count - len(taken), TIMEOUT))
    finally:
        await consumer.close()
    return taken


async def test_published_messages_get_increasing_stream_sequences(bus: Bus) -> None:
    first = await bus.publish(_commit(1, 3))
    second = await bus.publish([*_commit(4, 1), *_commit(5, 2)])
    sequences = first + second
    assert sequences == sorted(sequences) and len(set(sequences)) == 3
    assert await bus.last_sequence() == sequences[-1]


async def test_a_message_published_again_with_its_id_is_stored_once(bus: Bus) -> None:
    commit = _commit(1, 2)
    await bus.publish(commit)
    await bus.publish(commit)
    await bus.publish(_commit(3, 1))

    taken = await _take_all(bus, 1, 2)

    assert _sequences(taken) == [1, 2, 3]
    assert await bus.last_sequence() == 2


async def test_a_consumer_starts_at_the_given_stream_sequence_in_order(bus: Bus) -> None:
    for first in range(1, 6):
        await bus.publish(_commit(first, 1))

    taken = await _take_all(bus, 3, 3)

    assert [d.sequence for d in taken] == [3, 4, 5]
    assert _sequences(taken) == [3, 4, 5]


async def test_a_consumer_sees_only_its_kind(bus: Bus) -> None:
    peer = Peer(node_id="cd" * 32)
    await bus.publish([peer_discovered(peer, "ef" * 32, 1_700_000_000.0)])
    (operations,) = await bus.publish(_commit(1, 1))

    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1)
    try:
        (delivery,) = await consumer.take(10, TIMEOUT)
        assert delivery.sequence == operations
        assert delivery.subject == OPERATIONS_INGESTED.subject_filter
        with pytest.raises(TimeoutError):
            await consumer.take(10, 0.2)
    finally:
        await consumer.close()
    peers = await bus.consume(PEER_DISCOVERED, start_sequence=1)
    try:
        (delivery,) = await peers.take(10, TIMEOUT)
        assert delivery.subject == f"pandanode.v1.evt.peer.discovered.{peer.node_id}"
    finally:
        await peers.close()
    assert await bus.last_sequence(OPERATIONS_INGESTED) == operations
    assert await bus.last_sequence(PEER_DISCOVERED) == 1


async def test_last_sequence_of_an_empty_stream_is_zero(bus: Bus) -> None:
    assert await bus.last_sequence() == 0
    assert await bus.last_sequence(OPERATIONS_INGESTED) == 0


async def test_take_waits_for_a_message_published_later(bus: Bus) -> None:
    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1)
    try:
        with pytest.raises(TimeoutError):
            await consumer.take(10, 0.2)
        await bus.publish(_commit(1, 2))
        (delivery,) = await consumer.take(10, TIMEOUT)
        await consumer.ack(delivery)
        assert _sequences([delivery]) == [1, 2]
    finally:
        await consumer.close()


async def test_a_durable_consumer_is_replaced_at_the_new_start(bus: Bus) -> None:
    for first in range(1, 4):
        await bus.publish(_commit(first, 1))
    old = await bus.consume(OPERATIONS_INGESTED, start_sequence=1, durable="query")
    (first_delivery, *_) = await old.take(1, TIMEOUT)
    assert first_delivery.sequence == 1

    new = await bus.consume(OPERATIONS_INGESTED, start_sequence=3, durable="query")
    try:
        (delivery,) = await new.take(10, TIMEOUT)
        assert delivery.sequence == 3
    finally:
        await new.close()
    await bus.delete_consumer("query")  # gone already: no error
    await bus.delete_consumer("never-made")


async def test_a_message_over_max_payload_is_refused_and_nothing_is_stored(bus: Bus) -> None:
    (message,) = _commit(1, 1)
    too_large = dataclasses.replace(message, payload=b"x" * (bus.max_payload + 1))
    with pytest.raises(MessageTooLargeError):
        await bus.publish([too_large])
    assert await bus.last_sequence() == 0


async def test_a_commit_over_max_payload_is_split_into_messages_that_each_fit(bus: Bus) -> None:
    operations = [_operation(s, size=100 * 1024) for s in range(1, 21)]  # ≈ 4 MiB
    messages = operations_ingested(operations, bus.max_payload)
    assert len(messages) > 1
    assert all(len(m.payload) <= bus.max_payload for m in messages)
    assert operations_ingested(operations, bus.max_payload) == messages  # deterministic

    await bus.publish(messages)
    await bus.publish(messages)  # a re-publish after a crash

    taken = await _take_all(bus, 1, len(messages))
    assert _sequences(taken) == list(range(1, 21))
    assert await bus.last_sequence() == len(messages)
