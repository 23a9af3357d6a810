"""The outbox: announce every stored entry on JetStream, even across crashes.

Ingest writes an outbox record in the same RocksDB batch as the entry. This task publishes the
records in order (pipelined, each with the entry hash as JetStream message id), and only after
JetStream acknowledged them advances the cursor. After a crash it starts again from the cursor;
what was published twice is dropped by the stream's duplicate window, and consumers are
idempotent anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pandanode.services.runtime.bus import Bus
from pandanode.services.runtime.events import OperationIngested, operation_ingested_subject

from .store import LogStore

__all__ = ["Announcer"]

log = logging.getLogger(__name__)

_CHUNK = 256


class Announcer:
    """Publishes ``operation.ingested`` events for stored entries, from the outbox cursor on."""

    def __init__(self, store: LogStore, bus: Bus, wake: asyncio.Event) -> None:
        self._store = store
        self._bus = bus
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self.announced = store.outbox_cursor()

    async def start(self) -> None:
        """Start announcing in the background."""
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="ingest-outbox")

    async def stop(self) -> None:
        """Announce what is pending (briefly), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), timeout=5.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def drain(self) -> None:
        """Wait until every stored entry was announced."""
        while self._store.outbox(self.announced, 1):
            self._wake.set()
            await asyncio.sleep(0.01)  # poll: the announcer is publishing

    def _event(self, sequence: int, operation_id: str) -> tuple[str, bytes] | None:
        ref = self._store.operation_ref(operation_id)
        stored = None if ref is None else self._store.entry(ref.public_key, ref.log_id, ref.seq_num)
        if ref is None or stored is None:  # pragma: no cover - written in one batch
            log.error("outbox names %s, which is not stored", operation_id)
            return None
        event = OperationIngested(
            entry=stored.entry,
            operation=stored.operation,
            operation_id=operation_id,
            document_id=ref.document_id,
            schema_id=ref.schema_id,
            public_key=ref.public_key,
            log_id=ref.log_id,
            seq_num=ref.seq_num,
            sequence=sequence,
        )
        return operation_ingested_subject(ref.public_key, ref.log_id), event.SerializeToString()

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                records = self._store.outbox(self.announced, _CHUNK)
                if not records:
                    break
                try:
                    await self._publish(records)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning("announcing failed, retrying in %.2fs: %s", backoff, err)
                    await asyncio.sleep(backoff)  # back-off before retrying NATS
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                previous, self.announced = self.announced, records[-1][0]
                self._store.advance_outbox(previous, self.announced)

    async def _publish(self, records: list[tuple[int, str]]) -> None:
        # Pipelined: every publish goes out at once and the acks are awaited together.
        acks = []
        for sequence, operation_id in records:
            event = self._event(sequence, operation_id)
            if event is None:
                continue
            subject, payload = event
            acks.append(
                await self._bus.js.publish_async(
                    subject, payload, headers={"Nats-Msg-Id": operation_id}
                )
            )
        await asyncio.wait_for(asyncio.gather(*acks), timeout=10.0)
