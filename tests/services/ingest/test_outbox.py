"""The announcer: commits handed over in memory, the outbox for what a crash interrupted, and
failures that are logged, retried and shown — never a silently dead task."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.ingest.ingest import Ingest
from pandanode.services.ingest.outbox import Announcer
from pandanode.services.ingest.store import LogStore, StoredEntry
from pandanode.services.runtime.bus import Bus, Consumer, InMemoryBus, NatsBus, connect_bus
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    EventKind,
    Outgoing,
    parse_operations_ingested,
)
from pandanode.services.runtime.nats_server import EmbeddedNats, free_port
from pandanode.services.runtime.settings import Settings
from tests.services.support import (
    FieldDefinitionLog,
    NodeProcess,
    announced_operation_ids,
    assert_checks_clean,
    eventually,
)


class FlakyStore(LogStore):
    """A log store whose cursor write fails while ``full`` is set, as on a full disk."""

    full = False
    cursor_writes_refused = 0

    def advance_outbox(self, cursor: int) -> None:
        if self.full:
            self.cursor_writes_refused += 1
            raise OSError(28, "No space left on device")
        super().advance_outbox(cursor)


class CountingStore(LogStore):
    """A log store that counts the entries read back from it."""

    entries_read = 0

    def entry(self, public_key: str, log_id: int, seq_num: int) -> StoredEntry | None:
        self.entries_read += 1
        return super().entry(public_key, log_id, seq_num)


class GatedBus:
    """A bus whose publishes each wait until the test lets one through; remembers every try."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner
        self.attempts: list[list[str]] = []
        """The message ids of every publish, in order (a retry is a new attempt)."""
        self._passes = asyncio.Semaphore(0)

    def let_through(self, count: int = 1) -> None:
        """Let ``count`` more publishes through (waiting ones first)."""
        for _ in range(count):
            self._passes.release()

    @property
    def max_payload(self) -> int:
        return self.inner.max_payload

    async def publish(self, messages: Sequence[Outgoing]) -> list[int]:
        self.attempts.append([message.message_id for message in messages])
        await self._passes.acquire()
        return await self.inner.publish(messages)

    async def consume(
        self,
        kind: EventKind,
        *,
        start_sequence: int,
        durable: str | None = None,
        max_pending: int = 512,
        detect_gaps: bool = False,
    ) -> Consumer:
        return await self.inner.consume(
            kind,
            start_sequence=start_sequence,
            durable=durable,
            max_pending=max_pending,
            detect_gaps=detect_gaps,
        )

    async def delete_consumer(self, durable: str) -> None:
        await self.inner.delete_consumer(durable)

    async def last_sequence(self, kind: EventKind | None = None) -> int:
        return await self.inner.last_sequence(kind)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class Running:
    store: LogStore
    ingest: Ingest
    announcer: Announcer


@asynccontextmanager
async def running(
    store: LogStore,
    bus: Bus,
    *,
    announce: bool = True,
    crash: bool = False,
    linger: float | None = None,
) -> AsyncIterator[Running]:
    """Ingest with an announcer on ``store``; ``crash`` leaves without draining or closing
    anything gracefully (what kill -9 leaves behind: the store and the stream)."""
    announcer = Announcer(store, bus) if linger is None else Announcer(store, bus, linger=linger)
    ingest = Ingest(store, Settings(), on_committed=announcer.committed if announce else None)
    await ingest.start()
    if announce:
        await announcer.start()
    try:
        yield Running(store, ingest, announcer)
    finally:
        await ingest.stop()
        # A crash: the process dies at once; nothing more is announced or written.
        await announcer.stop(timeout=0 if crash else 5.0)
        store.close()


async def publish(ingest: Ingest, logs: Sequence[FieldDefinitionLog], seq_nums: range) -> int:
    """Publish entries of every log at ``seq_nums`` as one batch; returns how many."""
    items = [
        (request.entry, request.operation)
        for seq_num in seq_nums
        for request in (log.entry(seq_num) for log in logs)
    ]
    outcomes = await ingest.publish_many(items)
    assert all(not isinstance(outcome, Exception) for outcome in outcomes), outcomes
    return len(items)


def sequences_by_message(bus: InMemoryBus) -> list[list[int]]:
    """The store sequences each message in the bus carries, message by message."""
    return [
        [int(operation.sequence) for operation in parse_operations_ingested(m.payload).operations]
        for m in bus.messages
    ]


async def announced(bus: Bus) -> list[int]:
    """The store sequences of every operation in the stream, in stream order."""
    last = await bus.last_sequence(OPERATIONS_INGESTED)
    if last == 0:
        return []
    consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1)
    sequences: list[int] = []
    try:
        seen = 0
        while seen < last:
            for delivery in await consumer.take(1000, 10.0):
                seen = delivery.sequence
                operations = parse_operations_ingested(delivery.payload).operations
                sequences.extend(int(operation.sequence) for operation in operations)
    finally:
        await consumer.close()
    return sequences


@pytest.fixture
async def nats_bus(nats_server: EmbeddedNats) -> AsyncIterator[NatsBus]:
    """The real bus on a standalone NATS server."""
    bus = await connect_bus(nats_server.url, name="outbox-tests")
    try:
        yield bus
    finally:
        await bus.close()


async def test_commits_are_announced_from_memory_without_reading_entries_back(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "ingest")
    bus = InMemoryBus()
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(10)]
    async with running(store, bus) as node:
        count = 0
        for seq_num in range(1, 6):
            count += await publish(node.ingest, logs, range(seq_num, seq_num + 1))

        async def announced_all() -> bool:
            return store.outbox_cursor() == count

        await eventually(announced_all, what="every commit announced")
        assert store.entries_read == 0
        assert store.outbox(count, 100) == [], "nothing after the cursor is left to announce"
        records = store.outbox(0, 100)
        assert len(records) <= 5, "one outbox record per commit"
        assert [r.first for r in records] == sorted(r.first for r in records)
        assert sum(len(r.operation_ids) for r in records) == count, "kept as the store order"
    assert len(bus.messages) <= 5, "one message per commit, not per entry"
    assert await announced(bus) == list(range(1, count + 1))


async def test_a_failing_cursor_write_is_logged_once_retried_and_caught_up_after_it_heals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pandanode.services.ingest.outbox")
    store = FlakyStore(tmp_path / "ingest")
    bus = InMemoryBus()
    logs = [FieldDefinitionLog(KeyPair(), log_id=0), FieldDefinitionLog(KeyPair(), log_id=1)]
    async with running(store, bus) as node:
        store.full = True
        count = await publish(node.ingest, logs, range(1, 6))

        async def failed_repeatedly() -> bool:
            return store.cursor_writes_refused >= 3

        await eventually(failed_repeatedly, what="the cursor write retried")
        assert not node.announcer.healthy
        assert "No space left on device" in (node.announcer.last_error or "")
        assert node.announcer.running, "the announcer task ended"
        assert store.outbox_cursor() == 0
        count += await publish(node.ingest, logs, range(6, 9))  # acknowledged meanwhile

        store.full = False

        async def caught_up() -> bool:
            return node.announcer.healthy and store.outbox_cursor() == count

        await eventually(caught_up, what="the announcer caught up after the disk healed")
        assert node.announcer.last_error is None
        assert store.outbox(count, 10) == [], "nothing after the cursor is left to announce"
        assert await announced(bus) == list(range(1, count + 1))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one failure state, one warning"
    assert any("again after" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


async def test_entries_stored_but_never_announced_before_a_crash_are_announced_after_restart(
    tmp_path: Path, nats_bus: NatsBus
) -> None:
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(3)]
    async with running(LogStore(tmp_path / "ingest"), nats_bus, announce=False, crash=True) as node:
        count = await publish(node.ingest, logs, range(1, 4))
        count += await publish(node.ingest, logs, range(4, 6))
    assert await announced(nats_bus) == []

    async with running(LogStore(tmp_path / "ingest"), nats_bus) as node:

        async def recovered() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(recovered, what="the outbox announced after the restart")
        count += await publish(node.ingest, logs, range(6, 7))  # and new commits go on

        async def all_announced() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(all_announced, what="the new commit announced")
    assert await announced(nats_bus) == list(range(1, count + 1))


async def test_a_batch_announced_but_not_recorded_before_a_crash_is_announced_exactly_once(
    tmp_path: Path, nats_bus: NatsBus
) -> None:
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(3)]
    store = FlakyStore(tmp_path / "ingest")
    store.full = True  # the process dies between JetStream's ack and the cursor write
    async with running(store, nats_bus, crash=True) as node:
        count = await publish(node.ingest, logs, range(1, 4))
        count += await publish(node.ingest, logs, range(4, 9))

        async def published() -> bool:
            return len(await announced(nats_bus)) == count

        await eventually(published, what="the batch in the stream")
        assert store.outbox_cursor() == 0
    messages = await nats_bus.last_sequence()

    async with running(LogStore(tmp_path / "ingest"), nats_bus) as node:

        async def recorded() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(recorded, what="the re-announced batch recorded")
        assert node.announcer.healthy
    # Re-published with the same message ids: JetStream kept the first copies only.
    assert await nats_bus.last_sequence() == messages
    assert await announced(nats_bus) == list(range(1, count + 1))


async def test_a_commit_larger_than_a_message_is_split_the_same_way_after_a_crash(
    tmp_path: Path,
) -> None:
    bus = InMemoryBus(max_payload=4096)
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(40)]
    async with running(LogStore(tmp_path / "live"), bus) as node:
        count = await publish(node.ingest, logs, range(1, 2))

        async def announced_all() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(announced_all, what="the commit announced")
    live = [(m.subject, m.payload) for m in bus.messages]
    assert len(live) > 1 and all(len(payload) <= 4096 for _, payload in live)
    assert await announced(bus) == list(range(1, count + 1))

    # The same entries stored, then announced only from the outbox, give the same messages.
    replay = InMemoryBus(max_payload=4096)
    async with running(LogStore(tmp_path / "replay"), replay, announce=False, crash=True) as node:
        await publish(node.ingest, logs, range(1, 2))
    async with running(LogStore(tmp_path / "replay"), replay) as node:

        async def recovered() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(recovered, what="the commit announced from the outbox")
    assert [(m.subject, m.payload) for m in replay.messages] == live
    assert replay.message_ids == bus.message_ids


async def test_kill_9_while_nats_is_down_loses_no_event_and_repeats_none(tmp_path: Path) -> None:
    nats_server = EmbeddedNats(store_dir=tmp_path / "nats")
    await nats_server.start()
    address = f"127.0.0.1:{free_port()}"
    command = ["serve", "ingest", "--nats", nats_server.url, "--data-dir", str(tmp_path / "data")]
    author = FieldDefinitionLog(KeyPair(), log_id=0)
    process = NodeProcess(command, env={"PANDANODE_LISTEN": address})
    try:
        process.start()
        await process.wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            for seq_num in range(1, 4):
                await stub.Publish(author.entry(seq_num))

            async def first_announced() -> bool:
                return len(await announced_operation_ids(nats_server.url)) == 3

            await eventually(first_announced, what="the first entries announced")
            await nats_server.stop()
            # Stored and acknowledged while nothing can be announced; then the process dies.
            for seq_num in range(4, 9):
                await stub.Publish(author.entry(seq_num))
        process.kill()
        await nats_server.start()  # the same port and store

        process.start()
        await process.wait_serving(address)

        async def all_announced() -> list[str] | None:
            ids = await announced_operation_ids(nats_server.url)
            return ids if len(ids) >= 8 else None

        ids = await eventually(all_announced, what="every acknowledged entry announced")
        assert ids == [author.hashes[seq_num] for seq_num in range(1, 9)]
        assert process.terminate() == 0
        await assert_checks_clean(tmp_path / "data", nats_url=nats_server.url)
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill()
        await nats_server.stop()


async def test_commits_made_while_an_announcement_is_in_flight_go_out_as_one_message(
    tmp_path: Path,
) -> None:
    memory = InMemoryBus()
    bus = GatedBus(memory)
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(2)]
    async with running(LogStore(tmp_path / "ingest"), bus, linger=0) as node:
        count = await publish(node.ingest, logs, range(1, 2))

        async def in_flight() -> bool:
            return len(bus.attempts) == 1

        await eventually(in_flight, what="the first commit being announced")
        for seq_num in range(2, 5):  # three commits of two entries, while it is in flight
            count += await publish(node.ingest, logs, range(seq_num, seq_num + 1))
        bus.let_through(2)

        async def announced_all() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(announced_all, what="every commit announced")
        assert len(node.store.outbox(0, 100)) == 4, "four commits"
    assert sequences_by_message(memory) == [[1, 2], [3, 4, 5, 6, 7, 8]]


async def test_commits_within_the_linger_go_out_together_and_one_after_a_pause_at_once(
    tmp_path: Path,
) -> None:
    bus = InMemoryBus()
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(2)]
    async with running(LogStore(tmp_path / "ingest"), bus, linger=3600.0) as node:
        count = await publish(node.ingest, logs, range(1, 2))

        async def first_announced() -> bool:
            return len(bus.messages) == 1

        # The first commit after a pause does not wait for the (hour-long) linger.
        await eventually(first_announced, what="the first commit announced at once")
        count += await publish(node.ingest, logs, range(2, 3))
        count += await publish(node.ingest, logs, range(3, 4))
        assert len(bus.messages) == 1, "the next commits wait for the linger"
        await node.announcer.drain()  # stopping the node does not wait for it
        assert node.store.outbox_cursor() == count
    assert sequences_by_message(bus) == [[1, 2], [3, 4, 5, 6]]


async def test_a_group_cut_short_by_a_crash_is_announced_again_as_the_same_message(
    tmp_path: Path,
) -> None:
    memory = InMemoryBus()
    bus = GatedBus(memory)
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(2)]
    async with running(LogStore(tmp_path / "ingest"), bus, linger=0, crash=True) as node:
        count = await publish(node.ingest, logs, range(1, 2))

        async def in_flight() -> bool:
            return len(bus.attempts) == 1

        await eventually(in_flight, what="the first commit being announced")
        count += await publish(node.ingest, logs, range(2, 3))
        count += await publish(node.ingest, logs, range(3, 4))
        bus.let_through(1)  # the first commit goes out; the next two, one group, are held

        async def group_in_flight() -> bool:
            return len(bus.attempts) == 2

        await eventually(group_in_flight, what="the group of two commits being announced")
    group = bus.attempts[1]
    assert len(group) == 1, "one message for two commits"
    assert sequences_by_message(memory) == [[1, 2]]

    replay = InMemoryBus()
    async with running(LogStore(tmp_path / "ingest"), replay) as node:

        async def recovered() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(recovered, what="the group announced from the outbox")
    assert replay.message_ids == group, "the same message, with the same id"
    assert sequences_by_message(replay) == [[3, 4, 5, 6]]


async def test_a_group_announced_but_not_recorded_before_a_crash_is_announced_exactly_once(
    tmp_path: Path, nats_bus: NatsBus
) -> None:
    bus = GatedBus(nats_bus)
    logs = [FieldDefinitionLog(KeyPair(), log_id=log_id) for log_id in range(3)]
    store = FlakyStore(tmp_path / "ingest")
    store.full = True  # the process dies between JetStream's ack and the cursor write
    async with running(store, bus, linger=0, crash=True) as node:
        count = await publish(node.ingest, logs, range(1, 2))

        async def in_flight() -> bool:
            return len(bus.attempts) == 1

        await eventually(in_flight, what="the first commit being announced")
        count += await publish(node.ingest, logs, range(2, 3))
        count += await publish(node.ingest, logs, range(3, 5))
        bus.let_through(2)

        async def published() -> bool:
            return len(await announced(nats_bus)) == count

        await eventually(published, what="every commit in the stream")
        assert len(bus.attempts) == 2, "the commits made meanwhile went out as one group"
        assert store.outbox_cursor() == 3, "recorded with the group: the commit before it"
    messages = await nats_bus.last_sequence()

    async with running(LogStore(tmp_path / "ingest"), nats_bus) as node:

        async def recorded() -> bool:
            return node.store.outbox_cursor() == count

        await eventually(recorded, what="the re-announced group recorded")
    # Re-published with the same message id: JetStream kept the first copy only.
    assert await nats_bus.last_sequence() == messages
    assert await announced(nats_bus) == list(range(1, count + 1))
