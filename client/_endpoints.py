"""Dial each service of a node directly: one channel that routes calls by service.

``pandanode up`` runs every service in its own process behind one public address, which
forwards each call (a hop that costs time and CPU). The node answers
``pandanode.node.v1.NodeService/GetEndpoints`` with the address of each service's process;
:class:`EndpointChannel` asks once (in the background, on the first call) and from then on
sends each call straight to the process serving it. It uses the public address for the calls
before the answer, for services without an endpoint, when the node does not implement the
call (a single ``pandanode serve``), and while a direct endpoint is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from pandanode.node.v1 import node_pb2, node_pb2_grpc

__all__ = ["EndpointChannel"]

log = logging.getLogger(__name__)

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
# Seconds to wait for the GetEndpoints answer and for each endpoint to connect.
_RESOLVE_TIMEOUT = 2.0
_FAILED = grpc.ChannelConnectivity.TRANSIENT_FAILURE


class EndpointChannel(grpc.aio.Channel):
    """A channel to a node that dials each service's process directly once it knows it.

    Args:
        address: The node's public ``host:port``.
        options: gRPC channel options (for every channel opened).
        interceptors: Client interceptors (for every channel opened).
    """

    def __init__(
        self,
        address: str,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> None:
        self._address = address
        self._options = list(options)
        self._interceptors = list(interceptors) if interceptors else None
        self._public = self._open(address)
        self._direct: dict[str, grpc.aio.Channel] = {}
        self._resolving: asyncio.Task[None] | None = None
        self.endpoints: dict[str, str] = {}

    def _open(self, address: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(
            address, options=self._options, interceptors=self._interceptors
        )

    # -- routing --------------------------------------------------------------------------------

    def channel_for(self, method: str) -> grpc.aio.Channel:
        """The channel a call of ``method`` (``/package.Service/Method``) goes to now."""
        if self._resolving is None:
            self._resolving = asyncio.get_running_loop().create_task(self._resolve())
        direct = self._direct.get(method.split("/")[1]) if self._direct else None
        if direct is None or direct.get_state() is _FAILED:
            return self._public
        return direct

    async def resolve(self) -> dict[str, str]:
        """Ask the node for its endpoints now (once); the service endpoints in use."""
        if self._resolving is None:
            self._resolving = asyncio.get_running_loop().create_task(self._resolve())
        await asyncio.shield(self._resolving)
        return dict(self.endpoints)

    async def _resolve(self) -> None:
        stub = node_pb2_grpc.NodeServiceStub(self._public)
        try:
            response = await stub.GetEndpoints(
                node_pb2.GetEndpointsRequest(), timeout=_RESOLVE_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            log.debug("no direct endpoints (%s): using %s", err.code(), self._address)
            return
        public_host = self._address.rsplit(":", 1)[0]
        for service, endpoint in sorted(response.endpoints.items()):
            host, _, port = endpoint.rpartition(":")
            if host in _WILDCARD_HOSTS:
                endpoint = f"{public_host}:{port}"
            channel = self._open(endpoint)
            try:
                await asyncio.wait_for(channel.channel_ready(), _RESOLVE_TIMEOUT)
            except (TimeoutError, grpc.aio.UsageError):
                log.debug(
                    "endpoint %s of %s unreachable: using %s", endpoint, service, self._address
                )
                await channel.close(None)
                continue
            self._direct[service] = channel
            self.endpoints[service] = endpoint

    # -- grpc.aio.Channel -----------------------------------------------------------------------

    async def __aenter__(self) -> EndpointChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        if self._resolving is not None and not self._resolving.done():
            self._resolving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resolving
        for channel in [*self._direct.values(), self._public]:
            await channel.close(grace)
        self._direct = {}

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._public.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._public.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._public.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Routed(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Routed(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Routed(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Routed(self, "stream_stream", method, args, kwargs)


class _Routed:
    """A multi-callable that makes each call on the channel :class:`EndpointChannel` picks."""

    def __init__(
        self,
        owner: EndpointChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._owner = owner
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._callables: dict[int, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.channel_for(self._method)
        callable_ = self._callables.get(id(channel))
        if callable_ is None:
            factory = getattr(channel, self._kind)
            callable_ = factory(self._method, *self._args, **self._kwargs)
            self._callables[id(channel)] = callable_
        return callable_(*args, **kwargs)
