"""The gRPC face of discovery: translate messages, call the use cases. Nothing else."""

from __future__ import annotations

import grpc

from pandanode.core.version import version
from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.discovery.v1 import discovery_pb2_grpc as pb_grpc

from .convert import peer_to_pb
from .discovery import Discovery

__all__ = ["DiscoveryServicer"]


class DiscoveryServicer(pb_grpc.DiscoveryServiceServicer):
    """Serves ``pandanode.discovery.v1.DiscoveryService``."""

    def __init__(self, discovery: Discovery) -> None:
        self._discovery = discovery

    async def GetNodeInfo(  # noqa: N802 - gRPC method name
        self, request: pb.GetNodeInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetNodeInfoResponse:
        """This node's id, advertised address and version."""
        info = self._discovery.info()
        return pb.GetNodeInfoResponse(node_id=info.node_id, address=info.address, version=version())

    async def ListPeers(  # noqa: N802 - gRPC method name
        self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListPeersResponse:
        """The known peers, ordered by node id."""
        return pb.ListPeersResponse(peers=[peer_to_pb(peer) for peer in self._discovery.peers()])
