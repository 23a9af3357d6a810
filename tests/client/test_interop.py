"""What the client signs, p2panda-js 0.8.1 decodes: entries (links, skiplinks included) and
operations of every action and field type."""

from __future__ import annotations

import pytest

from pandanode.client import Client, KeyPair, Update, pinned_relation_list, relation
from pandanode.core import decode_entry, decode_operation, generate_hash
from tests.interop.oracle_client import Oracle

pytestmark = pytest.mark.interop


async def test_entries_made_by_the_client_decode_in_p2panda_js(
    client: Client, oracle: Oracle
) -> None:
    place = await client.create_schema("place", "A place", {"name": "str"})
    schema_id = await client.create_schema(
        "gig",
        "A gig",
        {
            "title": "str",
            "seats": "int",
            "price": "float",
            "sold_out": "bool",
            "code": "bytes",
            "venue": relation(place),
            "pictures": pinned_relation_list("blob_v1"),
        },
    )
    hall = await client.create(place, {"name": "Hall"})
    picture = await client.put_blob(b"gif89a", "image/gif")
    gig = await client.create(
        schema_id,
        {
            "title": "Launch",
            "seats": -3,
            "price": 0.5,
            "sold_out": False,
            "code": b"\xff",
            "venue": hall,
            "pictures": [picture],
        },
    )
    other = client.with_key_pair(KeyPair())
    await other.update(gig, {"seats": 10})
    # A long log: seq 4, 8, 12, 13 carry skiplinks.
    result = await client.publish_many([Update(gig, {"seats": n}) for n in range(14)])
    assert not result.errors
    await client.delete(gig.document_id)

    pairs = [pair async for pair in client.export()]
    assert len(pairs) > 20
    seen_skiplink = False
    for entry, operation in pairs:
        ours = decode_entry(entry)
        theirs = oracle.decode_entry(entry)
        assert theirs["publicKey"] == ours.public_key
        assert int(theirs["logId"]) == ours.log_id
        assert int(theirs["seqNum"]) == ours.seq_num
        assert theirs["backlink"] == ours.backlink
        assert theirs["skiplink"] == ours.skiplink
        assert theirs["payloadHash"] == generate_hash(operation)
        assert int(theirs["payloadSize"]) == len(operation)
        seen_skiplink |= ours.skiplink is not None
        decoded = oracle.decode_operation(operation)
        mine = decode_operation(operation)
        assert decoded["action"] == mine.action
        assert decoded["schemaId"] == mine.schema_id
    assert seen_skiplink
