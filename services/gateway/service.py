"""The gateway service: its HTTP server, its upstream clients and its health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..runtime.settings import Settings
from .api import GraphQLApi
from .app import AsgiHandler, GatewayApp
from .http import HttpServer
from .upstream import Upstreams

__all__ = ["HEALTH_INTERVAL", "Gateway", "HandlerFactory"]

log = logging.getLogger(__name__)

HandlerFactory = Callable[["Gateway"], AsgiHandler]
"""Makes the ASGI handler of a route from the gateway (its upstream stubs, its GraphQL API)."""

# Seconds between two health checks of the upstream services.
HEALTH_INTERVAL = 1.0


class Gateway:
    """aquadoggo's HTTP API (GraphQL, blobs) as a client of the ingest and query services.

    Args:
        settings: ``http_listen``, ``cors_origins``, ``graphql_cache_bytes`` and the message size
            limit are used.
        ingest_address: Where the ingest service is served.
        query_address: Where the query service is served.
        websocket: Makes the WebSocket handler of ``/graphql`` (subscriptions), if any.
        blobs: Makes the handler of ``/blobs/…``, if any.

    Attributes:
        address: The bound HTTP ``host:port`` once started.
        reachable: Whether both upstream services answered the last health check.
    """

    def __init__(
        self,
        settings: Settings,
        ingest_address: str,
        query_address: str,
        websocket: HandlerFactory | None = None,
        blobs: HandlerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.upstreams = Upstreams.open(ingest_address, query_address, settings.max_message_bytes)
        self.api = GraphQLApi(self.upstreams, settings.graphql_cache_bytes)
        origins = tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip())
        self.app = GatewayApp(self.api, origins or ("*",))
        self.app.websocket = websocket(self) if websocket is not None else None
        self.app.blobs = blobs(self) if blobs is not None else None
        self._http = HttpServer(self.app, settings.http_listen)
        self._watch: asyncio.Task[None] | None = None
        self.address = ""
        self.reachable = False

    async def start(self) -> str:
        """Bind the HTTP server and start watching the upstreams; the HTTP address."""
        self.address = await self._http.start()
        self.reachable = await self.upstreams.reachable()
        self._watch = asyncio.create_task(self._watch_upstreams(), name="gateway-upstreams")
        return self.address

    async def wait_reachable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for both upstream services to be SERVING."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.reachable and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # poll: the upstream services are starting
            self.reachable = await self.upstreams.reachable()
        return self.reachable

    @property
    def running(self) -> bool:
        """True while the HTTP server and the upstream watch run."""
        return self._http.running and self._watch is not None and not self._watch.done()

    async def _watch_upstreams(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)  # poll: health has no push without Watch
            reachable = await self.upstreams.reachable()
            if reachable != self.reachable:
                log.log(
                    logging.INFO if reachable else logging.WARNING,
                    "gateway: upstream services %s",
                    "reachable again" if reachable else "unreachable",
                )
            self.reachable = reachable

    async def stop(self) -> None:
        """Stop serving HTTP, stop watching, close the channels (idempotent)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self._http.stop()
        await self.upstreams.close()
