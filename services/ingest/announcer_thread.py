"""The announcer on a thread of its own, with its own event loop and NATS connection.

On the ingest process's event loop the announcer's work — grouping commits, building the
messages, publishing them and reading JetStream's acknowledgements on the shared NATS
connection, writing the outbox cursor — ran between the gRPC calls it delays: ~200 µs of the
event loop's CPU per entry at one unary call in flight (a message for every few commits). Here
it runs on a thread with its own loop and connection: the writer hands each commit over in
memory (:meth:`Announcer.committed`, which wakes the thread only when it waits for commits),
and the socket and RocksDB calls of announcing, which release the GIL, overlap the event loop's
work. Nothing else changes: the outbox, written in the same synced batch as the entries, is the
crash-recovery path (:mod:`.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Sequence

from pandanode.services.runtime.bus import Bus
from pandanode.services.runtime.events import IngestedOperation

from .outbox import LINGER, MEMORY_BUDGET, Announcer
from .store import LogStore

__all__ = ["AnnouncerThread"]


class AnnouncerThread:
    """An :class:`Announcer` run on a thread of its own (same interface for the service).

    Args:
        store: The log store (RocksDB may be written from several threads).
        connect: Opens the bus the announcer publishes on; called on the thread's loop.
        memory_budget: See :class:`Announcer`.
        linger: See :class:`Announcer`.
    """

    def __init__(
        self,
        store: LogStore,
        connect: Callable[[], Awaitable[Bus]],
        *,
        memory_budget: int = MEMORY_BUDGET,
        linger: float = LINGER,
    ) -> None:
        self._store = store
        self._connect = connect
        self._budget = memory_budget
        self._linger = linger
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="announcer", daemon=True)
        self._bus: Bus | None = None
        self._announcer: Announcer | None = None

    @property
    def healthy(self) -> bool:
        """See :attr:`Announcer.healthy` (False until started)."""
        return self._announcer is not None and self._announcer.healthy

    @property
    def last_error(self) -> str | None:
        """See :attr:`Announcer.last_error`."""
        return None if self._announcer is None else self._announcer.last_error

    @property
    def running(self) -> bool:
        """Whether the thread and its announcer task run."""
        return self._thread.is_alive() and self._announcer is not None and self._announcer.running

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _run(self, coroutine: Awaitable[None]) -> None:
        """Run ``coroutine`` on the thread's loop and wait for it here."""

        async def wrapper() -> None:
            await coroutine

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapper(), self._loop))

    async def start(self) -> None:
        """Start the thread, connect its bus and start announcing (see :meth:`Announcer.start`).

        Raises:
            UnavailableError: the bus could not be connected.
        """
        self._thread.start()
        try:
            await self._run(self._open())
        except BaseException:
            await self._end()
            raise

    async def _open(self) -> None:
        self._bus = await self._connect()
        loop = self._loop
        announcer = Announcer(
            self._store,
            self._bus,
            memory_budget=self._budget,
            linger=self._linger,
            notify=loop.call_soon_threadsafe,
        )
        await announcer.start()
        self._announcer = announcer

    def committed(self, operations: Sequence[IngestedOperation]) -> None:
        """Hand a commit over (from the writer's thread); see :meth:`Announcer.committed`."""
        if self._announcer is not None:
            self._announcer.committed(operations)

    async def drain(self) -> None:
        """See :meth:`Announcer.drain`."""
        if self._announcer is not None:
            await self._run(self._announcer.drain())

    async def stop(self, timeout: float = 5.0) -> None:
        """Announce what is pending (for at most ``timeout`` seconds), stop, close the bus."""
        if self._announcer is not None:
            with contextlib.suppress(Exception):
                await self._run(self._announcer.stop(timeout))
        await self._end()

    async def _end(self) -> None:
        if self._bus is not None:
            bus, self._bus = self._bus, None
            with contextlib.suppress(Exception):
                await self._run(bus.close())
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join)
