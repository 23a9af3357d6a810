"""Entries signed by the real p2panda-js 0.8.1 are accepted, following the p2panda client flow:
ask the node for next args, encode and sign with p2panda-js, publish; the answers are what
p2panda's rules demand, and the node stores p2panda-js' bytes unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pandanode.ingest.v1 import ingest_pb2 as pb
from tests.interop.oracle_client import Oracle, TypedSpec

from .helpers import expected_next_args, read_log, rejection

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

pytestmark = pytest.mark.interop


@dataclass
class JsAuthor:
    """A p2panda-js key pair and what this test published with it: log id → entries."""

    oracle: Oracle
    private_key: str
    public_key: str
    logs: dict[int, list[bytes]] = field(default_factory=dict)

    @classmethod
    def new(cls, oracle: Oracle) -> JsAuthor:
        private_key, public_key = oracle.key_pair()
        return cls(oracle, private_key, public_key)

    def hashes(self, log_id: int) -> list[str]:
        return [self.oracle.generate_hash(entry) for entry in self.logs.get(log_id, [])]

    async def publish(
        self,
        ingest: IngestServiceAsyncStub,
        spec: TypedSpec,
        document_view_id: str = "",
    ) -> pb.PublishResponse:
        """The p2panda client flow: nextArgs, encodeOperation, signAndEncodeEntry, publish."""
        request = pb.NextArgsRequest(public_key=self.public_key, document_view_id=document_view_id)
        args = (await ingest.NextArgs(request)).next_args
        operation = self.oracle.encode_operation(spec)
        entry = self.oracle.sign_and_encode_entry(
            self.private_key,
            operation,
            log_id=args.log_id,
            seq_num=args.seq_num,
            backlink=args.backlink or None,
            skiplink=args.skiplink or None,
        )
        decoded = self.oracle.decode_entry(entry)
        assert (decoded["skiplink"] or "", decoded["backlink"] or "") == (
            args.skiplink,
            args.backlink,
        )
        response = await ingest.Publish(pb.PublishRequest(entry=entry, operation=operation))
        self.logs.setdefault(args.log_id, []).append(entry)
        assert response.operation_id == self.oracle.generate_hash(entry)
        assert response.next_args == expected_next_args(args.log_id, self.hashes(args.log_id))
        return response


def spec(
    schema_id: str,
    fields: list[list[Any]] | None,
    action: str = "create",
    previous: list[str] | None = None,
) -> TypedSpec:
    return {"action": action, "schemaId": schema_id, "previous": previous, "fields": fields}


async def test_schema_and_document_lifecycle_signed_by_p2panda_js_are_accepted(
    ingest: IngestServiceAsyncStub, oracle: Oracle
) -> None:
    alice, bob = JsAuthor.new(oracle), JsAuthor.new(oracle)
    field_views = []
    for name, field_type in [("title", "str"), ("stars", "int"), ("image", "relation(blob_v1)")]:
        fields = [["name", "str", name], ["type", "str", field_type]]
        response = await alice.publish(ingest, spec("schema_field_definition_v1", fields))
        field_views.append([response.operation_id])
    definition: list[list[Any]] = [
        ["description", "str", "Reviews signed by p2panda-js"],
        ["fields", "pinned_relation_list", field_views],
        ["name", "str", "review"],
    ]
    response = await alice.publish(ingest, spec("schema_definition_v1", definition))
    schema_id = f"review_{response.operation_id}"

    blob = "0020" + "12" * 32
    fields = [["image", "relation", blob], ["stars", "int", "4"], ["title", "str", "Bamboo"]]
    response = await alice.publish(ingest, spec(schema_id, fields))
    document_id = response.document_id
    assert response.next_args.log_id == 4
    tip = response.operation_id
    # Enough UPDATEs to need skiplinks (seq 4, 8, 12, 13) in Alice's document log.
    for stars in range(14):
        update = spec(schema_id, [["stars", "int", str(stars)]], "update", [tip])
        response = await alice.publish(ingest, update, tip)
        assert response.document_id == document_id
        tip = response.operation_id
    assert response.next_args.seq_num == 16

    # Bob's first UPDATE starts his log 0 at seq 1; then a second one and a DELETE there.
    response = await bob.publish(
        ingest, spec(schema_id, [["title", "str", "Bamboo!"]], "update", [tip]), tip
    )
    assert response.next_args == pb.NextArguments(
        log_id=0, seq_num=2, backlink=response.operation_id
    )
    tip = response.operation_id
    response = await bob.publish(ingest, spec(schema_id, None, "delete", [tip]), tip)
    assert response.document_id == document_id

    # Stored exactly as p2panda-js signed them.
    for author in (alice, bob):
        for log_id, entries in author.logs.items():
            stored = await read_log(ingest, author.public_key, log_id)
            assert [e.entry for e in stored] == entries
    # And the document is deleted now.
    request = pb.NextArgsRequest(public_key=alice.public_key, document_view_id=document_id)
    assert (await rejection(ingest.NextArgs(request))).reason == "DOCUMENT_DELETED"


async def test_a_log_signed_by_p2panda_js_is_accepted_in_one_stream_batch(
    ingest: IngestServiceAsyncStub, oracle: Oracle
) -> None:
    # Signed entirely offline by p2panda-js (as a peer would hand it over), links from
    # p2panda-js' own hashes, then sent in one PublishStream batch.
    private_key, public_key = oracle.key_pair()
    log_id = 300
    hashes: list[str] = []
    items: list[pb.PublishRequest] = []
    schema_id = "schema_field_definition_v1"
    for seq_num in range(1, 31):
        if seq_num == 1:
            operation_spec = spec(schema_id, [["name", "str", "n"], ["type", "str", "int"]])
        else:
            fields = [["name", "str", f"n{seq_num}"]]
            operation_spec = spec(schema_id, fields, "update", [hashes[-1]])
        operation = oracle.encode_operation(operation_spec)
        args = expected_next_args(log_id, hashes)
        entry = oracle.sign_and_encode_entry(
            private_key,
            operation,
            log_id=log_id,
            seq_num=seq_num,
            backlink=args.backlink or None,
            skiplink=args.skiplink or None,
        )
        hashes.append(oracle.generate_hash(entry))
        items.append(pb.PublishRequest(entry=entry, operation=operation))

    async def requests() -> AsyncIterator[pb.PublishStreamRequest]:
        yield pb.PublishStreamRequest(items=items)

    (response,) = [r async for r in ingest.PublishStream(requests())]
    for index, result in enumerate(response.results):
        assert result.WhichOneof("outcome") == "ok", result.error
        assert result.ok.operation_id == hashes[index]
        assert result.ok.document_id == hashes[0]
        assert result.ok.next_args == expected_next_args(log_id, hashes[: index + 1])
    stored = await read_log(ingest, public_key, log_id)
    assert [e.entry for e in stored] == [item.entry for item in items]
    assert [e.operation for e in stored] == [item.operation for item in items]
