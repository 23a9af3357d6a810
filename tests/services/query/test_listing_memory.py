"""The listing's memory through a real node: what it keeps of replaced views is bounded by bytes."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from pandanode.core.operation import FieldValue
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.runtime.settings import Settings
from tests.services.ingest.helpers import Author, publish, publish_schema

pytestmark = pytest.mark.asyncio

BUDGET = 1024 * 1024


async def test_large_updates_after_a_listing_keep_the_change_log_within_its_budget(
    settings: Settings,
) -> None:
    settings = settings.with_changes(listing_change_log_bytes=BUDGET)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        query = query_pb2_grpc.QueryServiceStub(channel)
        author = Author()
        schema_id = await publish_schema(ingest, author, "note", {"text": "str", "rank": "int"})
        documents: dict[str, str] = {}
        for rank in range(4):
            created = await publish(ingest, author.create(schema_id, {"text": "", "rank": rank}))
            documents[created.document_id] = created.operation_id
        short = qpb.Filter(
            field="rank", operator=qpb.FILTER_OPERATOR_LT, value=qpb.FilterValue(int_value=2)
        )
        request = qpb.ListDocumentsRequest(
            schema_id=schema_id,
            filters=[short],
            consistency=qpb.Consistency(operation_id=created.operation_id, timeout_ms=10_000),
        )
        assert (await query.ListDocuments(request)).total_size == 2
        assert node.reads is not None
        index = node.reads.catalog.index(schema_id)
        for round_ in range(12):
            # ~200 kB of text per view: the log may keep only a couple of replaced views.
            last = ""
            for position, (document_id, tip) in enumerate(list(documents.items())):
                fields: dict[str, FieldValue] = {
                    "text": f"{round_ % 10}" * 200_000,
                    "rank": (round_ + position) % 4,
                }
                update = author.update(schema_id, document_id, [tip], fields)
                last = documents[document_id] = (await publish(ingest, update)).operation_id
            request.consistency.operation_id = last
            page = await query.ListDocuments(request)
            assert index.change_log_bytes <= BUDGET
            ranks = sorted(d.fields["rank"].int_value for d in page.documents)
            assert page.total_size == 2 and ranks == [0, 1]
            everything = await query.ListDocuments(qpb.ListDocumentsRequest(schema_id=schema_id))
            assert everything.total_size == 4
            assert {d.fields["text"].str_value[:4] for d in everything.documents} == {
                f"{round_ % 10}" * 4
            }
