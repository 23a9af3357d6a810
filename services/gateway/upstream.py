"""The gateway's gRPC clients of the ingest and query services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from pandanode.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.runtime.dial import Dial, insecure_dial, serving

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

__all__ = ["INGEST_SERVICE", "QUERY_SERVICE", "Upstreams"]

INGEST_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
QUERY_SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name
# Seconds a health check of an upstream may take.
_CHECK_TIMEOUT = 2.0


@dataclass(eq=False)
class Upstreams:
    """Channels and stubs to the ingest and query services the gateway translates to.

    Attributes:
        ingest_address: Where IngestService is served (a node's public address or the process).
        query_address: Where QueryService is served.
        ingest: The IngestService stub.
        query: The QueryService stub.
    """

    ingest_address: str
    query_address: str
    ingest: IngestServiceAsyncStub
    query: QueryServiceAsyncStub
    _channels: tuple[grpc.aio.Channel, ...]

    @classmethod
    def open(
        cls,
        ingest_address: str,
        query_address: str,
        max_message_bytes: int,
        dial: Dial = insecure_dial,
    ) -> Upstreams:
        """Open channels with ``dial`` (one if both addresses are the same).

        A node's public address forwards each call to the process serving it; ``pandanode
        serve gateway`` dials with the client's endpoint channel, which asks it once for the
        processes' own addresses (``NodeService/GetEndpoints``) and calls those.
        """
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        ingest_channel = dial(ingest_address, options)
        query_channel = (
            ingest_channel if query_address == ingest_address else dial(query_address, options)
        )
        channels = tuple(dict.fromkeys((ingest_channel, query_channel)))
        return cls(
            ingest_address,
            query_address,
            ingest_pb2_grpc.IngestServiceStub(ingest_channel),
            query_pb2_grpc.QueryServiceStub(query_channel),
            channels,
        )

    async def reachable(self) -> bool:
        """True if both services answer a health check with SERVING."""
        checks = [
            serving(channel, service, _CHECK_TIMEOUT)
            for channel, service in (
                (self._channel_of(self.ingest_address), INGEST_SERVICE),
                (self._channel_of(self.query_address), QUERY_SERVICE),
            )
        ]
        return all(await asyncio.gather(*checks))

    def _channel_of(self, address: str) -> grpc.aio.Channel:
        return self._channels[0] if address == self.ingest_address else self._channels[-1]

    async def close(self) -> None:
        """Close the channels."""
        for channel in self._channels:
            await channel.close(None)
