"""Page tokens over gRPC, as a client or an attacker meets them (real nodes: NATS, RocksDB, gRPC).

A token is opaque: only one this node issued for the same query, unchanged, starts a next page;
anything else is INVALID_ARGUMENT with the reason INVALID_PAGE_TOKEN, and the node keeps serving.
"""

from __future__ import annotations

import base64
import random
from pathlib import Path
from typing import TYPE_CHECKING, cast

import grpc
import grpc.aio
import pytest

from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.query.listing import MAX_PAGE_TOKEN_LENGTH
from pandanode.services.runtime.settings import Settings
from tests.services.ingest.helpers import Author, Rejection, publish, publish_schema, rejection
from tests.services.support import node_settings

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

pytestmark = pytest.mark.asyncio

VENUE_FIELDS = {"name": "str", "seats": "int"}
VENUES = 12


class _Recording:
    """An ingest stub that keeps every Publish request, to replay them on another node."""

    def __init__(self, stub: IngestServiceAsyncStub) -> None:
        self.stub = stub
        self.requests: list[ipb.PublishRequest] = []

    async def Publish(self, request: ipb.PublishRequest) -> ipb.PublishResponse:  # noqa: N802
        self.requests.append(request)
        return await self.stub.Publish(request)


async def _venues(ingest: IngestServiceAsyncStub) -> tuple[str, str]:
    """A venue schema and VENUES venues; return the schema id and the last operation id."""
    author = Author()
    schema_id = await publish_schema(ingest, author, "venue", VENUE_FIELDS)
    last = ""
    for seats in range(VENUES):
        signed = author.create(schema_id, {"name": f"v{seats:02}", "seats": seats})
        last = (await publish(ingest, signed)).operation_id
    return schema_id, last


def _listing(schema_id: str, token: str = "", last: str = "") -> qpb.ListDocumentsRequest:
    return qpb.ListDocumentsRequest(
        schema_id=schema_id,
        order_by=qpb.OrderBy(field="name"),
        page_size=5,
        page_token=token,
        consistency=qpb.Consistency(operation_id=last, timeout_ms=10_000) if last else None,
    )


def _names(page: qpb.ListDocumentsResponse) -> list[str]:
    return [document.fields["name"].str_value for document in page.documents]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _assert_invalid_token(rejected: Rejection) -> None:
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT
    assert rejected.reason == "INVALID_PAGE_TOKEN"


@pytest.fixture
def query(channel: grpc.aio.Channel) -> QueryServiceAsyncStub:
    return query_pb2_grpc.QueryServiceStub(channel)


async def test_made_up_or_altered_page_tokens_are_invalid_argument_and_the_node_keeps_serving(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub
) -> None:
    schema_id, last = await _venues(ingest)
    first = await query.ListDocuments(_listing(schema_id, last=last))
    good = first.next_page_token
    assert good and len(good) <= MAX_PAGE_TOKEN_LENGTH
    tampered = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    rng = random.Random(7)
    bad = {
        # The finding: deeply nested JSON crashed the JSON parser (RecursionError → UNKNOWN).
        "nested JSON": _b64(b"[" * 2000),
        "nested JSON, long": _b64(b"[" * 100_000),
        "random bytes": _b64(rng.randbytes(200)),
        "random text": "".join(rng.choice("abc-_€ !") for _ in range(60)),
        "tampered": tampered,
        "truncated": good[:-4],
        "oversized": "A" * (MAX_PAGE_TOKEN_LENGTH + 1),
        "the payload alone": _b64(_unb64(good)[32:]),
    }
    for what, token in bad.items():
        rejected = await rejection(query.ListDocuments(_listing(schema_id, token)))
        _assert_invalid_token(rejected)
        assert "malformed page token" in rejected.message, what
        assert len(rejected.message) < 400, what
    second = await query.ListDocuments(_listing(schema_id, good))
    assert _names(first) + _names(second) == [f"v{i:02}" for i in range(10)]


async def test_a_page_token_reused_with_another_query_is_invalid_argument(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub
) -> None:
    schema_id, last = await _venues(ingest)
    token = (await query.ListDocuments(_listing(schema_id, last=last))).next_page_token
    other_filter = _listing(schema_id, token)
    other_filter.filters.append(
        qpb.Filter(
            field="seats", operator=qpb.FILTER_OPERATOR_GTE, value=qpb.FilterValue(int_value=3)
        )
    )
    other_order = _listing(schema_id, token)
    other_order.descending = True
    for request in (other_filter, other_order):
        rejected = await rejection(query.ListDocuments(request))
        _assert_invalid_token(rejected)
        assert "belongs to another query" in rejected.message


async def test_a_page_token_from_another_node_is_invalid_argument(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub, tmp_path: Path
) -> None:
    recording = _Recording(ingest)
    schema_id, last = await _venues(cast("IngestServiceAsyncStub", recording))
    token = (await query.ListDocuments(_listing(schema_id, last=last))).next_page_token
    assert token
    other_settings = node_settings(tmp_path / "other")
    async with (
        Node(other_settings) as other,
        grpc.aio.insecure_channel(other.address) as channel,
    ):
        other_ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        for request in recording.requests:
            await other_ingest.Publish(request)
        other_query = query_pb2_grpc.QueryServiceStub(channel)
        # The same documents, the same query: only the node that issued the token differs.
        own = await other_query.ListDocuments(_listing(schema_id, last=last))
        assert _names(own) == [f"v{i:02}" for i in range(5)]
        rejected = await rejection(other_query.ListDocuments(_listing(schema_id, token)))
        _assert_invalid_token(rejected)
        assert "not issued by this node" in rejected.message


async def test_paging_continues_across_a_restart_of_the_node(settings: Settings) -> None:
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        query = query_pb2_grpc.QueryServiceStub(channel)
        schema_id, last = await _venues(ingest)
        first = await query.ListDocuments(_listing(schema_id, last=last))
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        query = query_pb2_grpc.QueryServiceStub(channel)
        names = _names(first)
        token = first.next_page_token
        while token:
            page = await query.ListDocuments(_listing(schema_id, token))
            names += _names(page)
            token = page.next_page_token
    assert names == [f"v{i:02}" for i in range(VENUES)]
