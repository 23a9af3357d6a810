"""A byte-level gRPC pass-through: forwards each call to the process serving its service.

Messages are never decoded (identity serializers). The upstream learns the client's address
(:mod:`.clients`), not the pass-through's own. Metadata, the deadline, the status code,
its details and the trailing metadata (``grpc-status-details-bin`` included, so the
``google.rpc.ErrorInfo`` reasons reach the client) travel both ways. Unary methods are
forwarded as unary calls, streams as streams; the kinds come from the service descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor

from .clients import Network, forwarded_client_metadata

__all__ = ["MethodKind", "PassThrough", "method_kinds"]

if TYPE_CHECKING:
    _Context: TypeAlias = grpc.aio.ServicerContext[bytes, bytes]
    _Handler: TypeAlias = grpc.RpcMethodHandler[bytes, bytes]

# Metadata keys that gRPC sets itself and that must not be forwarded by hand.
_RESERVED = ("grpc-", ":")
_HOP_BY_HOP = frozenset({"user-agent", "te", "content-type"})


class MethodKind(enum.Enum):
    """How requests and responses of a method travel."""

    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"


def method_kinds(services: Iterable[ServiceDescriptor]) -> dict[str, MethodKind]:
    """Map each method path (``/package.Service/Method``) of ``services`` to its kind."""
    kinds: dict[str, MethodKind] = {}
    for service in services:
        for method in service.methods:
            kind = {
                (False, False): MethodKind.UNARY_UNARY,
                (False, True): MethodKind.UNARY_STREAM,
                (True, False): MethodKind.STREAM_UNARY,
                (True, True): MethodKind.STREAM_STREAM,
            }[(method.client_streaming, method.server_streaming)]
            kinds[f"/{service.full_name}/{method.name}"] = kind
    return kinds


def _forwarded(metadata: Iterable[Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if not key.startswith(_RESERVED) and key not in _HOP_BY_HOP
    )


class PassThrough(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler routing each known method to the channel of its service.

    Args:
        kinds: The method paths served, with their kinds (:func:`method_kinds`).
        channel_for: The channel of the process serving a service full name, or None while
            that service is down (the call then fails with UNAVAILABLE).
        retry_services: Services whose unary and server-streaming calls only read: one that
            fails UNAVAILABLE before any answer is sent once more, to the channel
            ``other_channel`` gives (another replica), if it gives one.
        other_channel: A channel of the service other than the one that failed, or None.
        trusted: Networks besides loopback whose callers may name their own client
            (``trusted_proxies``, :mod:`.clients`).
    """

    def __init__(
        self,
        kinds: dict[str, MethodKind],
        channel_for: Callable[[str], grpc.aio.Channel | None],
        *,
        retry_services: frozenset[str] = frozenset(),
        other_channel: Callable[[str, grpc.aio.Channel], grpc.aio.Channel | None] | None = None,
        trusted: tuple[Network, ...] = (),
    ) -> None:
        self._trusted = trusted
        self._kinds = kinds
        self._channel_for = channel_for
        self._retry_services = retry_services if other_channel is not None else frozenset()
        self._other_channel = other_channel
        self._handlers: dict[str, _Handler] = {}
        for method, kind in kinds.items():
            self._handlers[method] = self._handler(method, kind)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> _Handler | None:
        """The handler of a known method; None lets the server answer UNIMPLEMENTED."""
        return self._handlers.get(handler_call_details.method)

    async def _channel(self, method: str, context: _Context) -> grpc.aio.Channel:
        service = method.split("/")[1]
        channel = self._channel_for(service)
        if channel is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{service} is restarting; retry")
        assert channel is not None
        return channel

    def _options(self, context: _Context) -> dict[str, Any]:
        remaining = context.time_remaining()
        return {
            "metadata": forwarded_client_metadata(
                _forwarded(context.invocation_metadata()), context, self._trusted
            ),
            "timeout": remaining if remaining is not None and remaining < 1e9 else None,
        }

    @staticmethod
    async def _finish(call: Any, context: _Context) -> None:
        trailing = await call.trailing_metadata()
        if trailing:
            context.set_trailing_metadata(_forwarded_trailing(trailing))

    @staticmethod
    async def _fail(err: grpc.aio.AioRpcError, context: _Context) -> None:
        await context.abort(
            err.code(), err.details() or "", _forwarded_trailing(err.trailing_metadata())
        )

    def _unary_unary(self, method: str) -> _Handler:
        async def unary_unary(request: bytes, context: _Context) -> bytes:
            channel = await self._channel(method, context)
            attempts = self._attempts(method)
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    channel = self._retry_channel(method, channel)
                call = channel.unary_unary(method, None, None)(request, **self._options(context))
                try:
                    response: bytes = await call
                except grpc.aio.AioRpcError as err:
                    if attempt < attempts and err.code() is grpc.StatusCode.UNAVAILABLE:
                        continue
                    await self._fail(err, context)
                    raise
                await self._finish(call, context)
                return response
            raise AssertionError("unreachable: the last attempt returns or raises")

        return grpc.unary_unary_rpc_method_handler(unary_unary)

    def _unary_stream(self, method: str) -> _Handler:
        async def unary_stream(request: bytes, context: _Context) -> AsyncIterator[bytes]:
            channel = await self._channel(method, context)
            attempts = self._attempts(method)
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    channel = self._retry_channel(method, channel)
                call = channel.unary_stream(method, None, None)(request, **self._options(context))
                try:
                    async for response in self._relay(call, context, retryable=attempt < attempts):
                        yield response
                except _UpstreamUnavailableError:
                    continue
                return

        return grpc.unary_stream_rpc_method_handler(unary_stream)

    def _handler(self, method: str, kind: MethodKind) -> _Handler:
        if kind is MethodKind.UNARY_UNARY:
            return self._unary_unary(method)
        if kind is MethodKind.UNARY_STREAM:
            return self._unary_stream(method)
        if kind is MethodKind.STREAM_UNARY:

            async def stream_unary(requests: AsyncIterator[bytes], context: _Context) -> bytes:
                channel = await self._channel(method, context)
                call = channel.stream_unary(method, None, None)(**self._options(context))
                pump = asyncio.create_task(_pump(requests, call))
                try:
                    response: bytes = await call
                except grpc.aio.AioRpcError as err:
                    await self._fail(err, context)
                    raise
                finally:
                    await _stop(pump)
                await self._finish(call, context)
                return response

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        async def stream_stream(
            requests: AsyncIterator[bytes], context: _Context
        ) -> AsyncIterator[bytes]:
            channel = await self._channel(method, context)
            call = channel.stream_stream(method, None, None)(**self._options(context))
            pump = asyncio.create_task(_pump(requests, call))
            try:
                async for response in self._relay(call, context):
                    yield response
            finally:
                await _stop(pump)

        return grpc.stream_stream_rpc_method_handler(stream_stream)

    def _attempts(self, method: str) -> int:
        return 2 if method.split("/")[1] in self._retry_services else 1

    def _retry_channel(self, method: str, failed: grpc.aio.Channel) -> grpc.aio.Channel:
        assert self._other_channel is not None  # only called when retries are on
        return self._other_channel(method.split("/")[1], failed) or failed

    async def _relay(
        self, call: Any, context: _Context, *, retryable: bool = False
    ) -> AsyncIterator[bytes]:
        answered = False
        try:
            try:
                initial = _forwarded(await call.initial_metadata())
                if initial:
                    answered = True
                    await context.send_initial_metadata(initial)
                async for response in call:
                    answered = True
                    yield response
            except grpc.aio.AioRpcError as err:
                if retryable and not answered and err.code() is grpc.StatusCode.UNAVAILABLE:
                    raise _UpstreamUnavailableError from err
                await self._fail(err, context)
                raise
            await self._finish(call, context)
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    # Not ``await call``: a streaming call is not awaitable.
                    await call.code()


class _UpstreamUnavailableError(Exception):
    """The upstream was unavailable before it answered anything: use another one."""


async def _pump(requests: AsyncIterator[bytes], call: Any) -> None:
    """Copy the client's requests to the upstream call, in a task the handler owns.

    Handing the server's request iterator to the upstream channel would leave a read of it
    pending in grpc's own task when the upstream fails, which breaks the client's stream.
    """
    with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
        async for request in requests:
            await call.write(request)
        await call.done_writing()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _forwarded_trailing(
    metadata: Iterable[Any] | None,
) -> tuple[tuple[str, Any], ...]:
    # grpc-status-details-bin carries google.rpc.Status (ErrorInfo): it must survive.
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if key == "grpc-status-details-bin" or not key.startswith(_RESERVED)
    )
