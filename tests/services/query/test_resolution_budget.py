"""Relation resolution is bounded by the documents and bytes a response would hold, reads each
distinct related document once, and runs off the event loop (real node: NATS, RocksDB, gRPC).

The hostile case: a ~700-byte update makes a document whose relation list names itself 16
times; resolved 4 levels deep that is 1 + 16 + 256 + 4096 + 65536 = 69,905 documents.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.core import RelationList
from pandanode.core.errors import LimitExceededError, Reason
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from pandanode.services.query.convert import documents_to_pb
from pandanode.services.query.model import MaterializedDocument
from pandanode.services.query.relations import BoundedResolver, resolve_relations
from pandanode.services.runtime.settings import Settings
from tests.services.ingest.helpers import Author, publish, publish_schema, rejection

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

SELF_LINKS = 16


@pytest.fixture
def query(channel: grpc.aio.Channel) -> QueryServiceAsyncStub:
    return query_pb2_grpc.QueryServiceStub(channel)


async def self_referencing_document(ingest: IngestServiceAsyncStub) -> tuple[str, str, str]:
    """Publish a document whose relation list names itself 16 times.

    Returns:
        Its schema id, its document id and the id of the update that made the loop.
    """
    author = Author()
    thing = await publish_schema(ingest, author, "thing", {"name": "str"})
    schema_id = await publish_schema(ingest, author, "loop", {"links": f"relation_list({thing})"})
    created = await publish(ingest, author.create(schema_id, {"links": RelationList([])}))
    update = author.update(
        schema_id,
        created.document_id,
        [created.operation_id],
        {"links": RelationList([created.document_id] * SELF_LINKS)},
    )
    assert len(update.operation) < 1024
    updated = await publish(ingest, update)
    return schema_id, created.document_id, updated.operation_id


def until(operation_id: str) -> qpb.Consistency:
    return qpb.Consistency(operation_id=operation_id, timeout_ms=10_000)


class ResolveSpy:
    """Records every store read of a related document, and the thread it ran on."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        assert node.reads is not None
        self.calls: list[tuple[str, bool]] = []
        self.threads: set[int] = set()
        original = node.reads.resolve

        def resolve(target: str, pinned: bool) -> MaterializedDocument | None:
            self.calls.append((target, pinned))
            self.threads.add(threading.get_ident())
            return original(target, pinned)

        monkeypatch.setattr(node.reads, "resolve", resolve)


async def test_a_self_referencing_document_read_four_levels_deep_is_refused_within_budget(
    node: Node,
    channel: grpc.aio.Channel,
    ingest: IngestServiceAsyncStub,
    query: QueryServiceAsyncStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema_id, document_id, update_id = await self_referencing_document(ingest)
    await query.GetDocument(
        qpb.GetDocumentRequest(document_id=document_id, consistency=until(update_id))
    )
    spy = ResolveSpy(node, monkeypatch)
    health = health_pb2_grpc.HealthStub(channel)
    deep = asyncio.ensure_future(
        rejection(
            query.GetDocument(qpb.GetDocumentRequest(document_id=document_id, resolve_depth=4))
        )
    )
    # The node keeps answering others while (and after) it works on the deep read.
    checks = await asyncio.gather(
        *(health.Check(health_pb2.HealthCheckRequest()) for _ in range(5)),
        query.GetDocument(qpb.GetDocumentRequest(document_id=document_id)),
    )
    assert all(c.status == health_pb2.HealthCheckResponse.SERVING for c in checks[:-1])
    refused = await deep
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "BUDGET_EXCEEDED",
    )
    assert str(Settings().max_resolved_documents) in refused.message
    assert "resolve_depth" in refused.message
    # One distinct related document: read once, in a worker thread, not on the event loop.
    assert spy.calls == [(document_id, False)]
    assert threading.get_ident() not in spy.threads

    listed = await rejection(
        query.ListDocuments(qpb.ListDocumentsRequest(schema_id=schema_id, resolve_depth=4))
    )
    assert (listed.code, listed.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED")


async def test_a_self_referencing_document_within_budget_resolves_every_level_reading_it_once(
    node: Node,
    ingest: IngestServiceAsyncStub,
    query: QueryServiceAsyncStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, document_id, update_id = await self_referencing_document(ingest)
    spy = ResolveSpy(node, monkeypatch)
    response = await query.GetDocument(
        qpb.GetDocumentRequest(
            document_id=document_id, resolve_depth=2, consistency=until(update_id)
        )
    )
    level1 = response.document.fields["links"].relation_list.items
    assert [item.document_id for item in level1] == [document_id] * SELF_LINKS
    level2 = [
        inner for item in level1 for inner in item.document.fields["links"].relation_list.items
    ]
    assert len(level2) == SELF_LINKS * SELF_LINKS
    assert all(inner.document.document_id == document_id for inner in level2)
    deepest = level2[0].document.fields["links"].relation_list.items
    assert [item.HasField("document") for item in deepest] == [False] * SELF_LINKS
    assert spy.calls == [(document_id, False)]


def _document(document_id: str, fields: dict[str, object]) -> MaterializedDocument:
    return MaterializedDocument(
        document_id=document_id,
        view_id=document_id,
        schema_id="loop_" + "00" * 34,
        owner="ab" * 32,
        edited=False,
        deleted=False,
        fields=fields,  # type: ignore[arg-type]
    )


def test_the_byte_budget_refuses_a_response_of_large_related_documents() -> None:
    big = _document("0020" + "11" * 32, {"data": bytes(100_000)})
    parent = _document("0020" + "22" * 32, {"parts": RelationList([big.document_id] * 3)})
    resolver = BoundedResolver(lambda target, pinned: big, max_documents=1000, max_bytes=250_000)
    with pytest.raises(LimitExceededError) as raised:
        resolve_relations([parent], 1, resolver)
    assert raised.value.reason == Reason.BUDGET_EXCEEDED
    assert "250000 bytes" in raised.value.message
    assert resolver.reads == 1
    within = BoundedResolver(lambda target, pinned: big, max_documents=1000, max_bytes=400_000)
    (converted,) = documents_to_pb([parent], 1, resolve_relations([parent], 1, within))
    items = converted.fields["parts"].relation_list.items
    assert [len(item.document.fields["data"].bytes_value) for item in items] == [100_000] * 3
