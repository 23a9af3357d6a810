"""nextArgs and publish through the gateway: entries signed here, published over GraphQL, read
over gRPC; and what a client that gets it wrong is told."""

from __future__ import annotations

import httpx

from pandanode.client import Client
from pandanode.core import KeyPair, encode_operation, sign_and_encode_entry
from tests.services.gateway.helpers import data, graphql

NEXT_ARGS = """query NextArgs($publicKey: String!, $viewId: String) {
    nextArgs(publicKey: $publicKey, viewId: $viewId) { logId seqNum backlink skiplink }
}"""
PUBLISH = """mutation Publish($entry: String!, $operation: String!) {
    publish(entry: $entry, operation: $operation) { logId seqNum backlink skiplink }
}"""


async def publish(
    http: httpx.AsyncClient, key_pair: KeyPair, operation: bytes, view_id: str | None = None
) -> dict[str, str | None]:
    """Sign ``operation`` with the arguments nextArgs gives, publish it; the next arguments."""
    args = (await data(http, NEXT_ARGS, {"publicKey": key_pair.public_key(), "viewId": view_id}))[
        "nextArgs"
    ]
    entry = sign_and_encode_entry(
        operation,
        key_pair,
        log_id=int(args["logId"]),
        seq_num=int(args["seqNum"]),
        backlink=args["backlink"],
        skiplink=args["skiplink"],
    )
    result = await data(http, PUBLISH, {"entry": entry.hex(), "operation": operation.hex()})
    published: dict[str, str | None] = result["publish"]
    return published


async def test_next_args_of_a_new_author_start_a_log_as_decimal_strings(
    http: httpx.AsyncClient,
) -> None:
    result = await data(http, NEXT_ARGS, {"publicKey": KeyPair().public_key()})
    args = result["nextArgs"]
    assert args["seqNum"] == "1" and args["logId"].isdigit()
    assert args["backlink"] is None and args["skiplink"] is None


async def test_documents_published_over_graphql_are_read_over_grpc(
    http: httpx.AsyncClient, client: Client
) -> None:
    schema_id = await client.create_schema("note", "A note", {"text": "str", "n": "int"})
    author = KeyPair()
    create = encode_operation(schema_id=schema_id, fields={"text": "hello", "n": 2**45})
    after_create = await publish(http, author, create)
    assert after_create["seqNum"] == "2" and after_create["backlink"] is not None
    document_id = after_create["backlink"]  # the CREATE's entry hash is the document id
    assert document_id is not None
    created = await client.get_document(document_id, after=document_id)
    assert created.fields == {"text": "hello", "n": 2**45}
    assert created.owner == author.public_key()
    update = encode_operation(
        action="update", schema_id=schema_id, previous=[document_id], fields={"text": "bye"}
    )
    after_update = await publish(http, author, update, view_id=document_id)
    assert after_update["seqNum"] == "3" and after_update["logId"] == after_create["logId"]
    view_id = after_update["backlink"]
    assert view_id is not None
    updated = await client.get_document(document_id, after=view_id)
    assert updated.fields == {"text": "bye", "n": 2**45}
    delete = encode_operation(action="delete", schema_id=schema_id, previous=[view_id])
    after_delete = await publish(http, author, delete, view_id=view_id)
    assert after_delete["backlink"] is not None
    deleted = await client.get_document(document_id, after=after_delete["backlink"])
    assert deleted.deleted and deleted.fields == {}


async def test_publish_errors_are_graphql_errors_naming_the_problem_with_http_200(
    http: httpx.AsyncClient,
) -> None:
    key_pair = KeyPair()
    operation = encode_operation(schema_id="schema_field_definition_v1", fields={"name": "x"})
    entry = sign_and_encode_entry(operation, key_pair, log_id=0, seq_num=1)
    other = encode_operation(
        schema_id="schema_field_definition_v1", fields={"name": "y", "type": "str"}
    )
    cases = {
        ("zz", operation.hex()): "invalid entry",
        (entry.hex(), "zz"): "invalid operation",
        ("00", operation.hex()): "could not decode entry",
        (entry.hex(), other.hex()): "does not match the operation",
    }
    for (entry_hex, operation_hex), problem in cases.items():
        result = await graphql(http, PUBLISH, {"entry": entry_hex, "operation": operation_hex})
        assert result.get("data") is None, result
        message = result["errors"][0]["message"]
        assert problem.lower() in message.lower(), message
        assert len(message) < 2000


async def test_next_args_rejects_a_malformed_public_key(http: httpx.AsyncClient) -> None:
    result = await graphql(http, NEXT_ARGS, {"publicKey": "abc"})
    assert "invalid public key" in result["errors"][0]["message"]
