"""The gateway's ASGI application: routing, CORS, GraphQL over HTTP, hooks for the rest.

``POST /graphql`` runs a GraphQL request (JSON ``{query, variables, operationName}``),
``GET /graphql`` serves the playground page (:mod:`.playground`, self-contained), a WebSocket
on ``/graphql`` goes to the subscriptions handler, ``/blobs/…`` to the blobs handler. Both
handlers are plain ASGI callables passed in; without them a WebSocket is closed with 1003 and
``/blobs`` is 404.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from .playground import PLAYGROUND_CSP, PLAYGROUND_HTML

__all__ = [
    "AsgiHandler",
    "GatewayApp",
    "encode_json",
    "GraphQLExecutor",
    "Receive",
    "Scope",
    "Send",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiHandler = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI application: what the WebSocket and blobs hooks are."""

_PLAYGROUND = PLAYGROUND_HTML.encode()
_PAGE_HEADERS = (
    (b"content-security-policy", PLAYGROUND_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-cache"),
)
# Largest GraphQL request body read (an entry and a blob piece operation fit easily).
MAX_BODY_BYTES = 2 * 1024 * 1024
_CLOSE_UNSUPPORTED = 1003


class GraphQLExecutor(Protocol):
    """Runs one GraphQL request; returns the JSON response body (``data`` / ``errors``)."""

    async def execute(
        self, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> dict[str, Any]:
        """Run ``query`` with ``variables`` (its ``operation_name`` operation)."""
        ...


class GatewayApp:
    """The ASGI application of the gateway.

    Args:
        graphql: Runs GraphQL requests.
        cors_origins: Origins allowed to call from a browser; ``("*",)``: any.
        websocket: Handles WebSocket connections to ``/graphql`` (subscriptions).
        blobs: Handles HTTP requests under ``/blobs/``.
    """

    def __init__(
        self,
        graphql: GraphQLExecutor,
        cors_origins: tuple[str, ...] = ("*",),
        websocket: AsgiHandler | None = None,
        blobs: AsgiHandler | None = None,
    ) -> None:
        self.graphql = graphql
        self.cors_origins = cors_origins
        self.websocket = websocket
        self.blobs = blobs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        kind = scope["type"]
        path: str = scope.get("path", "")
        if kind == "websocket":
            if path.rstrip("/") == "/graphql" and self.websocket is not None:
                await self.websocket(scope, receive, send)
            else:
                await _refuse_websocket(receive, send)
            return
        if kind != "http":  # lifespan is off; anything else is not ours
            return
        send = self._with_cors(scope, send)
        method: str = scope["method"]
        if method == "OPTIONS":
            await _respond(send, 204, b"", "text/plain")
            return
        if path.rstrip("/") == "/graphql":
            if method == "POST":
                await self._graphql_post(receive, send)
            elif method in ("GET", "HEAD"):
                await _respond(send, 200, _PLAYGROUND, "text/html; charset=utf-8", _PAGE_HEADERS)
            else:
                await _respond(send, 405, b"method not allowed", "text/plain")
            return
        if path.startswith("/blobs/") and self.blobs is not None:
            await self.blobs(scope, receive, send)
            return
        await _respond(send, 404, b"not found", "text/plain")

    def _with_cors(self, scope: Scope, send: Send) -> Send:
        origin = _header(scope, b"origin")
        if origin is None:
            return send
        if "*" in self.cors_origins:
            allowed = b"*"
        elif origin.decode("latin-1") in self.cors_origins:
            allowed = origin
        else:
            return send
        extra = [
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
            (b"access-control-allow-headers", b"content-type, range, if-none-match"),
            (b"access-control-expose-headers", b"content-length, content-range, etag"),
            (b"vary", b"origin"),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_cors

    async def _graphql_post(self, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            await _respond_json(send, 413, {"errors": [{"message": "request body too large"}]})
            return
        try:
            request = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            await _respond_json(send, 400, {"errors": [{"message": f"invalid JSON body: {err}"}]})
            return
        problem = _request_problem(request)
        if problem:
            await _respond_json(send, 400, {"errors": [{"message": problem}]})
            return
        result = await self.graphql.execute(
            request["query"], request.get("variables"), request.get("operationName")
        )
        await _respond_json(send, 200, result)


def _request_problem(request: Any) -> str:
    if not isinstance(request, dict):
        return "the body must be a JSON object with a 'query'"
    if not isinstance(request.get("query"), str):
        return "the body must have a 'query' string"
    if request.get("variables") is not None and not isinstance(request["variables"], dict):
        return "'variables' must be a JSON object"
    name = request.get("operationName")
    if name is not None and not isinstance(name, str):
        return "'operationName' must be a string"
    return ""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def encode_json(payload: Any) -> bytes:
    r"""``payload`` as compact JSON in UTF-8.

    Non-ASCII characters are written as UTF-8 rather than ``\u`` escapes (as aquadoggo
    does; it is also several times faster); a string that UTF-8 cannot hold (a lone
    surrogate, which a JSON request can carry into an error message) is escaped instead.
    """
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


async def _respond_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _respond(send, status, encode_json(payload), "application/json")


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": _CLOSE_UNSUPPORTED})
