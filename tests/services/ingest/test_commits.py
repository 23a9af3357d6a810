"""Where the writer commits: a lone unary call, when calls come slower than commits take, on
the event loop (by the call itself when the writer is idle); anything more on the commit thread;
and a slow disk never twice in a row on the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from pandanode.core import KeyPair
from pandanode.core.entry import Entry, verify_entries
from pandanode.core.errors import Reason, SignatureError
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


def test_a_lone_call_soon_after_calls_came_together_is_committed_on_the_thread() -> None:
    assert not commits_inline(
        batch=1, waiting=1, last_commit=0.0002, idle=1.0, since_concurrent=0.001
    )
    assert commits_inline(batch=1, waiting=1, last_commit=0.0002, idle=1.0, since_concurrent=60)


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


def record_signature_checks(ingest: Ingest) -> list[tuple[str, int]]:
    """Record the thread and the number of entries of each signature check of ``ingest``."""
    checks: list[tuple[str, int]] = []

    def recording(entries: Sequence[Entry]) -> list[SignatureError | None]:
        checks.append((threading.current_thread().name, len(entries)))
        return verify_entries(entries)

    ingest.verify_entries = recording
    return checks


async def test_calls_in_flight_together_have_their_signatures_checked_together_off_the_loop(
    ingest: Ingest,
) -> None:
    assert isinstance(ingest.store, RecordingStore)
    ingest.store.delay = SLOW / 10  # the calls after the first come faster than it commits
    checks = record_signature_checks(ingest)
    authors = [FieldDefinitionLog(KeyPair(), log_id=0) for _ in range(8)]
    requests = [author.entry(1) for author in authors]
    await asyncio.gather(*(ingest.publish(r.entry, r.operation) for r in requests))
    loop = threading.current_thread().name
    first, second, *rest = checks
    assert first == (loop, 1), "the first found the writer idle"
    assert second == (loop, 1), "the second found no other call waiting"
    assert len(rest) == 1, "the other six, waiting together, in one check"
    thread, count = rest[0]
    assert thread.startswith("verify")
    assert count == 6


async def test_a_forged_entry_among_calls_in_flight_together_is_rejected_as_alone(
    ingest: Ingest,
) -> None:
    assert isinstance(ingest.store, RecordingStore)
    ingest.store.delay = SLOW / 10  # the calls after the first come faster than it commits
    authors = [FieldDefinitionLog(KeyPair(), log_id=0) for _ in range(6)]
    requests = [(r.entry, r.operation) for r in (author.entry(1) for author in authors)]
    forged = bytearray(requests[3][0])
    forged[-1] ^= 0x01  # a bit of the signature
    requests[3] = (bytes(forged), requests[3][1])
    outcomes = await asyncio.gather(
        *(ingest.publish(entry, operation) for entry, operation in requests),
        return_exceptions=True,
    )
    rejected = outcomes.pop(3)
    assert isinstance(rejected, SignatureError)
    assert rejected.reason == Reason.INVALID_SIGNATURE
    for outcome in outcomes:
        assert not isinstance(outcome, BaseException), outcome
        assert ingest.store.operation_document(bytes.fromhex(outcome.operation_id)) is not None
    assert ingest.store.max_log_id(authors[3].key_pair.public_key()) is None, "nothing stored"


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


async def test_calls_that_keep_coming_together_are_gathered_into_one_commit(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "_GATHER", SLOW)
    monkeypatch.setattr(ingest_module, "_CONCURRENT_HOLD", 3600.0)
    assert isinstance(ingest.store, RecordingStore)
    ingest.store.delay = SLOW / 10  # the calls after the first come faster than it commits
    authors = [FieldDefinitionLog(KeyPair(), log_id=0) for _ in range(9)]

    async def publish(author: FieldDefinitionLog, seq_num: int, turns: int) -> None:
        for _ in range(turns):  # arrives this many event-loop turns after the first
            await asyncio.sleep(0)
        request = author.entry(seq_num)
        await ingest.publish(request.entry, request.operation)

    # The first finds the writer idle; the other eight are committed together.
    await asyncio.gather(*(publish(author, 1, 0) for author in authors))
    assert len(threads(ingest)) == 2
    # Eight again, one per turn: the writer waits for all eight instead of taking the first.
    await asyncio.gather(*(publish(author, 2, turns) for turns, author in enumerate(authors[1:])))
    assert len(threads(ingest)) == 3
    assert threads(ingest)[2].startswith("commit"), "calls in flight together: on the thread"


async def test_a_lone_call_does_not_wait_to_be_gathered(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest_module, "_GATHER", 3600.0)
    monkeypatch.setattr(ingest_module, "_CONCURRENT_HOLD", 0.0)
    authors = [FieldDefinitionLog(KeyPair(), log_id=0) for _ in range(4)]
    await asyncio.gather(*(ingest.publish(a.entry(1).entry, a.entry(1).operation) for a in authors))
    # Calls came together, but not lately: the next one alone is answered at once.
    request = authors[0].entry(2)
    result = await asyncio.wait_for(ingest.publish(request.entry, request.operation), 30)
    assert ingest.store.operation_document(bytes.fromhex(result.operation_id)) is not None
