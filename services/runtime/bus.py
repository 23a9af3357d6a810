"""The event bus: typed publish and consume over NATS JetStream, the only user of nats-py.

Services publish :class:`~.events.Outgoing` messages (made by :mod:`.events`, which owns the
subjects and message ids) and consume one :class:`~.events.EventKind` from a stream sequence
on. :class:`Bus` is the contract; :class:`NatsBus` keeps it with NATS JetStream (the
``PANDANODE`` stream) and :class:`InMemoryBus` in memory, for unit tests of the layers above.
The same contract tests run against both.

It is a little over 500 lines because it holds both keepers of the one contract, NATS and in
memory, which the same contract tests hold side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError, ServiceUnavailableError

from .errors import UnavailableError
from .events import DUPLICATE_WINDOW_SECONDS, STREAM_NAME, STREAM_SUBJECTS, EventKind, Outgoing
from .guard import RateLimitedLog
from .nats_users import inbox_prefix

__all__ = [
    "Bus",
    "Consumer",
    "Delivery",
    "DeliveryGapError",
    "redact_url",
    "InMemoryBus",
    "MessageTooLargeError",
    "NatsBus",
    "connect_bus",
]

log = logging.getLogger(__name__)
_CONNECTION_ERRORS = RateLimitedLog(log)

_PUBLISH_TIMEOUT = 10.0
# NATS counts headers (the message id) in max_payload; leave room for them.
_HEADER_ROOM = 512
# How long a JetStream API call (consumer, stream info) is retried while the cluster does not
# answer in time (a stream leader being elected, a loaded server) before it counts as down.
_API_DEADLINE = 30.0

_T = TypeVar("_T")


async def _retrying(call: Callable[[], Awaitable[_T]], what: str) -> _T:
    """``call()``, again while JetStream times out or has no leader, up to ``_API_DEADLINE``.

    Raises:
        UnavailableError: still no answer at the deadline.
    """
    deadline = time.monotonic() + _API_DEADLINE
    delay = 0.1
    while True:
        try:
            return await call()
        except (NatsTimeoutError, ServiceUnavailableError) as err:
            if time.monotonic() + delay > deadline:
                raise UnavailableError(
                    f"JetStream did not answer {what} within {_API_DEADLINE:.0f} s ({err!r})"
                ) from err
            await asyncio.sleep(delay)  # back off: the cluster is busy or electing a leader
            delay = min(delay * 2, 2.0)


class MessageTooLargeError(ValueError):
    """A message is larger than the bus accepts (NATS ``max_payload``)."""


class DeliveryGapError(RuntimeError):
    """Messages pushed to a consumer never arrived.

    NATS drops what a stalled client cannot take in: re-create the consumer from what was
    applied, or what follows would skip them.
    """


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer.

    Attributes:
        sequence: Its stream sequence (strictly increasing in the stream).
        subject: Its subject.
        payload: Its bytes.
        pending: Messages of the stream the consumer had not been handed yet when this one
            was delivered (JetStream ``num_pending``; 0 where unknown).
        stored_at: When the stream stored it, seconds since the epoch (0.0 where unknown).
    """

    sequence: int
    subject: str
    payload: bytes
    pending: int = 0
    stored_at: float = 0.0


class Consumer(Protocol):
    """An ordered consumer of one kind of event, from a stream sequence on."""

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` messages, in stream order, as soon as at least one is there.

        A message may come again after a failure (at-least-once); skip what is applied.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds (that this process ran:
                a process stopped meanwhile waits again once it runs).
        """
        ...

    async def ack(self, through: Delivery) -> None:
        """Acknowledge every message up to and including ``through``.

        Raises:
            Exception: the acknowledgement could not be sent (TimeoutError after a bound).
        """
        ...

    def queued(self) -> int:
        """Messages delivered to this consumer and not taken yet (for metrics)."""
        ...

    async def close(self) -> None:
        """Stop consuming and remove the consumer from the server (durable or not)."""
        ...


class Bus(Protocol):
    """What the services need from the event stream."""

    @property
    def max_payload(self) -> int:
        """The largest payload a message may have."""
        ...

    async def publish(self, messages: Sequence[Outgoing]) -> list[int]:
        """Publish messages (pipelined) and wait until the stream stored each.

        A message whose id the stream saw within its duplicate window is not stored again.

        Returns:
            Each message's stream sequence (a duplicate's is the stored copy's or 0).

        Raises:
            MessageTooLargeError: a payload over :attr:`max_payload`.
            Exception: the stream did not acknowledge in time (retry with the same messages).
        """
        ...

    async def consume(
        self,
        kind: EventKind,
        *,
        start_sequence: int,
        durable: str | None = None,
        max_pending: int = 512,
        detect_gaps: bool = False,
    ) -> Consumer:
        """Consume ``kind`` from ``start_sequence`` on (1: the whole stream).

        A durable consumer of the same name is replaced, so the caller, not the server,
        decides where to resume. At most ``max_pending`` messages are handed out unacknowledged.
        With ``detect_gaps``, :meth:`Consumer.take` raises :class:`DeliveryGapError` when a
        message pushed before the ones it would hand out never arrived.
        """
        ...

    async def delete_consumer(self, durable: str) -> None:
        """Remove a durable consumer, if it exists."""
        ...

    async def last_sequence(self, kind: EventKind | None = None) -> int:
        """The stream sequence of the last message stored, of ``kind`` if given (0: none)."""
        ...

    async def close(self) -> None:
        """Flush and close."""
        ...


# -- NATS JetStream ------------------------------------------------------------------------


_LATE: Final = 1.0
"""Seconds a take()'s timer may fire after it was due before the wait counts as overslept.

A process that was stopped (SIGSTOP) or starved wakes with its timers overdue, and a timer runs
before the bytes waiting in the socket are read (a few turns of the event loop): without a second
wait, a stream that delivered all along looked silent."""
_CALL_TIMEOUT: Final = 10.0
"""Seconds a consumer's own NATS call (subscribe, acknowledge, unsubscribe) may take.

They only queue bytes for the connection's writer, yet nats-py may wait for that writer without
a bound (a forced flush has no timeout unless the connection sets one), e.g. while the
connection is being re-established."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _NatsConsumer:
    def __init__(self, bus: NatsBus, *, detect_gaps: bool = False) -> None:
        self._bus = bus
        self._detect_gaps = detect_gaps
        self._delivered = 0  # the consumer sequence of the last delivery taken
        self._messages: deque[Msg] = deque()
        # Set when a message arrives while take() waits for one. A bare future and a timer,
        # not asyncio.wait_for on an Event: that is a task more per wait, and a wait per
        # message when events trickle in (one per unary Publish).
        self._waiter: asyncio.Future[None] | None = None
        self._subscription: Subscription | None = None
        self._unacked: dict[int, Msg] = {}
        self.name = ""

    async def put(self, message: Msg) -> None:
        self._messages.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def open(self, config: ConsumerConfig) -> None:
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and config.durable_name:
                # An attempt whose answer timed out may have made the durable consumer: adding
                # it again with this attempt's inbox would update it, and it would go on from
                # what it pushed to the old inbox, never read.
                with contextlib.suppress(NotFoundError):
                    await self._bus.js.delete_consumer(STREAM_NAME, config.durable_name)
            await self._open(config)

        await _retrying(attempt, "a new consumer")

    async def _open(self, config: ConsumerConfig) -> None:
        client = self._bus.client
        # Nothing an earlier attempt's consumer pushed counts: its numbering was its own.
        self._messages.clear()
        self._unacked.clear()
        self._delivered = 0
        # A fresh inbox per attempt: a consumer made by an attempt whose answer timed out
        # pushes to the old one, which nobody reads (it is removed once inactive).
        deliver_subject = client.new_inbox()
        try:
            # Listening before the consumer exists, so nothing it pushes is missed.
            async with asyncio.timeout(_CALL_TIMEOUT):
                self._subscription = await client.subscribe(deliver_subject, cb=self.put)
            config.deliver_subject = deliver_subject
            info = await self._bus.js.add_consumer(STREAM_NAME, config)
        except TimeoutError as err:
            await self.close()
            raise NatsTimeoutError() from err  # tried again by open()
        except BaseException:
            await self.close()
            raise
        self.name = str(info.name)

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        if not self._messages:
            await self._wait(timeout)
        deliveries = []
        for _ in range(min(limit, len(self._messages))):
            message = self._messages.popleft()
            metadata = message.metadata
            sequence = int(metadata.sequence.stream)
            delivered = int(metadata.sequence.consumer)
            # A consumer's deliveries are numbered from 1: the first one taken counts too (a
            # consumer that lost its first pushes would otherwise skip them unnoticed).
            if self._detect_gaps and delivered > self._delivered + 1:
                missing = f"{self._delivered + 1}..{delivered - 1}"
                self._messages.clear()
                raise DeliveryGapError(
                    f"deliveries {missing} of consumer {self.name} never arrived"
                )
            self._delivered = max(self._delivered, delivered)
            self._unacked[sequence] = message
            deliveries.append(
                Delivery(
                    sequence,
                    message.subject,
                    message.data,
                    int(metadata.num_pending),
                    metadata.timestamp.timestamp(),
                )
            )
        return deliveries

    async def _wait(self, timeout: float) -> None:
        """Wait until a message arrives; TimeoutError after ``timeout`` seconds of this process.

        A timer that fires late by over :data:`_LATE` (the process was stopped) waits once more,
        so what arrived meanwhile is read before the stream counts as silent.
        """
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        due = loop.time() + timeout
        timer = loop.call_at(due, _expire, waiter)
        try:
            try:
                await waiter
            except TimeoutError:
                if self._messages:
                    return  # arrived after the timer fired, in the same turn of the loop
                if loop.time() - due <= _LATE:
                    raise
                waiter = self._waiter = loop.create_future()
                timer = loop.call_later(timeout, _expire, waiter)
                await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def queued(self) -> int:
        return len(self._messages)

    async def ack(self, through: Delivery) -> None:
        message = self._unacked.get(through.sequence)
        if message is None:
            return  # acknowledged already
        self._unacked = {s: m for s, m in self._unacked.items() if s > through.sequence}
        async with asyncio.timeout(_CALL_TIMEOUT):
            await message.ack()  # AckPolicy.ALL: covers every message before it too

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CALL_TIMEOUT):
                    await self._subscription.unsubscribe()
            self._subscription = None
        if self.name:
            with contextlib.suppress(Exception):
                await self._bus.js.delete_consumer(STREAM_NAME, self.name)
            self.name = ""


class NatsBus:
    """The bus on a NATS connection with JetStream and the ``PANDANODE`` stream in place."""

    def __init__(self, client: Client, js: JetStreamContext) -> None:
        self.client = client
        self.js = js

    @property
    def max_payload(self) -> int:
        """The server's ``max_payload`` less room for headers."""
        return int(self.client.max_payload) - _HEADER_ROOM

    async def publish(self, messages: Sequence[Outgoing]) -> list[int]:
        """See :meth:`Bus.publish`."""
        acks = []
        for message in messages:
            if len(message.payload) > self.max_payload:
                raise MessageTooLargeError(
                    f"{len(message.payload)} bytes on {message.subject}: over {self.max_payload}"
                )
            acks.append(
                await self.js.publish_async(
                    message.subject,
                    message.payload,
                    headers={"Nats-Msg-Id": message.message_id},
                )
            )
        async with asyncio.timeout(_PUBLISH_TIMEOUT):
            # One message (the usual case) is awaited as is: a gather costs a future and a
            # callback per message, which counts when events trickle in one at a time.
            results = [await acks[0]] if len(acks) == 1 else await asyncio.gather(*acks)
        return [int(ack.seq or 0) for ack in results]

    async def consume(
        self,
        kind: EventKind,
        *,
        start_sequence: int,
        durable: str | None = None,
        max_pending: int = 512,
        detect_gaps: bool = False,
    ) -> Consumer:
        """See :meth:`Bus.consume`."""
        if durable is not None:
            await self.delete_consumer(durable)
        consumer = _NatsConsumer(self, detect_gaps=detect_gaps)
        await consumer.open(
            ConsumerConfig(
                durable_name=durable,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(start_sequence, 1),
                ack_policy=AckPolicy.ALL,
                ack_wait=300.0,
                max_ack_pending=max_pending,
                filter_subject=kind.subject_filter,
                inactive_threshold=None if durable is not None else 60.0,
            )
        )
        return consumer

    async def delete_consumer(self, durable: str) -> None:
        """See :meth:`Bus.delete_consumer`."""
        with contextlib.suppress(NotFoundError):
            await _retrying(
                lambda: self.js.delete_consumer(STREAM_NAME, durable), "a consumer's deletion"
            )

    async def last_sequence(self, kind: EventKind | None = None) -> int:
        """See :meth:`Bus.last_sequence`."""
        if kind is None:
            info = await _retrying(lambda: self.js.stream_info(STREAM_NAME), "the stream's info")
            return int(info.state.last_seq or 0)
        try:
            message = await _retrying(
                lambda: self.js.get_last_msg(STREAM_NAME, kind.subject_filter), "a last message"
            )
        except NotFoundError:
            return 0
        return int(message.seq or 0)

    async def close(self) -> None:
        """Flush and close the connection."""
        if not self.client.is_closed:
            try:
                await self.client.drain()
            except Exception:
                await self.client.close()


async def connect_bus(
    url: str,
    *,
    name: str = "pandanode",
    timeout: float = 20.0,
    replicas: int | None = None,
    user: str | None = None,
    password: str | None = None,
    manage_stream: bool = True,
) -> NatsBus:
    """Connect to NATS and make sure the event stream exists; waits until JetStream answers.

    Args:
        url: A NATS URL, or several separated by commas (the servers of a cluster).
        name: The connection's name, as NATS monitoring shows it.
        timeout: Seconds to wait for NATS and JetStream.
        replicas: Copies the stream keeps (the ``stream_replicas`` setting); None keeps what an
            existing stream has (1 for a new one), so tools like ``check`` never change it.
        user: The NATS user to authenticate as (with ``password``); None: the URL's, if any.
        password: Its password (never logged). Replies come to the user's own inbox
            (:func:`~.nats_users.inbox_prefix`), where a deployment's per-service users may
            subscribe.
        manage_stream: Create the stream, or bring it to this version's configuration; False
            (every service but ingest, whose NATS users may not): wait until it exists.

    Raises:
        UnavailableError: NATS or JetStream did not answer within ``timeout`` seconds (or
            the stream did not appear, without ``manage_stream``).
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    servers = [item.strip() for item in url.split(",") if item.strip()]

    async def on_error(err: Exception) -> None:
        # nats-py logs each failed (re)connect with a traceback by default; one line is enough.
        nonlocal last_error
        last_error = err
        _CONNECTION_ERRORS.warning(
            "NATS at %s: %s", redact_url(url), f"{type(err).__name__}: {err}"[:200]
        )

    while time.monotonic() < deadline:
        try:
            # nats-py keeps retrying a first connection that is refused (reconnects are
            # unlimited), so the deadline is enforced here.
            client = await asyncio.wait_for(
                nats.connect(
                    servers,
                    name=name,
                    connect_timeout=2,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    allow_reconnect=True,
                    error_cb=on_error,
                    inbox_prefix=inbox_prefix(user) if user else "_INBOX",
                    **({"user": user, "password": password} if user else {}),
                ),
                timeout=max(deadline - time.monotonic(), 0.05),
            )
        except Exception as err:
            if not isinstance(err, TimeoutError) or last_error is None:
                last_error = err
            await asyncio.sleep(0.1)  # poll: NATS is starting
            continue
        js = client.jetstream()
        while time.monotonic() < deadline:
            try:
                if manage_stream:
                    await _ensure_stream(js, replicas)
                else:
                    await js.stream_info(STREAM_NAME)  # NotFoundError until ingest made it
                return NatsBus(client, js)
            except NotFoundError:
                last_error = LookupError(f"no stream {STREAM_NAME} yet (ingest creates it)")
                await asyncio.sleep(0.1)  # poll: ingest is starting
            except Exception as err:
                last_error = err
                await asyncio.sleep(0.1)  # poll: JetStream is starting
        await client.close()
    reason = f"{type(last_error).__name__}: {last_error}" if last_error else "no answer"
    raise UnavailableError(
        f"NATS JetStream at {redact_url(url)} is unavailable after {timeout:g} s ({reason})"
    )


async def _ensure_stream(js: JetStreamContext, replicas: int | None) -> None:
    """Create the event stream, or bring an existing one to this version's configuration."""
    config = StreamConfig(
        name=STREAM_NAME,
        subjects=list(STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas or 1,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        if replicas is None:
            existing = await js.stream_info(STREAM_NAME)
            config.num_replicas = existing.config.num_replicas or 1
        await js.update_stream(config)


def redact_url(url: str) -> str:
    """``url`` without the password (or token) of its user info, for messages and logs.

    A comma-separated list of URLs has each redacted.
    """
    if "," in url:
        return ",".join(redact_url(item) for item in url.split(","))
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    user = f"{parts.username}:***" if parts.password is not None else "***"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


# -- in memory -------------------------------------------------------------------------------


def _subject_matches(subject_filter: str, subject: str) -> bool:
    wanted, tokens = subject_filter.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(tokens) > index
        if index >= len(tokens) or (token != "*" and token != tokens[index]):
            return False
    return len(tokens) == len(wanted)


class _MemoryConsumer:
    def __init__(self, bus: InMemoryBus, kind: EventKind, start: int, name: str) -> None:
        self._bus = bus
        self._filter = kind.subject_filter
        self._next = max(start, 1)
        self.name = name
        self.closed = False

    async def take(self, limit: int, timeout: float) -> list[Delivery]:
        async with asyncio.timeout(timeout):
            while True:
                found = [
                    stored
                    for stored in self._bus.messages[self._next - 1 :]
                    if _subject_matches(self._filter, stored.subject)
                ][:limit]
                if found:
                    self._next = found[-1].sequence + 1
                    return found
                await self._bus.arrival().wait()

    async def ack(self, through: Delivery) -> None:
        return None  # no redelivery in memory: a consumer re-created at a sequence re-reads

    def queued(self) -> int:
        return 0  # nothing is delivered ahead of take()

    async def close(self) -> None:
        self.closed = True
        self._bus.consumers.pop(self.name, None)


class InMemoryBus:
    """The bus in memory: one stream, deduplication by message id, ordered consumers.

    For unit tests of the layers above; it passes the same contract tests as :class:`NatsBus`.
    Duplicates are remembered forever (no window) and ``max_pending`` is not enforced.
    """

    def __init__(self, max_payload: int = 1024 * 1024 - _HEADER_ROOM) -> None:
        self.messages: list[Delivery] = []
        self.consumers: dict[str, _MemoryConsumer] = {}
        self._max_payload = max_payload
        self._ids: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self._anonymous = 0

    @property
    def max_payload(self) -> int:
        """The largest payload accepted."""
        return self._max_payload

    @property
    def message_ids(self) -> list[str]:
        """The message id of every stored message, in stream order."""
        return list(self._ids)

    def arrival(self) -> asyncio.Event:
        """An event set at the next publish."""
        return self._arrived

    async def publish(self, messages: Sequence[Outgoing]) -> list[int]:
        """See :meth:`Bus.publish`."""
        for message in messages:
            if len(message.payload) > self._max_payload:
                raise MessageTooLargeError(
                    f"{len(message.payload)} bytes on {message.subject}: over {self._max_payload}"
                )
        sequences = []
        for message in messages:
            known = self._ids.get(message.message_id)
            if known is not None:
                sequences.append(known)
                continue
            sequence = len(self.messages) + 1
            self.messages.append(Delivery(sequence, message.subject, message.payload))
            self._ids[message.message_id] = sequence
            sequences.append(sequence)
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
        return sequences

    async def consume(
        self,
        kind: EventKind,
        *,
        start_sequence: int,
        durable: str | None = None,
        max_pending: int = 512,
        detect_gaps: bool = False,
    ) -> Consumer:
        """See :meth:`Bus.consume` (in memory nothing is ever dropped)."""
        if durable is None:
            self._anonymous += 1
            name = f"ephemeral-{self._anonymous}"
        else:
            name = durable
        consumer = _MemoryConsumer(self, kind, start_sequence, name)
        self.consumers[name] = consumer
        return consumer

    async def delete_consumer(self, durable: str) -> None:
        """See :meth:`Bus.delete_consumer`."""
        self.consumers.pop(durable, None)

    async def last_sequence(self, kind: EventKind | None = None) -> int:
        """See :meth:`Bus.last_sequence`."""
        for stored in reversed(self.messages):
            if kind is None or _subject_matches(kind.subject_filter, stored.subject):
                return stored.sequence
        return 0

    async def close(self) -> None:
        """Nothing to flush."""
        return None
