"""Reads follow the schema allow list (``supported_schema_ids``): a schema the node does not list
is not listed by ListSchemas nor typed by the GraphQL gateway, and neither it nor its documents
are served (PERMISSION_DENIED, ``SCHEMA_NOT_SUPPORTED``) — also documents stored before the
node was given its list, which stay in the store unseen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest

from pandanode.client import (
    Client,
    Document,
    KeyPair,
    ResourceNotFoundError,
    SchemaNotSupportedError,
    relation,
)
from pandanode.query.v1 import query_pb2, query_pb2_grpc
from pandanode.services.node import Node
from tests.services.gateway.helpers import data, graphql
from tests.services.support import eventually, node_settings


@dataclass(frozen=True)
class Stored:
    """What a node without an allow list stored: two schemas, a document of each."""

    venue: str
    spam: str
    hall: str
    offer: str


async def _document(client: Client, document_id: str) -> Document | None:
    try:
        return await client.get_document(document_id)
    except ResourceNotFoundError:
        return None


@pytest.fixture
async def stored(tmp_path: Path) -> Stored:
    async with (
        Node(node_settings(tmp_path / "data")) as node,
        Client.connect(node.address, key_pair=KeyPair()) as client,
    ):
        spam = await client.create_schema("spam", "Unwanted", {"title": "str"})
        venue = await client.create_schema(
            "venue", "A place", {"name": "str", "sponsor": relation(spam)}
        )
        offer = await client.create(spam, {"title": "buy now"})
        hall = await client.create(venue, {"name": "Hall", "sponsor": offer.document_id})
        for published in (offer, hall):
            document_id = published.document_id

            async def materialized(document_id: str = document_id) -> Document | None:
                return await _document(client, document_id)

            await eventually(materialized)
    return Stored(str(venue), str(spam), hall.document_id, offer.document_id)


@pytest.fixture
async def listed(tmp_path: Path, stored: Stored) -> AsyncIterator[Node]:
    """The same node again, now supporting the venue schema only."""
    settings = node_settings(tmp_path / "data", supported_schema_ids=stored.venue)
    async with Node(settings) as node:
        yield node


async def test_list_and_get_schema_show_only_what_the_allow_list_takes(
    listed: Node, stored: Stored
) -> None:
    async with Client.connect(listed.address) as client:
        ids = {str(schema.id) for schema in await client.list_schemas()}
        assert ids == {stored.venue, "schema_definition_v1", "schema_field_definition_v1"}
        assert str((await client.get_schema(stored.venue)).id) == stored.venue
        with pytest.raises(SchemaNotSupportedError) as refused:
            await client.get_schema(stored.spam)
        assert refused.value.metadata["schema_id"] == stored.spam
    # System schemas too (the client knows those itself: ask the node).
    async with grpc.aio.insecure_channel(listed.address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as blob:
            await stub.GetSchema(query_pb2.GetSchemaRequest(schema_id="blob_v1"), timeout=10)
    assert blob.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_documents_of_an_unlisted_schema_are_not_served(listed: Node, stored: Stored) -> None:
    async with Client.connect(listed.address) as client:
        with pytest.raises(SchemaNotSupportedError):
            await client.get_document(stored.offer)
        with pytest.raises(SchemaNotSupportedError):
            await anext(client.pages(stored.spam))
        hall = await client.get_document(stored.hall, resolve_depth=1)
        # The relation to the unlisted document stays an id: it is not resolved.
        assert hall.fields["sponsor"] == stored.offer
        page = await anext(client.pages(stored.venue))
        assert [d.id for d in page.documents] == [stored.hall]


async def test_the_graphql_gateway_has_no_type_nor_document_of_an_unlisted_schema(
    listed: Node, stored: Stored
) -> None:
    async with httpx.AsyncClient(base_url=f"http://{listed.http_address}", timeout=30) as http:
        types = await data(http, "{ __schema { types { name } } }")
        names = {t["name"] for t in types["__schema"]["types"]}
        assert stored.venue in names
        assert not any(name.startswith(stored.spam) for name in names), names
        refused = await graphql(
            http, f'{{ {stored.spam}(id: "{stored.offer}") {{ meta {{ documentId }} }} }}'
        )
        assert refused.get("errors") and refused.get("data") is None
        # A document of the unlisted schema asked for as a listed one is not served either.
        disguised = await graphql(
            http, f'{{ {stored.venue}(id: "{stored.offer}") {{ meta {{ documentId }} }} }}'
        )
        assert (disguised.get("data") or {}).get(stored.venue) is None
        venue_fields = await data(
            http, f'{{ __type(name: "{stored.venue}Fields") {{ fields {{ name }} }} }}'
        )
        assert [f["name"] for f in venue_fields["__type"]["fields"]] == ["name"]
        hall = await data(
            http, f'{{ {stored.venue}(id: "{stored.hall}") {{ fields {{ name }} }} }}'
        )
        assert hall[stored.venue]["fields"]["name"] == "Hall"
