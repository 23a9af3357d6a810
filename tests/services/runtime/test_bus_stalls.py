"""The NATS consumer when its process stalls or its calls go unanswered (a real server per
test): a take whose process was frozen past its timeout reads what arrived meanwhile, deliveries
that never arrived are noticed from a consumer's first one on, and a consumer whose creation
seemed to fail is made afresh, not continued from what it pushed to nobody."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from pandanode.services.runtime import bus as bus_module
from pandanode.services.runtime.bus import DeliveryGapError, NatsBus, connect_bus
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    IngestedOperation,
    Outgoing,
    operations_ingested,
    parse_operations_ingested,
)
from pandanode.services.runtime.nats_server import EmbeddedNats
from tests.services.support import eventually


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[NatsBus]:
    """A bus on the test's own NATS server (``nats_server``), with the event stream in place."""
    connected = await connect_bus(nats_server.url, name="bus-stalls")
    try:
        yield connected
    finally:
        await connected.close()


def _messages(first: int, count: int) -> list[Outgoing]:
    """``count`` one-operation ``operations.ingested`` messages, numbered from ``first``."""
    return [
        message
        for sequence in range(first, first + count)
        for message in operations_ingested(
            [
                IngestedOperation(
                    entry=b"e",
                    operation=b"o",
                    operation_id=f"0020{sequence:064x}",
                    document_id=f"0020{1:064x}",
                    schema_id="schema_field_definition_v1",
                    public_key="ab" * 32,
                    log_id=0,
                    seq_num=sequence,
                    sequence=sequence,
                )
            ],
            1024 * 1024,
        )
    ]


def _numbers(payloads: list[bytes]) -> list[int]:
    return [
        operation.sequence
        for payload in payloads
        for operation in parse_operations_ingested(payload).operations
    ]


async def test_a_take_whose_process_was_frozen_past_its_timeout_reads_what_arrived_meanwhile(
    nats_server: EmbeddedNats, bus: NatsBus
) -> None:
    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1)
    timeout = 0.3
    take = asyncio.create_task(consumer.take(10, timeout))
    await asyncio.sleep(0)  # take() waits, its timer armed
    frozen_at = time.monotonic()

    def publish_elsewhere() -> None:
        async def publish() -> None:
            other = await connect_bus(nats_server.url, name="publisher")
            try:
                await other.publish(_messages(1, 1))
            finally:
                await other.close()

        asyncio.run(publish())

    # This event loop is frozen (as a SIGSTOP freezes the process) while another connection
    # publishes: the message is pushed into the socket, and the timer is long overdue when the
    # loop runs again.
    publisher = threading.Thread(target=publish_elsewhere)
    publisher.start()
    publisher.join(timeout=30)
    assert not publisher.is_alive()
    overdue = frozen_at + timeout + bus_module._LATE + 0.5
    time.sleep(max(0.0, overdue - time.monotonic()))  # the freeze itself, not a wait

    deliveries = await take
    assert _numbers([delivery.payload for delivery in deliveries]) == [1]
    await consumer.close()


def _delivered(consumer_sequence: int, stream_sequence: int, payload: bytes) -> Msg:
    """A message as JetStream pushes it: its numbers are in the reply subject."""
    reply = f"$JS.ACK.PANDANODE.query.1.{stream_sequence}.{consumer_sequence}.{time.time_ns()}.0"
    return Msg(_client=None, subject="pandanode.events.test", reply=reply, data=payload)  # type: ignore[arg-type]


async def test_deliveries_lost_before_the_first_one_taken_are_noticed(bus: NatsBus) -> None:
    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1, detect_gaps=True)
    try:
        # Pushes 1 and 2 of the new consumer never arrived; 3 is the first to.
        await consumer.put(_delivered(3, 7, b"x"))  # type: ignore[attr-defined]
        with pytest.raises(DeliveryGapError, match=r"deliveries 1\.\.2 .* never arrived"):
            await consumer.take(10, 5.0)
    finally:
        await consumer.close()


async def test_a_durable_consumer_made_by_an_attempt_whose_answer_was_lost_is_made_afresh(
    bus: NatsBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    await bus.publish(_messages(1, 20))
    real_add_consumer = bus.js.add_consumer
    attempts = 0

    async def add_consumer_answer_lost_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal attempts
        attempts += 1
        info = await real_add_consumer(*args, **kwargs)
        if attempts == 1:
            # The server made the consumer and pushed to the first attempt's inbox, but the
            # answer and the pushes were still in flight when the client gave up on it.
            await eventually(lambda: _answer(consumer_state.queued() > 0), what="a first push")
            consumer_state._messages.clear()
            raise NatsTimeoutError
        return info

    consumer_state: Any = None
    real_consumer = bus_module._NatsConsumer

    def recording(*args: Any, **kwargs: Any) -> Any:
        nonlocal consumer_state
        consumer_state = real_consumer(*args, **kwargs)
        return consumer_state

    monkeypatch.setattr(bus.js, "add_consumer", add_consumer_answer_lost_once)
    monkeypatch.setattr(bus_module, "_NatsConsumer", recording)
    consumer = await bus.consume(
        OPERATIONS_INGESTED, start_sequence=1, durable="query", detect_gaps=True
    )
    try:
        assert attempts == 2
        taken: list[bytes] = []
        while len(taken) < 20:
            taken += [delivery.payload for delivery in await consumer.take(20, 5.0)]
        assert _numbers(taken) == list(range(1, 21)), "every message, in order, once"
    finally:
        await consumer.close()


async def _answer(value: bool) -> bool:
    return value
