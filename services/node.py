"""The node: NATS (embedded or external) plus the services, on one gRPC address.

``Node`` is used by the all-in-one command (``pandanode up``), by a single service in a
distributed deployment (``pandanode serve ingest``), and by the tests, all through the same
code path: start, become ready (health SERVING only then), drain on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType

from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc

from .discovery.discovery import Discovery
from .discovery.identity import NODE_KEY_FILE, load_or_create_node_key
from .discovery.servicer import DiscoveryServicer
from .ingest.ingest import Ingest
from .ingest.outbox import Announcer
from .ingest.servicer import IngestServicer
from .ingest.store import LogStore
from .query.materializer import Materializer
from .query.service import Query
from .query.servicer import QueryServicer
from .query.store import QueryStore
from .query.token_secret import PAGE_TOKEN_SECRET_FILE, load_or_create_token_secret
from .runtime.bus import Bus, connect_bus
from .runtime.nats_server import EmbeddedNats
from .runtime.server import GrpcServer
from .runtime.settings import Settings

__all__ = ["SERVICES", "Node"]

log = logging.getLogger(__name__)

SERVICES = ("ingest", "query", "discovery")


class Node:
    """A running set of services.

    Args:
        settings: Where data lives, what to listen on, limits.
        services: Which services to run (all of :data:`SERVICES` for the all-in-one node).

    Attributes:
        address: The ``host:port`` the gRPC server is bound to, once started.
        nats_url: The NATS server in use, once started.
        ingest: The ingest service's use cases, when it runs.
        query: The query service's materializer (and reads), when it runs.
        discovery: The discovery service's peer table and tasks, when it runs.
    """

    def __init__(self, settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {', '.join(sorted(unknown))}")
        self.settings = settings
        self.services = services
        self.address = ""
        self.nats_url = settings.nats_url
        self._nats: EmbeddedNats | None = None
        self._bus: Bus | None = None
        self._server: GrpcServer | None = None
        self._store: LogStore | None = None
        self._announcer: Announcer | None = None
        self.ingest: Ingest | None = None
        self._query_store: QueryStore | None = None
        self.query: Materializer | None = None
        self.reads: Query | None = None
        self.discovery: Discovery | None = None
        self._stopped = asyncio.Event()

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return self.settings.data_dir

    async def start(self) -> None:
        """Start NATS (if embedded), the services and the gRPC server; then report SERVING."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        if not self.nats_url:
            self._nats = EmbeddedNats(store_dir=data_dir / "nats")
            await self._nats.start()
            self.nats_url = self._nats.url
        self._bus = await connect_bus(self.nats_url, name="pandanode")
        self._server = GrpcServer(self.settings)
        if "ingest" in self.services:
            self._store = LogStore(data_dir / "ingest")
            self._announcer = Announcer(self._store, self._bus)
            self.ingest = Ingest(self._store, self.settings, on_committed=self._announcer.committed)
            await self.ingest.start()
            await self._announcer.start()
            ingest_pb2_grpc.add_IngestServiceServicer_to_server(
                IngestServicer(self.ingest), self._server.server
            )
            self._server.add_services(
                [ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name]
            )
        if "query" in self.services:
            self._query_store = QueryStore(
                data_dir / "query", decoded_cache_bytes=self.settings.decoded_cache_bytes
            )
            self.query = Materializer(
                self._query_store,
                self._bus,
                durable=self.settings.query_durable,
                batch_size=self.settings.query_batch_size,
            )
            await self.query.start()
            self.reads = Query(
                self._query_store,
                self.query,
                max_page_size=self.settings.max_page_size,
                listing_change_log_bytes=self.settings.listing_change_log_bytes,
                token_secret=load_or_create_token_secret(data_dir / PAGE_TOKEN_SECRET_FILE),
                max_watch_queue_bytes=self.settings.watch_queue_bytes,
                max_resolved_documents=self.settings.max_resolved_documents,
                max_response_bytes=self.settings.max_message_bytes,
            )
            query_pb2_grpc.add_QueryServiceServicer_to_server(
                QueryServicer(self.reads), self._server.server
            )
            self._server.add_services(
                [query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name]
            )
        if "discovery" in self.services:
            node_key = load_or_create_node_key(data_dir / NODE_KEY_FILE)
            self.discovery = Discovery(self.settings, self._bus, node_key)
            discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server(
                DiscoveryServicer(self.discovery), self._server.server
            )
            self._server.add_services(
                [discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"].full_name]
            )
        self.address = await self._server.start()
        if self.discovery is not None:
            await self.discovery.start(self.address)
        await self._server.set_serving()
        log.info(
            "pandanode serving %s on %s (NATS %s)",
            ", ".join(self.services),
            self.address,
            self.nats_url,
        )

    async def stop(self) -> None:
        """Drain: stop taking calls, finish accepted work, announce it, close everything."""
        if self._server is not None:
            await self._server.stop(grace=5.0)
            self._server = None
        if self.discovery is not None:
            await self.discovery.stop()
            self.discovery = None
        if self.ingest is not None:
            await self.ingest.stop()
            self.ingest = None
        if self._announcer is not None:
            await self._announcer.stop()
            self._announcer = None
        if self.reads is not None:
            self.reads.close()
            self.reads = None
        if self.query is not None:
            await self.query.stop()
            self.query = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._query_store is not None:
            self._query_store.close()
            self._query_store = None
        if self._bus is not None:
            with contextlib.suppress(Exception):
                await self._bus.close()
            self._bus = None
        if self._nats is not None:
            await self._nats.stop()
            self._nats = None
        self._stopped.set()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
