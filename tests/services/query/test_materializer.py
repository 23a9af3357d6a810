"""The materializer inside the all-in-one node: documents published through ingest become views.

Every test publishes through the real ingest service (gRPC), which announces on the real
JetStream stream, which the node's query materializer consumes into its own RocksDB.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from pandanode.core import PinnedRelation, PinnedRelationList, Relation
from pandanode.core.document import materialize
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import FieldValue
from pandanode.services.node import Node
from pandanode.services.query.materializer import Materializer
from pandanode.services.query.model import ChangeKind, MaterializedDocument
from pandanode.services.query.reads import Blob, StoredSchemas, read_blob, read_view
from tests.services.ingest.helpers import (
    SCHEMA_DEFINITION,
    Author,
    Signed,
    publish,
    publish_batches,
    publish_schema,
)

from .materializer_helpers import Recorder, document_operation

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

NOTE_FIELDS = {"title": "str", "stars": "int", "score": "float", "public": "bool", "raw": "bytes"}
NOTE: dict[str, FieldValue] = {
    "public": True,
    "raw": b"\x00\xff",
    "score": -0.0,
    "stars": 3,
    "title": "Panda",
}


def query(node: Node) -> Materializer:
    assert node.query is not None
    return node.query


def stored_schemas(node: Node) -> StoredSchemas:
    """The schemas the node's materializer committed, read as the query service reads them."""
    return StoredSchemas(query(node).store)


def stored_view(node: Node, view_id: str) -> MaterializedDocument | None:
    """A view from the node's query store, read as the query service reads it."""
    return read_view(query(node).store, stored_schemas(node), view_id)


def stored_blob(node: Node, *, document_id: str = "", view_id: str = "") -> Blob | None:
    """An assembled blob from the node's query store, read as the query service reads it."""
    return read_blob(query(node).store, document_id=document_id, view_id=view_id)


async def materialized(node: Node, *signed: Signed) -> None:
    """Wait until every one of these operations is materialized."""
    for item in signed:
        assert await query(node).wait_for_operation(item.hash, 15), f"{item.hash} not materialized"


async def test_create_update_delete_chain_gives_each_view(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice = Author()
    schema_id = await publish_schema(ingest, alice, "note", NOTE_FIELDS)
    created = alice.create(schema_id, NOTE)
    await publish(ingest, created)
    await materialized(node, created)

    document = query(node).store.document(created.hash)
    assert document is not None
    assert (document.document_id, document.view_id) == (created.hash, created.hash)
    assert (document.schema_id, document.owner) == (schema_id, alice.public_key)
    assert (document.edited, document.deleted) == (False, False)
    assert document.fields == NOTE
    assert document.appendable
    assert query(node).store.is_folded(created.hash)

    renamed = alice.update(schema_id, created.hash, [created.hash], {"title": "Big panda"})
    await publish(ingest, renamed)
    await materialized(node, renamed)
    document = query(node).store.document(created.hash)
    assert document is not None
    assert document.view_id == renamed.hash and document.edited and not document.deleted
    assert document.fields == {**NOTE, "title": "Big panda"}
    # The first view is still there, built on demand from the stored operations.
    first = stored_view(node, created.hash)
    assert first is not None and first.fields == NOTE and first.view_id == created.hash

    deleted = alice.delete(schema_id, created.hash, [renamed.hash])
    await publish(ingest, deleted)
    await materialized(node, deleted)
    document = query(node).store.document(created.hash)
    assert document is not None
    assert document.view_id == deleted.hash and document.deleted and document.edited
    assert document.fields == {}
    assert all(query(node).store.is_folded(s.hash) for s in (created, renamed, deleted))
    assert [d.document_id for d in query(node).store.documents(schema_id)] == [created.hash]
    assert query(node).store.is_folded(deleted.hash)


async def test_concurrent_branches_of_two_authors_then_a_merge(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice, bob, carol = Author(), Author(), Author()
    schema_id = await publish_schema(ingest, alice, "note", NOTE_FIELDS)
    created = alice.create(schema_id, NOTE)
    await publish(ingest, created)
    # Both build on the CREATE without seeing each other: two branches.
    by_alice = alice.update(schema_id, created.hash, [created.hash], {"title": "A", "stars": 1})
    by_bob = bob.update(schema_id, created.hash, [created.hash], {"title": "B", "score": 2.5})
    await publish_batches(ingest, [[by_alice, by_bob]])
    await materialized(node, by_alice, by_bob)

    document = query(node).store.document(created.hash)
    assert document is not None
    # Spec §6.2: with two branches the lower id is walked first, the higher one wins.
    winner = max(by_alice, by_bob, key=lambda signed: signed.hash)
    assert document.fields["title"] == ("A" if winner is by_alice else "B")
    assert (document.fields["stars"], document.fields["score"]) == (1, 2.5)
    assert document.view_id == "_".join(sorted([by_alice.hash, by_bob.hash]))
    reference = materialize(document_operation(s) for s in (created, by_alice, by_bob))
    assert reference.fields == document.fields
    assert str(reference.view_id) == document.view_id

    merge = carol.update(schema_id, created.hash, [by_alice.hash, by_bob.hash], {"public": False})
    await publish(ingest, merge)
    await materialized(node, merge)
    document = query(node).store.document(created.hash)
    assert document is not None
    assert document.view_id == merge.hash
    assert reference.fields is not None
    assert document.fields == {**reference.fields, "public": False}
    assert all(query(node).store.is_folded(s.hash) for s in (created, by_alice, by_bob, merge))


async def test_three_way_fork_follows_the_reference_walk_not_the_highest_id(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    authors = [Author() for _ in range(3)]
    schema_id = await publish_schema(ingest, authors[0], "note", NOTE_FIELDS)
    created = authors[0].create(schema_id, NOTE)
    await publish(ingest, created)
    forks = [
        author.update(schema_id, created.hash, [created.hash], {"title": f"fork {index}"})
        for index, author in enumerate(authors)
    ]
    await publish_batches(ingest, [forks])
    await materialized(node, *forks)

    document = query(node).store.document(created.hash)
    assert document is not None
    # A → {B, C, D} with B < C < D walks A, B, D, C: the middle id is applied last.
    middle = sorted(forks, key=lambda signed: signed.hash)[1]
    assert document.fields["title"] == f"fork {forks.index(middle)}"
    reference = materialize(document_operation(s) for s in (created, *forks))
    assert document.fields["title"] == reference.fields["title"]  # type: ignore[index]


async def test_a_schema_is_built_from_its_definition_and_used(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice = Author()
    schema_id = await publish_schema(
        ingest, alice, "event", {"title": "str", "venue": "relation(blob_v1)"}, "Events"
    )
    definition_id = schema_id.split("_", 1)[1]
    assert await query(node).wait_for_view(definition_id, 15)
    schema = stored_schemas(node).get(schema_id)
    assert schema is not None
    assert (schema.name, schema.description) == ("event", "Events")
    assert {name: str(t) for name, t in schema.fields.items()} == {
        "title": "str",
        "venue": "relation(blob_v1)",
    }
    assert schema_id in [str(s.id) for s in stored_schemas(node).all()]
    assert len(stored_schemas(node).all()) == 5  # the four system schemas and this one

    venue = Relation("0020" + "cd" * 32)
    party = alice.create(schema_id, {"title": "Party", "venue": venue})
    await publish(ingest, party)
    await materialized(node, party)
    assert [d.fields for d in query(node).store.documents(schema_id)] == [
        {"title": "Party", "venue": venue}
    ]
    # The field definitions a definition pins are stored as pinned views.
    definition = query(node).store.document(definition_id)
    assert definition is not None and definition.schema_id == SCHEMA_DEFINITION
    listed = definition.fields["fields"]
    assert isinstance(listed, PinnedRelationList)
    for view_id in listed.view_ids:
        assert query(node).store.has_pinned_view("_".join(view_id))

    # A new version of the definition is a new schema; the old one keeps working.
    extra = await publish(
        ingest, alice.create("schema_field_definition_v1", {"name": "day", "type": "int"})
    )
    fields = PinnedRelationList([*listed.view_ids, [extra.operation_id]])
    renamed = alice.update(SCHEMA_DEFINITION, definition_id, [definition_id], {"fields": fields})
    await publish(ingest, renamed)
    await materialized(node, renamed)
    new_schema = stored_schemas(node).get(f"event_{renamed.hash}")
    assert new_schema is not None and set(new_schema.fields) == {"day", "title", "venue"}
    assert stored_schemas(node).get(schema_id) == schema


async def test_pinned_views_are_stored_also_when_the_target_arrives_later(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice, bob = Author(), Author()
    note_id = await publish_schema(ingest, alice, "note", {"title": "str"})
    pin_id = await publish_schema(
        ingest,
        alice,
        "pin",
        {"one": f"pinned_relation({note_id})", "many": f"pinned_relation_list({note_id})"},
    )
    first = alice.create(note_id, {"title": "v1"})
    await publish(ingest, first)
    second = alice.update(note_id, first.hash, [first.hash], {"title": "v2"})
    await publish(ingest, second)
    # Bob's note is signed but not published yet: a pin may name a view the node lacks.
    later = bob.create(note_id, {"title": "later"})
    pin = alice.create(
        pin_id,
        {"one": PinnedRelation([first.hash]), "many": PinnedRelationList([[later.hash]])},
    )
    await publish(ingest, pin)
    await materialized(node, pin, second)

    pinned = query(node).store.pinned_view(first.hash)
    assert pinned is not None and pinned.fields == {"title": "v1"}
    assert stored_view(node, first.hash) == pinned
    current = query(node).store.document(first.hash)
    assert current is not None and current.fields == {"title": "v2"}
    assert query(node).store.pending_views() == [later.hash]
    assert stored_view(node, later.hash) is None

    await publish(ingest, later)
    assert await query(node).wait_for_view(later.hash, 15)
    assert query(node).store.pending_views() == []
    stored = query(node).store.pinned_view(later.hash)
    assert stored is not None and stored.fields == {"title": "later"}


async def test_a_blob_of_several_pieces_is_assembled_byte_for_byte(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice = Author()
    data = os.urandom(250_000) + os.urandom(200_000) + b"tail"
    chunks = [data[:250_000], data[250_000:450_000], data[450_000:]]
    pieces = [alice.create("blob_piece_v1", {"data": chunk}) for chunk in chunks]
    blob = alice.create(
        "blob_v1",
        {
            "length": len(data),
            "mime_type": "image/png",
            "pieces": PinnedRelationList([[piece.hash] for piece in pieces]),
        },
    )
    # The blob arrives before its last piece: it waits for it.
    for signed in (pieces[0], pieces[1], blob):
        await publish(ingest, signed)
    await materialized(node, blob)
    assert stored_blob(node, document_id=blob.hash) is None
    assert query(node).store.pending_blobs() == {blob.hash: [pieces[2].hash]}

    await publish(ingest, pieces[2])
    await materialized(node, pieces[2])
    found = stored_blob(node, document_id=blob.hash)
    assert found is not None
    assert (found.mime_type, found.length, found.view_id) == ("image/png", len(data), blob.hash)
    assert b"".join(found.chunks) == data
    by_view = stored_blob(node, view_id=blob.hash)
    assert by_view is not None and b"".join(by_view.chunks) == data
    assert query(node).store.pending_blobs() == {}

    # A blob whose length does not match its pieces is a document, but no file.
    liar = alice.create(
        "blob_v1",
        {"length": 3, "mime_type": "text/plain", "pieces": PinnedRelationList([[pieces[2].hash]])},
    )
    await publish(ingest, liar)
    await materialized(node, liar)
    assert query(node).store.document(liar.hash) is not None
    assert stored_blob(node, document_id=liar.hash) is None

    # Updating a blob replaces its file; the old one goes as nobody pins it.
    retyped = alice.update("blob_v1", blob.hash, [blob.hash], {"mime_type": "image/jpeg"})
    await publish(ingest, retyped)
    await materialized(node, retyped)
    found = stored_blob(node, document_id=blob.hash)
    assert found is not None and found.mime_type == "image/jpeg" and found.view_id == retyped.hash
    assert b"".join(found.chunks) == data
    assert stored_blob(node, view_id=blob.hash) is None


async def test_listeners_get_every_change_once_in_stream_order(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    recorder = Recorder()
    remove = query(node).add_listener(recorder)
    alice, bob = Author(), Author()
    schema_id = await publish_schema(ingest, alice, "note", {"title": "str"})
    notes = [alice.create(schema_id, {"title": f"note {i}"}) for i in range(5)]
    chain = [bob.create(schema_id, {"title": "0"})]
    for index in range(1, 40):
        chain.append(bob.update(schema_id, chain[0].hash, [chain[-1].hash], {"title": str(index)}))
    doomed = notes[0]
    deleted = alice.delete(schema_id, doomed.hash, [doomed.hash])
    await publish_batches(ingest, [notes, chain[:20], chain[20:], [deleted]])
    await materialized(node, *notes, chain[-1], deleted)

    changes = [c for c in recorder.changes if c.document.schema_id == schema_id]
    assert [c.sequence for c in changes] == sorted(c.sequence for c in changes)
    last_seen: dict[str, str] = {}
    for change in changes:
        document_id = change.document.document_id
        previous = change.previous.view_id if change.previous is not None else None
        assert previous == last_seen.get(document_id), "a change was lost or repeated"
        expected_kind = (
            ChangeKind.DELETED
            if change.document.deleted
            else ChangeKind.CREATED
            if previous is None
            else ChangeKind.UPDATED
        )
        assert change.kind == expected_kind
        last_seen[document_id] = change.document.view_id
    for document_id, view_id in last_seen.items():
        stored = query(node).store.document(document_id)
        assert stored is not None and stored.view_id == view_id
    assert set(last_seen) == {n.hash for n in notes} | {chain[0].hash}
    assert last_seen[chain[0].hash] == chain[-1].hash
    assert [c.kind for c in changes if c.document.document_id == doomed.hash][-1] == (
        ChangeKind.DELETED
    )

    remove()
    later = alice.create(schema_id, {"title": "unheard"})
    count = len(recorder.changes)
    await publish(ingest, later)
    await materialized(node, later)
    assert len(recorder.changes) == count


async def test_wait_for_operation_and_view_return_when_materialized_or_time_out(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice = Author()
    schema_id = await publish_schema(ingest, alice, "note", {"title": "str"})
    created = alice.create(schema_id, {"title": "soon"})
    waiting = [
        asyncio.create_task(query(node).wait_for_operation(created.hash, 15)),
        asyncio.create_task(query(node).wait_for_view(created.hash, 15)),
    ]
    await asyncio.sleep(0)  # ok: one loop turn so both waiters are registered
    assert not any(task.done() for task in waiting)
    await publish(ingest, created)
    assert await asyncio.gather(*waiting) == [True, True]
    assert query(node).store.document(created.hash) is not None

    unknown = "0020" + "ee" * 32
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await query(node).wait_for_operation(unknown, 0.2) is False
    assert await query(node).wait_for_view(f"{created.hash}_{unknown}", 0.2) is False
    assert loop.time() - started < 2
    assert query(node).store.is_folded(unknown) is False


async def test_entries_are_served_raw_per_log(node: Node, ingest: IngestServiceAsyncStub) -> None:
    alice = Author()
    schema_id = await publish_schema(ingest, alice, "note", {"title": "str"})
    created = alice.create(schema_id, {"title": "0"})
    updates = [created]
    for index in range(1, 6):
        updates.append(
            alice.update(schema_id, created.hash, [updates[-1].hash], {"title": str(index)})
        )
    await publish_batches(ingest, [updates])
    await materialized(node, updates[-1])

    entries = list(query(node).store.entries(alice.public_key, created.log_id))
    assert [(e.seq_num, e.entry, e.operation, e.operation_id) for e in entries] == [
        (s.seq_num, s.entry, s.operation, s.hash) for s in updates
    ]
    assert [e.seq_num for e in query(node).store.entries(alice.public_key, created.log_id, 4)] == [
        4,
        5,
        6,
    ]
    assert list(query(node).store.entries(alice.public_key, 99)) == []


async def test_a_view_id_of_operations_from_different_documents_is_no_view(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice = Author()
    schema_id = await publish_schema(ingest, alice, "note", {"title": "str"})
    one, two = alice.create(schema_id, {"title": "1"}), alice.create(schema_id, {"title": "2"})
    await publish_batches(ingest, [[one, two]])
    await materialized(node, one, two)
    mixed = str(DocumentViewId.from_ids([one.hash, two.hash]))
    assert stored_view(node, mixed) is None
    assert stored_view(node, one.hash) is not None


async def test_a_document_edited_in_a_line_then_forked_and_merged_matches_a_full_rebuild(
    node: Node, ingest: IngestServiceAsyncStub
) -> None:
    alice, bob = Author(), Author()
    schema_id = await publish_schema(ingest, alice, "note", NOTE_FIELDS)
    created = alice.create(schema_id, NOTE)
    line = [created]
    for stars in range(40):
        line.append(alice.update(schema_id, created.hash, [line[-1].hash], {"stars": stars}))
    # Batches cut the line anywhere: each batch is folded into the stored view.
    await publish_batches(ingest, [line[:1], line[1:7], line[7:8], line[8:]])
    await materialized(node, line[-1])
    document = query(node).store.document(created.hash)
    assert document is not None and document.appendable
    assert document.fields["stars"] == 39 and document.view_id == line[-1].hash

    fork = bob.update(schema_id, created.hash, [line[20].hash], {"title": "fork"})
    await publish(ingest, fork)
    await materialized(node, fork)
    merge = alice.update(schema_id, created.hash, [line[-1].hash, fork.hash], {"score": 1.0})
    after = alice.update(schema_id, created.hash, [merge.hash], {"public": False})
    await publish_batches(ingest, [[merge, after]])
    await materialized(node, after)

    signed = [*line, fork, merge, after]
    reference = materialize(document_operation(s) for s in signed)
    document = query(node).store.document(created.hash)
    assert document is not None
    assert document.view_id == str(reference.view_id) == after.hash
    assert reference.fields is not None and document.fields == reference.fields
    assert all(query(node).store.is_folded(s.hash) for s in signed)
