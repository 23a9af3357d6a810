"""The materializer: consumes ``operations.ingested`` events into document views (spec §6, §10).

It consumes the event stream with a durable consumer of the bus
(:mod:`pandanode.services.runtime.bus`) and applies whatever has arrived — whole messages, up
to about a batch of operations, without waiting for more — in one RocksDB write batch together
with the checkpoint (the stream sequence of the last applied message), then acknowledges. Each
message holds the operations of the ingest commits announced together (one commit, or those
made within ``announce_linger``), applied in their order. Not waiting keeps the lag
low when events trickle in; under load batches fill up by themselves. Messages at or below the
checkpoint are skipped, so a redelivery is harmless (and an operation already stored is skipped
too, so a re-published batch is); on start (and after any failure) the durable consumer is
re-created at ``checkpoint + 1``, so the query store, not JetStream, says where to resume.

What applying a batch does is the batch engine's (:mod:`.engine`), on top of the pure view
rules (:mod:`.views`); the operations and their positions are read by :mod:`.ingested`. Reads
of the views are the query use cases' (:class:`~.service.Query` reads the store directly).

After each commit, :meth:`Materializer.add_listener` callbacks receive the batch's
:class:`~.model.DocumentChange` objects in stream order (one per document whose current view
changed; changes within one batch are collapsed), and ``wait_for_*`` callers are woken.

It stays one module (past 500 lines): the consumer loop, the choice between applying a batch on
the event loop or on the apply thread, the checkpoint and the wake-ups of listeners and waiters
share one ordering rule (apply, commit, then notify, per batch in stream order), which is easiest
to keep when they sit side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from pandanode.services.runtime import metrics
from pandanode.services.runtime.bus import Bus, Consumer, Delivery, DeliveryGapError
from pandanode.services.runtime.events import OPERATIONS_INGESTED
from pandanode.services.runtime.guard import RateLimitedLog

from .engine import Applied, Engine
from .ingested import POSITIONS_PER_MESSAGE, IngestedEvent, parse_runs
from .model import DocumentChange
from .reads import Blob
from .store import QueryStore
from .views import (
    affected_documents,
    build_view,
    change_kind,
    fold_into_view,
    linear_extension,
    pinned_view_ids,
)

__all__ = [
    "POSITIONS_PER_MESSAGE",
    "Blob",
    "ChangeListener",
    "IngestedEvent",
    "Materializer",
    "affected_documents",
    "build_view",
    "change_kind",
    "fold_into_view",
    "linear_extension",
    "pinned_view_ids",
    "rebuild",
]
# The view rules, the events and Blob moved to their own modules; they stay importable from
# here for the modules and tools that import them from the materializer.

log = logging.getLogger(__name__)
_STORE_FAILURES = RateLimitedLog(log)
_ACK_FAILURES = RateLimitedLog(log)
_STALL_CHECK_FAILURES = RateLimitedLog(log)

DEFAULT_DURABLE: Final = "query"
DEFAULT_BATCH_SIZE: Final = 256
_FETCH_TIMEOUT: Final = 5.0
DEFAULT_CALL_TIMEOUT: Final = 120.0
"""Seconds one call to the bus may take in all before it counts as failed and is tried again.

A backstop: the bus bounds each NATS request itself (re-creating the consumer is three of them,
each retried up to 30 s while JetStream does not answer); nothing the materializer waits for on
NATS may hang it without a line in the log."""
_FIRST_BACKOFF: Final = 0.1
_MAX_BACKOFF: Final = 5.0
INLINE_BYTES: Final = 64 * 1024
"""Messages of at most this many bytes in all (~100 short entries, a few ms) are applied on the
event loop, not on the thread.

The thread does not let reads run meanwhile (applying holds the GIL; the loop gets it back only
every switch interval, 5 ms), and handing a batch over and back costs two thread wake-ups,
which on a busy machine wait for a core: in ``query.materialization_lag`` at 1,000/s (load
~17) a 4 KiB limit gave Publish OK → watched p50 116-153 ms, this one 20-21 ms."""
ADMIT_WINDOW: Final = 0.001
"""Seconds the materializer steps aside at a time, after a batch applied on the event loop,
while the query service keeps receiving calls (see :meth:`Materializer._give_way`)."""
DEFAULT_ACK_DELAY: Final = 0.05
"""Seconds an acknowledgement may wait for more messages to cover (see :meth:`_acknowledge`)."""

ChangeListener = Callable[[DocumentChange], None]
"""A callback that receives every change, in stream order, after it is committed."""


class Materializer:
    """Keeps the query store up to date with the event stream, and tells who waits for it.

    Args:
        store: The query store (owned by this object once started).
        bus: The event bus.
        durable: The name of the durable consumer; every query replica needs its own.
        batch_size: About how many operations to commit at once (whole messages).
        ack_delay: Seconds an acknowledgement waits to cover the messages applied meanwhile.
        fetch_timeout: Seconds without a message after which the stream is asked whether
            events were left undelivered (then the consumer is re-created at the checkpoint).
        call_timeout: Seconds a call to the bus may take before it counts as failed.
    """

    def __init__(
        self,
        store: QueryStore,
        bus: Bus,
        *,
        durable: str = DEFAULT_DURABLE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        ack_delay: float = DEFAULT_ACK_DELAY,
        fetch_timeout: float = _FETCH_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
    ) -> None:
        self.store = store
        self._bus = bus
        self._durable = durable
        self._batch_size = batch_size
        self._fetch_timeout = fetch_timeout
        self._call_timeout = call_timeout
        self._engine: Engine | None = None
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applying = False
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="materializer")
        self._listeners: list[ChangeListener] = []
        self._operation_waiters: dict[str, set[asyncio.Future[None]]] = {}
        # Set while a batch is being applied: its commit is visible in the store before its
        # listeners were called, so waiters hold back until both happened.
        self._in_flight: asyncio.Future[None] | None = None
        self._lag_gauge = metrics.stream_backlog_events.labels(durable)
        # The newest applied message not acknowledged yet, how many messages that covers, and
        # the timer or task that acknowledges it (see _acknowledge).
        self._ack_delay = ack_delay
        self._to_ack: Delivery | None = None
        self._unacked = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_task: asyncio.Task[None] | None = None
        # Calls the query service received (note_call), and how many it had when the
        # materializer last stepped aside for them (see _give_way).
        self._calls = 0
        self._calls_seen = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Position the durable consumer at the checkpoint and start applying events."""
        loop = asyncio.get_running_loop()
        self._engine = await loop.run_in_executor(self._pool, Engine, self.store)
        async with asyncio.timeout(self._call_timeout):
            self._consumer = await self._subscribe()
        self._task = asyncio.create_task(self._run(), name="query-materializer")

    async def stop(self) -> None:
        """Finish the batch being applied (if any), then stop consuming.

        The durable consumer is deleted too: :meth:`start` re-creates it at the checkpoint
        anyway.
        """
        self._stopping = True
        if self._task is not None:
            if not self._applying:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._unsubscribe()
        self._pool.shutdown(wait=True)

    @property
    def checkpoint(self) -> int:
        """The stream sequence of the last message applied and committed."""
        return self.store.checkpoint()

    @property
    def settled(self) -> bool:
        """Whether the listeners were told every committed change (no batch is in flight).

        A batch's commit is visible in the store (and in :attr:`checkpoint`) a moment before
        its listeners are called.
        """
        return self._in_flight is None

    @property
    def position(self) -> int:
        """The highest :attr:`IngestedEvent.sequence` the committed checkpoint can cover.

        Every :class:`~.model.DocumentChange` committed so far has a sequence at or below it;
        every later one is above it.
        """
        return (self.store.checkpoint() + 1) * POSITIONS_PER_MESSAGE - 1

    async def _subscribe(self) -> Consumer:
        checkpoint = self.store.checkpoint()
        last = await self._bus.last_sequence()
        if last < checkpoint:
            log.error(
                "the event stream ends at %d, before the query store's checkpoint %d: the "
                "stream was reset; run `pandanode query rebuild`",
                last,
                checkpoint,
            )
        # Whatever JetStream thinks was delivered, resume exactly after the checkpoint.
        return await self._bus.consume(
            OPERATIONS_INGESTED,
            start_sequence=checkpoint + 1,
            durable=self._durable,
            max_pending=2 * self._batch_size,
            detect_gaps=True,
        )

    async def _unsubscribe(self) -> None:
        self._drop_ack()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                async with asyncio.timeout(self._call_timeout):
                    await consumer.close()
            except Exception as err:  # the next consumer replaces it (same durable name)
                log.warning("closing the event consumer failed: %s", _brief(err))

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._stopping:
            if self._consumer is None and not await self._resume():
                await asyncio.sleep(backoff)  # back off before asking NATS / the store again
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            assert self._consumer is not None
            try:
                messages = await self._consumer.take(self._batch_size, self._fetch_timeout)
            except TimeoutError:
                self._lag_gauge.set(0)  # no events for a while: nothing is behind
                metrics.materialization_lag_seconds.set(0.0)
                await self._resume_if_stalled()
                continue
            except DeliveryGapError as err:
                # A stalled process (SIGSTOP, a long pause) whose pushed messages NATS dropped:
                # everything after the checkpoint comes again from a new consumer.
                log.warning("%s: resuming from the checkpoint", err)
                await self._unsubscribe()
                continue
            try:
                # A batch being applied is finished even when stop() is called meanwhile.
                self._applying = True
                try:
                    held = await self._handle(messages)
                finally:
                    self._applying = False
                backoff = _FIRST_BACKOFF
                await self._give_way(held)
            except Exception:
                if self.store.write_error is not None:
                    # A full disk: one line now and then, not a traceback per retry; the
                    # service restarts to reopen the store once there is space again.
                    _STORE_FAILURES.warning(
                        "materializing failed, the query store cannot write: %s",
                        self.store.write_error,
                    )
                else:
                    log.exception("materializing failed; resuming from the checkpoint")
                await self._unsubscribe()
                await asyncio.sleep(backoff)  # back off before retrying NATS / the store
                backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _resume(self) -> bool:
        """Reload the state from the store and re-create the consumer at the checkpoint.

        Returns:
            Whether it is consuming again; False (and a line in the log) when NATS or the store
            failed, or did not answer within the call timeout: the caller tries again later.
        """
        loop = asyncio.get_running_loop()
        try:
            await self._unsubscribe()
            self._engine = await loop.run_in_executor(self._pool, Engine, self.store)
            async with asyncio.timeout(self._call_timeout):
                self._consumer = await self._subscribe()
        except Exception as err:
            if self.store.write_error is not None:
                _STORE_FAILURES.warning(
                    "resuming failed, the query store cannot write: %s", self.store.write_error
                )
            else:
                log.warning(
                    "resuming from the checkpoint %d failed, trying again: %s",
                    self.store.checkpoint(),
                    _brief(err),
                )
            return False
        return True

    async def _resume_if_stalled(self) -> None:
        """Re-create the consumer when the stream holds events it did not deliver.

        Messages JetStream pushed while the connection failed over to another server of a
        cluster are lost in flight and would only come again after the consumer's ack wait.
        """
        try:
            async with asyncio.timeout(self._call_timeout):
                last = await self._bus.last_sequence(OPERATIONS_INGESTED)
        except Exception as err:  # NATS is away: nothing to resume from yet
            _STALL_CHECK_FAILURES.warning(
                "asking the stream for its last event failed: %s", _brief(err)
            )
            return
        if last > self.store.checkpoint():
            log.warning(
                "the stream holds events up to %d, applied up to %d, none delivered: "
                "resuming from the checkpoint",
                last,
                self.store.checkpoint(),
            )
            await self._unsubscribe()  # the loop resumes (and retries that with back-off)

    async def _handle(self, messages: Sequence[Delivery]) -> float:
        """Apply and acknowledge ``messages``.

        Returns:
            Seconds the event loop was held applying them (0 when they went to the thread).
        """
        assert self._engine is not None and self._consumer is not None
        runs = parse_runs(messages, self.store.checkpoint(), self._batch_size)
        held = 0.0
        if sum(len(message.payload) for message in messages) <= INLINE_BYTES:
            # Handing a small batch to the thread and back would cost more than applying it.
            began = time.perf_counter()
            for events, last in runs:
                self._notify(self._engine.apply(events, last))
            held = time.perf_counter() - began
        else:
            await self._apply_on_thread(runs)
        if messages:
            newest = messages[-1]
            self._lag_gauge.set(newest.pending + self._consumer.queued())
            if newest.stored_at:
                metrics.materialization_lag_seconds.set(max(0.0, time.time() - newest.stored_at))
            await self._acknowledge(newest, len(messages))
        return held

    def note_call(self) -> None:
        """Count a call the query service received (the materializer makes way for calls)."""
        self._calls += 1

    async def _give_way(self, held: float) -> None:
        """Let the event loop serve calls after a batch that held it for ``held`` seconds.

        A ``grpc.aio`` server takes in one new call per trip through its completion-queue
        thread and the event loop. A batch applied on the loop holds it for ~10 ms (100
        operations) and a message that arrived meanwhile is taken at once, so under load the
        calls that came in during a batch were let in one or two per batch: reads with a
        ``consistency`` token, answered as soon as they ran (their operation was applied
        already), waited ~100 ms at p99 behind later batches (``query.materialization_lag``
        at 3,900/s). So after each such batch every ready callback runs first; then, while
        calls keep coming in (one within each :data:`ADMIT_WINDOW`), the materializer waits,
        for at most as long as the batch held the loop: it keeps at least half of the loop
        while behind, and pays nothing when no calls come.
        """
        await asyncio.sleep(0)  # what the batch made ready: woken reads, watch messages
        if held <= 0 or self._calls == self._calls_seen:
            self._calls_seen = self._calls
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + held
        while True:
            self._calls_seen = self._calls
            await asyncio.sleep(ADMIT_WINDOW)  # the loop idles: calls are taken in meanwhile
            if self._calls == self._calls_seen or loop.time() >= deadline:
                return

    async def _apply_on_thread(self, runs: Iterator[tuple[list[IngestedEvent], int]]) -> None:
        """Parse and apply ``runs`` on the thread, telling each run's listeners before the next.

        A large batch (a catch-up) then lets the loop run every switch interval, and watches
        send each run's changes while the next one is applied: told all at once, the changes of
        a catch-up of a few thousand operations overflowed a watch's queue (``watch_queue_bytes``)
        and cut off a watcher that kept up (``query.materialization_lag`` at 4,360/s on a loaded
        machine: 187 messages in one batch). Each commit is visible before its listeners are
        called, so waiters hold back meanwhile.
        """
        loop = asyncio.get_running_loop()
        while True:
            self._in_flight = loop.create_future()
            try:
                applied = await loop.run_in_executor(self._pool, self._apply_next, runs)
            finally:
                self._in_flight.set_result(None)
                self._in_flight = None
            if applied is None:
                return
            self._notify(applied)

    def _apply_next(self, runs: Iterator[tuple[list[IngestedEvent], int]]) -> Applied | None:
        """Parse and apply the next run (on the thread); None when there is none left."""
        assert self._engine is not None
        for events, last in runs:
            return self._engine.apply(events, last)
        return None

    # -- acknowledgements -------------------------------------------------------------------

    async def _acknowledge(self, newest: Delivery, messages: int) -> None:
        """Acknowledge every message up to ``newest`` (applied and committed), soon.

        An acknowledgement is one more NATS message for this process and for nats-server; one
        per ingest commit was a good part of both processes' CPU time per entry under unary
        Publish (one commit per call). They only serve JetStream's flow control here — a
        restarted materializer re-creates its consumer at the checkpoint — so one covers
        whatever was applied within ``ack_delay`` seconds, or half the consumer's
        ``max_ack_pending`` (``2 × batch_size``) messages, whichever comes first.
        """
        self._to_ack = newest
        self._unacked += messages
        if self._unacked >= self._batch_size:
            await self._flush_ack()
        elif self._ack_timer is None and self._ack_task is None:
            loop = asyncio.get_running_loop()
            self._ack_timer = loop.call_later(self._ack_delay, self._ack_due)

    def _ack_due(self) -> None:
        self._ack_timer = None
        if self._ack_task is None:
            self._ack_task = asyncio.create_task(self._flush_ack_later())

    async def _flush_ack_later(self) -> None:
        try:
            await self._flush_ack()
        finally:
            self._ack_task = None
            # Messages applied while this acknowledgement was in flight set no timer of their
            # own; without one they would wait for the next message, which may never come.
            if self._to_ack is not None and self._ack_timer is None:
                loop = asyncio.get_running_loop()
                self._ack_timer = loop.call_later(self._ack_delay, self._ack_due)

    async def _flush_ack(self) -> None:
        """Acknowledge the newest applied message now (and, with it, every one before)."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        newest, self._to_ack, self._unacked = self._to_ack, None, 0
        if newest is None or self._consumer is None:
            return
        try:
            async with asyncio.timeout(self._call_timeout):
                await self._consumer.ack(newest)
        except Exception as err:
            # What is applied stays applied (the checkpoint is committed); the next
            # acknowledgement covers these messages too. Were none to get through, JetStream
            # stops delivering at max_ack_pending and the quiet stream is resumed from.
            _ACK_FAILURES.warning("acknowledging applied events failed: %s", _brief(err))

    def _drop_ack(self) -> None:
        """Forget a pending acknowledgement (its consumer is being closed)."""
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._ack_task is not None:
            self._ack_task.cancel()
            self._ack_task = None
        self._to_ack, self._unacked = None, 0

    # -- notifications ----------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every change from now on, in stream order, once each.

        It is called in the event loop right after the change is committed; it must not block
        (hand the change to a queue). Exceptions it raises are logged and ignored.

        Returns:
            A function that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    @property
    def listener_count(self) -> int:
        """How many listeners are registered now (every open watch has one)."""
        return len(self._listeners)

    def _notify(self, applied: Applied) -> None:
        for change in applied.changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("a change listener failed")
        if not self._operation_waiters:
            return
        for op_id in applied.folded:
            for future in self._operation_waiters.get(op_id, ()):
                if not future.done():
                    future.set_result(None)

    async def wait_for_operation(self, operation_id: str, timeout: float) -> bool:
        """Wait until an operation is materialized (folded into its document's current view).

        Listeners have been called with the change by the time this returns True.

        Returns:
            True once it is (at once if it is already), False after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._operation_waiters.setdefault(operation_id, set())
        waiters.add(future)
        try:
            # A run applied on the thread is in the store before its listeners are called (on
            # the loop, once the thread is done), and meanwhile the next run may already be
            # committed: the store alone does not say whether the change was told. So a folded
            # operation counts only once no run is in flight, or once the run in flight when
            # it was seen folded has been told (right after its future is resolved).
            in_flight = self._in_flight
            if not self.store.is_folded(operation_id):
                await asyncio.wait_for(future, timeout)
            elif in_flight is not None:
                await asyncio.wait_for(asyncio.shield(in_flight), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters.discard(future)
            if not waiters and self._operation_waiters.get(operation_id) is waiters:
                del self._operation_waiters[operation_id]

    async def wait_for_view(self, view_id: str, timeout: float) -> bool:
        """Wait until a document view is materialized: every operation of it is.

        A view stored because a pinned relation names it counts as materialized too.

        Returns:
            True once it is, False after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.store.has_pinned_view(view_id):
            return True
        for operation_id in view_id.split("_"):
            if not await self.wait_for_operation(operation_id, max(0.0, deadline - loop.time())):
                return False
        return True


def _brief(err: BaseException) -> str:
    """One line, of bounded length, naming an error (never a traceback)."""
    return f"{type(err).__name__}: {err}"[:200]


# -- rebuild --------------------------------------------------------------------------------


async def rebuild(
    path: Path, bus: Bus, *, batch_size: int = DEFAULT_BATCH_SIZE, through: int | None = None
) -> int:
    """Wipe the query store at ``path`` and re-apply the whole event stream from sequence 1.

    Uses a temporary consumer of its own; a durable consumer of a query service re-positions
    itself at the rebuilt checkpoint when the service starts. The store must not be in use.

    Args:
        path: The query store's directory.
        bus: The event bus.
        batch_size: About how many operations to apply at once.
        through: Apply the messages up to this stream sequence only (default: all of them),
            e.g. to compare with a query store at that checkpoint.

    Returns:
        How many operations were applied.

    Raises:
        Exception: the store is in use by another process (RocksDB's lock), or NATS failed.
    """
    QueryStore(path).close()  # fails while a running service holds the store
    QueryStore.destroy(path)
    store = QueryStore(path)
    consumer = None
    try:
        engine = await asyncio.to_thread(Engine, store)
        target = await bus.last_sequence(OPERATIONS_INGESTED)
        if through is not None:
            target = min(target, through)
        applied = 0
        if target <= 0:
            return 0
        consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1, max_pending=batch_size)
        while store.checkpoint() < target:
            messages = await consumer.take(batch_size, timeout=_FETCH_TIMEOUT)
            wanted = [message for message in messages if message.sequence <= target]
            for events, last in parse_runs(wanted, store.checkpoint(), batch_size):
                await asyncio.to_thread(engine.apply, events, last)
                applied += len(events)
            if messages:
                await consumer.ack(messages[-1])
            if len(wanted) < len(messages):
                break  # past ``through`` (which need not be a message of this kind)
        return applied
    finally:
        if consumer is not None:
            await consumer.close()
        store.close()
