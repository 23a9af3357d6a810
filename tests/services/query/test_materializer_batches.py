"""The materializer on batch messages (on the in-memory bus): operations of a message applied
in order, positions strictly increasing and covered by the checkpoint, redeliveries skipped,
acknowledgements coalesced, a large batch told run by run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from pandanode.services.query.materializer import INLINE_BYTES, POSITIONS_PER_MESSAGE
from pandanode.services.query.watch import Watch
from pandanode.services.runtime.bus import Bus, Consumer, Delivery, InMemoryBus
from pandanode.services.runtime.events import EventKind
from tests.services.ingest.helpers import Author
from tests.services.support import eventually

from .materializer_helpers import Feed, Recorder, corpus, running_materializer, wait_caught_up


async def test_changes_of_batch_messages_come_in_order_at_positions_the_checkpoint_covers(
    tmp_path: Path,
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    feed = Feed(bus)
    feed.learn(operations)
    recorder = Recorder()
    async with running_materializer(tmp_path / "query", bus, batch_size=8) as materializer:
        materializer.add_listener(recorder)
        sequences = []
        for start in range(0, len(operations), 5):
            sequences += await feed.send_commit(operations[start : start + 5])
        await wait_caught_up(materializer, bus)

        assert materializer.checkpoint == sequences[-1] == len(sequences)
        assert all(materializer.store.is_folded(s.hash) for s in operations)
        positions = [change.sequence for change in recorder.changes]
        assert positions == sorted(set(positions)), "positions strictly increase"
        assert positions[-1] <= materializer.position
        assert positions[0] >= POSITIONS_PER_MESSAGE  # after checkpoint 0
        position = materializer.position
        before = len(recorder.changes)

        # The same operations again (another copy of a commit): applied already, no change.
        await feed.send_commit(operations[:5])
        await wait_caught_up(materializer, bus)
        assert materializer.checkpoint == len(sequences) + 1
        assert len(recorder.changes) == before
        assert materializer.position > position


class _AckCounting:
    """The in-memory bus, with every acknowledgement of its consumers recorded.

    With ``hold``, an acknowledgement waits until the test releases it.
    """

    def __init__(self, bus: InMemoryBus, *, hold: bool = False) -> None:
        self._bus = bus
        self.acks: list[int] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        if not hold:
            self.release.set()

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)

    async def consume(self, kind: EventKind, **options: Any) -> Consumer:
        consumer = await self._bus.consume(kind, **options)
        inner_ack = consumer.ack

        async def ack(through: Delivery) -> None:
            self.started.set()
            await self.release.wait()
            self.acks.append(through.sequence)
            await inner_ack(through)

        consumer.ack = ack  # type: ignore[method-assign]
        return consumer


async def test_one_acknowledgement_covers_the_messages_applied_within_the_ack_delay(
    tmp_path: Path,
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    counting = _AckCounting(bus)
    feed = Feed(bus)
    feed.learn(operations)
    # A delay no machine takes to apply the corpus, so the count below is not up to timing.
    async with running_materializer(
        tmp_path / "query", cast(Bus, counting), batch_size=64, ack_delay=2.0
    ) as materializer:
        sequences = [await feed.send_commit([operation]) for operation in operations]
        last = sequences[-1][-1]
        await wait_caught_up(materializer, bus)

        # The newest applied message is acknowledged (covering all before it) ...
        await eventually(
            _async(lambda: counting.acks and counting.acks[-1] == last),
            what="the last applied message acknowledged",
        )
        # ... by fewer acknowledgements than messages, never out of order.
        assert len(counting.acks) < len(sequences)
        assert counting.acks == sorted(counting.acks)


async def test_messages_applied_while_an_acknowledgement_is_in_flight_are_acknowledged_too(
    tmp_path: Path,
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    held = _AckCounting(bus, hold=True)
    feed = Feed(bus)
    feed.learn(operations)
    async with running_materializer(
        tmp_path / "query", cast(Bus, held), batch_size=64, ack_delay=0.01
    ) as materializer:
        await feed.send_commit(operations[:1])
        await asyncio.wait_for(held.started.wait(), timeout=10)
        # Applied while the first acknowledgement waits; nothing comes after it.
        later = await feed.send_commit(operations[1:2])
        await wait_caught_up(materializer, bus)
        held.release.set()

        await eventually(
            _async(lambda: held.acks and held.acks[-1] == later[-1]),
            what="the message applied during the first acknowledgement acknowledged",
        )


async def test_acknowledgements_do_not_wait_once_half_the_unacknowledged_limit_is_reached(
    tmp_path: Path,
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    counting = _AckCounting(bus)
    feed = Feed(bus)
    feed.learn(operations)
    # batch_size 1: the consumer may hold 2 messages unacknowledged, so every one is acked.
    async with running_materializer(
        tmp_path / "query", cast(Bus, counting), batch_size=1
    ) as materializer:
        sequences = [await feed.send_commit([operation]) for operation in operations[:6]]
        await wait_caught_up(materializer, bus)
        assert counting.acks == [s[-1] for s in sequences]


async def test_a_watcher_that_keeps_up_is_not_cut_off_by_a_catch_up_larger_than_its_queue(
    tmp_path: Path,
) -> None:
    author = Author()
    pieces = [author.create("blob_piece_v1", {"data": bytes([i]) * 2000}) for i in range(64)]
    bus = InMemoryBus()
    feed = Feed(bus)
    feed.learn(pieces)
    # A backlog before the materializer starts: 8 commits of 8 pieces, over the inline limit
    # together, so the catch-up is applied on the thread, a run (a commit here) at a time.
    for start in range(0, len(pieces), 8):
        await feed.send_commit(pieces[start : start + 8])
    assert sum(len(message.payload) for message in bus.messages) > INLINE_BYTES
    # Room for two runs of changes, not for the whole catch-up.
    watch = Watch("blob_piece_v1", lambda _: True, max_queue=16)
    seen: list[str] = []

    async def keep_up() -> None:
        async for batch in watch.batches([], snapshot_sequence=0):
            seen.extend(event.document.document_id for event in batch if event.document)

    reader = asyncio.create_task(keep_up())
    try:
        async with running_materializer(tmp_path / "query", bus, batch_size=8) as materializer:
            materializer.add_listener(watch.on_change)
            await wait_caught_up(materializer, bus)
            await eventually(_async(lambda: len(seen) == len(pieces)), what="every piece seen")
        assert seen == [piece.hash for piece in pieces]
        assert not reader.done(), "the watch was cut off"
    finally:
        reader.cancel()


def _async(check: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return check()

    return run
