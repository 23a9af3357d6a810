"""Entries signed by the real p2panda-js 0.8.1, published on node A, replicate to node B: the
same bytes in every log, and the documents materialized identically (same view, same fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from tests.interop.oracle_client import Oracle, TypedSpec
from tests.services.support import eventually

from .support import StartNode, log_entries, set_hash, starter

pytestmark = pytest.mark.interop


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


@dataclass
class JsAuthor:
    """A p2panda-js key pair publishing through the p2panda client flow on one node."""

    oracle: Oracle
    private_key: str
    public_key: str
    entries: list[bytes] = field(default_factory=list)

    @classmethod
    def new(cls, oracle: Oracle) -> JsAuthor:
        return cls(oracle, *oracle.key_pair())

    async def publish(
        self, node: Node, spec: TypedSpec, document_view_id: str = ""
    ) -> ipb.PublishResponse:
        """NextArgs from the node, encodeOperation and signAndEncodeEntry by p2panda-js."""
        async with grpc.aio.insecure_channel(node.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            request = ipb.NextArgsRequest(
                public_key=self.public_key, document_view_id=document_view_id
            )
            args = (await stub.NextArgs(request, timeout=10)).next_args
            operation = self.oracle.encode_operation(spec)
            entry = self.oracle.sign_and_encode_entry(
                self.private_key,
                operation,
                log_id=args.log_id,
                seq_num=args.seq_num,
                backlink=args.backlink or None,
                skiplink=args.skiplink or None,
            )
            self.entries.append(entry)
            return await stub.Publish(ipb.PublishRequest(entry=entry, operation=operation))


def spec(
    schema_id: str,
    fields: list[list[Any]] | None,
    action: str = "create",
    previous: list[str] | None = None,
) -> TypedSpec:
    return {"action": action, "schemaId": schema_id, "previous": previous, "fields": fields}


async def documents(node: Node, document_ids: list[str]) -> list[qpb.Document | None]:
    """Each document as ``node`` answers GetDocument (None: NOT_FOUND)."""
    found: list[qpb.Document | None] = []
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for document_id in document_ids:
            request = qpb.GetDocumentRequest(document_id=document_id)
            try:
                found.append((await stub.GetDocument(request, timeout=10)).document)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                found.append(None)
    return found


async def test_documents_signed_by_p2panda_js_on_a_appear_identically_on_b(
    start: StartNode, oracle: Oracle
) -> None:
    async with start("a") as a, start("b", bootstrap_peers=a.address) as b:
        alice, bob = JsAuthor.new(oracle), JsAuthor.new(oracle)
        views = []
        for name, kind in [("title", "str"), ("stars", "int"), ("score", "float"), ("ok", "bool")]:
            fields = [["name", "str", name], ["type", "str", kind]]
            views.append(
                [(await alice.publish(a, spec("schema_field_definition_v1", fields))).operation_id]
            )
        definition: list[list[Any]] = [
            ["description", "str", "Reviews signed by p2panda-js"],
            ["fields", "pinned_relation_list", views],
            ["name", "str", "review"],
        ]
        schema = await alice.publish(a, spec("schema_definition_v1", definition))
        schema_id = f"review_{schema.operation_id}"

        made: list[list[Any]] = [
            ["ok", "bool", True],
            ["score", "float", "3ff8000000000000"],  # 1.5, as its binary64 bits
            ["stars", "int", "4"],
            ["title", "str", "Bamboo"],
        ]
        kept = await alice.publish(a, spec(schema_id, made))
        # Enough UPDATEs by Alice for skiplinks in her log, then one by Bob (multi-author).
        tip = kept.operation_id
        for stars in range(6):
            update = spec(schema_id, [["stars", "int", str(stars)]], "update", [tip])
            tip = (await alice.publish(a, update, tip)).operation_id
        update = spec(schema_id, [["title", "str", "Bamboo!"]], "update", [tip])
        tip = (await bob.publish(a, update, tip)).operation_id
        # A second document Bob makes, then deletes.
        gone = await bob.publish(a, spec(schema_id, made))
        await bob.publish(
            a, spec(schema_id, None, "delete", [gone.operation_id]), gone.operation_id
        )

        expected = await log_entries(a.address)

        async def same_logs() -> bool:
            return set_hash(await log_entries(b.address)) == set_hash(expected)

        await eventually(same_logs, timeout=30, what="A's p2panda-js logs on B")
        ids = [kept.document_id, gone.document_id]

        async def materialized_on_a() -> list[qpb.Document | None] | None:
            found = await documents(a, ids)
            first = found[0]
            return found if first is not None and first.document_view_id == tip else None

        on_a = await eventually(materialized_on_a, timeout=30, what="A's documents materialized")

        async def identical_on_b() -> bool:
            return await documents(b, ids) == on_a

        await eventually(identical_on_b, timeout=30, what="the same documents on B")
        kept_doc = on_a[0]
        assert kept_doc is not None and kept_doc.owner == alice.public_key
        assert kept_doc.fields["title"].str_value == "Bamboo!"
        assert on_a[1] is None or on_a[1].deleted

        # The very bytes p2panda-js signed, on B.
        async with grpc.aio.insecure_channel(b.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            stored: list[bytes] = []
            for author in (alice, bob):
                heights = await stub.GetLogHeights(ipb.GetLogHeightsRequest(), timeout=10)
                for height in heights.log_heights:
                    if height.public_key != author.public_key:
                        continue
                    request = ipb.ReadLogRequest(public_key=author.public_key, log_id=height.log_id)
                    async for page in stub.ReadLog(request, timeout=10):
                        stored.extend(e.entry for e in page.entries)
        assert sorted(stored) == sorted(alice.entries + bob.entries)
