"""A raw gRPC echo server: the ceiling any grpc.aio service on this machine can reach.

Two methods of service ``bench.Echo``, on raw bytes (generic handlers, no proto, no
(de)serialization): ``Unary`` answers each request with its own bytes, ``Stream`` (bidi)
answers every message with its own bytes. The server uses the same options as the node's
(:class:`pandanode.services.runtime.server.GrpcServer`).

Run as ``python -m bench.echo``: it binds a free loopback port, prints the port on a line of
its own once it serves, and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import grpc
import grpc.aio

__all__ = ["SERVICE", "STREAM", "UNARY", "serve"]

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"

_MAX_MESSAGE = 16 * 1024 * 1024


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _stream(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


async def serve(host: str = "127.0.0.1") -> None:
    """Serve the echo service on a free port of ``host`` until SIGTERM or SIGINT."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.max_concurrent_streams", 100),
            ("grpc.so_reuseport", 0),
        ]
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "Stream": grpc.stream_stream_rpc_method_handler(_stream),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(port, flush=True)
    await stop.wait()
    await server.stop(1.0)


if __name__ == "__main__":
    asyncio.run(serve())
