"""The announcer: commits handed over in memory, the outbox for what a crash interrupted, and
failures that are logged, retried and shown — never a silently dead task."""

from __future__ import annotations

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
from pandanode.services.runtime.bus import Bus, InMemoryBus, NatsBus, connect_bus
from pandanode.services.runtime.events import OPERATIONS_INGESTED, parse_operations_ingested
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


@dataclass
class Running:
    store: LogStore
    ingest: Ingest
    announcer: Announcer


@asynccontextmanager
async def running(
    store: LogStore, bus: Bus, *, announce: bool = True, crash: bool = False
) -> AsyncIterator[Running]:
    """Ingest with an announcer on ``store``; ``crash`` leaves without draining or closing
    anything gracefully (what kill -9 leaves behind: the store and the stream)."""
    announcer = Announcer(store, bus)
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
