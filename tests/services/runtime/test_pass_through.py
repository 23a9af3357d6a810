"""The pass-through of the public address ends a streaming upstream call it gives up on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from pandanode.services.runtime.proxy import PassThrough


class _StreamingCall:
    """Like grpc.aio's streaming calls: iterable, cancellable, and not awaitable."""

    def __init__(self) -> None:
        self.cancelled = False

    async def initial_metadata(self) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[bytes]:
        yield b"first"
        raise asyncio.CancelledError  # the handler is cancelled mid-stream (the node drains)

    def done(self) -> bool:
        return self.cancelled

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED


async def test_a_streaming_call_relayed_when_the_handler_is_cancelled_is_cancelled_upstream() -> (
    None
):
    call = _StreamingCall()
    context: Any = None  # not reached: nothing fails upstream
    relay = PassThrough({}, lambda _: None)._relay(call, context)
    assert await anext(relay) == b"first"
    # Not a TypeError from awaiting a streaming call: the cancellation goes on up.
    with pytest.raises(asyncio.CancelledError):
        await anext(relay)
    assert call.cancelled
