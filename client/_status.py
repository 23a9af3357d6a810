"""What a node says about itself: health of its services, what it stores, the peers it knows."""

from __future__ import annotations

import time
from functools import partial
from typing import Final

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.discovery.v1 import discovery_pb2 as dpb
from pandanode.ingest.v1 import ingest_pb2 as pb

from ._connection import Connection, not_served
from ._errors import NotServedError, from_rpc_error
from ._logheights import all_log_heights
from ._models import NodeStatus, Peer

__all__ = ["node_status", "peers"]

_LIST_PAGE_SIZE: Final = 1000
"""The page size of the list calls (a node lowers it to its own largest page)."""

_INGEST: Final = "pandanode.ingest.v1.IngestService"
_DISCOVERY: Final = "pandanode.discovery.v1.DiscoveryService"
_KNOWN_SERVICES: Final = (
    _INGEST,
    "pandanode.query.v1.QueryService",
    "pandanode.replication.v1.ReplicationService",
    _DISCOVERY,
)


async def node_status(connection: Connection) -> NodeStatus:
    """Health of the node and of each pandanode service, and how much it stores."""
    health = health_pb2_grpc.HealthStub(connection.channel)
    timeout = connection.timeout
    started = time.perf_counter()
    overall = await connection.call(
        lambda: health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
    )
    latency = (time.perf_counter() - started) * 1000
    services: dict[str, str] = {}
    for name in _KNOWN_SERVICES:
        try:
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service=name), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                continue
            raise from_rpc_error(err) from err
        services[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    logs = entries = None
    if services.get(_INGEST) == "SERVING":
        ingest = connection.ingest

        async def get_page(request: pb.GetLogHeightsRequest) -> pb.GetLogHeightsResponse:
            return await connection.call(lambda: ingest.GetLogHeights(request, timeout=timeout))

        heights = await all_log_heights(get_page)
        logs = len(heights)
        entries = sum(h.seq_num for h in heights)
    node_id = version = None
    if services.get(_DISCOVERY) == "SERVING":
        discovery = connection.discovery
        info = await connection.call(
            lambda: discovery.GetNodeInfo(dpb.GetNodeInfoRequest(), timeout=timeout)
        )
        node_id, version = info.node_id, info.version or None
    return NodeStatus(
        address=connection.address,
        serving=overall.status == health_pb2.HealthCheckResponse.SERVING,
        services=services,
        latency_ms=latency,
        logs=logs,
        entries=entries,
        node_id=node_id,
        version=version,
    )


async def peers(connection: Connection) -> list[Peer]:
    """The other nodes the node's discovery service knows, by node id (every page of them).

    Raises:
        NotServedError: The node does not run the discovery service.
    """
    from ._values import peer_from_pb  # the core's ids: not needed by `status`

    discovery = connection.discovery
    found: list[Peer] = []
    request = dpb.ListPeersRequest(page_size=_LIST_PAGE_SIZE)
    while True:
        try:
            response = await connection.call(
                partial(discovery.ListPeers, request, timeout=connection.timeout)
            )
        except NotServedError as err:
            raise not_served(
                connection.address, "DiscoveryService", "does not run discovery"
            ) from err
        found += [peer_from_pb(peer) for peer in response.peers]
        if not response.next_page_token:
            return found
        request = dpb.ListPeersRequest(
            page_size=_LIST_PAGE_SIZE, page_token=response.next_page_token
        )
