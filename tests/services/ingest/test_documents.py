"""Publishing schemas and documents the p2panda way (spec §5.5, §4.1): field definitions and a
schema definition, then CREATE / UPDATE (by several authors) / DELETE of application data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from nats.js import JetStreamContext

from pandanode.core import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.core.operation import FieldValue
from pandanode.ingest.v1 import ingest_pb2 as pb

from .helpers import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    Author,
    assert_rejected,
    create_operation,
    log_heights,
    publish,
    publish_batches,
    publish_schema,
    rejection,
    update_operation,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

FAILED = grpc.StatusCode.FAILED_PRECONDITION
BLOB_ID = "0020" + "cd" * 32
EVENT_FIELDS = {
    "title": "str",
    "guests": "int",
    "rating": "float",
    "public": "bool",
    "poster": "bytes",
    "venue": "relation(blob_v1)",
}
EVENT: dict[str, FieldValue] = {
    "guests": 12,
    "poster": b"\x89PNG",
    "public": True,
    "rating": 4.5,
    "title": "Panda party",
    "venue": Relation(BLOB_ID),
}


async def test_schema_is_usable_in_the_call_right_after_its_definition(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    title = await publish(ingest, author.create(FIELD_DEFINITION, {"name": "title", "type": "str"}))
    guests = await publish(
        ingest, author.create(FIELD_DEFINITION, {"name": "guests", "type": "int"})
    )
    definition = author.create(
        SCHEMA_DEFINITION,
        {
            "description": "Events worth going to",
            "fields": PinnedRelationList([[title.operation_id], [guests.operation_id]]),
            "name": "event",
        },
    )
    defined = await publish(ingest, definition)
    schema_id = f"event_{defined.operation_id}"

    created = author.create(schema_id, {"guests": 12, "title": "Panda party"})
    response = await publish(ingest, created)

    assert response.operation_id == created.hash
    assert response.document_id == created.hash
    assert response.next_args == pb.NextArguments(log_id=3, seq_num=2, backlink=created.hash)


async def test_document_is_created_updated_by_two_authors_and_deleted(
    ingest: IngestServiceAsyncStub,
) -> None:
    alice, bob = Author(), Author()
    schema_id = await publish_schema(ingest, alice, "event", EVENT_FIELDS)
    created = alice.create(schema_id, EVENT)
    response = await publish(ingest, created)
    document_id = response.document_id
    alice_log = created.log_id

    # Alice updates in her log of the document.
    renamed = alice.update(schema_id, document_id, [created.hash], {"title": "Big panda party"})
    response = await publish(ingest, renamed)
    assert response.document_id == document_id
    assert (renamed.log_id, renamed.seq_num) == (alice_log, 2)
    assert response.next_args == pb.NextArguments(
        log_id=alice_log, seq_num=3, backlink=renamed.hash
    )

    # Bob's first operation on the document starts a new log of his at seq 1 (log 0: his first).
    bob_update = bob.update(schema_id, document_id, [renamed.hash], {"guests": 13, "public": False})
    assert (bob_update.log_id, bob_update.seq_num) == (0, 1)
    response = await publish(ingest, bob_update)
    assert response.document_id == document_id
    assert response.next_args == pb.NextArguments(log_id=0, seq_num=2, backlink=bob_update.hash)

    # An UPDATE may give no fields at all.
    bob_again = bob.update(schema_id, document_id, [bob_update.hash], {})
    assert (await publish(ingest, bob_again)).next_args.seq_num == 3

    # Alice deletes the document in her log.
    deleted = alice.delete(schema_id, document_id, [bob_again.hash])
    response = await publish(ingest, deleted)
    assert response.document_id == document_id
    assert (deleted.log_id, deleted.seq_num) == (alice_log, 3)

    heights = await log_heights(ingest, [schema_id])
    assert heights == {(alice.public_key, alice_log): 3, (bob.public_key, 0): 2}
    listed = await ingest.GetLogHeights(pb.GetLogHeightsRequest(schema_ids=[schema_id]))
    assert {(h.document_id, h.schema_id) for h in listed.log_heights} == {(document_id, schema_id)}


async def test_updates_of_a_deleted_document_are_rejected(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    alice, bob, carol = Author(), Author(), Author()
    schema_id = await publish_schema(ingest, alice, "event", EVENT_FIELDS)
    created = alice.create(schema_id, EVENT)
    await publish(ingest, created)
    bob_update = bob.update(schema_id, created.hash, [created.hash], {"guests": 1})
    await publish(ingest, bob_update)
    deleted = alice.delete(schema_id, created.hash, [bob_update.hash])
    await publish(ingest, deleted)

    after_delete = alice.sign_next(
        update_operation(schema_id, [deleted.hash], {"title": "Undead"}), created.hash
    )
    rejected = await assert_rejected(ingest, js, after_delete, FAILED, "DOCUMENT_DELETED")
    assert created.hash in rejected.message
    in_bobs_log = bob.sign_next(
        update_operation(schema_id, [bob_update.hash], {"guests": 2}), created.hash
    )
    await assert_rejected(ingest, js, in_bobs_log, FAILED, "DOCUMENT_DELETED")
    from_newcomer = carol.sign_next(update_operation(schema_id, [created.hash], {"guests": 3}))
    await assert_rejected(ingest, js, from_newcomer, FAILED, "DOCUMENT_DELETED")


async def test_publishing_to_an_unknown_schema_is_a_failed_precondition(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    # A schema id that parses, naming a definition this node never saw.
    unknown = f"event_{BLOB_ID}"
    signed = Author().create(unknown, {"title": "x"})
    rejected = await assert_rejected(ingest, js, signed, FAILED, "SCHEMA_NOT_FOUND")
    assert unknown in rejected.message


async def test_schema_becomes_usable_once_its_last_field_definition_arrives(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    title = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    late = author.create(FIELD_DEFINITION, {"name": "late", "type": "bool"})
    definition = author.create(
        SCHEMA_DEFINITION,
        {
            "description": "Defined before one of its fields",
            "fields": PinnedRelationList([[title.hash], [late.hash]]),
            "name": "early",
        },
    )
    schema_id = f"early_{definition.hash}"
    await publish(ingest, title)
    await publish(ingest, definition)
    too_early = Author().create(schema_id, {"late": True, "title": "x"})
    await assert_rejected(ingest, js, too_early, FAILED, "SCHEMA_NOT_FOUND")

    await publish(ingest, late)
    response = await publish(ingest, too_early)
    assert response.document_id == too_early.hash


async def test_definition_without_fields_is_stored_but_defines_no_schema(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    empty = author.create(
        SCHEMA_DEFINITION,
        {"description": "Nothing in here", "fields": PinnedRelationList([]), "name": "empty"},
    )
    await publish(ingest, empty)
    attempt = Author().create(f"empty_{empty.hash}", {})
    rejected = await rejection(publish(ingest, attempt))
    assert (rejected.code, rejected.reason) == (FAILED, "SCHEMA_NOT_FOUND")


async def test_updating_a_schema_definition_defines_a_new_schema_id(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    title = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    subtitle = author.create(FIELD_DEFINITION, {"name": "subtitle", "type": "str"})
    definition = author.create(
        SCHEMA_DEFINITION,
        {
            "description": "Events",
            "fields": PinnedRelationList([[title.hash]]),
            "name": "event",
        },
    )
    for signed in (title, subtitle, definition):
        await publish(ingest, signed)
    both = PinnedRelationList([[title.hash], [subtitle.hash]])
    update = author.update(SCHEMA_DEFINITION, definition.hash, [definition.hash], {"fields": both})
    await publish(ingest, update)

    created = author.create(f"event_{update.hash}", {"subtitle": "Subtitled", "title": "New"})
    assert (await publish(ingest, created)).document_id == created.hash
    old_view = author.create(f"event_{definition.hash}", {"title": "Old"})
    assert (await publish(ingest, old_view)).document_id == old_view.hash


async def test_a_schema_uses_the_field_definition_views_it_pins(
    ingest: IngestServiceAsyncStub, js: JetStreamContext
) -> None:
    author = Author()
    field = author.create(FIELD_DEFINITION, {"name": "title", "type": "str"})
    await publish(ingest, field)
    renamed = author.update(FIELD_DEFINITION, field.hash, [field.hash], {"name": "headline"})
    await publish(ingest, renamed)

    async def define(name: str, view: str) -> str:
        fields = PinnedRelationList([[view]])
        signed = author.create(
            SCHEMA_DEFINITION, {"description": "Pinned", "fields": fields, "name": name}
        )
        await publish(ingest, signed)
        return f"{name}_{signed.hash}"

    old = await define("old_view", field.hash)
    new = await define("new_view", renamed.hash)
    assert (await publish(ingest, author.create(old, {"title": "x"}))).operation_id
    assert (await publish(ingest, author.create(new, {"headline": "x"}))).operation_id
    wrong = author.sign_next(create_operation(old, {"headline": "x"}))
    await assert_rejected(ingest, js, wrong, FAILED, "MISSING_FIELD")


async def test_every_field_type_can_be_defined_and_used(ingest: IngestServiceAsyncStub) -> None:
    author = Author()
    other = "0020" + "01" * 32
    schema_id = await publish_schema(
        ingest,
        author,
        "everything",
        {
            "b": "bool",
            "i": "int",
            "f": "float",
            "s": "str",
            "y": "bytes",
            "r": "relation(blob_v1)",
            "rl": "relation_list(blob_v1)",
            "p": "pinned_relation(blob_v1)",
            "pl": "pinned_relation_list(blob_v1)",
        },
    )
    values: dict[str, FieldValue] = {
        "b": False,
        "f": -0.5,
        "i": -(2**63),
        "p": PinnedRelation([BLOB_ID, other]),
        "pl": PinnedRelationList([[other], [BLOB_ID]]),
        "r": Relation(BLOB_ID),
        "rl": RelationList([BLOB_ID, BLOB_ID, other]),
        "s": "しろくま",
        "y": b"",
    }
    created = author.create(schema_id, values)
    assert (await publish(ingest, created)).document_id == created.hash
    empty_lists: dict[str, FieldValue] = {"pl": PinnedRelationList([]), "rl": RelationList([])}
    update = author.update(schema_id, created.hash, [created.hash], empty_lists)
    assert (await publish(ingest, update)).document_id == created.hash


async def test_operations_after_a_delete_in_the_same_batch_are_rejected(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "brief", "type": "str"})
    deleted = author.delete(FIELD_DEFINITION, created.hash, [created.hash])
    late = author.sign_next(
        update_operation(FIELD_DEFINITION, [created.hash], {"name": "late"}), created.hash
    )
    (results,) = await publish_batches(ingest, [[created, deleted, late]])
    assert [r.WhichOneof("outcome") for r in results] == ["ok", "ok", "error"]
    assert results[2].error.reason == "DOCUMENT_DELETED"
    assert results[2].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
