"""A read that waits for an operation returns only once the change was told to the listeners
(the listing index is one), also when batches are applied on the thread one after another: the
store holds a run before its listeners hear of it, and the next run may be committed while a
waiter is still waking up from the previous one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from pandanode.core import PinnedRelationList
from pandanode.services.query import materializer as materializer_module
from pandanode.services.query.engine import Applied, Engine
from pandanode.services.query.ingested import IngestedEvent
from pandanode.services.query.model import DocumentChange
from pandanode.services.runtime.bus import InMemoryBus
from tests.services.ingest.helpers import Author

from .materializer_helpers import Feed, corpus, running_materializer

_PER_MESSAGE = 4


async def test_a_waiter_returns_after_the_listeners_heard_of_its_operation_not_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    title, files, definition = corpus()[:3]
    author = Author()
    schema_id = f"post_{definition.hash}"
    posts = [
        author.create(schema_id, {"files": PinnedRelationList([]), "title": str(index)})
        for index in range(3 * _PER_MESSAGE)
    ]
    bus = InMemoryBus()
    feed = Feed(bus)
    feed.learn([title, files, definition, *posts])
    await feed.send_commit([title, files, definition])
    for start in range(0, len(posts), _PER_MESSAGE):
        await feed.send_commit(posts[start : start + _PER_MESSAGE])
    held_run = posts[_PER_MESSAGE]  # in the second message of posts: applied while a read waits
    wanted = posts[2 * _PER_MESSAGE]  # in the run after it

    # Every message goes to the thread, each in a run of its own (batch_size = its operations).
    monkeypatch.setattr(materializer_module, "INLINE_BYTES", 0)
    started, proceed = threading.Event(), threading.Event()
    apply = Engine.apply

    def gated(engine: Engine, events: Sequence[IngestedEvent], last: int) -> Applied:
        if any(event.decoded.id == held_run.hash for event in events):
            started.set()
            proceed.wait(30)
        return apply(engine, events, last)

    monkeypatch.setattr(Engine, "apply", gated)

    told: set[str] = set()
    loop = asyncio.get_running_loop()

    def listener(change: DocumentChange) -> None:
        told.add(change.document.document_id)
        if change.document.document_id == held_run.hash:
            # Keep the loop busy (not the thread) right after the held run is told, so the next
            # run is committed before a waiter woken by the held run's end gets to look.
            loop.call_soon(time.sleep, 0.3)

    async with running_materializer(
        tmp_path / "query", bus, batch_size=_PER_MESSAGE
    ) as materializer:
        materializer.add_listener(listener)
        assert await asyncio.to_thread(started.wait, 30), "the held run never started"

        async def read() -> tuple[bool, bool]:
            done = await materializer.wait_for_operation(wanted.hash, timeout=30)
            return done, wanted.hash in told  # looked at before anything else runs

        reader = asyncio.create_task(read())
        for _ in range(5):
            await asyncio.sleep(0)  # the read looks at the store and waits
        proceed.set()

        done, was_told = await reader
        assert done
        assert was_told, "the read returned before the listeners heard of its operation"
