"""Three nodes wired only by ``--bootstrap-peers`` (A ← B ← C, LAN discovery off) converge on
thousands of entries: many authors and logs written on every node at once, a schema defined on A
and used on B and C, and documents updated by authors of other nodes (multi-author documents).
Every node ends with the same set of (public key, log id, seq num, entry hash), compared by a
hash of the sorted set, and the multi-author documents materialized identically.

``test_replication.py`` covers the same shape with a handful of documents; this is its scale.
About 1.5k entries run in ``make test``; the 10k variant is marked ``soak`` (``make soak``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import pytest

from pandanode.core import (
    KeyPair,
    PinnedRelationList,
    decode_entry,
    encode_operation,
    is_skiplink_required,
    lipmaa,
    sign_and_encode_entry,
)
from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc
from pandanode.services.node import Node
from tests.services.support import eventually

from .support import StartNode, entry_count, log_entries, set_hash, starter

NODES = 3


@pytest.fixture
def start(tmp_path: Path) -> StartNode:
    return starter(tmp_path)


@dataclass
class Log:
    """One author's log, signed as it grows."""

    key_pair: KeyPair
    log_id: int
    hashes: list[str] = field(default_factory=list)

    def append(self, operation: bytes) -> ipb.PublishRequest:
        seq_num = len(self.hashes) + 1
        entry = sign_and_encode_entry(
            operation,
            self.key_pair,
            log_id=self.log_id,
            seq_num=seq_num,
            backlink=self.hashes[-1] if self.hashes else None,
            skiplink=self.hashes[lipmaa(seq_num) - 1] if is_skiplink_required(seq_num) else None,
        )
        self.hashes.append(decode_entry(entry, verify=False).hash)
        return ipb.PublishRequest(entry=entry, operation=operation)


def schema_entries() -> tuple[str, list[ipb.PublishRequest]]:
    """The schema ``item`` (``title: str``, ``n: int``) by a fresh author: its id and entries."""
    author = KeyPair()
    requests: list[ipb.PublishRequest] = []
    views: list[list[str]] = []
    for log_id, (name, kind) in enumerate([("title", "str"), ("n", "int")]):
        log = Log(author, log_id)
        operation = encode_operation(
            schema_id="schema_field_definition_v1", fields={"name": name, "type": kind}
        )
        requests.append(log.append(operation))
        views.append([log.hashes[0]])
    log = Log(author, 2)
    definition = encode_operation(
        schema_id="schema_definition_v1",
        fields={"name": "item", "description": "Scale test", "fields": PinnedRelationList(views)},
    )
    requests.append(log.append(definition))
    return f"item_{log.hashes[0]}", requests


@dataclass(frozen=True)
class Size:
    """How much each node writes.

    Attributes:
        authors: Authors per node, each writing ``documents`` documents (one log each).
        documents: Documents per author.
        updates: UPDATEs of each document by its author, after its CREATE.
        editors: Authors per node who update documents made on the next node.
        edits: Documents each editor updates (once each, in a log of its own per document).
    """

    authors: int
    documents: int
    updates: int
    editors: int
    edits: int

    @property
    def total(self) -> int:
        per_node = self.authors * self.documents * (1 + self.updates) + self.editors * self.edits
        return NODES * per_node


@dataclass
class Document:
    document_id: str
    tip: str


def own_documents(
    schema_id: str, size: Size, node: int
) -> tuple[list[ipb.PublishRequest], list[Document]]:
    """What node ``node``'s authors write: every document created and updated by its author."""
    requests: list[ipb.PublishRequest] = []
    made: list[Document] = []
    for author in range(size.authors):
        key_pair = KeyPair()
        for number in range(size.documents):
            log = Log(key_pair, number)
            name = f"node {node} author {author} document {number}"
            requests.append(
                log.append(encode_operation(schema_id=schema_id, fields={"title": name, "n": 0}))
            )
            for n in range(1, size.updates + 1):
                update = encode_operation(
                    action="update", schema_id=schema_id, previous=[log.hashes[-1]], fields={"n": n}
                )
                requests.append(log.append(update))
            made.append(Document(log.hashes[0], log.hashes[-1]))
    return requests, made


def edits(
    schema_id: str, size: Size, node: int, documents: list[Document]
) -> list[ipb.PublishRequest]:
    """Node ``node``'s editors each update ``size.edits`` of ``documents`` (made elsewhere), in
    turn, so a document may be edited by several of them, each after the other."""
    requests: list[ipb.PublishRequest] = []
    for editor in range(size.editors):
        key_pair = KeyPair()
        for log_id in range(size.edits):
            document = documents[(editor * size.edits + log_id) % len(documents)]
            update = encode_operation(
                action="update",
                schema_id=schema_id,
                previous=[document.tip],
                fields={"title": f"edited on node {node} by editor {editor}"},
            )
            requests.append(Log(key_pair, log_id).append(update))
            document.tip = decode_entry(requests[-1].entry, verify=False).hash
    return requests


async def publish(node: Node, requests: list[ipb.PublishRequest]) -> None:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        batches = [
            ipb.PublishStreamRequest(items=requests[i : i + 200])
            for i in range(0, len(requests), 200)
        ]
        async for response in stub.PublishStream(iter(batches), timeout=120):
            for result in response.results:
                assert result.HasField("ok"), result.error


async def knows_schema(node: Node, schema_id: str) -> bool:
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        try:
            await stub.GetSchema(qpb.GetSchemaRequest(schema_id=schema_id), timeout=10)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True


async def all_hold(nodes: tuple[Node, ...], count: int) -> bool:
    counts = await asyncio.gather(*(entry_count(node.address) for node in nodes))
    assert all(c <= count for c in counts), f"more entries than written: {counts}"
    return all(c == count for c in counts)


async def views(node: Node, documents: list[Document]) -> list[str]:
    """The view id of each document on ``node`` (empty: not there yet)."""
    found: list[str] = []
    async with grpc.aio.insecure_channel(node.address) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        for document in documents:
            request = qpb.GetDocumentRequest(document_id=document.document_id)
            try:
                found.append(
                    (await stub.GetDocument(request, timeout=10)).document.document_view_id
                )
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                found.append("")
    return found


async def converge(start: StartNode, size: Size, timeout: float) -> None:
    async with (
        start("a") as a,
        start("b", bootstrap_peers=a.address) as b,
        start("c", bootstrap_peers=b.address) as c,
    ):
        nodes = (a, b, c)
        schema_id, definition = schema_entries()
        await publish(a, definition)
        for node in (b, c):
            await eventually(
                lambda node=node: knows_schema(node, schema_id),  # type: ignore[misc]
                timeout=timeout,
                what="A's schema on every node",
            )

        # Every node writes at once, with the schema it got from A.
        written = [own_documents(schema_id, size, index) for index in range(NODES)]
        await asyncio.gather(*(publish(n, w[0]) for n, w in zip(nodes, written, strict=True)))
        expected = len(definition) + sum(len(w[0]) for w in written)
        await eventually(
            lambda: all_hold(nodes, expected), timeout=timeout, what="every node's documents"
        )

        # Authors of each node update documents made on the next one.
        edited = [
            edits(schema_id, size, index, written[(index + 1) % NODES][1]) for index in range(NODES)
        ]
        await asyncio.gather(*(publish(n, e) for n, e in zip(nodes, edited, strict=True)))
        total = len(definition) + size.total
        await eventually(lambda: all_hold(nodes, total), timeout=timeout, what="every edit")

        sets = [await log_entries(node.address) for node in nodes]
        assert len(sets[0]) == total
        assert len({set_hash(entries) for entries in sets}) == 1
        # The multi-author documents, materialized identically at their last edit.
        multi = [d for w in written for d in w[1][: size.editors * size.edits]]
        assert len(multi) == min(size.editors * size.edits, size.authors * size.documents) * NODES
        tips = [d.tip for d in multi]
        for node in nodes:

            async def at_tips(node: Node = node) -> bool:
                return await views(node, multi) == tips

            await eventually(at_tips, timeout=timeout, what="edited documents at their tips")


async def test_three_nodes_converge_on_1500_entries_by_many_authors_of_every_node(
    start: StartNode,
) -> None:
    size = Size(authors=10, documents=3, updates=14, editors=3, edits=20)
    assert size.total > 1500
    await converge(start, size, timeout=60)


@pytest.mark.soak
async def test_three_nodes_converge_on_10k_entries_by_many_authors_of_every_node(
    start: StartNode,
) -> None:
    size = Size(authors=40, documents=5, updates=15, editors=4, edits=40)
    assert size.total > 10_000
    await converge(start, size, timeout=240)
