"""The gRPC face of discovery: translate messages, call the use cases. Nothing else.

ListPeers pages by node id; its page tokens are authenticated with a secret of this process
(the peer table does not outlive it either), see :mod:`pandanode.services.runtime.paging`.
"""

from __future__ import annotations

import grpc
import grpc.aio

from pandanode.core.errors import PandanodeError
from pandanode.core.version import version
from pandanode.discovery.v1 import discovery_pb2 as pb
from pandanode.discovery.v1 import discovery_pb2_grpc as pb_grpc
from pandanode.services.runtime.errors import abort
from pandanode.services.runtime.paging import KeysetPages

from .convert import peer_to_pb
from .discovery import Discovery

__all__ = ["DiscoveryServicer"]


class DiscoveryServicer(pb_grpc.DiscoveryServiceServicer):
    """Serves ``pandanode.discovery.v1.DiscoveryService``."""

    def __init__(self, discovery: Discovery) -> None:
        self._discovery = discovery
        self._pages = KeysetPages("peers")

    async def GetNodeInfo(  # noqa: N802 - gRPC method name
        self, request: pb.GetNodeInfoRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.GetNodeInfoResponse:
        """This node's id, advertised address and version."""
        info = self._discovery.info()
        return pb.GetNodeInfoResponse(node_id=info.node_id, address=info.address, version=version())

    async def ListPeers(  # noqa: N802 - gRPC method name
        self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> pb.ListPeersResponse:
        """A page of the known peers, ordered by node id."""
        try:
            peers, next_page_token = self._pages.page(
                self._discovery.peers(),
                lambda peer: peer.node_id,
                request.page_size,
                request.page_token,
            )
        except PandanodeError as err:
            await abort(context, err)
        return pb.ListPeersResponse(
            peers=[peer_to_pb(peer) for peer in peers], next_page_token=next_page_token
        )
