"""Per-client concurrency limits (``max_streams_per_client``, ``max_concurrent_rpcs_per_client``):
a client address over a limit is answered RESOURCE_EXHAUSTED (``TOO_MANY_CALLS``, RetryInfo)
while other clients are served; a client is counted by its own address through a pass-through
(``x-pandanode-client-address``), and clients on loopback are not limited."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import websockets
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pandanode.client import Client, KeyPair
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.replication.v1 import replication_pb2, replication_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.clients import CLIENT_ADDRESS_KEY
from pandanode.services.runtime.settings import Settings, SettingsError

from .support import eventually, node_settings
from .test_admin_methods import OUTSIDE, needs_outside, up_everywhere

__all__ = ["up_everywhere"]  # a fixture of this module too

A = "203.0.113.8"
B = "203.0.113.9"
WATCHED = "schema_definition_v1"
GRAPHQL_WS = websockets.Subprotocol("graphql-transport-ws")


class Watcher:
    """WatchDocuments calls held open on one channel, as one client."""

    def __init__(self, channel: grpc.aio.Channel, client: str | None) -> None:
        self._stub = query_pb2_grpc.QueryServiceStub(channel)
        self.metadata = ((CLIENT_ADDRESS_KEY, client),) if client else None
        self.calls: list[grpc.aio.UnaryStreamCall[object, object]] = []

    async def watch(self) -> None:
        """Open one more watch; returns once the node answered its first message."""
        call = self._stub.WatchDocuments(
            query_pb2.WatchDocumentsRequest(schema_id=WATCHED), metadata=self.metadata
        )
        self.calls.append(call)  # type: ignore[arg-type]
        await call.read()

    async def list_schemas(self) -> query_pb2.ListSchemasResponse:
        response: query_pb2.ListSchemasResponse = await self._stub.ListSchemas(
            query_pb2.ListSchemasRequest(), metadata=self.metadata, timeout=10
        )
        return response

    def close(self) -> None:
        for call in self.calls:
            call.cancel()


def refusal(err: grpc.aio.AioRpcError) -> tuple[str, str, float]:
    """The reason, the ``limit`` metadata and the RetryInfo delay of a refusal."""
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    delay = -1.0
    for detail in status.details:
        if detail.Unpack(retry):
            delay = retry.retry_delay.ToNanoseconds() / 1e9
        detail.Unpack(info)
    return info.reason, info.metadata["limit"], delay


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return node_settings(
        tmp_path / "data", max_streams_per_client=2, max_concurrent_rpcs_per_client=3
    )


@pytest.fixture
async def channel(node: Node) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(node.address) as opened:
        yield opened


async def test_a_client_over_its_stream_limit_is_refused_while_another_is_served(
    channel: grpc.aio.Channel,
) -> None:
    a, b = Watcher(channel, A), Watcher(channel, B)
    try:
        await a.watch()
        await a.watch()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await a.watch()
        assert refusal(refused.value) == ("TOO_MANY_CALLS", "max_streams_per_client", 1.0)
        await b.watch()  # another client is served
        await b.watch()
        # A unary call of A is within max_concurrent_rpcs_per_client (3): served.
        assert (await a.list_schemas()).schemas
        # Once A ends a watch, it may watch again.
        a.calls.pop(0).cancel()

        async def watching_again() -> bool:
            try:
                await a.watch()
            except grpc.aio.AioRpcError as err:
                assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err
                return False
            return True

        assert await eventually(watching_again, what="A's ended watch released")
    finally:
        a.close()
        b.close()


async def test_a_client_over_its_call_limit_is_refused_even_a_unary_call(tmp_path: Path) -> None:
    settings = node_settings(
        tmp_path / "data", max_streams_per_client=5, max_concurrent_rpcs_per_client=2
    )
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        a = Watcher(channel, A)
        try:
            await a.watch()
            await a.watch()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await a.list_schemas()
            reason, limit, _ = refusal(refused.value)
            assert (reason, limit) == ("TOO_MANY_CALLS", "max_concurrent_rpcs_per_client")
            assert (await Watcher(channel, B).list_schemas()).schemas
        finally:
            a.close()


async def test_clients_on_loopback_are_not_limited(channel: grpc.aio.Channel) -> None:
    local = Watcher(channel, None)
    try:
        for _ in range(4):  # twice the limit
            await local.watch()
    finally:
        local.close()


async def test_a_trusted_proxy_network_counts_as_local(tmp_path: Path) -> None:
    settings = node_settings(
        tmp_path / "data", max_streams_per_client=1, trusted_proxies="203.0.113.0/24"
    )
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        trusted = Watcher(channel, A)
        try:
            for _ in range(3):
                await trusted.watch()
        finally:
            trusted.close()
        # Trusted to name its client, but not an admin itself.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await replication_pb2_grpc.ReplicationServiceStub(channel).SyncWith(
                replication_pb2.SyncWithRequest(address="127.0.0.1:1"),
                metadata=((CLIENT_ADDRESS_KEY, A),),
                timeout=10,
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(SettingsError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, not-a-network")


@needs_outside
async def test_through_pandanode_up_a_remote_client_is_limited_by_its_own_address(
    up_everywhere: str,
) -> None:
    port = up_everywhere
    async with (
        grpc.aio.insecure_channel(f"{OUTSIDE}:{port}") as remote_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as local_channel,
    ):
        remote, local = Watcher(remote_channel, None), Watcher(local_channel, None)
        try:
            await remote.watch()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await remote.watch()
            assert refusal(refused.value)[:2] == ("TOO_MANY_CALLS", "max_streams_per_client")
            # Naming another client does not help from outside: the pass-through replaces it.
            with pytest.raises(grpc.aio.AioRpcError):
                await Watcher(remote_channel, B).watch()
            await local.watch()  # the node's own machine is served
            await local.watch()
        finally:
            remote.close()
            local.close()


@needs_outside
async def test_the_gateway_counts_each_websocket_client_by_its_own_address(
    tmp_path: Path,
) -> None:
    settings = node_settings(tmp_path / "data", http_listen="0.0.0.0:0", max_streams_per_client=1)
    async with Node(settings) as node:
        async with Client.connect(node.address, key_pair=KeyPair()) as author:
            venue = await author.create_schema("venue", "A place", {"name": "str"})  # one EXISTING

            async def materialized() -> bool:
                return any(str(schema.id) == venue for schema in await author.list_schemas())

            # Else a busy query service may still send it as CREATED, after the subscription.
            await eventually(materialized, what="the schema in the query service's view")
        port = node.http_address.rsplit(":", 1)[1]
        query = f"subscription {{ all_{WATCHED}(includeExisting: true) {{ kind }} }}"

        async def subscribe_twice(host: str) -> dict[str, dict[str, Any]]:
            """The first answer to each of two subscriptions on one connection from ``host``."""
            async with websockets.connect(
                f"ws://{host}:{port}/graphql", subprotocols=[GRAPHQL_WS]
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                for identifier in ("1", "2"):
                    payload = {"query": query}
                    message = {"id": identifier, "type": "subscribe", "payload": payload}
                    await ws.send(json.dumps(message))
                answers: dict[str, dict[str, Any]] = {}
                while len(answers) < 2:
                    answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    answers.setdefault(answer["id"], answer)
                return answers

        remote = await subscribe_twice(str(OUTSIDE))
        served, refused = sorted(remote.values(), key=lambda answer: "errors" in answer["payload"])
        assert served["payload"]["data"] == {f"all_{WATCHED}": {"kind": "EXISTING"}}, remote
        assert "max_streams_per_client" in refused["payload"]["errors"][0]["message"], remote
        local = await subscribe_twice("127.0.0.1")
        assert all("errors" not in answer["payload"] for answer in local.values()), local
