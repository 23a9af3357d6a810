"""The lifecycle every service implements: start, health, drain.

A :class:`Service` owns its stores and background tasks and adds its gRPC servicer to the
server it is given. The node (one process) composes services; the supervisor of
``pandanode up`` runs each in its own process (``pandanode serve <service>``).
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from typing import ClassVar

import grpc

from .bus import Bus
from .settings import Settings

__all__ = ["Service", "ServiceContext", "task_running"]


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a service gets to start with.

    Attributes:
        settings: The node's settings.
        bus: The NATS JetStream connection the process shares (None when no service of the
            process needs one, e.g. the gateway alone).
        server: The gRPC server to add the servicer to (not started yet).
        own_address: Where a service calls the others of this process: a plaintext port on
            127.0.0.1 when the public listener speaks TLS; empty: the process's gRPC address.
    """

    settings: Settings
    bus: Bus | None
    server: grpc.aio.Server
    own_address: str = ""

    def need_bus(self) -> Bus:
        """The bus, for a service that needs one (:attr:`Service.needs_bus`)."""
        if self.bus is None:
            raise RuntimeError("this process has no NATS connection")
        return self.bus


class Service(abc.ABC):
    """One service of the node: ingest, query or discovery.

    Attributes:
        name: The short name (``pandanode serve <name>``).
        grpc_service: The full name of the gRPC service it serves.
        needs_bus: Whether it uses NATS (a process whose services do not connects to none).
    """

    name: ClassVar[str]
    grpc_service: ClassVar[str]
    needs_bus: ClassVar[bool] = True

    @abc.abstractmethod
    async def start(self, context: ServiceContext) -> None:
        """Open stores, start background work and add the servicer to ``context.server``."""

    async def serving(self, address: str) -> None:  # noqa: B027 - optional hook
        """Called once the gRPC server is bound to ``address``, before health says SERVING."""

    @abc.abstractmethod
    def health(self) -> bool:
        """True while every background part of the service runs (False is fatal)."""

    def ready(self) -> bool:
        """False while the service runs but cannot do all its work (e.g. retrying NATS).

        Not fatal: the node reports the service NOT_SERVING until it is ready again.
        """
        return True

    @abc.abstractmethod
    async def drain(self) -> None:
        """Finish accepted work, hand it on, close everything (idempotent)."""


def task_running(task: asyncio.Task[None] | None) -> bool:
    """True if ``task`` exists and has not ended."""
    return task is not None and not task.done()
