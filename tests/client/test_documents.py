"""Schemas and documents end to end against a real node: every field type, a second author,
deletes, concurrent writers. What the node stored is read back from its logs and materialized
with the core (the query service is not needed for these)."""

from __future__ import annotations

import asyncio

import pytest

from pandanode.client import (
    Client,
    Document,
    DocumentError,
    KeyPair,
    Published,
    Schema,
    pinned_relation,
    pinned_relation_list,
    relation,
    relation_list,
)
from pandanode.client._logreads import LogReader
from pandanode.core import (
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
    SchemaId,
    decode_entry,
    decode_operation,
)
from pandanode.core.document import Document as CoreDocument
from pandanode.core.schema import validate_operation
from pandanode.services.node import Node


async def stored_view(client: Client, document_id: str) -> CoreDocument:
    """The document as the node stores it, materialized from the raw logs."""
    reader = LogReader(client._shared.ingest, 10.0)
    view = await reader.document(document_id)
    assert view is not None, f"no log holds {document_id}"
    return view


async def every_type_schema(client: Client) -> tuple[str, str, Published, Published]:
    """A schema with all nine field types, plus a target document and a blob."""
    venue_schema = await client.create_schema("venue", "A place", {"name": "str"})
    hall = await client.create(venue_schema, {"name": "Panda Hall"})
    picture = await client.put_blob(b"\x89PNG" + bytes(300_000), "image/png")
    schema_id = await client.create_schema(
        "event",
        "Something happening somewhere",
        {
            "title": "str",
            "seats": "int",
            "price": "float",
            "public": "bool",
            "ticket": "bytes",
            "venue": relation(venue_schema),
            "also_at": relation_list(venue_schema),
            "first_venue": pinned_relation(venue_schema),
            "pictures": pinned_relation_list("blob_v1"),
        },
    )
    return schema_id, venue_schema, hall, picture


async def test_schema_and_document_with_every_field_type(client: Client, node: Node) -> None:
    schema_id, venue_schema, hall, picture = await every_type_schema(client)
    schema = await client.get_schema(schema_id)
    assert isinstance(schema, Schema)
    assert schema.id.name == "event"
    assert {name: str(t) for name, t in schema.fields.items()} == {
        "also_at": f"relation_list({venue_schema})",
        "first_venue": f"pinned_relation({venue_schema})",
        "pictures": "pinned_relation_list(blob_v1)",
        "price": "float",
        "public": "bool",
        "seats": "int",
        "ticket": "bytes",
        "title": "str",
        "venue": f"relation({venue_schema})",
    }
    event = await client.create(
        schema_id,
        {
            "title": "Launch",
            "seats": 120,
            "price": 12,  # an int for a float field becomes 12.0
            "public": True,
            "ticket": b"\x00\x01",
            "venue": hall,  # a receipt stands for its document
            "also_at": [hall.document_id, hall.document_id],
            "first_venue": hall.view_id,
            "pictures": [picture],
        },
    )
    assert event.action == "create"
    assert event.document_id == event.operation_id == event.view_id
    assert event.public_key == client.public_key

    view = await stored_view(client, event.document_id)
    assert view.schema_id == schema_id
    assert view.owner == client.public_key
    assert not view.deleted and not view.edited
    # Check the stored operation against the schema, as the node did, to see typed values.
    exported = [pair async for pair in client.export(schema_ids=[schema_id])]
    assert len(exported) == 1
    entry, operation_bytes = exported[0]
    assert decode_entry(entry).hash == event.operation_id
    typed = validate_operation(decode_operation(operation_bytes), schema)
    assert typed == {
        "also_at": RelationList([hall.document_id, hall.document_id]),
        "first_venue": PinnedRelation([hall.view_id]),
        "pictures": PinnedRelationList([[picture.view_id]]),
        "price": 12.0,
        "public": True,
        "seats": 120,
        "ticket": b"\x00\x01",
        "title": "Launch",
        "venue": Relation(hall.document_id),
    }


async def test_a_second_key_pair_updates_and_the_owner_deletes(client: Client) -> None:
    schema_id = await client.create_schema("post", "A post", {"title": "str", "likes": "int"})
    post = await client.create(schema_id, {"title": "Hello", "likes": 0})

    other = client.with_key_pair(KeyPair())
    assert other.public_key != client.public_key
    liked = await other.update(post, {"likes": 1})
    assert (liked.action, liked.document_id, liked.seq_num) == ("update", post.document_id, 1)
    assert liked.public_key == other.public_key

    # An update by document id builds on the current view (the other author's operation).
    renamed = await client.update(post.document_id, {"title": "Hello, world"})
    assert renamed.log_id == post.log_id
    assert renamed.seq_num == 2
    view = await stored_view(client, post.document_id)
    assert dict(view.fields or {}) == {"likes": 1, "title": "Hello, world"}
    assert str(view.view_id) == renamed.operation_id
    assert view.owner == client.public_key and view.edited

    deleted = await client.delete(post.document_id)
    assert deleted.action == "delete"
    assert (await stored_view(client, post.document_id)).deleted
    with pytest.raises(DocumentError) as rejected:
        await other.update(renamed, {"likes": 2})
    assert rejected.value.reason == "DOCUMENT_DELETED"


async def test_concurrent_writes_from_one_key_pair_never_collide(client: Client) -> None:
    schema_id = await client.create_schema("counter", "Counts", {"value": "int"})
    counter = await client.create(schema_id, {"value": 0})
    results = await asyncio.gather(
        *(client.update(counter, {"value": i}) for i in range(1, 21)),
        *(client.create(schema_id, {"value": 100 + i}) for i in range(10)),
    )
    updates = [r for r in results if r.action == "update"]
    creates = [r for r in results if r.action == "create"]
    assert sorted(u.seq_num for u in updates) == list(range(2, 22))
    assert {u.log_id for u in updates} == {counter.log_id}
    assert len({c.log_id for c in creates}) == 10
    assert counter.log_id not in {c.log_id for c in creates}


async def test_two_clients_with_one_key_pair_recover_from_a_lost_race(
    node: Node, key_pair: KeyPair
) -> None:
    async with (
        Client.connect(node.address, key_pair=key_pair) as first,
        Client.connect(node.address, key_pair=key_pair) as second,
    ):
        schema_id = await first.create_schema("tally", "Tallies", {"value": "int"})
        tally = await first.create(schema_id, {"value": 0})
        # Each client keeps its own idea of the log; one of them loses the race for seq 2,
        # asks the node again and re-signs.
        one, two = await asyncio.gather(
            first.update(tally, {"value": 1}), second.update(tally, {"value": 2})
        )
        assert sorted([one.seq_num, two.seq_num]) == [2, 3]
        # Both also create documents concurrently: distinct logs, no collision left behind.
        made = await asyncio.gather(
            first.create(schema_id, {"value": 10}), second.create(schema_id, {"value": 20})
        )
        assert made[0].log_id != made[1].log_id


async def test_documents_and_receipts_relate_by_id_and_view(client: Client) -> None:
    schema_id = await client.create_schema("place", "A place", {"name": "str"})
    link_schema = await client.create_schema(
        "link", "Links", {"to": relation(schema_id), "pinned": pinned_relation(schema_id)}
    )
    place = await client.create(schema_id, {"name": "here"})
    moved = await client.update(place, {"name": "there"})
    as_document = Document(place.document_id, moved.view_id, schema_id, "", False, False)
    link = await client.create(link_schema, {"to": as_document, "pinned": as_document})
    exported = [pair async for pair in client.export(schema_ids=[link_schema])]
    fields = decode_operation(exported[0][1]).fields or {}
    assert fields["to"] == bytes.fromhex(place.document_id)
    assert fields["pinned"] == (moved.view_id,)
    assert link.schema_id == link_schema
    assert SchemaId.from_str(link_schema).name == "link"
