"""Serving the gateway's ASGI app with uvicorn inside the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from pandanode.services.runtime.addresses import split_host_port

from .app import AsgiHandler

__all__ = ["HttpServer"]

# Seconds open connections get to finish when the gateway drains.
_SHUTDOWN_GRACE = 5


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node's own handlers drain the gateway."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _CoalescingTransport:
    """A transport whose writes within one turn of the event loop go out as one.

    uvicorn writes a response's status line and headers when the app starts the response
    and its body when the app sends it, two writes and, without Nagle's algorithm, two TCP
    segments: the client wakes up for the headers and again for the body. The gateway's
    answers are written in one turn, so here they leave in one segment.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Protocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]  # a variable, not a type
    """uvicorn's HTTP protocol writing through a :class:`_CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        # Duck-typed: uvicorn calls only the transport methods the wrapper has or forwards.
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport)))


class HttpServer:
    """An HTTP/WebSocket server for one ASGI app on ``host:port`` (port 0: a free one).

    Args:
        app: The ASGI application.
        listen: ``host:port`` to bind.
    """

    def __init__(self, app: AsgiHandler, listen: str) -> None:
        self._app = app
        self._listen = listen
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.address = ""

    async def start(self) -> str:
        """Bind (raising OSError with the address if it cannot), start serving; the address."""
        host, port = split_host_port(self._listen, allow_port_zero=True)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # connections of sockets that say so, and a response written in two parts (headers,
        # body) would otherwise wait for the client's delayed ACK, ~40 ms per request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if port != 0:
            # For a fixed port only: Linux may give two SO_REUSEADDR sockets bound to port 0 the
            # same ephemeral port, and the listen() of the second then fails (seen under load).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(2048)
        except OSError as err:
            sock.close()
            raise OSError(f"cannot listen for HTTP on {self._listen}: {err.strerror}") from None
        sock.set_inheritable(True)
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            http=_Protocol,
            ws="websockets-sansio",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=_SHUTDOWN_GRACE,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="gateway-http")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
                raise OSError(f"the HTTP server on {self._listen} stopped while starting")
            await asyncio.sleep(0.01)  # poll: uvicorn has no started event
        self.address = (
            f"{host}:{bound_port}" if family == socket.AF_INET else f"[{host}]:{bound_port}"
        )
        return self.address

    @property
    def running(self) -> bool:
        """True while the server task runs."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop taking connections, let open ones finish (a grace), close (idempotent)."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._task
        self._server = None
        self._task = None
