"""Live queries: GraphQL subscriptions over WebSocket (the graphql-ws protocol).

The protocol is ``graphql-transport-ws`` (what the ``graphql-ws`` npm client, Apollo and urql
speak): ``connection_init`` → ``connection_ack``, ``ping``/``pong``, ``subscribe`` → ``next``…
``complete`` (or ``error``), ``complete`` from the client to stop. Protocol errors close the
connection with the protocol's codes (4400 bad message, 4401 subscribe before init, 4406 no
subprotocol, 4408 init timeout, 4409 duplicate id, 4429 second init, 1009 too big).

For every schema ``S`` the ``SubscriptionRoot`` has ``all_S(filter, meta, includeExisting)``
of type ``SChange {kind, document}``, backed by the query service's ``WatchDocuments``: every
document created, updated, deleted (or no longer matching the filters: ``LEFT``) as it is
materialized. Queries and mutations sent over the WebSocket are answered too (one ``next``).
"""

# graphql-core annotates GraphQLNamedType.__new__ as returning the base class, so pyright types
# every GraphQLObjectType(...), GraphQLScalarType(...) … as a plain GraphQLNamedType; mypy (strict)
# ignores that annotation and checks these arguments, returns and assignments.
# pyright: reportArgumentType=false

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from graphql import (
    ExecutionResult,
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationType,
    execute,
    get_operation_ast,
)
from graphql.execution import create_source_event_stream

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.services.runtime.clients import client_metadata

from .api import GraphQLApi, is_coroutine
from .app import AsgiHandler, Receive, Scope, Send
from .execution import PlainFieldsExecutionContext
from .filters import field_filters, meta_filters
from .resolvers import Doc, RequestContext
from .schema import SchemaTypes

if TYPE_CHECKING:
    from .service import Gateway

__all__ = [
    "CHANGE_KIND",
    "PROTOCOL",
    "Change",
    "SubscriptionLimits",
    "SubscriptionServer",
    "subscription_fields",
    "subscriptions_handler",
]

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
"""The WebSocket subprotocol of graphql-ws."""

CHANGE_KIND = GraphQLEnumType(
    "DocumentChangeKind",
    {
        "EXISTING": GraphQLEnumValue("EXISTING", description="Matched when subscribing."),
        "CREATED": GraphQLEnumValue("CREATED"),
        "UPDATED": GraphQLEnumValue("UPDATED"),
        "DELETED": GraphQLEnumValue("DELETED"),
        "LEFT": GraphQLEnumValue("LEFT", description="Updated, and no longer matches."),
    },
    description="How a document changed.",
)
_KINDS = {
    qpb.CHANGE_KIND_EXISTING: "EXISTING",
    qpb.CHANGE_KIND_CREATED: "CREATED",
    qpb.CHANGE_KIND_UPDATED: "UPDATED",
    qpb.CHANGE_KIND_DELETED: "DELETED",
    qpb.CHANGE_KIND_LEFT: "LEFT",
}

# Close codes of the graphql-ws protocol.
BAD_REQUEST = 4400
UNAUTHORIZED = 4401
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408
SUBSCRIBER_EXISTS = 4409
TOO_MANY_INITS = 4429
MESSAGE_TOO_BIG = 1009
# Longest part of a bad message quoted back in a close reason (a reason is at most 123 bytes).
_QUOTE = 40


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a watched document: the source of ``SChange``."""

    kind: str
    document: Doc


@dataclass(frozen=True, slots=True)
class SubscriptionLimits:
    """What one WebSocket connection may do.

    Attributes:
        max_subscriptions: Most subscriptions running at once.
        max_message_bytes: Largest client message.
        init_timeout: Seconds to send ``connection_init``.
    """

    max_subscriptions: int = 100
    max_message_bytes: int = 64 * 1024
    init_timeout: float = 10.0


def subscription_fields(types: SchemaTypes) -> Mapping[str, GraphQLField]:
    """``all_S(filter, meta, includeExisting): SChange`` for every schema ``S``."""
    fields: dict[str, GraphQLField] = {}
    for schema_id in sorted(types.schemas):
        change = GraphQLObjectType(
            f"{schema_id}Change",
            {
                "kind": GraphQLField(GraphQLNonNull(CHANGE_KIND), resolve=_kind),
                "document": GraphQLField(
                    GraphQLNonNull(types.documents[schema_id]), resolve=_document
                ),
            },
            description=f"A change of a `{types.schemas[schema_id].name}` document.",
        )
        arguments = types.collection_arguments(schema_id, root=True)
        fields[f"all_{schema_id}"] = GraphQLField(
            GraphQLNonNull(change),
            args={
                "filter": arguments["filter"],
                "meta": arguments["meta"],
                "includeExisting": GraphQLArgument(
                    GraphQLBoolean,
                    default_value=False,
                    description="First every document that matches now (kind EXISTING).",
                ),
            },
            subscribe=_watcher(schema_id),
            resolve=lambda change, _info, **_args: change,
            description="Every matching document as it is created, updated or deleted.",
        )
    return fields


def _kind(change: Change, _info: Any) -> str:
    return change.kind


def _document(change: Change, _info: Any) -> Doc:
    return change.document


def _watcher(schema_id: str) -> Any:
    async def watch(_root: Any, info: GraphQLResolveInfo, **args: Any) -> AsyncIterator[Change]:
        context: RequestContext = info.context
        request = qpb.WatchDocumentsRequest(schema_id=schema_id)
        request.filters.extend(field_filters(context.kinds.get(schema_id, {}), args.get("filter")))
        request.filters.extend(meta_filters(args.get("meta")))
        return _changes(context, request, include_existing=bool(args.get("includeExisting")))

    return watch


async def _changes(
    context: RequestContext, request: qpb.WatchDocumentsRequest, *, include_existing: bool
) -> AsyncIterator[Change]:
    call = context.upstreams.query.WatchDocuments(request, metadata=context.metadata)
    try:
        async for response in call:
            for change in response.changes:
                kind = _KINDS.get(change.kind)
                if kind is None or (kind == "EXISTING" and not include_existing):
                    continue
                # Relations are fetched again for every change: they may have changed too.
                context.fetched.clear()
                yield Change(kind, Doc(change.document))
    finally:
        call.cancel()


def subscriptions_handler(gateway: Gateway) -> AsgiHandler:
    """The WebSocket handler of a gateway's ``/graphql`` (``GATEWAY_WEBSOCKET`` in parts).

    Adds the ``SubscriptionRoot`` to the gateway's GraphQL schemas.
    """
    gateway.api.subscriptions = subscription_fields
    settings = gateway.settings
    limits = SubscriptionLimits(
        max_subscriptions=settings.ws_max_subscriptions,
        max_message_bytes=settings.ws_max_message_bytes,
        init_timeout=settings.ws_init_timeout,
    )
    return SubscriptionServer(gateway.api, limits)


class _CloseError(Exception):
    """The connection is to be closed with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SubscriptionServer:
    """Serves the graphql-ws protocol on WebSocket connections.

    Args:
        api: Prepares the GraphQL documents (its schema has the ``SubscriptionRoot``).
        limits: Per connection limits.
    """

    def __init__(self, api: GraphQLApi, limits: SubscriptionLimits) -> None:
        self._api = api
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one WebSocket connection until either side closes it."""
        if (await receive())["type"] != "websocket.connect":
            return
        if PROTOCOL not in scope.get("subprotocols", []):
            await send({"type": "websocket.accept"})
            await _close(send, SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await send({"type": "websocket.accept", "subprotocol": PROTOCOL})
        client = scope.get("client")
        connection = _Connection(
            self._api, self._limits, send, client_metadata(client[0] if client else None)
        )
        try:
            await connection.serve(receive)
        except _CloseError as closed:
            await _close(send, closed.code, closed.reason)
        finally:
            await connection.stop()


class _Connection:
    def __init__(
        self,
        api: GraphQLApi,
        limits: SubscriptionLimits,
        send: Send,
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> None:
        self._metadata = metadata
        self._api = api
        self._limits = limits
        self._send = send
        self._lock = asyncio.Lock()
        self._init_received = False
        self._acknowledged = False
        self._running: dict[str, asyncio.Task[None]] = {}

    async def serve(self, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.init_timeout
        while True:
            if self._acknowledged:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), deadline - loop.time())
                except TimeoutError:
                    raise _CloseError(INIT_TIMEOUT, "Connection initialisation timeout") from None
            if message["type"] == "websocket.disconnect":
                return
            if message["type"] == "websocket.receive":
                await self._handle(message)

    async def _handle(self, message: Mapping[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            raw = message.get("bytes") or b""
            if len(raw) > self._limits.max_message_bytes:
                raise _CloseError(MESSAGE_TOO_BIG, "Message too big")
            try:
                text = raw.decode()
            except UnicodeDecodeError:
                raise _CloseError(BAD_REQUEST, "Invalid message received: not UTF-8") from None
        if len(text) > self._limits.max_message_bytes:
            raise _CloseError(MESSAGE_TOO_BIG, "Message too big")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            raise _CloseError(BAD_REQUEST, "Invalid message received: not JSON") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
            raise _CloseError(BAD_REQUEST, "Invalid message received: no 'type'")
        kind = parsed["type"]
        if kind == "connection_init":
            if self._init_received:
                raise _CloseError(TOO_MANY_INITS, "Too many initialisation requests")
            if parsed.get("payload") is not None and not isinstance(parsed["payload"], dict):
                raise _CloseError(
                    BAD_REQUEST, "Invalid message received: payload must be an object"
                )
            self._init_received = True
            self._acknowledged = True
            await self.emit({"type": "connection_ack"})
        elif kind == "ping":
            await self.emit({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(parsed)
        elif kind == "complete":
            identifier = _identifier(parsed)
            task = self._running.pop(identifier, None)
            if task is not None:
                task.cancel()
        else:
            raise _CloseError(BAD_REQUEST, f"Invalid message type {kind[:_QUOTE]!r}")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if not self._acknowledged:
            raise _CloseError(UNAUTHORIZED, "Unauthorized")
        identifier = _identifier(message)
        payload: dict[str, Any] = message.get("payload") or {}
        problem = _payload_problem(message.get("payload"))
        if problem:
            raise _CloseError(BAD_REQUEST, f"Invalid message received: {problem}")
        if identifier in self._running:
            raise _CloseError(
                SUBSCRIBER_EXISTS, f"Subscriber for {identifier[:_QUOTE]} already exists"
            )
        if len(self._running) >= self._limits.max_subscriptions:
            await self.emit(
                {
                    "id": identifier,
                    "type": "error",
                    "payload": [
                        {
                            "message": f"too many subscriptions on this connection (at most "
                            f"{self._limits.max_subscriptions}); complete one first"
                        }
                    ],
                }
            )
            return
        self._running[identifier] = asyncio.create_task(
            self._operation(identifier, payload), name=f"graphql-ws {identifier[:_QUOTE]}"
        )

    async def _operation(self, identifier: str, payload: dict[str, Any]) -> None:
        try:
            if await self._run(identifier, payload):
                await self.emit({"id": identifier, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("gateway: subscription %s failed: %s", identifier[:_QUOTE], err)
            with contextlib.suppress(Exception):
                message = err.details() if isinstance(err, grpc.aio.AioRpcError) else str(err)
                await self.emit(
                    {
                        "id": identifier,
                        "type": "next",
                        "payload": {"errors": [{"message": message}]},
                    }
                )
                await self.emit({"id": identifier, "type": "complete"})
        finally:
            if self._running.get(identifier) is asyncio.current_task():
                del self._running[identifier]

    async def _run(self, identifier: str, payload: dict[str, Any]) -> bool:
        """Run one operation; False if it ended with an ``error`` (no ``complete`` follows)."""
        prepared = await self._api.prepare(payload["query"])
        if isinstance(prepared, list):
            await self._error(identifier, prepared)
            return False
        snapshot, document = prepared
        operation_name = payload.get("operationName")
        variables = payload.get("variables")
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            await self._error(identifier, [GraphQLError("no operation of that name to run")])
            return False
        context = self._api.context(snapshot)
        context.metadata = self._metadata
        if operation.operation != OperationType.SUBSCRIPTION:
            result = execute(
                snapshot.schema,
                document,
                variable_values=variables,
                operation_name=operation_name,
                context_value=context,
                is_awaitable=is_coroutine,
                execution_context_class=PlainFieldsExecutionContext,
            )
            if not isinstance(result, ExecutionResult):
                result = await result
            await self._next(identifier, result)
            return True
        # graphql-core's subscribe() without its mapping of events, which executes them with
        # its default execution context: each event is executed here as queries are.
        stream = await create_source_event_stream(
            snapshot.schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=context,
        )
        if isinstance(stream, ExecutionResult):
            if stream.data is None and stream.errors:
                await self._error(identifier, stream.errors)
                return False
            await self._next(identifier, stream)
            return True
        try:
            async for event in stream:
                result = execute(
                    snapshot.schema,
                    document,
                    root_value=event,
                    variable_values=variables,
                    operation_name=operation_name,
                    context_value=context,
                    is_awaitable=is_coroutine,
                    execution_context_class=PlainFieldsExecutionContext,
                )
                if not isinstance(result, ExecutionResult):
                    result = await result
                await self._next(identifier, result)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        return True

    async def _next(self, identifier: str, result: ExecutionResult) -> None:
        await self.emit({"id": identifier, "type": "next", "payload": result.formatted})

    async def _error(self, identifier: str, errors: list[GraphQLError]) -> None:
        await self.emit(
            {"id": identifier, "type": "error", "payload": [error.formatted for error in errors]}
        )

    async def emit(self, message: dict[str, Any]) -> None:
        """Send one protocol message (one at a time: subscriptions run concurrently)."""
        text = json.dumps(message, separators=(",", ":"))
        async with self._lock:
            await self._send({"type": "websocket.send", "text": text})

    async def stop(self) -> None:
        """Cancel every running operation."""
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _identifier(message: Mapping[str, Any]) -> str:
    identifier = message.get("id")
    if not isinstance(identifier, str) or not identifier:
        raise _CloseError(BAD_REQUEST, "Invalid message received: 'id' must be a non-empty string")
    return identifier


def _payload_problem(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "'payload' must be an object"
    if not isinstance(payload.get("query"), str):
        return "'payload.query' must be a string"
    if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
        return "'payload.variables' must be an object"
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        return "'payload.operationName' must be a string"
    return ""


async def _close(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": reason})
