"""The lifecycle every service implements: start, health, drain.

A :class:`Service` owns its stores and background tasks and adds its gRPC servicer to the
server it is given. The node (one process) composes services; the supervisor of
``pandanode up`` runs each in its own process (``pandanode serve <service>``).
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

import grpc
import grpc.aio

from .bus import Bus
from .dial import Dial, insecure_dial
from .rocks import RocksStore, free_bytes
from .settings import Settings

__all__ = ["EXIT_RESTART", "Service", "ServiceContext", "store_restart_wanted", "task_running"]

EXIT_RESTART = 75
"""Exit code of ``pandanode serve`` asking to be started again at once (``EX_TEMPFAIL``)."""


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a service gets to start with.

    Attributes:
        settings: The node's settings.
        bus: The NATS JetStream connection the process shares (None when no service of the
            process needs one, e.g. the gateway alone).
        server: The gRPC server to add the servicer to (not started yet).
        dial: How the service opens channels to the other services it calls (the gateway).
        own_address: Where a service calls the others of this process: a plaintext port on
            127.0.0.1 when the listener speaks TLS; empty: the process's gRPC address.
        internal_dial: How replication dials ingest: with the internal certificate when the
            deployment's services speak mutual TLS (:func:`~.tls.internal_dial`).
    """

    settings: Settings
    bus: Bus | None
    server: grpc.aio.Server
    dial: Dial = field(default=insecure_dial)
    own_address: str = ""
    internal_dial: Dial = field(default=insecure_dial)

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

    def restart_wanted(self) -> str:
        """Why the process should restart now to recover (empty: it should not).

        E.g. a store that failed to write on a full disk, once there is space again: RocksDB
        only takes writes again after it is reopened. ``pandanode serve`` then drains and exits
        with :data:`EXIT_RESTART`; the supervisor (or the orchestrator) starts it again.
        """
        return ""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Finish accepted work, hand it on, close everything (idempotent)."""


def task_running(task: asyncio.Task[None] | None) -> bool:
    """True if ``task`` exists and has not ended."""
    return task is not None and not task.done()


def store_restart_wanted(store: RocksStore | None, settings: Settings) -> str:
    """:meth:`Service.restart_wanted` of a service whose RocksDB ``store`` may have failed.

    A restart is wanted once the store failed to write and its file system has at least
    ``recovery_free_bytes`` free again.
    """
    if store is None or store.write_error is None:
        return ""
    free = free_bytes(store.path)
    if free < settings.recovery_free_bytes:
        return ""
    return f"its store failed to write ({store.write_error}); {free // 2**20} MiB free again"
