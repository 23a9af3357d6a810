"""The session driver against a scripted peer and a stand-in ingest (no network): what waits
for ingest goes as one batch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import cast

from pandanode.core import KeyPair
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.services.replication.driver import SessionIO, SessionRecord, run_session
from pandanode.services.replication.ingest_client import IngestClient, PublishOutcome
from pandanode.services.replication.session import Log, SessionConfig, Target
from tests.services.support import FieldDefinitionLog, eventually


class ScriptedPeer:
    """A transport whose peer sends what the test puts in ``inbox``."""

    def __init__(self, *, close_with_us: bool = True) -> None:
        self.inbox: asyncio.Queue[pb.SyncMessage | None] = asyncio.Queue()
        self.sent: list[pb.SyncMessage] = []
        self.closed = False
        self._close_with_us = close_with_us

    async def send(self, message: pb.SyncMessage) -> None:
        self.sent.append(message)

    async def receive(self) -> pb.SyncMessage | None:
        return await self.inbox.get()

    async def close_send(self) -> None:
        self.closed = True
        if self._close_with_us:
            self.inbox.put_nowait(None)


class SlowIngest:
    """Stores everything; each publish waits until the test lets it through."""

    max_message_bytes = 4 * 1024 * 1024

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.gate = asyncio.Event()

    async def log_heights(self, target: Target) -> dict[Log, tuple[int, str]]:
        return {}

    async def read_missing(
        self, target: Target, peer_heights: Mapping[Log, int], max_items: int
    ) -> AsyncIterator[list[tuple[Log, int, ipb.PublishRequest]]]:
        return
        yield

    def publisher(self) -> SlowIngest:
        return self

    async def publish(self, items: list[ipb.PublishRequest]) -> list[PublishOutcome]:
        self.batches.append(len(items))
        await self.gate.wait()
        return [PublishOutcome(stored=True) for _ in items]

    def close(self) -> None:
        pass


async def test_entries_waiting_for_a_busy_ingest_go_to_it_as_one_batch() -> None:
    peer, ingest = ScriptedPeer(), SlowIngest()
    log = FieldDefinitionLog(KeyPair(), 0)
    entries = [log.entry(seq) for seq in range(1, 8)]
    io = SessionIO(ingest=cast(IngestClient, ingest), idle_timeout=30.0)
    record = SessionRecord(initiator=False)
    session = asyncio.create_task(run_session(SessionConfig(node_id="a" * 64), peer, io, record))
    announce = pb.Announce(protocol_version=1, node_id="b" * 64, schema_ids=["*"])
    for message in (
        pb.SyncMessage(announce=announce),
        pb.SyncMessage(have_digest=pb.HaveDigest(digest=b"x" * 32)),
        pb.SyncMessage(have=pb.Have(last=True)),
    ):
        peer.inbox.put_nowait(message)

    async def publishing() -> bool:
        return bool(ingest.batches)

    # The first message goes to ingest alone; three more arrive while it is busy.
    peer.inbox.put_nowait(pb.SyncMessage(entries=pb.Entries(items=entries[:1])))
    await eventually(publishing, what="the first batch at ingest")
    for start in (1, 3, 5):
        peer.inbox.put_nowait(pb.SyncMessage(entries=pb.Entries(items=entries[start : start + 2])))

    async def all_read() -> bool:
        return record.received_kinds["entries"] == 4

    await eventually(all_read, what="every Entries message read")
    ingest.gate.set()
    peer.inbox.put_nowait(pb.SyncMessage(sync_done=pb.SyncDone()))
    state = await asyncio.wait_for(session, 30)
    assert state.reason == ""
    assert ingest.batches == [1, 6]
    assert state.entries_received == 7


async def test_a_completed_session_ends_only_once_the_peer_closed_its_side() -> None:
    # Ending earlier tears the stream down, and the peer's side with what it has not stored.
    peer, ingest = ScriptedPeer(close_with_us=False), SlowIngest()
    ingest.gate.set()
    io = SessionIO(ingest=cast(IngestClient, ingest), idle_timeout=30.0)
    session = asyncio.create_task(
        run_session(SessionConfig(node_id="a" * 64), peer, io, SessionRecord(initiator=True))
    )
    announce = pb.Announce(protocol_version=1, node_id="b" * 64, schema_ids=["*"])
    for message in (
        pb.SyncMessage(announce=announce),
        pb.SyncMessage(have_digest=pb.HaveDigest(digest=b"x" * 32)),
        pb.SyncMessage(have=pb.Have(last=True)),
        pb.SyncMessage(sync_done=pb.SyncDone()),
    ):
        peer.inbox.put_nowait(message)

    async def closed() -> bool:
        return peer.closed

    await eventually(closed, what="our side closed")
    await asyncio.sleep(0)  # one loop turn: a session not waiting for the peer would end here
    assert not session.done()
    peer.inbox.put_nowait(None)
    state = await asyncio.wait_for(session, 30)
    assert state.reason == ""
    assert any(m.WhichOneof("message") == "sync_done" for m in peer.sent)
