"""``pandanode proxy``: the one public gRPC address of a split deployment.

Each service runs as its own ``pandanode serve <service>`` process (or several, for query);
clients see one address that routes every call by its service path to a process serving it,
with the byte-level pass-through of the all-in-one node (:mod:`.runtime.proxy`). A route with
several upstreams (query replicas) spreads calls round-robin over those that are SERVING by
their health check; a read that finds its upstream unavailable before any answer is tried once
on the next one, so losing a replica does not fail reads.

Only the public services are routed (their methods, nothing else); the node's internal calls
(``NodeService.GetEndpoints``, which would hand out the internal addresses) and any method of
another service are UNIMPLEMENTED here. Health is answered by the proxy: a routed service is
SERVING while one of its upstreams is, the whole (``""``) while every route has one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .parts import PARTS
from .runtime.addresses import split_host_port
from .runtime.guard import guarded_server
from .runtime.proxy import PassThrough, method_kinds
from .runtime.server import add_reflection
from .runtime.settings import Settings, SettingsError
from .runtime.tls import bind, internal_dial

__all__ = ["READ_ONLY_SERVICES", "EntryPoint", "Route", "parse_route", "routes_of"]

log = logging.getLogger(__name__)

# Services whose every call only reads: safe to try again on another upstream.
READ_ONLY_SERVICES = frozenset({PARTS["query"].grpc_service, PARTS["discovery"].grpc_service})
# Seconds between two health checks of every upstream, and the deadline of one.
HEALTH_INTERVAL = 0.5
HEALTH_TIMEOUT = 2.0

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_READY = grpc.ChannelConnectivity.READY


@dataclass(frozen=True, slots=True)
class Route:
    """Where the calls of one service go.

    Attributes:
        service: The service's short name (``ingest``, ``query``, ``discovery``).
        upstreams: The ``host:port`` of each process serving it.
    """

    service: str
    upstreams: tuple[str, ...]

    @property
    def grpc_service(self) -> str:
        """The full name of the service's gRPC service."""
        return PARTS[self.service].grpc_service


def parse_route(text: str) -> Route:
    """Parse ``SERVICE=HOST:PORT[,HOST:PORT…]`` (e.g. ``query=10.0.0.5:2020,10.0.0.6:2020``).

    Raises:
        SettingsError: an unknown service or an address that is not ``host:port``.
    """
    service, equals, addresses = text.partition("=")
    service = service.strip()
    if not equals or service not in PARTS:
        raise SettingsError(
            f"route {text[:80]!r} must be SERVICE=HOST:PORT[,HOST:PORT…] with SERVICE one of "
            + ", ".join(PARTS)
        )
    upstreams = tuple(item.strip() for item in addresses.split(",") if item.strip())
    if not upstreams:
        raise SettingsError(f"route {text[:80]!r} names no upstream address")
    for address in upstreams:
        try:
            split_host_port(address)
        except ValueError as err:
            raise SettingsError(f"route {service}: {err}") from None
    return Route(service, upstreams)


@dataclass(eq=False)
class _Upstream:
    address: str
    channel: grpc.aio.Channel
    serving: bool = True  # until a health check says otherwise


@dataclass(eq=False)
class _Upstreams:
    """The processes of one route, picked round-robin among those serving."""

    route: Route
    members: list[_Upstream]
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def pick(self, failed: grpc.aio.Channel | None = None) -> grpc.aio.Channel | None:
        """The next upstream's channel; another one than ``failed`` (None if there is none)."""
        members = [m for m in self.members if m.channel is not failed]
        if not members:
            return None
        # Connected first (a replica just killed is not: its channel is idle or reconnecting),
        # then serving by the last health check (which may lag, or time out under load).
        ready = [m for m in members if m.channel.get_state() is _READY]
        usable = (
            [m for m in ready if m.serving] or ready or [m for m in members if m.serving] or members
        )
        return usable[next(self._turn) % len(usable)].channel

    @property
    def serving(self) -> bool:
        return any(member.serving for member in self.members)


class EntryPoint:
    """The routing gRPC server of ``pandanode proxy``.

    Args:
        settings: ``listen`` is the public address; the message size and stream limits apply.
        routes: One route per public service (a service appears once).
    """

    def __init__(self, settings: Settings, routes: Sequence[Route]) -> None:
        names = [route.service for route in routes]
        if not routes or len(set(names)) != len(names):
            raise SettingsError("give each routed service exactly one --route")
        self.settings = settings
        self.routes = tuple(routes)
        self.address = ""
        self._options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ]
        self._upstreams: dict[str, _Upstreams] = {}
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self._watch: asyncio.Task[None] | None = None

    def _channel_for(self, service: str) -> grpc.aio.Channel | None:
        upstreams = self._upstreams.get(service)
        return upstreams.pick() if upstreams is not None else None

    def _other_channel(self, service: str, failed: grpc.aio.Channel) -> grpc.aio.Channel | None:
        upstreams = self._upstreams.get(service)
        return upstreams.pick(failed) if upstreams is not None else None

    async def start(self) -> str:
        """Bind the public address and start routing; returns the bound ``host:port``.

        Raises:
            SettingsError: the address is in use or not available.
        """
        settings = self.settings
        # An upstream that was down (starting, restarting) is dialled again within a second:
        # gRPC's default back-off would fail calls to it for up to two minutes.
        upstream_options = [
            *self._options,
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
        ]
        # The services take only callers with the internal certificate, when that is on.
        dial = internal_dial(settings)
        for route in self.routes:
            members = [
                _Upstream(address, dial(address, upstream_options)) for address in route.upstreams
            ]
            self._upstreams[route.grpc_service] = _Upstreams(route, members)
        pool = descriptor_pool.Default()
        kinds = method_kinds(pool.FindServiceByName(name) for name in self._upstreams)
        server = guarded_server(
            grpc.aio.server(
                handlers=[
                    PassThrough(
                        kinds,
                        self._channel_for,
                        retry_services=READ_ONLY_SERVICES,
                        other_channel=self._other_channel,
                        trusted=self.settings.trusted_networks,
                    )
                ],
                options=[
                    *self._options,
                    ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
                    ("grpc.http.overload_protection", 0),
                    ("grpc.so_reuseport", 0),
                ],
            )
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [*self._upstreams, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        add_reflection(server, names)
        try:
            port = bind(server, settings.listen, settings)
        except SettingsError:
            await self._close_channels()
            raise
        if port == 0:
            await self._close_channels()
            raise SettingsError(
                f"cannot listen on {settings.listen}: the address is in use or not available"
            )
        await self._check_all()
        await server.start()
        self._server = server
        host, _ = split_host_port(settings.listen, allow_port_zero=True)
        self.address = f"{host}:{port}"
        self._watch = asyncio.create_task(self._watch_upstreams(), name="entry-health")
        return self.address

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting calls, let running ones finish for ``grace`` seconds, close."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
        await self._close_channels()

    async def _close_channels(self) -> None:
        for upstreams in self._upstreams.values():
            for member in upstreams.members:
                await member.channel.close(None)
        self._upstreams.clear()

    async def _watch_upstreams(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)  # poll: the upstreams' health, periodically
            await self._check_all()

    async def _check_all(self) -> None:
        members = [
            (service, member)
            for service, upstreams in self._upstreams.items()
            for member in upstreams.members
        ]
        results = await asyncio.gather(*(_is_serving(member, s) for s, member in members))
        for (_, member), serving in zip(members, results, strict=True):
            if member.serving != serving:
                log.info(
                    "upstream %s is %s", member.address, "SERVING" if serving else "NOT_SERVING"
                )
            member.serving = serving
        for service, upstreams in self._upstreams.items():
            await self._health.set(service, _SERVING if upstreams.serving else _NOT_SERVING)
        everything = all(upstreams.serving for upstreams in self._upstreams.values())
        await self._health.set("", _SERVING if everything else _NOT_SERVING)


async def _is_serving(member: _Upstream, service: str) -> bool:
    stub = health_pb2_grpc.HealthStub(member.channel)
    try:
        response = await stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=HEALTH_TIMEOUT
        )
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == _SERVING)


def routes_of(texts: Iterable[str]) -> list[Route]:
    """Parse every ``--route`` value (see :func:`parse_route`); each service at most once.

    Raises:
        SettingsError: a route that cannot be parsed, or a service routed twice.
    """
    routes = [parse_route(text) for text in texts]
    names = [route.service for route in routes]
    for name in set(names):
        if names.count(name) > 1:
            raise SettingsError(f"service {name} is routed twice: give its addresses in one route")
    return routes
