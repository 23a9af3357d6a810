"""Where the writer commits: a lone unary call, when calls come slower than commits take, on
the event loop (by the call itself when the writer is idle); anything more on the commit thread;
and a slow disk never twice in a row on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pandanode.core import KeyPair
from pandanode.services.ingest import ingest as ingest_module
from pandanode.services.ingest.ingest import Ingest, commits_inline
from pandanode.services.ingest.store import LogStore, WriteBatchView
from pandanode.services.runtime.settings import Settings
from tests.services.support import FieldDefinitionLog

# What counts as slow in these tests (the limit is patched to it): far above what a commit takes
# on a busy machine.
SLOW = 0.5


class RecordingStore(LogStore):
    """A log store that records the thread of each commit; ``slow`` commits take longer."""

    slow = False
    delay = 0.0

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.threads: list[str] = []

    def commit(self, view: WriteBatchView, *, sync: bool = True) -> None:
        self.threads.append(threading.current_thread().name)
        super().commit(view, sync=sync)
        if self.slow:
            time.sleep(SLOW * 1.2)  # a disk that takes this long to sync
        elif self.delay:
            time.sleep(self.delay)  # slower than the calls come, not slow


@pytest.fixture
async def ingest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Ingest]:
    monkeypatch.setattr(ingest_module, "_INLINE_SYNC", SLOW)
    store = RecordingStore(tmp_path / "ingest")
    ingest = Ingest(store, Settings())
    await ingest.start()
    try:
        yield ingest
    finally:
        await ingest.stop()
        store.close()


def threads(ingest: Ingest) -> list[str]:
    assert isinstance(ingest.store, RecordingStore)
    return ingest.store.threads


def test_a_lone_call_after_an_idle_spell_longer_than_a_commit_is_committed_on_the_loop() -> None:
    assert commits_inline(batch=1, waiting=1, last_commit=0.0002, idle=0.001)


def test_calls_coming_faster_than_commits_take_are_committed_on_the_thread() -> None:
    assert not commits_inline(batch=1, waiting=1, last_commit=0.0002, idle=0.0001)


def test_a_batch_of_several_or_more_calls_waiting_are_committed_on_the_thread() -> None:
    assert not commits_inline(batch=2, waiting=2, last_commit=0.0002, idle=1.0)
    assert not commits_inline(batch=1, waiting=2, last_commit=0.0002, idle=1.0)
    assert not commits_inline(batch=1, waiting=0, last_commit=0.0002, idle=1.0), "a stream's"


def test_after_a_slow_commit_even_a_lone_call_is_committed_on_the_thread() -> None:
    assert not commits_inline(batch=1, waiting=1, last_commit=SLOW, idle=3600.0)


async def test_the_first_lone_unary_call_is_committed_on_the_event_loop(ingest: Ingest) -> None:
    request = FieldDefinitionLog(KeyPair(), log_id=0).entry(1)
    result = await ingest.publish(request.entry, request.operation)
    assert threads(ingest) == [threading.current_thread().name]
    assert ingest.store.operation_document(bytes.fromhex(result.operation_id)) is not None


async def test_calls_in_flight_together_are_committed_together_on_the_commit_thread(
    ingest: Ingest,
) -> None:
    assert isinstance(ingest.store, RecordingStore)
    ingest.store.delay = SLOW / 10  # the calls after the first come faster than it commits
    authors = [FieldDefinitionLog(KeyPair(), log_id=0) for _ in range(8)]
    requests = [author.entry(1) for author in authors]
    await asyncio.gather(*(ingest.publish(r.entry, r.operation) for r in requests))
    first, *rest = threads(ingest)
    assert first == threading.current_thread().name, "the first found the writer idle"
    assert len(rest) == 1, "the other seven in one commit"
    assert rest[0].startswith("commit")


async def test_a_call_that_finds_the_writer_idle_is_stored_and_handed_to_the_announcer(
    tmp_path: Path,
) -> None:
    store = LogStore(tmp_path / "ingest")
    handed: list[list[str]] = []
    ingest = Ingest(
        store, Settings(), on_committed=lambda ops: handed.append([op.operation_id for op in ops])
    )
    await ingest.start()
    try:
        request = FieldDefinitionLog(KeyPair(), log_id=0).entry(1)
        result = await ingest.publish(request.entry, request.operation)
        assert handed == [[result.operation_id]]
        assert store.operation_document(bytes.fromhex(result.operation_id)) is not None
    finally:
        await ingest.stop()
        store.close()


async def test_after_a_slow_commit_lone_calls_are_committed_off_the_event_loop(
    ingest: Ingest,
) -> None:
    assert isinstance(ingest.store, RecordingStore)
    author = FieldDefinitionLog(KeyPair(), log_id=0)

    async def publish(seq_num: int) -> None:
        request = author.entry(seq_num)
        await ingest.publish(request.entry, request.operation)

    ingest.store.slow = True
    await publish(1)  # on the event loop: nothing said the disk was slow
    await publish(2)  # on the commit thread: the last commit was slow
    ingest.store.slow = False
    await publish(3)  # still there: so was the one before
    assert threads(ingest)[0] == threading.current_thread().name
    assert threads(ingest)[1].startswith("commit")
    assert threads(ingest)[2].startswith("commit")
