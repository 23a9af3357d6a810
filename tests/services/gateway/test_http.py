"""The gateway's HTTP surface: CORS, the playground, bad request bodies, the route hooks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets

from pandanode.services.gateway.app import GatewayApp, Receive, Scope, Send
from pandanode.services.gateway.http import HttpServer


async def test_any_origin_may_call_by_default_and_preflight_is_answered(
    http: httpx.AsyncClient,
) -> None:
    preflight = await http.options(
        "/graphql",
        headers={
            "origin": "https://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"]
    response = await http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://app.example"}
    )
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {"data": {"__typename": "QueryRoot"}}


class _Echo:
    async def execute(
        self, query: str, variables: object, operation_name: object
    ) -> dict[str, object]:
        return {"data": {"query": query}}


@pytest.fixture
async def restricted() -> AsyncIterator[httpx.AsyncClient]:
    server = HttpServer(
        GatewayApp(_Echo(), cors_origins=("https://allowed.example",)), "127.0.0.1:0"
    )
    address = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            yield client
    finally:
        await server.stop()


async def test_a_cors_setting_restricts_the_origins(restricted: httpx.AsyncClient) -> None:
    allowed = await restricted.post(
        "/graphql", json={"query": "{a}"}, headers={"origin": "https://allowed.example"}
    )
    assert allowed.headers["access-control-allow-origin"] == "https://allowed.example"
    other = await restricted.post(
        "/graphql", json={"query": "{a}"}, headers={"origin": "https://other.example"}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_get_graphql_serves_a_self_contained_playground_page(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/graphql")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert page.startswith("<!DOCTYPE html>")
    for part in ('<textarea id="query"', '<textarea id="variables"', 'id="run"', 'id="result"'):
        assert part in page, part
    assert 'fetch(endpoint, {\n    method: "POST"' in page
    # Nothing is loaded from elsewhere: no URL, no external script or style sheet.
    assert (
        re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/|<link|<script[^>]*\ssrc=|@import", page, re.I)
        is None
    )
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert (await http.get("/graphql/")).text == page


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "invalid JSON body"),
        (b"[]", "JSON object"),
        (b'{"query": 5}', "'query' string"),
        (b'{"query": "{a}", "variables": [1]}', "'variables' must be a JSON object"),
    ],
)
async def test_a_malformed_request_body_is_400_naming_the_problem(
    http: httpx.AsyncClient, body: bytes, problem: str
) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert problem in response.json()["errors"][0]["message"]


async def test_a_syntax_error_is_a_graphql_error(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": "{ unclosed"})
    assert response.status_code == 200
    assert "Syntax Error" in response.json()["errors"][0]["message"]


async def test_without_handlers_blobs_are_404_and_websockets_are_refused() -> None:
    server = HttpServer(GatewayApp(_Echo()), "127.0.0.1:0")
    address = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            assert (await client.get("/blobs/0020" + "00" * 32)).status_code == 404
            assert (await client.get("/elsewhere")).status_code == 404
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"ws://{address}/graphql"):
                pass
    finally:
        await server.stop()


async def test_the_websocket_and_blobs_hooks_receive_their_connections() -> None:
    async def blobs(scope: Scope, receive: Receive, send: Send) -> None:
        body = scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})

    app = GatewayApp(_Echo(), websocket=websocket, blobs=blobs)
    server = HttpServer(app, "127.0.0.1:0")
    address = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            response = await client.get("/blobs/abc/def", headers={"origin": "https://a.example"})
        assert response.text == "/blobs/abc/def"
        assert response.headers["access-control-allow-origin"] == "*"
        async with websockets.connect(
            f"ws://{address}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        ) as connection:
            await connection.send("hi")
            assert await connection.recv() == "echo hi"
    finally:
        await server.stop()
