"""Per-client concurrency limits: one client address cannot hold every call of a process.

Each service process counts, per client address (:func:`.clients.client_address`: through a
pass-through, the client behind it), the calls of pandanode's services it is serving now: all
of them (``max_concurrent_rpcs_per_client``) and the streaming ones among them
(``max_streams_per_client``: watchers, PublishStream, Sync, log reads), which can be held open
for as long as a client likes. A call past either limit is answered at once with
RESOURCE_EXHAUSTED, reason ``TOO_MANY_CALLS`` (metadata ``limit`` names the setting), with a
``google.rpc.RetryInfo``: it succeeds once the client ends one of its calls. Other clients are
served as before.

Clients on loopback (or in ``trusted_proxies``) are not counted: the node's own services
(replication's streams to ingest, the gateway's watches) and local tools all share that address
and cannot be told apart, and a local user can reach every port anyway. Health checking and
reflection are not counted.

Like the guard (:mod:`.guard`), the limit wraps each handler when it is registered, not as a
server interceptor.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc

from pandanode.core.errors import LimitExceededError, Reason

from .clients import Network, client_address, is_local
from .errors import abort

__all__ = ["ClientLimits", "limit_handler"]

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

_COUNTED_PREFIX: Final = "/pandanode."
RETRY_DELAY: Final = 1.0
"""Seconds a refused client is told to wait (RetryInfo)."""


class ClientLimits:
    """The calls each client address holds in one process, against two limits.

    Args:
        max_calls: Most calls of any kind one client address may have in flight.
        max_streams: Most streaming calls (of those) one client address may hold.
        trusted: Networks besides loopback that count as local (``trusted_proxies``).
    """

    def __init__(self, max_calls: int, max_streams: int, trusted: tuple[Network, ...] = ()) -> None:
        self.trusted = trusted
        self.max_calls = max_calls
        self.max_streams = max_streams
        self._calls: dict[str, int] = {}
        self._streams: dict[str, int] = {}

    def held(self, client: str) -> tuple[int, int]:
        """The calls and the streams ``client`` holds now."""
        return self._calls.get(client, 0), self._streams.get(client, 0)

    def enter(self, client: str, *, streaming: bool) -> LimitExceededError | None:
        """Count a call of ``client``; the error to answer instead when it is over a limit.

        A call that is refused is not counted (nothing to :meth:`leave`).
        """
        calls, streams = self.held(client)
        if calls >= self.max_calls:
            return self._refused(client, "max_concurrent_rpcs_per_client", self.max_calls)
        if streaming and streams >= self.max_streams:
            return self._refused(client, "max_streams_per_client", self.max_streams)
        self._calls[client] = calls + 1
        if streaming:
            self._streams[client] = streams + 1
        return None

    def leave(self, client: str, *, streaming: bool) -> None:
        """A call :meth:`enter` counted has ended."""
        _decrement(self._calls, client)
        if streaming:
            _decrement(self._streams, client)

    @staticmethod
    def _refused(client: str, setting: str, limit: int) -> LimitExceededError:
        kind = "streams" if setting == "max_streams_per_client" else "calls"
        return LimitExceededError(
            f"client {client} already has {limit} {kind} open at this node (setting {setting}): "
            "end one, or retry later",
            Reason.TOO_MANY_CALLS,
            retry_delay=RETRY_DELAY,
        ).about(limit=setting, client_address=client)


def _decrement(counts: dict[str, int], client: str) -> None:
    left = counts.get(client, 0) - 1
    if left > 0:
        counts[client] = left
    else:
        counts.pop(client, None)


def limit_handler(method: str, handler: Handler, limits: ClientLimits) -> Handler:
    """``handler`` counted against ``limits`` (see the module docstring).

    Methods of other services than pandanode's, and synchronous handlers, are returned
    unchanged.
    """
    if not method.startswith(_COUNTED_PREFIX):
        return handler
    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    behavior, make = next(((b, m) for b, m in kinds if b is not None), (None, None))
    if behavior is None or make is None:
        return handler
    streaming = bool(handler.request_streaming or handler.response_streaming)
    if inspect.isasyncgenfunction(behavior):
        wrapped = _limited_generator(behavior, limits, streaming)
    elif inspect.iscoroutinefunction(behavior):
        wrapped = _limited_coroutine(behavior, limits, streaming)
    else:
        return handler
    result: Handler = make(
        wrapped,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    return result


def _client(context: Any, limits: ClientLimits) -> str | None:
    client = client_address(context, limits.trusted)
    return None if is_local(client, limits.trusted) else client


def _limited_coroutine(
    behavior: Callable[..., Any], limits: ClientLimits, streaming: bool
) -> Callable[..., Any]:
    async def limited(request: Any, context: Any) -> Any:
        client = _client(context, limits)
        if client is None:
            return await behavior(request, context)
        refused = limits.enter(client, streaming=streaming)
        if refused is not None:
            await abort(context, refused)
        try:
            return await behavior(request, context)
        finally:
            limits.leave(client, streaming=streaming)

    return limited


def _limited_generator(
    behavior: Callable[..., Any], limits: ClientLimits, streaming: bool
) -> Callable[..., Any]:
    async def limited(request: Any, context: Any) -> AsyncIterator[Any]:
        client = _client(context, limits)
        if client is None:
            async for response in behavior(request, context):
                yield response
            return
        refused = limits.enter(client, streaming=streaming)
        if refused is not None:
            await abort(context, refused)
        try:
            async for response in behavior(request, context):
                yield response
        finally:
            limits.leave(client, streaming=streaming)

    return limited
