"""AIP conventions of the query and ingest APIs on a real node: error details name what they
are about, ListSchemas pages, Consistency takes a Duration."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest
from google.protobuf.duration_pb2 import Duration

from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from tests.services.ingest.helpers import Author, publish_schema, rejection
from tests.services.support import eventually

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

UNKNOWN_SCHEMA = "ghost_0020" + "ab" * 32
UNKNOWN_OPERATION = "0020" + "cd" * 32


@pytest.fixture
def query(channel: grpc.aio.Channel) -> QueryServiceAsyncStub:
    return query_pb2_grpc.QueryServiceStub(channel)


@pytest.fixture
def ingest(channel: grpc.aio.Channel) -> IngestServiceAsyncStub:
    return ingest_pb2_grpc.IngestServiceStub(channel)


async def _schema_built(query: QueryServiceAsyncStub, schema_id: str) -> None:
    async def built() -> bool:
        try:
            await query.GetSchema(qpb.GetSchemaRequest(schema_id=schema_id))
        except grpc.aio.AioRpcError:
            return False
        return True

    await eventually(built, what="the schema to be built by query")


async def test_list_schemas_pages_by_schema_id_until_the_last_page_has_no_token(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub
) -> None:
    author = Author()
    made = [await publish_schema(ingest, author, name, {"a": "str"}) for name in ("one", "two")]
    for schema_id in made:
        await _schema_built(query, schema_id)
    everything = await query.ListSchemas(qpb.ListSchemasRequest())
    assert not everything.next_page_token
    ids = [schema.schema_id for schema in everything.schemas]
    assert ids == sorted(ids) and set(made) <= set(ids)
    paged: list[str] = []
    request = qpb.ListSchemasRequest(page_size=2)
    while True:
        page = await query.ListSchemas(request)
        assert len(page.schemas) <= 2
        paged += [schema.schema_id for schema in page.schemas]
        if not page.next_page_token:
            break
        request = qpb.ListSchemasRequest(page_size=2, page_token=page.next_page_token)
    assert paged == ids


async def test_list_schemas_rejects_a_page_token_it_did_not_issue_naming_the_field(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub
) -> None:
    first = await query.ListSchemas(qpb.ListSchemasRequest(page_size=1))
    token = first.next_page_token
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    rejected = await rejection(query.ListSchemas(qpb.ListSchemasRequest(page_token=altered)))
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
    )
    assert rejected.metadata["field"] == "page_token"
    assert [field for field, _ in rejected.violations] == ["page_token"]
    # A token of ListDocuments (signed with the same node secret) is no token of ListSchemas.
    schema_id = await publish_schema(ingest, Author(), "pair", {"a": "str", "b": "str"})
    listed = await query.ListDocuments(
        qpb.ListDocumentsRequest(
            schema_id="schema_field_definition_v1",
            page_size=1,
            consistency=qpb.Consistency(
                operation_id=schema_id.rsplit("_", 1)[1], timeout=Duration(seconds=10)
            ),
        )
    )
    assert listed.next_page_token
    foreign = await rejection(
        query.ListSchemas(qpb.ListSchemasRequest(page_token=listed.next_page_token))
    )
    assert foreign.reason == "INVALID_PAGE_TOKEN"


async def test_a_read_waits_for_the_consistency_duration_then_answers_unavailable_with_retry_info(
    query: QueryServiceAsyncStub,
) -> None:
    consistency = qpb.Consistency(
        operation_id=UNKNOWN_OPERATION, timeout=Duration(nanos=300_000_000)
    )
    rejected = await rejection(
        query.GetDocument(
            qpb.GetDocumentRequest(document_id=UNKNOWN_OPERATION, consistency=consistency),
            timeout=60,
        )
    )
    assert rejected.code == grpc.StatusCode.UNAVAILABLE
    assert "within 0.3s" in rejected.message  # the Duration, not the call's 60 s deadline
    assert rejected.retry_delay == 1.0
    assert rejected.metadata["operation_id"] == UNKNOWN_OPERATION


async def test_the_deprecated_timeout_ms_still_bounds_the_wait_when_timeout_is_unset(
    query: QueryServiceAsyncStub,
) -> None:
    consistency = qpb.Consistency(operation_id=UNKNOWN_OPERATION, timeout_ms=200)
    rejected = await rejection(
        query.GetDocument(
            qpb.GetDocumentRequest(document_id=UNKNOWN_OPERATION, consistency=consistency),
            timeout=60,
        )
    )
    assert rejected.code == grpc.StatusCode.UNAVAILABLE
    assert "within 0.2s" in rejected.message


async def test_not_found_names_the_schema_and_the_document_in_the_metadata(
    query: QueryServiceAsyncStub,
) -> None:
    schema = await rejection(query.GetSchema(qpb.GetSchemaRequest(schema_id=UNKNOWN_SCHEMA)))
    assert (schema.code, schema.reason) == (grpc.StatusCode.NOT_FOUND, "SCHEMA_NOT_FOUND")
    assert schema.metadata == {"schema_id": UNKNOWN_SCHEMA}
    document = await rejection(
        query.GetDocument(qpb.GetDocumentRequest(document_id=UNKNOWN_OPERATION))
    )
    assert document.code == grpc.StatusCode.NOT_FOUND
    assert document.metadata == {"document_id": UNKNOWN_OPERATION}
    assert document.retry_delay is None and not document.violations


async def test_malformed_arguments_name_their_request_field_in_a_bad_request(
    ingest: IngestServiceAsyncStub, query: QueryServiceAsyncStub
) -> None:
    hexless = await rejection(query.GetDocument(qpb.GetDocumentRequest(document_id="nope")))
    assert hexless.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in hexless.violations] == ["document_id"]
    schema_id = await publish_schema(ingest, Author(), "venue", {"name": "str"})
    await _schema_built(query, schema_id)
    good = qpb.Filter(
        field="name", operator=qpb.FILTER_OPERATOR_EQ, value=qpb.FilterValue(str_value="x")
    )
    unknown = qpb.Filter(
        field="nope", operator=qpb.FILTER_OPERATOR_EQ, value=qpb.FilterValue(str_value="x")
    )
    no_operator = qpb.Filter(field="name", value=qpb.FilterValue(str_value="x"))
    for filters, field in (
        ([good, unknown], "filters[1]"),
        ([good, no_operator], "filters[1].operator"),
    ):
        rejected = await rejection(
            query.ListDocuments(qpb.ListDocumentsRequest(schema_id=schema_id, filters=filters))
        )
        assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [violated for violated, _ in rejected.violations] == [field]
        assert rejected.metadata["field"] == field


async def test_an_entry_of_an_unknown_schema_names_the_schema_and_the_entry(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    signed = author.create(UNKNOWN_SCHEMA, {"name": "boo"})
    rejected = await rejection(ingest.Publish(signed.request()))
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SCHEMA_NOT_FOUND",
    )
    assert rejected.metadata == {
        "schema_id": UNKNOWN_SCHEMA,
        "public_key": author.public_key,
        "log_id": str(signed.log_id),
        "seq_num": str(signed.seq_num),
    }
