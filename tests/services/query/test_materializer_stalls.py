"""The materializer when the bus stops answering: every call it waits for is bounded, a call
that never returns is given up with a line in the log and tried again, and what the stream
holds is applied in the end, none of it skipped (on the in-memory bus, with calls made to hang).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from pandanode.services.runtime.bus import Bus, Consumer, Delivery, DeliveryGapError, InMemoryBus
from pandanode.services.runtime.events import EventKind
from tests.services.support import eventually

from .materializer_helpers import Feed, corpus, running_materializer, wait_caught_up

MATERIALIZER_LOG = "pandanode.services.query.materializer"


class _Hanging:
    """The in-memory bus, with some of the calls after :meth:`arm` never returning.

    ``hung`` counts the calls that hung, by name.
    """

    def __init__(self, bus: InMemoryBus) -> None:
        self._bus = bus
        self.hangs: dict[str, int] = {}
        self.gaps = 0
        self.quiet = 0
        self.hung: dict[str, int] = {}

    def arm(self, hangs: dict[str, int], *, gaps: int = 0, quiet: int = 0) -> None:
        """Make calls hang from now on.

        Args:
            hangs: How many of the next calls hang, by name (``consume``, ``last_sequence``,
                ``ack``, ``close``).
            gaps: How many of the next takes raise :class:`DeliveryGapError` (the consumer
                lost pushed messages).
            quiet: How many of the next takes time out at once although messages wait (they
                were pushed and lost, none came after them).
        """
        self.hangs, self.gaps, self.quiet = dict(hangs), gaps, quiet

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)

    async def _maybe_hang(self, call: str) -> None:
        if self.hangs.get(call, 0) > 0:
            self.hangs[call] -= 1
            self.hung[call] = self.hung.get(call, 0) + 1
            await asyncio.Event().wait()  # never set: only a timeout ends this call

    async def last_sequence(self, kind: EventKind | None = None) -> int:
        await self._maybe_hang("last_sequence")
        return await self._bus.last_sequence(kind)

    async def consume(self, kind: EventKind, **options: Any) -> Consumer:
        await self._maybe_hang("consume")
        consumer = await self._bus.consume(kind, **options)
        inner_take, inner_ack, inner_close = consumer.take, consumer.ack, consumer.close

        async def take(limit: int, timeout: float) -> list[Delivery]:
            if self.gaps > 0:
                self.gaps -= 1
                raise DeliveryGapError("deliveries 1..2 of consumer query never arrived")
            if self.quiet > 0:
                self.quiet -= 1
                raise TimeoutError
            return await inner_take(limit, timeout)

        async def ack(through: Delivery) -> None:
            await self._maybe_hang("ack")
            await inner_ack(through)

        async def close() -> None:
            await self._maybe_hang("close")
            await inner_close()

        consumer.take = take  # type: ignore[method-assign]
        consumer.ack = ack  # type: ignore[method-assign]
        consumer.close = close  # type: ignore[method-assign]
        return consumer


@pytest.mark.parametrize(
    ("hangs", "gaps", "quiet"),
    [
        # Acknowledging a full batch, inside the apply loop (it stopped the materializer).
        ({"ack": 3}, 0, 0),
        # Re-creating the consumer after lost deliveries: closing the old one, then making
        # the new one.
        ({"close": 1, "consume": 2}, 1, 0),
        # A stream gone quiet with events left: asking it for its last event, then
        # re-creating the consumer.
        ({"last_sequence": 2, "consume": 1}, 0, 3),
    ],
    ids=["ack", "re-create after a gap", "quiet stream"],
)
async def test_a_bus_call_that_never_returns_is_given_up_logged_and_everything_is_applied(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hangs: dict[str, int],
    gaps: int,
    quiet: int,
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    hanging = _Hanging(bus)
    feed = Feed(bus)
    feed.learn(operations)
    for operation in operations:  # waiting in the stream when the materializer starts
        await feed.send_commit([operation])
    caplog.set_level(logging.WARNING, logger=MATERIALIZER_LOG)
    async with running_materializer(
        tmp_path / "query",
        cast(Bus, hanging),
        batch_size=2,  # a full batch is acknowledged inside the apply loop
        fetch_timeout=0.2,
        call_timeout=0.3,
    ) as materializer:
        hanging.arm(hangs, gaps=gaps, quiet=quiet)  # before the materializer's first take
        await wait_caught_up(materializer, bus, timeout=30)

        assert all(materializer.store.is_folded(signed.hash) for signed in operations)
        assert hanging.hung == hangs, "every planned hang happened"
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert warnings, "a call given up leaves a line in the log"
        assert not any(r.exc_info for r in warnings), "one line each, no traceback"


async def test_a_consumer_that_hangs_on_every_call_is_retried_with_back_off_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    operations = corpus()
    bus = InMemoryBus()
    feed = Feed(bus)
    feed.learn(operations)
    hanging = _Hanging(bus)
    caplog.set_level(logging.WARNING, logger=MATERIALIZER_LOG)
    async with running_materializer(
        tmp_path / "query", cast(Bus, hanging), fetch_timeout=0.2, call_timeout=0.2
    ) as materializer:
        # Deliveries were lost, and NATS is away: no new consumer can be made.
        hanging.arm({"consume": 1_000}, gaps=1)
        await feed.send_commit(operations[:3])

        async def failures_logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "failed, trying again" in r.getMessage()]

        await eventually(failures_logged, timeout=10, what="a failed resume logged")
        tries = hanging.hung["consume"]
        # Back-off: a retry every 0.1, 0.2, 0.4 ... s after a 0.2 s bound, not a busy loop.
        await eventually(
            lambda: _true(hanging.hung["consume"] >= tries + 2), timeout=10, what="retries"
        )
        assert hanging.hung["consume"] < 20
        assert materializer.checkpoint == 0

        hanging.hangs["consume"] = 0  # NATS is back
        await wait_caught_up(materializer, bus, timeout=30)
        assert all(materializer.store.is_folded(signed.hash) for signed in operations[:3])


async def _true(value: bool) -> bool:
    return value
