"""Helpers for the materializer tests: hand-fed event streams, store snapshots, change recorders."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pandanode.core import PinnedRelationList, decode_operation
from pandanode.core.document import DocumentOperation
from pandanode.services.query.materializer import (
    DEFAULT_ACK_DELAY,
    DEFAULT_CALL_TIMEOUT,
    Materializer,
)
from pandanode.services.query.model import DocumentChange
from pandanode.services.query.store import QueryStore
from pandanode.services.runtime.bus import Bus
from pandanode.services.runtime.events import IngestedOperation, operations_ingested
from tests.services.ingest.helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    Signed,
)
from tests.services.support import eventually

__all__ = [
    "Feed",
    "corpus",
    "Recorder",
    "document_operation",
    "running_materializer",
    "snapshot",
    "stream_last_seq",
    "wait_caught_up",
]


def document_operation(signed: Signed) -> DocumentOperation:
    """The operation of a signed entry, as :func:`pandanode.core.document.materialize` takes it."""
    return DocumentOperation(signed.hash, signed.public_key, decode_operation(signed.operation))


def snapshot(store: QueryStore, *, checkpoint: bool = True) -> list[tuple[bytes, bytes]]:
    """Every record of a query store (without the checkpoint ``C`` unless asked for)."""
    return [(k, v) for k, v in store.dump() if checkpoint or k != b"C"]


async def stream_last_seq(bus: Bus) -> int:
    """The sequence of the last message in the event stream."""
    return await bus.last_sequence()


async def wait_caught_up(materializer: Materializer, bus: Bus, timeout: float = 15.0) -> None:
    """Wait until the materializer has applied every event the stream holds now, and told
    its listeners."""
    target = await stream_last_seq(bus)

    async def caught_up() -> bool:
        return materializer.checkpoint >= target and materializer.settled

    await eventually(
        caught_up, timeout=timeout, what=f"the materializer at stream sequence {target}"
    )


@dataclass
class Feed:
    """Publishes ``operations.ingested`` messages made by hand, one operation each, in any
    order (as another ingest might), so a test controls exactly what the materializer sees.

    :meth:`learn` the operations in causal order first (to know their documents), then
    :meth:`send` them in any order.
    """

    bus: Bus
    documents: dict[str, str] = field(default_factory=dict)
    sent: int = 0

    def learn(self, signed: Sequence[Signed]) -> None:
        """Learn the documents of operations, given in causal order."""
        for item in signed:
            operation = decode_operation(item.operation)
            self.documents[item.hash] = (
                self.documents[operation.previous[0]] if operation.previous else item.hash
            )

    def _event(self, signed: Signed) -> IngestedOperation:
        self.sent += 1
        return IngestedOperation(
            entry=signed.entry,
            operation=signed.operation,
            operation_id=signed.hash,
            document_id=self.documents[signed.hash],
            schema_id=decode_operation(signed.operation).schema_id,
            public_key=signed.public_key,
            log_id=signed.log_id,
            seq_num=signed.seq_num,
            sequence=self.sent,
        )

    async def send(self, signed: Signed, *, message_id: str | None = None) -> int:
        """Announce ``signed``; returns its stream sequence. A new ``message_id`` duplicates."""
        (message,) = operations_ingested([self._event(signed)], self.bus.max_payload)
        # Another ingest's sequence counter: the operation's hash keeps a resend deduplicated.
        message = dataclasses.replace(message, message_id=message_id or signed.hash)
        (sequence,) = await self.bus.publish([message])
        return sequence

    async def send_commit(self, signed: Sequence[Signed]) -> list[int]:
        """Announce ``signed`` as one commit would be (one message, or more if it is large)."""
        events = [self._event(item) for item in signed]
        return await self.bus.publish(operations_ingested(events, self.bus.max_payload))


@dataclass
class Recorder:
    """A change listener that keeps what it is given."""

    changes: list[DocumentChange] = field(default_factory=list)

    def __call__(self, change: DocumentChange) -> None:
        self.changes.append(change)


@asynccontextmanager
async def running_materializer(
    path: Path,
    bus: Bus,
    *,
    durable: str = "query",
    batch_size: int = 256,
    ack_delay: float = DEFAULT_ACK_DELAY,
    fetch_timeout: float = 5.0,
    call_timeout: float = DEFAULT_CALL_TIMEOUT,
) -> AsyncIterator[Materializer]:
    """A materializer over a query store at ``path``, stopped and closed afterwards."""
    store = QueryStore(path)
    materializer = Materializer(
        store,
        bus,
        durable=durable,
        batch_size=batch_size,
        ack_delay=ack_delay,
        fetch_timeout=fetch_timeout,
        call_timeout=call_timeout,
    )
    try:
        await materializer.start()
        yield materializer
    finally:
        started = time.monotonic()
        await materializer.stop()
        store.close()
        assert time.monotonic() - started < 5, "stopping the materializer took too long"


def corpus() -> list[Signed]:
    """A bit of everything, in causal order: a schema with a pinned relation list, a blob,
    concurrent updates, a merge, a long chain, a delete, a pin to a later view."""
    alice, bob, carol = Author(), Author(), Author()
    title = alice.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    files = alice.create(
        FIELD_DEFINITION, {"name": "files", "type": "pinned_relation_list(blob_v1)"}
    )
    definition = alice.create(
        SCHEMA_DEFINITION,
        {
            "description": "Posts with files",
            "fields": PinnedRelationList([[title.hash], [files.hash]]),
            "name": "post",
        },
    )
    schema_id = f"post_{definition.hash}"
    pieces = [bob.create("blob_piece_v1", {"data": bytes([i]) * 1000}) for i in range(3)]
    blob = bob.create(
        "blob_v1",
        {
            "length": 3000,
            "mime_type": "application/octet-stream",
            "pieces": PinnedRelationList([[p.hash] for p in pieces]),
        },
    )
    post = alice.create(schema_id, {"files": PinnedRelationList([[blob.hash]]), "title": "p"})
    by_bob = bob.update(schema_id, post.hash, [post.hash], {"title": "bob"})
    by_carol = carol.update(schema_id, post.hash, [post.hash], {"title": "carol"})
    merge = alice.update(schema_id, post.hash, [by_bob.hash, by_carol.hash], {"title": "m"})
    chain = [carol.create(schema_id, {"files": PinnedRelationList([]), "title": "0"})]
    for index in range(1, 15):
        chain.append(
            carol.update(schema_id, chain[0].hash, [chain[-1].hash], {"title": str(index)})
        )
    doomed = bob.create(schema_id, {"files": PinnedRelationList([]), "title": "doomed"})
    deleted = bob.delete(schema_id, doomed.hash, [doomed.hash])
    retyped = bob.update("blob_v1", blob.hash, [blob.hash], {"mime_type": "text/plain"})
    pinning_old_blob = alice.create(
        schema_id, {"files": PinnedRelationList([[blob.hash], [retyped.hash]]), "title": "both"}
    )
    return [
        title,
        files,
        definition,
        *pieces,
        blob,
        post,
        by_bob,
        by_carol,
        merge,
        *chain,
        doomed,
        deleted,
        retyped,
        pinning_old_blob,
    ]
