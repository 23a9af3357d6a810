"""Unparseable requests answered INVALID_ARGUMENT (``MALFORMED_REQUEST``) on every method.

grpcio decodes a request before any servicer code runs; when the bytes are not a valid
message (random bytes, a truncated field, invalid UTF-8 in a string field) it logs a traceback
and answers UNKNOWN. :func:`guarded_server` wraps every handler's request deserializer as the
handler is registered: a request that does not decode becomes a marker value, and the wrapped
handler answers it with the rich INVALID_ARGUMENT status of the error boundary before the
servicer sees it; its ``google.rpc.BadRequest`` names the field whose bytes are broken (see
:mod:`.wire`), or an empty field when the message's framing is. One mechanism for every
service (and the health and reflection services), so a new method is covered without doing
anything.

Handlers are wrapped once, at registration, not by a server interceptor: a ``grpc.aio``
interceptor is one more coroutine per call before the call is accepted, and under 64 unary
calls in flight the server then refused streams (RST_STREAM REFUSED_STREAM).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, cast

import grpc
import grpc.aio

from pandanode.core.errors import InvalidRequestError, Reason

from .client_limits import ClientLimits, limit_handler
from .errors import abort
from .wire import malformed_field

__all__ = ["MalformedRequestError", "RateLimitedLog", "guard_handler", "guarded_server"]

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

_REPORT_INTERVAL: Final = 10.0


class RateLimitedLog:
    """Log one line per ``interval`` seconds at most; count what was left out in between.

    Args:
        logger: Where the lines go.
        interval: Seconds between two lines.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = _REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0
        self._lock = threading.Lock()

    def warning(self, message: str, *args: object) -> bool:
        """Log ``message % args`` at WARNING, without traceback, unless one was logged lately.

        Returns:
            Whether the line was logged.
        """
        now = self._clock()
        with self._lock:
            if self._last is not None and now - self._last < self._interval:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        tail = f" ({suppressed} more like it not logged)" if suppressed else ""
        self._logger.warning(message + tail, *args)
        return True


class _Malformed:
    """What the guarded deserializer returns instead of raising."""

    __slots__ = ("field", "problem")

    def __init__(self, problem: str, field: str) -> None:
        self.problem = problem
        self.field = field


Deserializer = Callable[[bytes], object]


def _guarded(deserializer: Deserializer, descriptor: Any) -> Deserializer:
    def deserialize(raw: bytes) -> object:
        try:
            return deserializer(raw)
        except Exception as err:  # any failure to decode is a malformed request
            field = "" if descriptor is None else malformed_field(descriptor, raw)
            return _Malformed(type(err).__name__, field)

    return deserialize


class MalformedRequestError(InvalidRequestError):
    """A request (or a message of a request stream) whose bytes do not decode."""

    default_reason = Reason.MALFORMED_REQUEST


class _Rejecter:
    def __init__(self, method: str, message_name: str, reports: RateLimitedLog) -> None:
        self._method = method
        self._reports = reports
        self.message_name = message_name

    def error(self, field: str) -> MalformedRequestError:
        where = f" (field {field})" if field else ""
        return MalformedRequestError(
            f"the request is not a valid {self.message_name} message: its bytes do not "
            f"decode as protobuf{where} (send the message the method's .proto describes)"
        ).violation(field)

    async def __call__(self, malformed: _Malformed, context: Any) -> None:
        self._reports.warning(
            "malformed request to %s answered INVALID_ARGUMENT (%s)",
            self._method,
            malformed.problem,
        )
        await abort(context, self.error(malformed.field))


def _wrap_unary_request(behavior: Callable[..., Any], reject: _Rejecter) -> Callable[..., Any]:
    # The kind of the behavior is looked up once, here, not on every call (it is on the path
    # of every unary call of every service).
    if inspect.isgeneratorfunction(behavior):

        async def unary_sync_stream(request: object, context: Any) -> AsyncIterator[object]:
            if type(request) is _Malformed:
                await reject(request, context)
            for response in behavior(request, context):
                yield response

        return unary_sync_stream

    if inspect.isasyncgenfunction(behavior):

        async def unary_stream(request: object, context: Any) -> AsyncIterator[object]:
            if type(request) is _Malformed:
                await reject(request, context)
            async for response in behavior(request, context):
                yield response

        return unary_stream

    if inspect.iscoroutinefunction(behavior):

        async def unary(request: object, context: Any) -> object:
            if type(request) is _Malformed:
                await reject(request, context)
            return await behavior(request, context)

        return unary

    async def unary_sync(request: object, context: Any) -> object:
        if type(request) is _Malformed:
            await reject(request, context)
        # Only the generated "unimplemented" stubs are synchronous here; they return at once.
        return behavior(request, context)

    return unary_sync


def _wrap_stream_request(behavior: Callable[..., Any], reject: _Rejecter) -> Callable[..., Any]:
    # The servicer may read the stream in a task of its own, so a malformed message is raised
    # as an error (servicers map PandanodeError to its status) and, if it comes back out of
    # the servicer, answered here, in the call's own task: an abort from another task could
    # race a response being written.
    async def checked(requests: AsyncIterable[object], context: Any) -> AsyncIterator[object]:
        async for request in requests:
            if type(request) is _Malformed:
                raise _StreamMalformedError(request, reject.error(request.field))
            yield request

    if inspect.isasyncgenfunction(behavior):

        async def stream_stream(requests: AsyncIterable[object], context: Any) -> Any:
            try:
                async for response in behavior(checked(requests, context), context):
                    yield response
            except _StreamMalformedError as err:
                await reject(err.malformed, context)

        return stream_stream

    async def stream(requests: AsyncIterable[object], context: Any) -> object:
        try:
            return await behavior(checked(requests, context), context)
        except _StreamMalformedError as err:
            await reject(err.malformed, context)
            raise AssertionError("abort returned") from None  # pragma: no cover

    return stream


class _StreamMalformedError(MalformedRequestError):
    def __init__(self, malformed: _Malformed, error: MalformedRequestError) -> None:
        super().__init__(error.message, violations=error.field_violations)
        self.about(**error.metadata)
        self.malformed = malformed


def guard_handler(method: str, handler: Handler) -> Handler:
    """Return ``handler`` with its request deserializer guarded (see the module docstring).

    Handlers without a deserializer, and synchronous handlers of request streams, are
    returned unchanged.
    """
    deserializer = handler.request_deserializer
    kinds = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    behavior, make = next(((b, m) for b, m in kinds if b is not None), (None, None))
    if deserializer is None or behavior is None or make is None:
        return handler
    if handler.request_streaming and not (
        inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)
    ):
        return handler
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = descriptor.full_name if descriptor is not None else "request"
    reject = _Rejecter(method, name, _REPORTS)
    wrapped = (
        _wrap_stream_request(behavior, reject)
        if handler.request_streaming
        else _wrap_unary_request(behavior, reject)
    )
    result: Handler = make(
        wrapped,
        request_deserializer=_guarded(deserializer, descriptor),
        response_serializer=handler.response_serializer,
    )
    return result


_REPORTS = RateLimitedLog(log)


def _guarded_and_limited(method: str, handler: Handler, limits: ClientLimits | None) -> Handler:
    guarded = guard_handler(method, handler)
    return guarded if limits is None else limit_handler(method, guarded, limits)


class _GuardedGeneric(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A generic handler whose handlers come out guarded (each built once)."""

    def __init__(
        self,
        inner: grpc.GenericRpcHandler,  # type: ignore[type-arg]
        limits: ClientLimits | None,
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._guarded: dict[str, tuple[Handler, Handler]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:  # not this service's method
            return None
        method = str(handler_call_details.method)
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = _guarded_and_limited(method, handler, self._limits)
        self._guarded[method] = (handler, guarded)
        return guarded


class _GuardedServer:
    """A ``grpc.aio.Server`` whose registration calls guard every handler."""

    def __init__(self, server: grpc.aio.Server, limits: ClientLimits | None) -> None:
        self._server = server
        self._limits = limits

    def add_generic_rpc_handlers(
        self,
        handlers: Iterable[grpc.GenericRpcHandler],  # type: ignore[type-arg]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_GuardedGeneric(h, self._limits) for h in handlers)
        )

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        guarded = {
            name: _guarded_and_limited(f"/{service}/{name}", h, self._limits)
            for name, h in handlers.items()
        }
        self._server.add_registered_method_handlers(service, guarded)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def guarded_server(server: grpc.aio.Server, limits: ClientLimits | None = None) -> grpc.aio.Server:
    """``server``, with the request deserializer of every handler registered on it guarded.

    Register servicers on the returned object (the generated ``add_…_to_server`` functions,
    health, reflection); everything else is passed through to ``server``.

    Args:
        server: The server to register on.
        limits: Per-client concurrency limits to count every pandanode method against
            (:mod:`.client_limits`); None: none (a pass-through, whose upstreams count).
    """
    return cast(grpc.aio.Server, _GuardedServer(server, limits))
