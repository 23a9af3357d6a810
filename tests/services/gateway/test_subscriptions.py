"""GraphQL subscriptions over WebSocket: the graphql-ws protocol, its limits, live documents."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from pandanode.client import Client
from pandanode.services.node import Node
from pandanode.services.runtime.settings import Settings
from tests.services.support import node_settings

PROTOCOL = websockets.Subprotocol("graphql-transport-ws")
MAX_SUBSCRIPTIONS = 2
MAX_MESSAGE_BYTES = 4096


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A node whose gateway has small WebSocket limits (and a short init timeout)."""
    return node_settings(
        tmp_path / "data",
        ws_init_timeout=0.5,
        ws_max_subscriptions=MAX_SUBSCRIPTIONS,
        ws_max_message_bytes=MAX_MESSAGE_BYTES,
    )


@pytest.fixture
async def schema_id(client: Client) -> str:
    """A ``post`` schema with a title and a count."""
    return await client.create_schema("post", "A post", {"title": "str", "count": "int"})


@pytest.fixture
async def ws(node: Node) -> AsyncIterator[ClientConnection]:
    """A graphql-ws connection to the gateway, not yet initialised."""
    async with websockets.connect(
        f"ws://{node.http_address}/graphql", subprotocols=[PROTOCOL]
    ) as connection:
        yield connection


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv(decode=True))
    return message


async def init(ws: ClientConnection) -> None:
    await send(ws, {"type": "connection_init", "payload": {}})
    assert await receive(ws) == {"type": "connection_ack"}


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


def live(schema_id: str, extra: str = "") -> str:
    return (
        f"subscription {{ all_{schema_id}{extra} {{ kind "
        "document { meta { documentId viewId } fields { title count } } } }"
    )


async def test_init_ack_and_ping_pong(ws: ClientConnection) -> None:
    await init(ws)
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_a_subscriber_receives_documents_created_updated_and_deleted_after_it_subscribed(
    ws: ClientConnection, client: Client, schema_id: str
) -> None:
    before = await client.create(schema_id, {"title": "before", "count": 1})
    await client.get_document(before.document_id, after=before)
    await init(ws)
    query = live(schema_id, "(includeExisting: true)")
    await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": query}})
    existing = await receive(ws)
    assert existing["id"] == "1" and existing["type"] == "next"
    change = existing["payload"]["data"][f"all_{schema_id}"]
    assert change["kind"] == "EXISTING"
    assert change["document"]["meta"]["documentId"] == before.document_id
    created = await client.create(schema_id, {"title": "new", "count": 2**40})
    updated = await client.update(created.document_id, {"title": "newer"})
    deleted = await client.delete(created.document_id)
    seen = []
    for _ in range(3):
        message = await receive(ws)
        assert message["type"] == "next"
        seen.append(message["payload"]["data"][f"all_{schema_id}"])
    assert [(c["kind"], c["document"]["meta"]["viewId"]) for c in seen] == [
        ("CREATED", created.view_id),
        ("UPDATED", updated.view_id),
        ("DELETED", deleted.view_id),
    ]
    assert seen[0]["document"]["fields"] == {"title": "new", "count": 2**40}
    await send(ws, {"id": "1", "type": "complete"})
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}  # nothing more for "1" came before it


async def test_a_filter_limits_the_changes_delivered(
    ws: ClientConnection, client: Client, schema_id: str
) -> None:
    await client.create(schema_id, {"title": "unwanted", "count": 1})
    first = await client.create(schema_id, {"title": "wanted", "count": 2})
    await client.get_document(first.document_id, after=first)
    await init(ws)
    query = live(schema_id, '(filter: {title: {eq: "wanted"}}, includeExisting: true)')
    await send(ws, {"id": "f", "type": "subscribe", "payload": {"query": query}})

    async def next_document() -> tuple[str, str]:
        change = (await receive(ws))["payload"]["data"][f"all_{schema_id}"]
        return change["kind"], change["document"]["meta"]["documentId"]

    assert await next_document() == ("EXISTING", first.document_id)
    await client.create(schema_id, {"title": "unwanted", "count": 3})
    second = await client.create(schema_id, {"title": "wanted", "count": 4})
    assert await next_document() == ("CREATED", second.document_id)


async def test_queries_over_the_websocket_get_one_next_then_complete(
    ws: ClientConnection,
) -> None:
    await init(ws)
    query = '{ nextArgs(publicKey: "' + "ab" * 32 + '") { logId seqNum } }'
    await send(ws, {"id": "q", "type": "subscribe", "payload": {"query": query}})
    assert await receive(ws) == {
        "id": "q",
        "type": "next",
        "payload": {"data": {"nextArgs": {"logId": "0", "seqNum": "1"}}},
    }
    assert await receive(ws) == {"id": "q", "type": "complete"}


async def test_an_invalid_operation_is_an_error_message_and_the_connection_goes_on(
    ws: ClientConnection,
) -> None:
    await init(ws)
    await send(
        ws, {"id": "e", "type": "subscribe", "payload": {"query": "subscription { nothing }"}}
    )
    error = await receive(ws)
    assert error["id"] == "e" and error["type"] == "error"
    assert "nothing" in error["payload"][0]["message"]
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}


async def test_more_subscriptions_than_allowed_are_refused_with_an_error(
    ws: ClientConnection, schema_id: str
) -> None:
    await init(ws)
    for index in range(MAX_SUBSCRIPTIONS):
        payload = {"query": live(schema_id)}
        await send(ws, {"id": str(index), "type": "subscribe", "payload": payload})
    await send(ws, {"id": "extra", "type": "subscribe", "payload": {"query": live(schema_id)}})
    error = await receive(ws)
    assert error["id"] == "extra" and error["type"] == "error"
    assert "too many subscriptions" in error["payload"][0]["message"]
    await send(ws, {"id": "0", "type": "complete"})
    await send(ws, {"id": "again", "type": "subscribe", "payload": {"query": live(schema_id)}})
    await send(ws, {"type": "ping"})
    assert await receive(ws) == {"type": "pong"}  # no error for "again": a slot was free


async def test_subscribe_before_connection_init_closes_4401(ws: ClientConnection) -> None:
    await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }"}})
    assert (await closed_with(ws))[0] == 4401


async def test_no_connection_init_in_time_closes_4408(ws: ClientConnection) -> None:
    assert await closed_with(ws) == (4408, "Connection initialisation timeout")


async def test_a_duplicate_subscription_id_closes_4409(
    ws: ClientConnection, schema_id: str
) -> None:
    await init(ws)
    for _ in range(2):
        await send(ws, {"id": "same", "type": "subscribe", "payload": {"query": live(schema_id)}})
    code, reason = await closed_with(ws)
    assert code == 4409
    assert "same" in reason


async def test_a_second_connection_init_closes_4429(ws: ClientConnection) -> None:
    await init(ws)
    await send(ws, {"type": "connection_init"})
    assert (await closed_with(ws))[0] == 4429


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "no 'type'"),
        ('{"type": "unknown"}', "Invalid message type"),
        ('{"type": "subscribe", "payload": {"query": "{ a }"}}', "'id'"),
        ('{"type": "subscribe", "id": "1", "payload": {"query": 5}}', "payload.query"),
        ('{"type": "subscribe", "id": "1", "payload": {"query": "{a}", "variables": 1}}', "vari"),
        ('{"type": "connection_init", "payload": "x"}', "payload"),
    ],
)
async def test_a_malformed_message_closes_4400_naming_the_problem(
    ws: ClientConnection, message: str, problem: str
) -> None:
    if not message.startswith('{"type": "connection_init"'):
        await init(ws)
    await ws.send(message)
    code, reason = await closed_with(ws)
    assert code == 4400
    assert problem in reason


async def test_a_message_above_the_limit_closes_1009(ws: ClientConnection) -> None:
    await init(ws)
    await send(ws, {"type": "ping", "payload": {"pad": "x" * MAX_MESSAGE_BYTES}})
    assert (await closed_with(ws))[0] == 1009


async def test_a_client_without_the_subprotocol_is_closed_4406(node: Node) -> None:
    async with websockets.connect(f"ws://{node.http_address}/graphql") as connection:
        assert (await closed_with(connection))[0] == 4406
