"""The use cases of ingest in plain async code: publish (one or many), next args, log reads.

Publishing runs in two stages:

1. *prepare* (pure): size limits, operation decoding, entry decoding, the signature check, the
   payload hash and the raw ids the store's keys are made of. Every batch (PublishStream,
   publish_many, any size) runs it on the two verification threads, each checking the
   signatures of its part in one call that releases the GIL once (see
   :mod:`pandanode.core.signatures`); a unary Publish runs it inline (see
   :meth:`Ingest.publish`);
2. *apply* (one writer task, group commit): the stateful rules of spec §4.3 against the store
   seen through the batch's overlay, then one synced RocksDB write for the whole batch. Only
   then are the callers answered, so an acknowledged entry is durable.

One writer makes concurrent publishes to the same log (and to the same author or document)
safe without locks; verification, the costly part, still runs in parallel.

It stays one module: prepare, the writer loop and apply share the batch types and the one-writer
rule, which is easiest to keep when they sit side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from pandanode.core.construct import slot_constructor
from pandanode.core.entry import Entry, decode_entry, verify_entries
from pandanode.core.errors import (
    LogIntegrityError,
    PandanodeError,
    Reason,
    SchemaNotFoundError,
    SchemaNotSupportedError,
    SignatureError,
    quote,
)
from pandanode.core.hash import generate_hash, hash_bytes
from pandanode.core.hexid import PUBLIC_KEY_HEX_LENGTH, require_hex
from pandanode.core.ids import DocumentViewId
from pandanode.core.lipmaa import is_skiplink_required, lipmaa
from pandanode.core.operation import Operation, decode_operation
from pandanode.core.publish import (
    LogTip,
    NextArgs,
    OperationRef,
    PublishResult,
    PublishState,
    next_args,
    next_args_in_log,
    seq_nums_needed,
    validate_publish,
)
from pandanode.core.schema_id import parse_schema_id
from pandanode.services.runtime import metrics
from pandanode.services.runtime.errors import (
    InvalidRequestError,
    UnavailableError,
)
from pandanode.services.runtime.events import IngestedOperation
from pandanode.services.runtime.guard import RateLimitedLog
from pandanode.services.runtime.settings import Settings

from .reads import HaveSet, LogHeightsPage, missing_entry_batches, read_log_heights_page
from .schemas import FIELD_DEFINITION, SCHEMA_DEFINITION, SchemaRegistry
from .store import LogStore, StoredEntry, WriteBatchView

__all__ = ["Ingest", "PublishOutcome", "commits_inline"]

log = logging.getLogger(__name__)
_WRITE_FAILURES = RateLimitedLog(log)

PublishOutcome = PublishResult | PandanodeError
"""One item's outcome in a batch: its result, or the error that rejected it."""

# Bound once: a labelled child costs a lock and a lookup each time it is looked up.
_UNARY_LATENCY = metrics.publish_latency_seconds.labels("unary")
_BATCH_LATENCY = metrics.publish_latency_seconds.labels("batch")

# A commit synced on the event loop must not stall it for long: after a slower one, commits go
# to the commit thread until one is fast again (a disk stalling for seconds stalls only it).
_INLINE_SYNC: Final = 0.01

# Once several unary calls were seen waiting together, more come together for a while (clients
# with calls in flight send the next as soon as one is answered): for this long none is
# committed on the event loop, which would answer them one at a time.
_CONCURRENT_HOLD: Final = 0.05

# With unary calls in flight together, the writer waits up to this long for as many as its last
# commit answered before it commits fewer: one commit (a thread hop and a sync) for all of them
# instead of one for the first few and another for the rest.
_GATHER: Final = 0.002


def commits_inline(
    batch: int, waiting: int, last_commit: float, idle: float, since_concurrent: float = 1e9
) -> bool:
    """Whether the writer commits a batch on the event loop rather than on the commit thread.

    Only a lone unary call — a batch of one, the only call waiting — when calls come slower
    than commits take: the writer was idle for longer than its last commit took, which was
    fast. The event loop then stops for the sync (~0.2 ms on a fast disk) while nothing else
    is waiting for it, and saves the hop to the commit thread and back, two thread wake-ups
    which on a busy machine cost more than the sync. When calls come faster, the loop's time
    during the sync goes to the next calls, so that they are committed together.

    Args:
        batch: Items in the batch.
        waiting: Unary calls waiting for the writer.
        last_commit: Seconds the last commit took.
        idle: Seconds since the last commit ended.
        since_concurrent: Seconds since several unary calls were last seen waiting together;
            within ``_CONCURRENT_HOLD`` of that, calls are committed on the commit thread.
    """
    return (
        batch == 1
        and waiting == 1
        and last_commit < _INLINE_SYNC
        and idle > last_commit
        and since_concurrent > _CONCURRENT_HOLD
    )


# Built once per entry: set slot by slot, not through the frozen dataclasses' __init__.
_new_ref = slot_constructor(OperationRef)
_new_state = slot_constructor(PublishState)


def _write_failed(err: Exception) -> UnavailableError:
    """Log a store failure (rate-limited) and return what its callers are answered."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    # One line, not a traceback per batch: on a full disk every write fails.
    _WRITE_FAILURES.warning("writing to the log store failed: %s", reason)
    return UnavailableError(f"the log store failed to write ({reason}); retry later")


def _rejected(err: PandanodeError, count: int = 1) -> None:
    """Count a rejection (the rare path, so per entry)."""
    metrics.entries_rejected.labels(err.reason.value).inc(count)
    log.debug(
        "entry rejected: %s",
        err.message[:200],
        extra={"reason": err.reason.value},
    )


class _Checked:
    """An item that passed the stateless checks (stage 1), with what stage 2 needs of it."""

    __slots__ = (
        "batch",
        "entry",
        "future",
        "id",
        "index",
        "key",
        "operation",
        "operation_bytes",
        "operation_hash",
        "settled",
        "verified",
    )

    def __init__(
        self, entry: Entry, operation_bytes: bytes, operation: Operation, entry_id: bytes
    ) -> None:
        self.entry = entry
        self.operation_bytes = operation_bytes
        self.operation = operation
        # Computed here, off the event loop when stage 1 runs on the pool: the payload hash and
        # the raw public key and entry hash (``entry_id``) the store's keys are made of.
        self.operation_hash = generate_hash(operation_bytes)
        self.key = entry.raw[1:33]  # the raw public key, which the entry's bytes hold
        self.id = entry_id
        # Where the outcome goes: the future of a unary call, or a slot of a batch.
        self.future: asyncio.Future[PublishResult] | None = None
        self.batch: _Batch | None = None
        self.index = 0
        self.settled = False
        self.verified = False  # its signature was checked (else the writer checks it)

    def settle(self, outcome: PublishOutcome) -> None:
        """Hand the item's outcome to whoever waits for it (once)."""
        if self.settled:
            return
        self.settled = True
        batch = self.batch
        if batch is not None:
            batch.outcomes[self.index] = outcome
            batch.pending -= 1
            if batch.pending == 0 and not batch.done.done():
                batch.done.set_result(None)
            return
        future = self.future
        if future is None or future.done():
            return
        if isinstance(outcome, PandanodeError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _rejected_item(item: _Checked, err: PandanodeError) -> None:
    """Name the entry in a rejection by the log rules, count it, and log it with its author."""
    entry = item.entry
    err.about(public_key=entry.public_key, log_id=entry.log_id, seq_num=entry.seq_num)
    metrics.entries_rejected.labels(err.reason.value).inc()
    log.debug(
        "entry rejected: %s",
        err.message[:200],
        extra={"reason": err.reason.value, "public_key": item.entry.public_key},
    )


def _defines_schema(item: _Checked) -> bool:
    """Whether the item's operation belongs to a schema or field definition document."""
    return item.operation.schema_id in (SCHEMA_DEFINITION, FIELD_DEFINITION)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Batch:
    """The outcomes of one batch, in order, and one future set when the last is known.

    One future per batch rather than per item: a stream answers whole batches, and each
    future costs the event loop its creation and a wake-up.
    """

    __slots__ = ("done", "outcomes", "pending")

    def __init__(self, outcomes: list[PublishOutcome | None], done: asyncio.Future[None]) -> None:
        self.outcomes = outcomes
        self.done = done
        self.pending = 0


class Ingest:
    """Verifies, stores and answers for entries; the only writer of the log store.

    Args:
        store: The RocksDB log store (owned by this object once started).
        settings: Limits and batch sizes.
        on_committed: Called (in the event loop) after each commit that stored entries, with
            the commit's operations in store order, e.g. to hand them to the outbox announcer
            without reading them back. It must not block.
    """

    def __init__(
        self,
        store: LogStore,
        settings: Settings,
        on_committed: Callable[[list[IngestedOperation]], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.schemas = SchemaRegistry(store)
        self._supported = settings.supported_schemas
        self._on_committed = on_committed
        # Items waiting for the writer, in order; whole batches are added at once (an
        # asyncio.Queue costs a put, a get and a task_done per item).
        self._pending: deque[_Checked] = deque()
        self._work = asyncio.Event()  # set when items were added
        self._idle = asyncio.Event()  # set while nothing is pending or being written
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._verify_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")
        self._commit_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._closing = False
        self._unary_waiting = 0  # unary calls waiting for the writer
        self._writing = False  # the writer is applying or committing a batch
        self._last_sync = 0.0  # seconds the last commit took
        self._committed_at = 0.0  # when it ended (perf_counter)
        self._concurrent_at = -1e9  # when several unary calls last waited together
        self._concurrency = 0  # the most unary calls seen waiting together lately
        self._gathering: asyncio.Future[None] | None = None  # the writer waits for more calls
        self._gather_wanted = 0  # for this many pending items
        self.verify_entries: Callable[[Sequence[Entry]], list[SignatureError | None]]
        self.verify_entries = verify_entries
        """Checks the signatures of decoded entries, all at once (None where valid, else the
        error): every signature ingest checks goes through it, a seam for tests to count them."""

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task."""
        self._writer = asyncio.create_task(self._write_loop(), name="ingest-writer")

    async def stop(self) -> None:
        """Finish what was accepted, then stop the writer (pending callers are answered)."""
        self._closing = True
        if self._writer is not None:
            while not self._idle.is_set():
                await self._idle.wait()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        self._verify_pool.shutdown(wait=True)
        self._commit_pool.shutdown(wait=True)

    # -- publish ----------------------------------------------------------------------------

    def _prepare(
        self, entry_bytes: bytes, operation_bytes: bytes, *, verify: bool = True
    ) -> _Checked | PublishResult:
        """Check an item but for the log rules; ``verify=False`` leaves its signature unchecked.

        Raises:
            PandanodeError: the item is rejected.
        """
        if len(entry_bytes) > self.settings.max_entry_bytes:
            raise (
                InvalidRequestError(
                    f"entry of {len(entry_bytes)} bytes is over the limit of "
                    f"{self.settings.max_entry_bytes} bytes",
                    Reason.LIMIT_EXCEEDED,
                )
                .about(limit=self.settings.max_entry_bytes)
                .violation("entry")
            )
        if len(operation_bytes) > self.settings.max_operation_bytes:
            raise (
                InvalidRequestError(
                    f"operation of {len(operation_bytes)} bytes is over the limit of "
                    f"{self.settings.max_operation_bytes} bytes",
                    Reason.LIMIT_EXCEEDED,
                )
                .about(limit=self.settings.max_operation_bytes)
                .violation("operation")
            )
        entry_id = hash_bytes(entry_bytes)
        echo = self._stored_again(entry_id, entry_bytes, operation_bytes)
        if echo is not None:
            return echo
        operation = decode_operation(operation_bytes)
        if self._supported is not None:
            self._check_supported(operation.schema_id)
        entry = decode_entry(entry_bytes, verify=False, entry_hash=entry_id)
        checked = _Checked(entry, operation_bytes, operation, entry_id)
        if verify:
            self._verify(checked)
        return checked

    def _verify(self, item: _Checked) -> None:
        """Check one item's signature on this thread.

        Raises:
            SignatureError: the signature is not valid.
        """
        [error] = self.verify_entries((item.entry,))
        if error is not None:
            raise error
        item.verified = True

    def _check_supported(self, schema_id: str) -> None:
        """Refuse an operation of a schema outside the allow list (before its signature check).

        Raises:
            SchemaNotSupportedError: the schema is not in ``supported_schema_ids``.
        """
        assert self._supported is not None
        if schema_id in self._supported or str(parse_schema_id(schema_id)) in self._supported:
            return
        raise SchemaNotSupportedError(
            f"this node does not accept operations of schema {quote(schema_id)} (its "
            "supported_schema_ids does not list it): publish to a node that supports it, or "
            "ask this node's operator to add it",
        ).about(schema_id=schema_id)

    def _stored_again(
        self, entry_id: bytes, entry_bytes: bytes, operation_bytes: bytes
    ) -> PublishResult | None:
        """The answer for an entry already stored (found by its hash, ``entry_id``), or None.

        Looked up before the signature is checked: the hash of the exact bytes names a stored
        entry, whose signature was verified when it was stored, so an entry sent again (a
        peer's echo, a client's retry) costs a hash and a lookup. It is answered as the first
        time, provided the operation sent along is the one it signs. An entry only in a batch
        not yet committed is not found here, and takes the full path.

        Raises:
            LogIntegrityError: the operation is not the one the stored entry signs.
        """
        stored = self.store.operation_document(entry_id)
        if stored is None:
            return None
        entry = decode_entry(entry_bytes, verify=False)
        if entry.payload_hash != generate_hash(operation_bytes):
            raise LogIntegrityError(
                "payload hash in the entry does not match the hash of the operation bytes",
                Reason.PAYLOAD_HASH_MISMATCH,
            )
        return self._result_for_stored(self.store, entry, stored[0].hex())

    def _prepare_many(
        self, items: Sequence[tuple[bytes, bytes]]
    ) -> list[_Checked | PublishResult | PandanodeError]:
        """Prepare a batch: one outcome per item, the signatures checked in one call at the end.

        The signature check was the last step of :meth:`_prepare`, so an item is rejected for
        the same reason, with the same error, as when checked alone.
        """
        results: list[_Checked | PublishResult | PandanodeError] = []
        unverified: list[_Checked] = []
        positions: list[int] = []
        for entry_bytes, operation_bytes in items:
            try:
                prepared = self._prepare(entry_bytes, operation_bytes, verify=False)
            except PandanodeError as err:
                results.append(err)
                continue
            if isinstance(prepared, _Checked):
                unverified.append(prepared)
                positions.append(len(results))
            results.append(prepared)
        if unverified:
            errors = self.verify_entries([item.entry for item in unverified])
            for position, item, error in zip(positions, unverified, errors, strict=True):
                if error is None:
                    item.verified = True
                else:
                    results[position] = error
        return results

    async def publish(self, entry: bytes, operation: bytes) -> PublishResult:
        """Publish one entry with its operation; returns once it is durable.

        Raises:
            PandanodeError: the entry was rejected (nothing of it is stored).
        """
        self._refuse_if_unwritable()
        # A lone call checks its signature here: measured at 1 call in flight, a hop to the
        # pool per call cost more than the ~60 µs of verification it moves off the event loop
        # (a future bridged back through the loop's self-pipe, and the pool thread waiting for
        # the GIL after the signature check while the loop runs). A call that will wait for the
        # writer with others leaves it to the writer, which checks the whole batch in one hop
        # to a verification thread, with the GIL released, while the loop serves the next calls.
        started = time.perf_counter()
        try:
            checked = self._prepare(entry, operation, verify=self._alone(started))
        except PandanodeError as err:
            _rejected(err)
            raise
        if isinstance(checked, PublishResult):
            return checked
        now = time.perf_counter()
        if self._commits_now(now):
            # The writer is idle and nothing else waits for it: this call is the writer, so
            # it is applied, committed and answered without two hops through the event loop
            # (to the writer task and back), each of which also lets other work in between.
            if not checked.verified:
                try:
                    self._verify(checked)
                except PandanodeError as err:
                    _rejected(err)
                    raise
            result = self._publish_now(checked)
            _UNARY_LATENCY.observe(time.perf_counter() - started)
            return result
        future: asyncio.Future[PublishResult] = asyncio.get_running_loop().create_future()
        checked.future = future
        self._enqueue((checked,))
        self._unary_waiting += 1
        if self._unary_waiting > 1:
            if now - self._concurrent_at > _CONCURRENT_HOLD:
                self._concurrency = 0
            self._concurrency = max(self._concurrency, self._unary_waiting)
            self._concurrent_at = now
        try:
            result = await future
        finally:
            self._unary_waiting -= 1
        _UNARY_LATENCY.observe(time.perf_counter() - started)
        return result

    def _alone(self, now: float) -> bool:
        """Whether a unary call arriving ``now`` finds no other call waiting or lately together."""
        return (
            not self._unary_waiting
            and not self._pending
            and not self._writing
            and now - self._concurrent_at > _CONCURRENT_HOLD
        )

    def _commits_now(self, now: float) -> bool:
        """Whether a unary call arriving ``now`` is committed at once on the event loop."""
        return (
            not self._writing
            and not self._pending
            and commits_inline(
                1, 1, self._last_sync, now - self._committed_at, now - self._concurrent_at
            )
        )

    async def publish_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[PublishOutcome]:
        """Publish a batch; one outcome per item, in order. Rejected items do not stop the rest."""
        self._refuse_if_unwritable()
        self._check_batch(items)
        return await self._publish_batch(items, None, None)

    async def publish_stream(
        self, batches: AsyncIterator[Sequence[tuple[bytes, bytes]]]
    ) -> AsyncIterator[list[PublishOutcome]]:
        """Publish a stream of batches, pipelined; yields each batch's outcomes, in order.

        The next batches are verified while earlier ones are being written; at most
        ``max_stream_in_flight`` items are in flight, which pushes back on a fast sender.

        Raises:
            InvalidRequestError: a batch over ``max_batch_items`` (``LIMIT_EXCEEDED``).
        """
        loop = asyncio.get_running_loop()
        depth = max(1, self.settings.max_stream_in_flight // self.settings.max_batch_items)
        in_flight: asyncio.Queue[asyncio.Task[list[PublishOutcome]] | BaseException | None]
        in_flight = asyncio.Queue(maxsize=depth)

        async def feed() -> None:
            previous: asyncio.Future[None] | None = None
            try:
                async for items in batches:
                    self._refuse_if_unwritable()
                    self._check_batch(items)
                    enqueued: asyncio.Future[None] = loop.create_future()
                    task = asyncio.create_task(self._publish_batch(items, previous, enqueued))
                    previous = enqueued
                    await in_flight.put(task)
            except Exception as err:
                await in_flight.put(err)
                return
            await in_flight.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while True:
                item = await in_flight.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield await item
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder

    def _refuse_if_unwritable(self) -> None:
        """Refuse a publish while the node stops or its log store cannot write (full disk).

        RocksDB takes no write after a failed one until it is reopened (the service restarts
        once there is space again), so nothing is acknowledged meanwhile.
        """
        if self._closing:
            raise UnavailableError("the node is shutting down; retry on another node or later")
        if self.store.write_error is not None:
            raise UnavailableError(
                f"the log store cannot write ({self.store.write_error}); the node recovers "
                "once its disk has space again: retry later"
            )

    def _check_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        if len(items) > self.settings.max_batch_items:
            limit = self.settings.max_batch_items
            err = (
                InvalidRequestError(
                    f"a batch holds at most {limit} items, got {len(items)}", Reason.LIMIT_EXCEEDED
                )
                .about(limit=limit)
                .violation("items")
            )
            _rejected(err, len(items))
            raise err

    async def _publish_batch(
        self,
        items: Sequence[tuple[bytes, bytes]],
        after: asyncio.Future[None] | None,
        enqueued: asyncio.Future[None] | None,
    ) -> list[PublishOutcome]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            # Every batch is checked on the pool, split between its threads: each checks its
            # signatures without the GIL, and the event loop stays free for the writer and the
            # network meanwhile.
            if len(items) > 1:
                half = (len(items) + 1) // 2
                parts = await asyncio.gather(
                    loop.run_in_executor(self._verify_pool, self._prepare_many, items[:half]),
                    loop.run_in_executor(self._verify_pool, self._prepare_many, items[half:]),
                )
                prepared = parts[0] + parts[1]
            else:
                prepared = await loop.run_in_executor(self._verify_pool, self._prepare_many, items)
            if after is not None:
                await after  # keep the stream's order in the writer queue
            outcomes: list[PublishOutcome | None] = [
                None if isinstance(item, _Checked) else item for item in prepared
            ]
            batch = _Batch(outcomes, loop.create_future())
            checked: list[_Checked] = []
            for index, item in enumerate(prepared):
                if isinstance(item, _Checked):
                    item.batch = batch
                    item.index = index
                    checked.append(item)
                elif isinstance(item, PandanodeError):
                    _rejected(item)
            batch.pending = len(checked)
            self._enqueue(checked)
        finally:
            if enqueued is not None and not enqueued.done():
                enqueued.set_result(None)
        if batch.pending:
            await batch.done
        _BATCH_LATENCY.observe(time.perf_counter() - started)
        return [outcome for outcome in outcomes if outcome is not None]

    # -- the writer -------------------------------------------------------------------------

    def _enqueue(self, items: Sequence[_Checked]) -> None:
        """Hand checked items to the writer, in order."""
        if not items:
            return
        self._pending.extend(items)
        self._idle.clear()
        self._work.set()
        # The gathering writer is woken once: when as many as it waits for are pending, or a
        # batch (which goes at once) came; not by each unary call before.
        if self._gathering is not None and (
            len(self._pending) >= self._gather_wanted or items[0].future is None
        ):
            _wake(self._gathering)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        limit = self.settings.write_batch_max
        while True:
            if not pending:
                self._idle.set()
                self._work.clear()
                await self._work.wait()
                continue
            if self._gathers():
                await self._gather(loop, min(limit, self._concurrency))
            if len(pending) <= limit:
                batch = list(pending)
                pending.clear()
            else:
                batch = [pending.popleft() for _ in range(limit)]
            self._writing = True
            try:
                await self._apply_batch(loop, batch)
            except Exception as err:  # a store failure: nobody in this batch is acknowledged
                failure = _write_failed(err)
                for item in batch:
                    item.settle(failure)
            finally:
                self._writing = False

    def _gathers(self) -> bool:
        """Whether the writer waits for more unary calls before it commits.

        When fewer wait than came together lately and only unary calls wait (a stream's batch
        goes at once).
        """
        pending = self._pending
        return (
            len(pending) < self._concurrency
            and time.perf_counter() - self._concurrent_at < _CONCURRENT_HOLD
            and all(item.future is not None for item in pending)
        )

    async def _gather(self, loop: asyncio.AbstractEventLoop, wanted: int) -> None:
        """Wait until ``wanted`` items are pending, or anything but a unary call, or _GATHER."""
        deadline = loop.time() + _GATHER
        while len(self._pending) < wanted and self._gathers():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            # A future and a timer rather than wait_for, which costs a task per wait.
            self._gather_wanted = wanted
            waiter = self._gathering = loop.create_future()
            timer = loop.call_later(remaining, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._gathering = None

    def _publish_now(self, item: _Checked) -> PublishResult:
        """Apply and commit one item on the event loop, the writer being idle (no await).

        Raises:
            PandanodeError: the item was rejected, or the store failed to write it.
        """
        metrics.group_commit_entries.observe(1)
        view = self.store.begin()
        try:
            result, event = self._apply(item, view)
        except PandanodeError as err:
            _rejected_item(item, err)
            raise
        try:
            self._last_sync = self._commit(view)
        except Exception as err:  # a store failure: not acknowledged
            raise _write_failed(err) from err
        if event is not None:
            self._committed([event], {result.document_id} if _defines_schema(item) else None)
        return result

    def _committed(
        self, stored: list[IngestedOperation], schema_documents: set[str] | None
    ) -> None:
        """After a commit that stored entries: count them, announce them, refresh schemas."""
        metrics.entries_ingested.inc(len(stored))
        if self._on_committed is not None:
            try:
                self._on_committed(stored)
            except Exception:  # stored all the same: the outbox announces it later
                log.exception("handing a commit to the announcer failed")
        if schema_documents:
            # Build schemas before answering, so the next call can use them.
            self.schemas.refresh(schema_documents)

    async def _verified(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Checked]
    ) -> list[_Checked]:
        """``batch`` but the items whose signature is not valid, which are answered so.

        The unary calls that left their signature to the writer are checked together, in one
        hop to a verification thread.
        """
        unverified = [item for item in batch if not item.verified]
        if not unverified:
            return batch
        entries = [item.entry for item in unverified]
        errors = await loop.run_in_executor(self._verify_pool, self.verify_entries, entries)
        for item, error in zip(unverified, errors, strict=True):
            if error is None:
                item.verified = True
            else:
                _rejected(error)
                item.settle(error)
        return [item for item in batch if item.verified]

    async def _apply_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Checked]) -> None:
        batch = await self._verified(loop, batch)
        if not batch:
            return
        view = self.store.begin()
        applied: list[tuple[_Checked, PublishResult]] = []
        stored: list[IngestedOperation] = []
        schema_documents: set[str] = set()
        metrics.group_commit_entries.observe(len(batch))

        async def commit() -> None:
            nonlocal view, applied, stored
            now = time.perf_counter()
            idle = now - self._committed_at
            if commits_inline(
                len(batch), self._unary_waiting, self._last_sync, idle, now - self._concurrent_at
            ):
                self._last_sync = self._commit(view)
            else:
                self._last_sync = await loop.run_in_executor(self._commit_pool, self._commit, view)
            if stored:
                self._committed(stored, schema_documents)
                stored = []
            schema_documents.clear()
            self._resolve(applied)
            applied = []
            view = self.store.begin()

        for item in batch:
            try:
                try:
                    result, event = self._apply(item, view)
                except SchemaNotFoundError:
                    if not schema_documents:
                        raise
                    # The schema may be defined by an earlier item of this batch.
                    await commit()
                    result, event = self._apply(item, view)
            except PandanodeError as err:
                _rejected_item(item, err)
                item.settle(err)
                continue
            applied.append((item, result))
            if event is None:
                continue
            stored.append(event)
            if _defines_schema(item):
                schema_documents.add(result.document_id)
        await commit()

    def _commit(self, view: WriteBatchView) -> float:
        """Write and sync a batch; return the seconds it took."""
        started = time.perf_counter()
        self.store.commit(view)
        self._committed_at = time.perf_counter()
        return self._committed_at - started

    def _resolve(self, applied: list[tuple[_Checked, PublishResult]]) -> None:
        for item, result in applied:
            item.settle(result)

    def _apply(
        self, item: _Checked, view: WriteBatchView
    ) -> tuple[PublishResult, IngestedOperation | None]:
        """Apply one item to the batch; with the event of the stored entry (None: known)."""
        entry, operation = item.entry, item.operation
        latest_seq_num, hashes = view.log_state(
            item.key, entry.log_id, seq_nums_needed(entry.seq_num)
        )
        # An entry's hash fixes its position (author, log, seq num), so an entry beyond its
        # log's end is new: only one at or below it can be the same entry again. That spares
        # new entries a lookup of their operation id, which always misses.
        if latest_seq_num is not None and entry.seq_num <= latest_seq_num:
            existing = view.operation_document(item.id)
            if existing is not None:
                # The exact same entry again (same hash, same bytes): answer as the first
                # time, provided the operation sent along is the one it signs.
                if entry.payload_hash != item.operation_hash:
                    raise LogIntegrityError(
                        "payload hash in the entry does not match the hash of the operation bytes",
                        Reason.PAYLOAD_HASH_MISMATCH,
                    )
                return self._result_for_stored(view, entry, existing[0].hex()), None
        schema = self.schemas.get(operation.schema_id)
        if schema is None:
            raise SchemaNotFoundError(
                f"schema {operation.schema_id} not found: publish its schema definition and "
                "field definitions to this node first",
                Reason.SCHEMA_NOT_FOUND,
            ).about(schema_id=operation.schema_id)
        previous: dict[str, OperationRef] = {}
        document: bytes | None = None
        for op_id in operation.previous or ():
            ref = view.operation_document(bytes.fromhex(op_id))
            if ref is not None:
                document = ref[0]
                previous[op_id] = _new_ref(document.hex(), ref[1])
        deleted, author_log_id = (
            (False, None) if document is None else view.document_state(item.key, document)
        )
        state = _new_state(latest_seq_num, hashes, previous, deleted, author_log_id)
        result = validate_publish(
            entry,
            item.operation_bytes,
            operation,
            schema,
            state,
            operation_hash=item.operation_hash,
        )
        if operation.action == "create":
            document = item.id
        elif document is None or document.hex() != result.document_id:  # pragma: no cover
            document = bytes.fromhex(result.document_id)
        schema_id = operation.schema_id
        sequence = view.put_entry(
            public_key=item.key,
            log_id=entry.log_id,
            seq_num=entry.seq_num,
            entry_hash=item.id,
            entry=entry.raw,
            operation=item.operation_bytes,
            document_id=document,
            schema_id=schema_id,
            action=operation.action,
            index_by_document=schema_id in (SCHEMA_DEFINITION, FIELD_DEFINITION),
        )
        event = IngestedOperation(
            entry=entry.raw,
            operation=item.operation_bytes,
            operation_id=entry.hash,
            document_id=result.document_id,
            schema_id=schema_id,
            public_key=entry.public_key,
            log_id=entry.log_id,
            seq_num=entry.seq_num,
            sequence=sequence,
        )
        return result, event

    def _result_for_stored(
        self, view: WriteBatchView | LogStore, entry: Entry, document_id: str
    ) -> PublishResult:
        hashes = {entry.seq_num: entry.hash}
        next_seq = entry.seq_num + 1
        if is_skiplink_required(next_seq):
            target = lipmaa(next_seq)
            value = view.entry_hash_at(entry.public_key, entry.log_id, target)
            if value is not None:
                hashes[target] = value
        tip = LogTip(log_id=entry.log_id, seq_num=entry.seq_num, hashes=hashes)
        return PublishResult(entry.hash, document_id, next_args_in_log(tip))

    # -- reads ------------------------------------------------------------------------------

    def next_args(self, public_key: str, document_view_id: str = "") -> NextArgs:
        """Arguments for an author's next entry (spec §4.2); empty view id for a new document.

        Raises:
            InvalidRequestError: malformed public key or view id.
            NotFoundError, DocumentError: see :func:`pandanode.core.publish.next_args`.
        """
        public_key = require_hex(public_key, "public_key", PUBLIC_KEY_HEX_LENGTH)
        max_log_id = self.store.max_log_id(public_key)
        if not document_view_id:
            return next_args(max_log_id=max_log_id)
        view_id = DocumentViewId.from_str(document_view_id.lower())
        previous: dict[str, OperationRef] = {}
        for op_id in view_id.ids:
            ref = self.store.operation_ref(op_id)
            if ref is not None:
                previous[op_id] = OperationRef(ref.document_id, ref.schema_id)
        document_ids = {ref.document_id for ref in previous.values()}
        document_id = next(iter(document_ids)) if len(document_ids) == 1 else None
        author_log: LogTip | None = None
        if document_id is not None:
            log_id = self.store.author_log_id(public_key, document_id)
            stored_log = None if log_id is None else self.store.log(public_key, log_id)
            if stored_log is not None:
                hashes = {}
                for seq in seq_nums_needed(stored_log.seq_num + 1):
                    value = self.store.entry_hash_at(public_key, stored_log.log_id, seq)
                    if value is not None:
                        hashes[seq] = value
                author_log = LogTip(stored_log.log_id, stored_log.seq_num, hashes)
        return next_args(
            view_id=view_id,
            previous=previous,
            document_deleted=document_id is not None and self.store.document_deleted(document_id),
            author_log=author_log,
            max_log_id=max_log_id,
        )

    def log_heights_page(
        self, schema_ids: Sequence[str] = (), page_size: int = 0, page_token: str = ""
    ) -> LogHeightsPage:
        """A page of log heights, optionally only logs of documents of these schemas (blocking).

        Args:
            schema_ids: Only logs of documents of these schemas; every log when empty.
            page_size: Most logs in the page; 0: ``log_heights_page_size``; lowered to
                ``max_log_heights_page_size``.
            page_token: The previous page's ``next_page_token``; empty: the first page.

        Raises:
            InvalidRequestError: a malformed page token (``INVALID_PAGE_TOKEN``).
        """
        size = min(
            page_size or self.settings.log_heights_page_size,
            self.settings.max_log_heights_page_size,
        )
        return read_log_heights_page(
            self.store, schema_ids, size, page_token, self.settings.max_message_bytes // 2
        )

    def have_set(self) -> HaveSet:
        """An empty have-set bounded by ``max_have_logs``, for :meth:`missing_entries`."""
        return HaveSet(self.settings.max_have_logs)

    def missing_entries(
        self,
        schema_ids: Sequence[str],
        have: HaveSet,
        max_items: int = 0,
        max_bytes: int = 0,
    ) -> Iterator[list[StoredEntry]]:
        """Batches of the entries a peer lacks (spec §8.3), dependencies first (blocking).

        Per log in ascending seq num, logs merged in store order; see
        :func:`.reads.missing_entry_batches`.

        Args:
            schema_ids: The target set: logs of documents of these schemas; all when empty.
            have: The peer's log heights.
            max_items: Most entries per batch; 0 or above ``max_batch_items``: that.
            max_bytes: Most bytes per batch; 0 or above ``missing_entries_batch_bytes``: that.
        """
        items_cap = self.settings.max_batch_items
        bytes_cap = self.settings.missing_entries_batch_bytes
        return missing_entry_batches(
            self.store,
            schema_ids,
            have.heights,
            min(max_items or items_cap, items_cap),
            min(max_bytes or bytes_cap, bytes_cap),
        )

    def read_log(
        self, public_key: str, log_id: int, from_seq_num: int = 1
    ) -> Iterator[StoredEntry]:
        """The entries of one log in seq order from ``from_seq_num``."""
        return self.store.read_log(
            require_hex(public_key, "public_key", PUBLIC_KEY_HEX_LENGTH), log_id, from_seq_num
        )
