"""How a service opens gRPC channels to the other services it calls.

A :data:`Dial` is handed down by the composition root (the CLI), so a service never imports the
client library: ``pandanode serve gateway`` dials with the client's endpoint channel, which calls
each service's process directly; anything else dials plainly (:func:`insecure_dial`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["Dial", "insecure_dial", "serving"]

Dial: TypeAlias = Callable[[str, Sequence[tuple[str, Any]]], grpc.aio.Channel]
"""Opens a channel to a gRPC ``host:port`` with channel options."""


def insecure_dial(address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """A plain channel to ``address``."""
    return grpc.aio.insecure_channel(address, options=list(options))


async def serving(channel: grpc.aio.Channel, service: str, timeout: float = 2.0) -> bool:
    """Whether the gRPC health service behind ``channel`` reports ``service`` SERVING.

    Args:
        channel: A channel to the server.
        service: The full name of the service (e.g. ``pandanode.ingest.v1.IngestService``).
        timeout: Deadline of the check, seconds; unreachable or late counts as not serving.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
