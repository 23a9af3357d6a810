"""GetLogHeights is paged: pages in (public key, log id) order that together are every log,
with opaque tokens a client cannot alter or reuse for another filter."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest

from pandanode.client._logheights import all_log_heights
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import node_settings

from .helpers import FIELD_DEFINITION, Author, publish, rejection

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

PAGE = 3


@pytest.fixture
async def paged(tmp_path: Path) -> AsyncIterator[IngestServiceAsyncStub]:
    """The ingest stub of a node with pages of 3 logs (at most 5), holding 8 logs."""
    settings = node_settings(
        tmp_path / "data", log_heights_page_size=PAGE, max_log_heights_page_size=5
    )
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest: IngestServiceAsyncStub = ingest_pb2_grpc.IngestServiceStub(channel)
        for author in (Author(), Author()):
            for index in range(4):
                await publish(
                    ingest, author.create(FIELD_DEFINITION, {"name": f"f{index}", "type": "str"})
                )
        yield ingest


def key(height: pb.LogHeight) -> tuple[str, int, int, str, str]:
    return (height.public_key, height.log_id, height.seq_num, height.document_id, height.schema_id)


async def pages(
    ingest: IngestServiceAsyncStub,
    page_size: int = 0,
    schema_ids: list[str] | None = None,
) -> list[list[pb.LogHeight]]:
    request = pb.GetLogHeightsRequest(page_size=page_size, schema_ids=schema_ids or [])
    answered = []
    while True:
        response = await ingest.GetLogHeights(request)
        answered.append(list(response.log_heights))
        if not response.next_page_token:
            return answered
        request = pb.GetLogHeightsRequest(
            page_size=page_size, schema_ids=schema_ids or [], page_token=response.next_page_token
        )


async def test_pages_together_are_every_log_once_in_order(
    paged: IngestServiceAsyncStub,
) -> None:
    answered = await pages(paged)
    assert [len(page) for page in answered] == [3, 3, 2]
    listed = [key(h) for page in answered for h in page]
    assert listed == sorted(listed) and len(set(listed)) == 8
    whole = await pages(paged, page_size=100)
    assert [len(page) for page in whole] == [5, 3], "a page size above the maximum is lowered"
    assert [key(h) for page in whole for h in page] == listed
    assert [len(page) for page in await pages(paged, page_size=4)] == [4, 4]


async def test_the_client_reads_every_page(paged: IngestServiceAsyncStub) -> None:
    async def get_page(request: pb.GetLogHeightsRequest) -> pb.GetLogHeightsResponse:
        return await paged.GetLogHeights(request)

    heights = await all_log_heights(get_page)
    assert len({key(h) for h in heights}) == 8
    only = await all_log_heights(get_page, [FIELD_DEFINITION])
    assert [key(h) for h in only] == [key(h) for h in heights]
    assert await all_log_heights(get_page, ["other_schema"]) == []


async def test_a_filtered_listing_is_paged_too(paged: IngestServiceAsyncStub) -> None:
    answered = await pages(paged, schema_ids=[FIELD_DEFINITION])
    assert [len(page) for page in answered] == [3, 3, 2]


async def test_an_altered_token_is_refused_as_an_invalid_page_token(
    paged: IngestServiceAsyncStub,
) -> None:
    token = (await paged.GetLogHeights(pb.GetLogHeightsRequest())).next_page_token
    assert token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[20] ^= 0x01  # in the public key it carries
    altered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (altered, token[:-2], token + "AA", "not a token!", "x" * 5000):
        refused = await rejection(paged.GetLogHeights(pb.GetLogHeightsRequest(page_token=bad)))
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert refused.reason == "INVALID_PAGE_TOKEN"
        assert len(refused.message) < 400
    other_filter = pb.GetLogHeightsRequest(page_token=token, schema_ids=[FIELD_DEFINITION])
    refused = await rejection(paged.GetLogHeights(other_filter))
    assert refused.reason == "INVALID_PAGE_TOKEN" and "schema_ids" in refused.message
    again = await paged.GetLogHeights(pb.GetLogHeightsRequest(page_token=token))
    assert len(again.log_heights) == PAGE, "the node goes on serving"
