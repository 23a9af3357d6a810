"""The services of a node as :class:`~pandanode.services.runtime.service.Service` parts.

Thin wrappers around what each service is made of (stores, use cases, background tasks,
servicer); composed by :class:`~pandanode.services.node.Node` in one process.
"""

from __future__ import annotations

from pandanode.discovery.v1 import discovery_pb2, discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.replication.v1 import replication_pb2, replication_pb2_grpc

from .discovery.discovery import Discovery
from .discovery.identity import load_or_create_node_key
from .discovery.servicer import DiscoveryServicer
from .gateway.blobs import blobs_handler
from .gateway.service import Gateway, HandlerFactory
from .gateway.subscriptions import subscriptions_handler
from .ingest.ingest import Ingest
from .ingest.outbox import Announcer
from .ingest.servicer import IngestServicer
from .ingest.store import LogStore
from .query.materializer import Materializer
from .query.service import Query
from .query.servicer import QueryServicer
from .query.store import QueryStore
from .query.token_secret import load_or_create_token_secret
from .replication.replication import Replication
from .replication.servicer import ReplicationServicer
from .runtime.dial import Dial, insecure_dial
from .runtime.service import Service, ServiceContext, store_restart_wanted, task_running
from .runtime.settings import Settings

__all__ = [
    "PARTS",
    "UPSTREAM_START_TIMEOUT",
    "DiscoveryPart",
    "GatewayPart",
    "IngestPart",
    "QueryPart",
    "ReplicationPart",
]

# Seconds a starting gateway waits for its upstream services to be SERVING (then it serves
# anyway, NOT_SERVING until they are).
UPSTREAM_START_TIMEOUT = 30.0

# What handles WebSockets on the gateway's /graphql (subscriptions) and its /blobs/… routes;
# None: a WebSocket is refused, /blobs is 404.
GATEWAY_WEBSOCKET: HandlerFactory | None = subscriptions_handler
GATEWAY_BLOBS: HandlerFactory | None = blobs_handler


class IngestPart(Service):
    """Ingest: the log store, the writer and the outbox announcer."""

    name = "ingest"
    grpc_service = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name

    def __init__(self) -> None:
        self.store: LogStore | None = None
        self.ingest: Ingest | None = None
        self.announcer: Announcer | None = None
        self.settings = Settings()

    async def start(self, context: ServiceContext) -> None:  # noqa: D102 - see Service
        self.settings = context.settings
        self.store = LogStore(
            context.settings.data_dir / "ingest",
            write_buffer_bytes=context.settings.store_write_buffer_bytes,
        )
        # Each commit is handed to the announcer in memory; its outbox is for recovery only.
        self.announcer = Announcer(
            self.store, context.need_bus(), linger=context.settings.announce_linger
        )
        self.ingest = Ingest(self.store, context.settings, on_committed=self.announcer.committed)
        await self.ingest.start()
        await self.announcer.start()
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(
            IngestServicer(self.ingest), context.server
        )

    def health(self) -> bool:  # noqa: D102 - see Service
        return (
            self.ingest is not None
            and task_running(self.ingest._writer)
            and self.announcer is not None
            and self.announcer.running
        )

    def ready(self) -> bool:  # noqa: D102 - see Service
        # Publishing goes on while announcing fails (the outbox keeps every commit), but what
        # is stored is not reaching the other services: say so until announcing recovers.
        # A store that failed to write refuses every publish until the process restarts.
        store_ok = self.store is None or self.store.write_error is None
        return store_ok and (self.announcer is None or self.announcer.healthy)

    def restart_wanted(self) -> str:  # noqa: D102 - see Service
        return store_restart_wanted(self.store, self.settings)

    async def drain(self) -> None:  # noqa: D102 - see Service
        if self.ingest is not None:
            await self.ingest.stop()
            self.ingest = None
        if self.announcer is not None:
            await self.announcer.stop()
            self.announcer = None
        if self.store is not None:
            self.store.close()
            self.store = None


class QueryPart(Service):
    """Query: the query store, the materializer consuming events and the reads."""

    name = "query"
    grpc_service = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name

    def __init__(self) -> None:
        self.store: QueryStore | None = None
        self.materializer: Materializer | None = None
        self.reads: Query | None = None
        self.settings = Settings()

    async def start(self, context: ServiceContext) -> None:  # noqa: D102 - see Service
        settings = self.settings = context.settings
        self.store = QueryStore(
            settings.data_dir / "query",
            decoded_cache_bytes=settings.decoded_cache_bytes,
            write_buffer_bytes=settings.store_write_buffer_bytes,
        )
        self.materializer = Materializer(
            self.store,
            context.need_bus(),
            durable=settings.query_durable,
            batch_size=settings.query_batch_size,
        )
        await self.materializer.start()
        self.reads = Query(
            self.store,
            self.materializer,
            max_page_size=settings.max_page_size,
            listing_change_log_bytes=settings.listing_change_log_bytes,
            token_secret=load_or_create_token_secret(settings.page_token_secret_path),
            max_watch_queue_bytes=settings.watch_queue_bytes,
            max_resolved_documents=settings.max_resolved_documents,
            max_response_bytes=settings.max_message_bytes,
            supported_schemas=settings.supported_schemas,
        )
        query_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(self.reads), context.server)

    def health(self) -> bool:  # noqa: D102 - see Service
        return self.materializer is not None and task_running(self.materializer._task)

    def ready(self) -> bool:  # noqa: D102 - see Service
        # Reads still answer, but nothing new is materialized until the store is reopened.
        return self.store is None or self.store.write_error is None

    def restart_wanted(self) -> str:  # noqa: D102 - see Service
        return store_restart_wanted(self.store, self.settings)

    async def drain(self) -> None:  # noqa: D102 - see Service
        if self.reads is not None:
            self.reads.close()
            self.reads = None
        if self.materializer is not None:
            await self.materializer.stop()
            self.materializer = None
        if self.store is not None:
            self.store.close()
            self.store = None


class DiscoveryPart(Service):
    """Discovery: the node key, the peer table, probing and LAN announcements."""

    name = "discovery"
    grpc_service = discovery_pb2.DESCRIPTOR.services_by_name["DiscoveryService"].full_name

    def __init__(self) -> None:
        self.discovery: Discovery | None = None
        self._started = False

    async def start(self, context: ServiceContext) -> None:  # noqa: D102 - see Service
        node_key = load_or_create_node_key(context.settings.node_key_path)
        self.discovery = Discovery(context.settings, context.need_bus(), node_key)
        discovery_pb2_grpc.add_DiscoveryServiceServicer_to_server(
            DiscoveryServicer(self.discovery), context.server
        )

    async def serving(self, address: str) -> None:  # noqa: D102 - see Service
        if self.discovery is not None:
            await self.discovery.start(address)
            self._started = True

    def health(self) -> bool:  # noqa: D102 - see Service
        return self.discovery is not None

    async def drain(self) -> None:  # noqa: D102 - see Service
        if self.discovery is not None:
            if self._started:
                await self.discovery.stop()
            self.discovery = None


class GatewayPart(Service):
    """The HTTP gateway: aquadoggo's GraphQL API over HTTP as a client of ingest and query.

    It calls ``ingest_address`` and ``query_address`` (``--ingest``, ``--query``), or this
    process's own gRPC address when they are not set. Its gRPC server only answers health:
    SERVING while both upstream services do.
    """

    name = "gateway"
    grpc_service = "pandanode.gateway.v1.GatewayService"
    needs_bus = False

    def __init__(self) -> None:
        self.gateway: Gateway | None = None
        self._settings: Settings | None = None
        self._dial: Dial = insecure_dial
        self._own = False
        self._own_address = ""

    async def start(self, context: ServiceContext) -> None:  # noqa: D102 - see Service
        self._settings = context.settings
        self._dial = context.dial
        self._own_address = context.own_address

    async def serving(self, address: str) -> None:  # noqa: D102 - see Service
        assert self._settings is not None
        settings = self._settings
        self._own = not (settings.ingest_address and settings.query_address)
        own = self._own_address or address
        self.gateway = Gateway(
            settings,
            ingest_address=settings.ingest_address or own,
            query_address=settings.query_address or own,
            dial=self._dial,
            websocket=GATEWAY_WEBSOCKET,
            blobs=GATEWAY_BLOBS,
        )
        await self.gateway.start()
        if not self._own:  # in `pandanode up` the other services start alongside
            await self.gateway.wait_reachable(UPSTREAM_START_TIMEOUT)

    @property
    def http_address(self) -> str:
        """The bound HTTP ``host:port``, once serving."""
        return self.gateway.address if self.gateway is not None else ""

    def health(self) -> bool:  # noqa: D102 - see Service
        return self.gateway is None or self.gateway.running

    def ready(self) -> bool:  # noqa: D102 - see Service
        # Calling this process's own services: they are as ready as the process is.
        return self._own or (self.gateway is not None and self.gateway.reachable)

    async def drain(self) -> None:  # noqa: D102 - see Service
        if self.gateway is not None:
            await self.gateway.stop()
            self.gateway = None


class ReplicationPart(Service):
    """Replication: sessions with the peers discovery finds, a client of ingest."""

    name = "replication"
    grpc_service = replication_pb2.DESCRIPTOR.services_by_name["ReplicationService"].full_name

    def __init__(self) -> None:
        self.replication: Replication | None = None
        self._started = False

    async def start(self, context: ServiceContext) -> None:  # noqa: D102 - see Service
        node_key = load_or_create_node_key(context.settings.node_key_path)
        self.replication = Replication(
            context.settings, context.need_bus(), node_key, dial=context.internal_dial
        )
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
            ReplicationServicer(self.replication), context.server
        )

    async def serving(self, address: str) -> None:  # noqa: D102 - see Service
        if self.replication is not None:
            await self.replication.start(address)
            self._started = True

    def health(self) -> bool:  # noqa: D102 - see Service
        return self.replication is not None and (not self._started or self.replication.healthy)

    async def drain(self) -> None:  # noqa: D102 - see Service
        if self.replication is not None:
            await self.replication.stop()
            self.replication = None


# The services a node can run, by name, in the order they start.
PARTS: dict[str, type[Service]] = {
    part.name: part for part in (IngestPart, QueryPart, DiscoveryPart, ReplicationPart, GatewayPart)
}
