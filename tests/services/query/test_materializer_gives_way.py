"""The materializer shares the event loop with the query service's calls (on the in-memory bus,
which, like NATS, hands over messages already delivered without waiting): a batch applied on
the loop is followed by everything it made ready, a read waiting for an operation of a backlog
is answered before the rest of the backlog is applied, and calls that never stop coming do not
keep the materializer from applying what the stream holds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pandanode.core import PinnedRelationList
from pandanode.services.query.materializer import Materializer
from pandanode.services.runtime.bus import InMemoryBus
from tests.services.ingest.helpers import Author, Signed

from .materializer_helpers import Feed, corpus, running_materializer, wait_caught_up

_BACKLOG = 40


def _posts(count: int) -> list[Signed]:
    """The corpus schema (its first three operations), then ``count`` posts of it."""
    title, files, definition = corpus()[:3]
    author = Author()
    schema_id = f"post_{definition.hash}"
    posts = [
        author.create(schema_id, {"files": PinnedRelationList([]), "title": str(index)})
        for index in range(count)
    ]
    return [title, files, definition, *posts]


async def _backlog(bus: InMemoryBus, operations: list[Signed]) -> list[int]:
    """Announce each operation in a message of its own; their stream sequences."""
    feed = Feed(bus)
    feed.learn(operations)
    return [(await feed.send_commit([operation]))[-1] for operation in operations]


async def test_a_read_waiting_for_an_operation_of_a_backlog_runs_before_the_rest_is_applied(
    tmp_path: Path,
) -> None:
    operations = _posts(_BACKLOG)
    bus = InMemoryBus()
    sequences = await _backlog(bus, operations)
    wanted = operations[len(operations) // 2]
    # One message per batch: the backlog is applied in as many batches as it has messages.
    async with running_materializer(tmp_path / "query", bus, batch_size=1) as materializer:
        materializer.note_call()  # the read, as the query service counts it
        assert await materializer.wait_for_operation(wanted.hash, timeout=30)
        answered_at = materializer.checkpoint

        assert answered_at < sequences[-1], "the read waited for the whole backlog"
        await wait_caught_up(materializer, bus)
        assert materializer.checkpoint == sequences[-1]


async def test_calls_that_keep_coming_run_between_batches_and_do_not_stop_the_materializer(
    tmp_path: Path,
) -> None:
    operations = _posts(_BACKLOG)
    bus = InMemoryBus()
    sequences = await _backlog(bus, operations)
    seen: set[int] = set()

    async def calls(materializer: Materializer) -> None:
        # A call on every pass of the event loop: more than any window lets pass unnoticed.
        while True:
            materializer.note_call()
            seen.add(materializer.checkpoint)
            await asyncio.sleep(0)

    async with running_materializer(tmp_path / "query", bus, batch_size=1) as materializer:
        caller = asyncio.create_task(calls(materializer))
        try:
            await wait_caught_up(materializer, bus, timeout=60)
        finally:
            caller.cancel()

        assert materializer.checkpoint == sequences[-1]
        # The calls ran after every batch (one message each), not only once the backlog was
        # applied: each checkpoint before the last was seen by one of them (the last one may
        # be reached while the caller waits for its next turn, just before it is cancelled).
        assert set(sequences[:-1]) <= seen
