"""gRPC server lifecycle shared by every service: limits, health checking and reflection."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from .addresses import split_host_port
from .client_limits import ClientLimits
from .guard import guarded_server
from .reflection import DocumentedReflectionServicer
from .settings import Settings
from .tls import bind

__all__ = ["GrpcServer", "add_reflection"]


def add_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection for ``service_names`` (and reflection itself) on ``server``.

    Registered like any servicer, so a :func:`~.guard.guarded_server` guards it too
    (``enable_server_reflection`` would pick the synchronous servicer for a wrapped server).
    The file descriptors it answers keep the protos' comments (see :mod:`.reflection`).
    """
    names = [*service_names, reflection.SERVICE_NAME]
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        DocumentedReflectionServicer(names), server
    )


class GrpcServer:
    """A ``grpc.aio`` server with health checking and reflection, bound to one address.

    Health is NOT_SERVING until :meth:`set_serving` is called, so probes only pass once every
    part of the node is ready.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = guarded_server(
            grpc.aio.server(
                options=[
                    ("grpc.max_receive_message_length", settings.max_message_bytes),
                    ("grpc.max_send_message_length", settings.max_message_bytes),
                    ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
                    # grpc's overload protection counts streams the event loop has not
                    # released yet and answers REFUSED_STREAM (UNAVAILABLE) below the limit;
                    # past max_concurrent_streams clients queue instead.
                    ("grpc.http.overload_protection", 0),
                    ("grpc.so_reuseport", 0),
                ],
            ),
            ClientLimits(
                settings.max_concurrent_rpcs_per_client,
                settings.max_streams_per_client,
                settings.trusted_networks,
            ),
        )
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        ]
        self.port = 0

    def add_services(self, service_names: Iterable[str]) -> None:
        """Register the full names of services added to :attr:`server` (for reflection/health)."""
        self._service_names.extend(service_names)

    async def start(self) -> str:
        """Bind and start; returns the address actually bound (``host:port``)."""
        add_reflection(self.server, self._service_names)
        # A service's listener: with internal TLS on, only the deployment's services and entry
        # point (certificates of the internal CA) may call it.
        self.port = bind(self.server, self.settings.listen, self.settings, internal=True)
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {self.settings.listen}")
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        host, _ = split_host_port(self.settings.listen, allow_port_zero=True)
        return f"{host}:{self.port}"

    async def set_serving(self) -> None:
        """Report SERVING for the node and every service."""
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 5.0) -> None:
        """Report NOT_SERVING, stop taking calls, let running ones finish within ``grace``."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
