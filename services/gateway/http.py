"""Serving the gateway's ASGI app with uvicorn inside the service's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator

import uvicorn

from .app import AsgiHandler

__all__ = ["HttpServer"]

# Seconds open connections get to finish when the gateway drains.
_SHUTDOWN_GRACE = 5


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the node's own handlers drain the gateway."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


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
        host, _, port = self._listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
        # connections of sockets that say so, and a response written in two parts (headers,
        # body) would otherwise wait for the client's delayed ACK, ~40 ms per request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if int(port) != 0:
            # For a fixed port only: Linux may give two SO_REUSEADDR sockets bound to port 0 the
            # same ephemeral port, and the listen() of the second then fails (seen under load).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
            sock.listen(2048)
        except OSError as err:
            sock.close()
            raise OSError(f"cannot listen for HTTP on {self._listen}: {err.strerror}") from None
        sock.set_inheritable(True)
        bound_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
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
