"""The node: NATS (embedded or external) plus services, in one process, on one gRPC address.

``Node`` runs the services of one process: one service for ``pandanode serve <service>`` (each
child of ``pandanode up``, or a container of a distributed deployment), or all of them for the
tests, in-process. Every service follows the same lifecycle (:class:`Service`): start, become
ready (health SERVING only then), drain on stop; a service whose background work died is
reported NOT_SERVING and sets :attr:`Node.failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType

from grpc_health.v1 import health_pb2

from .discovery.discovery import Discovery
from .ingest.ingest import Ingest
from .parts import PARTS, DiscoveryPart, GatewayPart, IngestPart, QueryPart, ReplicationPart
from .query.materializer import Materializer
from .query.service import Query
from .replication.replication import Replication
from .runtime.bus import Bus, connect_bus, redact_url
from .runtime.dial import Dial, insecure_dial
from .runtime.nats_server import EmbeddedNats, read_credentials
from .runtime.nats_users import may_manage_stream
from .runtime.server import GrpcServer
from .runtime.service import Service, ServiceContext
from .runtime.settings import Settings
from .runtime.tls import (
    internal_dial,
    internal_server_credentials,
    internal_tls_enabled,
    server_credentials,
    tls_enabled,
)

__all__ = ["SERVICES", "Node"]

log = logging.getLogger(__name__)

SERVICES = tuple(PARTS)

# Seconds between two looks at the services' health.
HEALTH_INTERVAL = 0.5


class Node:
    """A running set of services in this process.

    Args:
        settings: Where data lives, what to listen on, limits.
        services: Which services to run (all of :data:`SERVICES` by default).
        dial: How a service opens channels to the others it calls (the gateway); the CLI, the
            composition root, passes the client's endpoint channel (``EndpointChannel``)
            factory, which dials each service's process directly.

    Attributes:
        address: The ``host:port`` the gRPC server is bound to, once started.
        internal_address: Where the node's own services call each other: ``address``, or
            with TLS on ``address`` a plaintext port on 127.0.0.1.
        nats_url: The NATS server in use, once started (an embedded one's URL carries its
            credentials: keep it out of logs, or pass it through ``redact_url``).
        failed: Set when a service's background work died (the process should exit non-zero).
        restart: Set when a service asks for the process to be started again to recover
            (:meth:`~.runtime.service.Service.restart_wanted`).
    """

    def __init__(
        self,
        settings: Settings,
        services: tuple[str, ...] = SERVICES,
        *,
        dial: Dial = insecure_dial,
    ) -> None:
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services: {', '.join(sorted(unknown))}")
        self.settings = settings
        self.services = services
        self.dial = dial
        self.address = ""
        self.internal_address = ""
        self.nats_url = settings.nats_url
        self.parts: list[Service] = []
        self.failed = asyncio.Event()
        self.restart = asyncio.Event()
        self._nats: EmbeddedNats | None = None
        self._bus: Bus | None = None
        self._server: GrpcServer | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return self.settings.data_dir

    def _part(self, kind: type[Service]) -> Service | None:
        return next((part for part in self.parts if isinstance(part, kind)), None)

    @property
    def ingest(self) -> Ingest | None:
        """The ingest service's use cases, when it runs."""
        part = self._part(IngestPart)
        return part.ingest if isinstance(part, IngestPart) else None

    @property
    def query(self) -> Materializer | None:
        """The query service's materializer, when it runs."""
        part = self._part(QueryPart)
        return part.materializer if isinstance(part, QueryPart) else None

    @property
    def reads(self) -> Query | None:
        """The query service's reads, when it runs."""
        part = self._part(QueryPart)
        return part.reads if isinstance(part, QueryPart) else None

    @property
    def discovery(self) -> Discovery | None:
        """The discovery service's peer table and tasks, when it runs."""
        part = self._part(DiscoveryPart)
        return part.discovery if isinstance(part, DiscoveryPart) else None

    @property
    def http_address(self) -> str:
        """The HTTP gateway's bound ``host:port``, when it runs."""
        part = self._part(GatewayPart)
        return part.http_address if isinstance(part, GatewayPart) else ""

    @property
    def replication(self) -> Replication | None:
        """The replication service's sessions and peers, when it runs."""
        part = self._part(ReplicationPart)
        return part.replication if isinstance(part, ReplicationPart) else None

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
        server_credentials(self.settings)  # a TLS file that cannot be read: fail before NATS
        internal_server_credentials(self.settings)
        if any(PARTS[name].needs_bus for name in self.services):
            user = password = None
            if not self.nats_url:
                self._nats = EmbeddedNats.for_data_dir(data_dir)
                await self._nats.start()
                self.nats_url = self._nats.client_url
            elif self.settings.nats_credentials_file:
                user, password = read_credentials(Path(self.settings.nats_credentials_file))
            self._bus = await connect_bus(
                self.nats_url,
                name="pandanode",
                replicas=self.settings.stream_replicas,
                user=user,
                password=password,
                # A deployment's NATS users other than ingest's may not create or change the
                # stream: those services wait for ingest to make it.
                manage_stream=may_manage_stream(user),
            )
        self._server = GrpcServer(self.settings)
        settings = self.settings
        internal_dial_of: Dial = insecure_dial
        if tls_enabled(settings) or internal_tls_enabled(settings):
            # The services that call others of this process (replication calls ingest, the
            # gateway ingest and query) dial a loopback port of the same server, plaintext:
            # the TLS listener's name and CA are for clients, not for the process itself.
            port = self._server.server.add_insecure_port("127.0.0.1:0")
            if port == 0:
                raise OSError("could not bind a loopback port for the node's own calls")
            internal = f"127.0.0.1:{port}"
            self.internal_address = internal
            settings = settings.with_changes(ingest_address=settings.ingest_address or internal)
        dial: Dial = self.dial
        if internal_tls_enabled(settings):
            # Calls to the deployment's other services present this service's certificate.
            internal_dial_of = dial = internal_dial(settings, plaintext=[self.internal_address])
        context = ServiceContext(
            settings,
            self._bus,
            self._server.server,
            dial=dial,
            own_address=self.internal_address,
            internal_dial=internal_dial_of,
        )
        for name in self.services:
            part = PARTS[name]()
            self.parts.append(part)
            await part.start(context)
            self._server.add_services([part.grpc_service])
        self.address = await self._server.start()
        self.internal_address = self.internal_address or self.address
        for part in self.parts:
            await part.serving(self.address)
        await self._server.set_serving()
        self._watch = asyncio.create_task(self._watch_health(), name="node-health")
        log.info(
            "pandanode serving %s on %s (NATS %s)",
            ", ".join(self.services),
            self.address,
            redact_url(self.nats_url) if self._bus is not None else "not used",
        )

    async def _watch_health(self) -> None:
        """Keep health in step with the parts' liveness and readiness.

        A part that is not ready is NOT_SERVING until it is ready again; one whose background
        work died is NOT_SERVING for good, and :attr:`failed` is set.
        """
        assert self._server is not None
        health = self._server.health
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        dead: set[str] = set()
        unready: set[str] = set()
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)  # poll: the parts' tasks have no callback
            changed = False
            for part in self.parts:
                if part.name in dead:
                    continue
                if not part.health():
                    dead.add(part.name)
                    log.error("pandanode: %s stopped working; reporting NOT_SERVING", part.name)
                    await health.set(part.grpc_service, not_serving)
                    self.failed.set()
                    changed = True
                    continue
                ready = part.ready()
                why = part.restart_wanted()
                if why and not self.restart.is_set():
                    log.warning("pandanode: %s restarts to recover: %s", part.name, why)
                    self.restart.set()
                if ready == (part.name not in unready):
                    continue
                changed = True
                if ready:
                    unready.discard(part.name)
                    log.info("pandanode: %s is ready again; reporting SERVING", part.name)
                else:
                    unready.add(part.name)
                    log.warning("pandanode: %s is not ready; reporting NOT_SERVING", part.name)
                await health.set(part.grpc_service, serving if ready else not_serving)
            if changed:
                await health.set("", not_serving if dead or unready else serving)

    async def stop(self) -> None:
        """Drain: stop taking calls, finish accepted work, announce it, close everything."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        # Replication's live streams never end by themselves: end its sessions before the
        # server's grace period would wait for them.
        for part in self.parts:
            if part.name == "replication":
                await part.drain()
        if self._server is not None:
            await self._server.stop(grace=5.0)
            self._server = None
        # The gateway, replication and discovery first (they work through the others), then
        # ingest before query.
        order = {"gateway": -2, "replication": -1, "discovery": 0, "ingest": 1, "query": 2}
        for part in sorted(self.parts, key=lambda part: order.get(part.name, 3)):
            await part.drain()
        self.parts = []
        if self._bus is not None:
            with contextlib.suppress(Exception):
                await self._bus.close()
            self._bus = None
        if self._nats is not None:
            await self._nats.stop()
            self._nats = None

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
