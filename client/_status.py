"""What a node says about itself: health of its services, what it stores, the peers it knows."""

from __future__ import annotations

import asyncio
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

    async def check(name: str) -> str | None:
        try:
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service=name), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise from_rpc_error(err) from err
        state: str = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        return state

    # The questions go out together (a person waits for the answer); read in their order.
    answers = await asyncio.gather(*map(check, _KNOWN_SERVICES), return_exceptions=True)
    services: dict[str, str] = {}
    for name, answer in zip(_KNOWN_SERVICES, answers, strict=True):
        if isinstance(answer, BaseException):
            raise answer
        if answer is not None:
            services[name] = answer
    (logs, entries), (node_id, version) = await asyncio.gather(
        _stored(connection, serving=services.get(_INGEST) == "SERVING"),
        _node_info(connection, serving=services.get(_DISCOVERY) == "SERVING"),
    )
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


async def _stored(connection: Connection, *, serving: bool) -> tuple[int | None, int | None]:
    """How many logs and entries the node stores (None, None: ingest does not serve)."""
    if not serving:
        return None, None
    ingest = connection.ingest

    async def get_page(request: pb.GetLogHeightsRequest) -> pb.GetLogHeightsResponse:
        return await connection.call(
            lambda: ingest.GetLogHeights(request, timeout=connection.timeout)
        )

    heights = await all_log_heights(get_page)
    return len(heights), sum(h.seq_num for h in heights)


async def _node_info(connection: Connection, *, serving: bool) -> tuple[str | None, str | None]:
    """The node's id and version (None, None: discovery does not serve)."""
    if not serving:
        return None, None
    discovery = connection.discovery
    info = await connection.call(
        lambda: discovery.GetNodeInfo(dpb.GetNodeInfoRequest(), timeout=connection.timeout)
    )
    return info.node_id, info.version or None


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
