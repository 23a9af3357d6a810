"""The materializer on batch messages (on the in-memory bus): operations of a message applied
in order, positions strictly increasing and covered by the checkpoint, redeliveries skipped."""

from __future__ import annotations

from pathlib import Path

from pandanode.services.query.materializer import POSITIONS_PER_MESSAGE
from pandanode.services.runtime.bus import InMemoryBus

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
