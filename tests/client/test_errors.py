"""The client's error boundary: the node's statuses come back as the core's exception classes,
client-side problems are caught before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import pytest

from pandanode.client import (
    Client,
    Create,
    DeadlineExceededError,
    FieldType,
    KeyFileError,
    KeyPair,
    NodeUnavailableError,
    NotServedError,
    Schema,
    SchemaError,
    SchemaNotFoundError,
)
from pandanode.client._errors import error_for, status_code_of
from pandanode.core import (
    EntryDecodeError,
    LogIntegrityError,
    NotFoundError,
    OperationDecodeError,
    SchemaId,
    SignatureError,
    ValidationError,
    encode_operation,
    sign_and_encode_entry,
)
from pandanode.services.node import Node
from pandanode.services.runtime.errors import (
    InvalidRequestError,
    LimitExceededError,
    ResourceNotFoundError,
)

FAKE_VIEW = "0020" + "ab" * 32
FAKE_SCHEMA = f"ghost_{FAKE_VIEW}"


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SIGNATURE", SignatureError),
        (grpc.StatusCode.INVALID_ARGUMENT, "ENTRY_TOO_SHORT", EntryDecodeError),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD_VALUE", OperationDecodeError),
        (grpc.StatusCode.INVALID_ARGUMENT, "LIMIT_EXCEEDED", InvalidRequestError),
        (grpc.StatusCode.FAILED_PRECONDITION, "INVALID_FIELD_VALUE", SchemaError),
        (grpc.StatusCode.FAILED_PRECONDITION, "SCHEMA_NOT_FOUND", SchemaNotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, "BACKLINK_MISMATCH", LogIntegrityError),
        (grpc.StatusCode.FAILED_PRECONDITION, "PREVIOUS_NOT_FOUND", NotFoundError),
        (grpc.StatusCode.FAILED_PRECONDITION, "SOMETHING_NEW", ValidationError),
        (grpc.StatusCode.NOT_FOUND, "NOT_FOUND", ResourceNotFoundError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "BUDGET_EXCEEDED", LimitExceededError),
        (grpc.StatusCode.UNAVAILABLE, "", NodeUnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "", DeadlineExceededError),
        (grpc.StatusCode.UNIMPLEMENTED, "", NotServedError),
    ],
)
def test_status_and_reason_map_to_one_class(
    code: grpc.StatusCode, reason: str, expected: type[Exception]
) -> None:
    error = error_for(code, reason, "what happened")
    assert type(error) is expected
    assert error.message == "what happened"
    assert status_code_of(error) == code
    if reason and reason != "SOMETHING_NEW":
        assert error.reason == reason


async def test_bad_field_is_refused_locally_naming_the_schema_fields(client: Client) -> None:
    schema_id = await client.create_schema("venue", "A place", {"name": "str", "seats": "int"})
    before = await client.status()
    with pytest.raises(SchemaError) as unknown:
        await client.create(schema_id, {"nmae": "Hall", "seats": 10})
    assert unknown.value.reason == "UNEXPECTED_FIELD"
    assert "did you mean 'name'" in unknown.value.message
    assert "name: str, seats: int" in unknown.value.message
    assert status_code_of(unknown.value) is None  # raised here, not by the node

    with pytest.raises(SchemaError) as mistyped:
        await client.create(schema_id, {"name": "Hall", "seats": "ten"})
    assert mistyped.value.reason == "FIELD_TYPE_MISMATCH"
    assert "'seats' is int" in mistyped.value.message

    with pytest.raises(SchemaError) as missing:
        await client.create(schema_id, {"name": "Hall"})
    assert missing.value.reason == "MISSING_FIELD"

    with pytest.raises(SchemaError, match="invalid schema name"):
        await client.create_schema("x", "too short a name", {"a": "str"})
    with pytest.raises(SchemaError, match="invalid field type"):
        await client.create_schema("thing", "", {"a": "string"})
    assert (await client.status()).entries == before.entries, "something was sent"


async def test_unknown_schema_raises_schema_not_found(client: Client, key_pair: KeyPair) -> None:
    with pytest.raises(SchemaNotFoundError) as local:
        await client.create(FAKE_SCHEMA, {"name": "boo"})
    assert status_code_of(local.value) is None
    # Told about the schema (so the client's check passes), the node still refuses it.
    ghost = Schema(SchemaId.from_str(FAKE_SCHEMA), "", {"name": FieldType("str")})
    with pytest.raises(SchemaNotFoundError) as remote:
        await client.create(ghost, {"name": "boo"})
    assert status_code_of(remote.value) == grpc.StatusCode.FAILED_PRECONDITION
    assert remote.value.reason == "SCHEMA_NOT_FOUND"
    # What the error is about comes along (google.rpc.ErrorInfo.metadata).
    assert remote.value.metadata["schema_id"] == FAKE_SCHEMA
    assert remote.value.metadata["public_key"] == key_pair.public_key()
    assert remote.value.metadata["seq_num"] == "1"


async def test_a_bad_page_token_names_the_field_and_a_wait_in_vain_says_when_to_retry(
    node: Node,
) -> None:
    async with Client.connect(node.address, timeout=1.0) as client:
        with pytest.raises(InvalidRequestError) as bad_token:
            await anext(client.pages("schema_definition_v1", page_token="not-a-token"))
        assert bad_token.value.reason == "INVALID_PAGE_TOKEN"
        assert bad_token.value.metadata["field"] == "page_token"
        assert [v.field for v in bad_token.value.field_violations] == ["page_token"]
        with pytest.raises(NodeUnavailableError) as waited:
            await client.get_document(FAKE_VIEW, after=FAKE_VIEW)
        assert waited.value.retry_delay == 1.0  # google.rpc.RetryInfo
        assert waited.value.metadata["operation_id"] == FAKE_VIEW


async def test_stream_items_carry_the_nodes_exception_classes(client: Client) -> None:
    key_pair = KeyPair()
    operation = encode_operation(schema_id=FAKE_SCHEMA, fields={"name": "boo"})
    unknown_schema = sign_and_encode_entry(operation, key_pair, log_id=0, seq_num=1)
    field = encode_operation(
        schema_id="schema_field_definition_v1", fields={"name": "a", "type": "str"}
    )
    tampered = bytearray(sign_and_encode_entry(field, key_pair, log_id=1, seq_num=1))
    tampered[-1] ^= 1
    good = sign_and_encode_entry(field, key_pair, log_id=2, seq_num=1)
    result = await client.bulk_import(
        [(unknown_schema, operation), (bytes(tampered), field), (good, field)],
        retry_dependencies=False,
    )
    first, second, third = result.results
    assert isinstance(first, SchemaNotFoundError)
    # What each item's error is about comes along, as for a unary call's ErrorInfo.metadata.
    assert first.metadata["schema_id"] == FAKE_SCHEMA
    assert (first.metadata["public_key"], first.metadata["seq_num"]) == (key_pair.public_key(), "1")
    assert isinstance(second, SignatureError)
    assert status_code_of(second) == grpc.StatusCode.INVALID_ARGUMENT
    assert not isinstance(third, Exception)
    with pytest.raises(SchemaNotFoundError, match="item 0 of 3; 2 item"):
        result.raise_for_errors()


async def test_local_errors_in_bulk_are_per_item(client: Client) -> None:
    schema_id = await client.create_schema("row", "A row", {"n": "int"})
    result = await client.publish_many(
        [Create(schema_id, {"n": 1}), Create(schema_id, {"n": "x"}), Create(schema_id, {"n": 3})]
    )
    assert [type(r).__name__ for r in result.results] == ["Published", "SchemaError", "Published"]
    assert len(result.published) == 2


async def test_unreachable_node_raises_a_connection_error() -> None:
    async with Client.connect("127.0.0.1:1", retries=1, timeout=2.0) as client:
        with pytest.raises(NodeUnavailableError) as caught:
            await client.status()
    assert isinstance(caught.value, ConnectionError)


async def test_every_call_has_a_deadline() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # accept the connection, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Client.connect(f"127.0.0.1:{port}", key_pair=KeyPair(), timeout=0.3) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError) as caught:
                await client.next_args()
            assert time.monotonic() - started < 3
    finally:
        server.close()
        for writer in accepted:  # closing the server leaves its connections open
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()
    assert isinstance(caught.value, TimeoutError)


async def test_writes_need_a_key_pair_and_reads_need_the_query_service(node: Node) -> None:
    async with Client.connect(node.address) as client:
        with pytest.raises(KeyFileError, match="no key pair"):
            await client.create("blob_piece_v1", {"data": b""})
        served = "pandanode.query.v1.QueryService" in (await client.status()).services
        expected = ResourceNotFoundError if served else NotServedError
        with pytest.raises(expected) as caught:
            await client.get_document("0020" + "00" * 32)
    assert status_code_of(caught.value) in (
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
    )
