"""Every read path of the library against a real node (NATS, RocksDB, gRPC, the query service):
documents by id and view, relations resolved, filtered and ordered listings compared with a plain
Python reference, pages, watches (and that a cancelled watch ends on the node), blobs of several
pieces, schemas, and read-your-writes."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from pandanode.client import (
    Change,
    Client,
    Create,
    Delete,
    Document,
    InvalidRequestError,
    KeyPair,
    NodeUnavailableError,
    Published,
    ResourceNotFoundError,
    SchemaError,
    Update,
    pinned_relation,
    pinned_relation_list,
    relation,
    relation_list,
)
from pandanode.services.node import Node
from tests.services.support import eventually

DEADLINE = 10.0


def watches_on(node: Node) -> int:
    """How many listeners the node's materializer has (one per open watch, plus its own)."""
    assert node.query is not None
    return node.query.listener_count


def watch_count_is(node: Node, count: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: the node's materializer has ``count`` listeners."""

    async def check() -> bool:
        return watches_on(node) == count

    return check


async def next_change(changes: Any) -> Change:
    """The next message of a watch, or fail after the deadline."""
    change: Change = await asyncio.wait_for(anext(changes), DEADLINE)
    return change


# -- documents ------------------------------------------------------------------------------------


async def test_get_document_by_id_by_view_id_and_with_relations_resolved(client: Client) -> None:
    venue_schema = await client.create_schema("venue", "A place", {"name": "str", "seats": "int"})
    event_schema = await client.create_schema(
        "event",
        "Something happening",
        {
            "title": "str",
            "price": "float",
            "public": "bool",
            "ticket": "bytes",
            "venue": relation(venue_schema),
            "also_at": relation_list(venue_schema),
            "first_venue": pinned_relation(venue_schema),
            "pictures": pinned_relation_list("blob_v1"),
        },
    )
    hall = await client.create(venue_schema, {"name": "Panda Hall", "seats": 120})
    club = await client.create(venue_schema, {"name": "Bamboo Club", "seats": 80})
    picture = await client.put_blob(b"\x89PNG tiny", "image/png")
    event = await client.create(
        event_schema,
        {
            "title": "Launch",
            "price": 12.5,
            "public": True,
            "ticket": b"\x00\xff",
            "venue": hall,
            "also_at": [club, hall.document_id],
            "first_venue": hall,
            "pictures": [picture],
        },
    )
    moved = await client.update(hall, {"name": "Panda Arena"})

    shallow = await client.get_document(event.document_id, after=event)
    assert isinstance(shallow, Document)
    assert (shallow.id, shallow.view_id, shallow.schema_id) == (
        event.document_id,
        event.view_id,
        event_schema,
    )
    assert shallow.owner == client.public_key
    assert not shallow.edited and not shallow.deleted
    assert dict(shallow.fields) == {
        "title": "Launch",
        "price": 12.5,
        "public": True,
        "ticket": b"\x00\xff",
        "venue": hall.document_id,
        "also_at": [club.document_id, hall.document_id],
        "first_venue": hall.view_id,
        "pictures": [picture.view_id],
    }

    # One round trip: the relation follows the venue's current view, the pinned one stays.
    deep = await client.get_document(event.document_id, resolve_depth=1, after=moved)
    venue = deep["venue"]
    assert isinstance(venue, Document) and venue["name"] == "Panda Arena"
    assert venue.view_id == moved.view_id and venue.edited
    pinned = deep["first_venue"]
    assert isinstance(pinned, Document) and pinned["name"] == "Panda Hall"
    also_at = deep["also_at"]
    assert isinstance(also_at, list)
    assert [item["name"] for item in also_at if isinstance(item, Document)] == [
        "Bamboo Club",
        "Panda Arena",
    ]
    pictures = deep["pictures"]
    assert isinstance(pictures, list) and isinstance(pictures[0], Document)
    assert pictures[0].schema_id == "blob_v1" and pictures[0]["mime_type"] == "image/png"
    as_json: Any = deep.to_dict()
    assert as_json["fields"]["venue"]["fields"] == {"name": "Panda Arena", "seats": 120}

    # An older view by its view id; the current one by document id.
    old = await client.get_document(view_id=hall.view_id)
    assert (old.id, old.view_id, old["name"]) == (hall.document_id, hall.view_id, "Panda Hall")
    current = await client.get_document(hall.document_id)
    assert current["name"] == "Panda Arena" and current.view_id == moved.view_id


async def test_get_document_errors_are_typed(client: Client) -> None:
    with pytest.raises(ResourceNotFoundError):
        await client.get_document("0020" + "ab" * 32)
    with pytest.raises(ResourceNotFoundError):
        await client.get_document(view_id="0020" + "ab" * 32)
    with pytest.raises(InvalidRequestError):
        await client.get_document("not-an-id")
    with pytest.raises(ValueError, match="document_id or a view_id"):
        await client.get_document()


async def test_a_read_after_an_unknown_write_gives_up_at_the_deadline_without_retrying(
    node: Node,
) -> None:
    async with Client.connect(node.address, timeout=1.0, retries=3) as reader:
        started = time.monotonic()
        with pytest.raises(NodeUnavailableError, match="not materialized"):
            await reader.get_document("0020" + "cd" * 32, after="0020" + "cd" * 32)
        # One wait of one deadline: a node that answered "not yet" is not asked 3 more times.
        assert time.monotonic() - started < 2.5


async def test_reads_see_the_clients_own_writes_with_after(client: Client) -> None:
    schema_id = await client.create_schema("note", "Notes", {"text": "str", "n": "int"})
    for round_ in range(5):
        note = await client.create(schema_id, {"text": f"draft {round_}", "n": round_})
        read = await client.get_document(note.document_id, after=note)
        assert read["text"] == f"draft {round_}"
        edited = await client.update(note, {"text": "final"})
        assert (await client.get_document(note.document_id, after=edited))["text"] == "final"
        listed = [d async for d in client.documents(schema_id, filter={"n": round_}, after=edited)]
        assert [(d.id, d["text"]) for d in listed] == [(note.document_id, "final")]
        gone = await client.delete(note.document_id)
        deleted = await client.get_document(note.document_id, after=gone)
        assert deleted.deleted and not deleted.fields


async def test_updates_by_document_id_build_on_the_clients_latest_write(client: Client) -> None:
    schema_id = await client.create_schema("counter", "Counts", {"value": "int"})
    friend = client.with_key_pair(KeyPair())
    counter = await client.create(schema_id, {"value": 0})
    # Alternating authors, each update by id right after the other's: always one tip.
    last: Published = counter
    for value in range(1, 9):
        writer = friend if value % 2 else client
        last = await writer.update(counter.document_id, {"value": value})
        assert "_" not in last.view_id
    document = await client.get_document(counter.document_id, after=last)
    assert document.view_id == last.view_id and document["value"] == 8

    # In a bulk stream too: later items build on earlier ones not yet acknowledged.
    result = await client.publish_many(
        [Update(counter.document_id, {"value": v}) for v in range(9, 15)]
        + [Delete(counter.document_id)]
    )
    result.raise_for_errors()
    final = result.published[-1]
    document = await client.get_document(counter.document_id, after=final)
    assert document.deleted and document.view_id == final.view_id


async def test_updates_by_document_id_build_on_the_key_pairs_stored_writes_from_elsewhere(
    node: Node, key_pair: KeyPair
) -> None:
    # Two connections with one key pair, like two CLI commands run one after the other: each
    # knows nothing of the other's writes but what the node stores.
    async with (
        Client.connect(node.address, key_pair=key_pair) as first,
        Client.connect(node.address, key_pair=key_pair) as second,
    ):
        schema_id = await first.create_schema("doc", "Docs", {"a": "int", "b": "int"})
        made = await first.create(schema_id, {"a": 0, "b": 0})
        last = made
        for value in range(1, 13):
            writer = second if value % 2 else first
            last = await writer.update(made.document_id, {"a" if value % 2 else "b": value})
        document = await first.get_document(made.document_id, after=last)
    assert document.view_id == last.view_id  # one tip: a linear history
    assert dict(document.fields) == {"a": 11, "b": 12}


# -- listings -------------------------------------------------------------------------------------


@dataclass
class Venue:
    """What the test wrote, to filter in plain Python."""

    id: str
    name: str
    seats: int
    price: float
    open: bool
    owner: str
    edited: bool = False
    deleted: bool = False

    def value(self, key: str) -> Any:
        return {"@document_id": self.id, "@owner": self.owner}.get(key, getattr(self, key, None))


async def venues(client: Client, count: int) -> tuple[str, list[Venue], Published]:
    schema_id = await client.create_schema(
        "venue",
        "Places",
        {"name": "str", "seats": "int", "price": "float", "open": "bool"},
    )
    rows = [
        Venue(
            id="",
            name=f"{'Hall' if i % 4 == 0 else 'Club'} {i:02d}",
            seats=(i * 7) % 25,
            price=i * 1.5,
            open=i % 3 == 0,
            owner=str(client.public_key),
        )
        for i in range(count)
    ]
    result = await client.publish_many(
        [
            Create(schema_id, {"name": r.name, "seats": r.seats, "price": r.price, "open": r.open})
            for r in rows
        ],
        batch_size=16,
    )
    result.raise_for_errors()
    for row, published in zip(rows, result.published, strict=True):
        row.id = published.document_id
    # A second author edits some, the owner deletes some.
    friend = client.with_key_pair(KeyPair())
    last = result.published[-1]
    for row in rows[1:count:5]:
        last = await friend.update(row.id, {"seats": row.seats + 100})
        row.seats += 100
        row.edited = True
    for row in rows[2:count:7]:
        last = await client.delete(row.id)
        row.deleted = row.edited = True
    return schema_id, rows, last


def reference(
    rows: list[Venue],
    conditions: Mapping[str, object],
    order_by: str | None,
) -> list[str]:
    """The ids of the matching rows, in order, computed in Python."""

    def holds(row: Venue, key: str, operand: object) -> bool:
        target, _, op = key.partition("__")
        value = row.value(target)
        if target == "@deleted":
            return bool(row.deleted == operand)
        if target == "@edited":
            return bool(row.edited == operand)
        if row.deleted:
            return False
        checks: dict[str, Callable[[Any, Any], bool]] = {
            "": lambda v, o: v == o,
            "eq": lambda v, o: v == o,
            "ne": lambda v, o: v != o,
            "not_eq": lambda v, o: v != o,
            "gt": lambda v, o: v > o,
            "gte": lambda v, o: v >= o,
            "lt": lambda v, o: v < o,
            "lte": lambda v, o: v <= o,
            "in": lambda v, o: v in o,
            "not_in": lambda v, o: v not in o,
            "contains": lambda v, o: o in v,
            "not_contains": lambda v, o: o not in v,
        }
        return checks[op](value, operand)

    asks_deleted = any(key.startswith("@deleted") for key in conditions)
    found = [
        row
        for row in rows
        if (asks_deleted or not row.deleted)
        and all(holds(row, key, operand) for key, operand in conditions.items())
    ]
    key = (order_by or "@document_id").lstrip("-")
    found.sort(
        key=lambda row: (row.value(key), row.id), reverse=bool(order_by and order_by[0] == "-")
    )
    return [row.id for row in found]


LISTINGS: list[tuple[dict[str, object], str | None]] = [
    ({}, None),
    ({}, "-@document_id"),
    ({"seats__gte": 10}, "seats"),
    ({"seats__gt": 10, "seats__lte": 110}, "-seats"),
    ({"name__contains": "Hall"}, "-price"),
    ({"name__not_contains": "Hall", "open": True}, "name"),
    ({"seats__in": [0, 7, 14, 21]}, "price"),
    ({"seats__not_in": [0, 7, 14, 21]}, "-name"),
    ({"price__lt": 20, "name__ne": "Club 01"}, "price"),
    ({"open__not_eq": True}, "seats"),
    ({"name": "Hall 04"}, None),
    ({"@edited": True}, "seats"),
    ({"@deleted": True}, None),
    ({"@deleted": False, "seats__lt": 5}, "name"),
]


@pytest.mark.parametrize(("conditions", "order_by"), LISTINGS)
async def test_filtered_and_ordered_listings_match_a_python_reference(
    client: Client, conditions: dict[str, object], order_by: str | None
) -> None:
    schema_id, rows, last = await venues(client, 40)
    expected = reference(rows, conditions, order_by)
    found = [
        d
        async for d in client.documents(schema_id, filter=conditions, order_by=order_by, after=last)
    ]
    assert [d.id for d in found] == expected
    by_id = {row.id: row for row in rows}
    for document in found:
        row = by_id[document.id]
        assert (document.edited, document.deleted) == (row.edited, row.deleted)
        if not row.deleted:
            assert dict(document.fields) == {
                "name": row.name,
                "seats": row.seats,
                "price": row.price,
                "open": row.open,
            }


async def test_pages_concatenate_to_the_whole_listing_for_any_page_size(client: Client) -> None:
    schema_id, rows, last = await venues(client, 40)
    conditions = {"seats__gte": 3}
    expected = reference(rows, conditions, "-seats")
    for page_size in (1, 3, 7, 25, 1000):
        pages = [
            page
            async for page in client.pages(
                schema_id, filter=conditions, order_by="-seats", page_size=page_size, after=last
            )
        ]
        assert [d.id for page in pages for d in page.documents] == expected
        assert len(pages) == max(1, -(-len(expected) // page_size))
        assert all(page.total_size == len(expected) for page in pages)
        assert all(page.next_page_token for page in pages[:-1])
        assert not pages[-1].next_page_token

    # A page token resumes where a page ended (also from another client).
    first = await anext(client.pages(schema_id, filter=conditions, order_by="-seats", page_size=5))
    async with Client.connect(client.address) as reader:
        rest = [
            d.id
            async for page in reader.pages(
                schema_id,
                filter=conditions,
                order_by="-seats",
                page_size=5,
                page_token=first.next_page_token,
            )
            for d in page.documents
        ]
        assert [d.id for d in first.documents] + rest == expected
        # …but not with another filter.
        with pytest.raises(InvalidRequestError):
            await anext(reader.pages(schema_id, page_token=first.next_page_token))

    # limit stops early; the default page size is the node's.
    limited = [d.id async for d in client.documents(schema_id, order_by="-seats", limit=4)]
    assert limited == reference(rows, {}, "-seats")[:4]
    default = await anext(client.pages(schema_id))
    assert len(default.documents) == 25 and default.total_size == len(reference(rows, {}, None))


async def test_listings_filter_by_owner_and_relations(client: Client) -> None:
    venue_schema = await client.create_schema("venue", "A place", {"name": "str"})
    event_schema = await client.create_schema(
        "event",
        "At a venue",
        {
            "title": "str",
            "venue": relation(venue_schema),
            "hosts": relation_list(venue_schema),
            "as_was": pinned_relation(venue_schema),
        },
    )
    friend = client.with_key_pair(KeyPair())
    hall = await client.create(venue_schema, {"name": "Hall"})
    club = await client.create(venue_schema, {"name": "Club"})
    mine = await client.create(
        event_schema, {"title": "a", "venue": hall, "hosts": [hall], "as_was": hall}
    )
    renamed = await client.update(club, {"name": "Club 2"})
    theirs = await friend.create(
        event_schema, {"title": "b", "venue": club, "hosts": [club, hall], "as_was": renamed}
    )

    async def titles(conditions: dict[str, object]) -> list[str]:
        return [
            str(d["title"])
            async for d in client.documents(
                event_schema, filter=conditions, order_by="title", after=theirs
            )
        ]

    assert await titles({"@owner": friend.public_key}) == ["b"]
    assert await titles({"@owner__ne": friend.public_key}) == ["a"]
    assert await titles({"venue": hall}) == ["a"]  # a receipt stands for its document
    assert await titles({"venue": club.document_id}) == ["b"]
    assert await titles({"venue__in": [hall, club]}) == ["a", "b"]
    assert await titles({"hosts__in": [club]}) == ["b"]
    assert await titles({"hosts__not_in": [club]}) == ["a"]
    club_now = await client.get_document(club.document_id, after=renamed)
    assert await titles({"hosts__in": [club_now]}) == ["b"]  # a document: its id
    assert await titles({"as_was": club_now}) == ["b"]  # …or, pinned, its view id
    assert await titles({"as_was": renamed}) == ["b"]
    assert await titles({"as_was__in": [hall.view_id, club.view_id]}) == ["a"]
    document = await client.get_document(mine.document_id)
    assert await titles({"@document_id": document}) == ["a"]
    assert await titles({"@view_id__in": [theirs.view_id]}) == ["b"]

    # Mistakes are caught before a call, naming what there is.
    with pytest.raises(SchemaError, match="title"):
        await titles({"titel": "a"})
    with pytest.raises(ValueError, match="unknown filter operator"):
        await titles({"title__like": "a"})
    with pytest.raises(ValueError, match="@owner"):
        await titles({"@author": "a"})


async def test_special_floats_bytes_and_unknown_relations_read_back_as_plain_values(
    client: Client,
) -> None:
    schema_id = await client.create_schema(
        "sample",
        "Odd values",
        {"price": "float", "logo": "bytes", "name": "str", "link": relation("blob_v1")},
    )
    nowhere = "0020" + "ab" * 32  # a relation to a document the node does not know
    prices = [math.nan, math.inf, -math.inf, -0.0, 1.5, -2.0]
    made = [
        await client.create(
            schema_id, {"price": p, "logo": bytes([i]), "name": f"ñ{i}", "link": nowhere}
        )
        for i, p in enumerate(prices)
    ]
    last = made[-1]

    async def listed(**options: Any) -> list[object]:
        return [d["price"] async for d in client.documents(schema_id, after=last, **options)]

    # One total order for floats: -inf < … < -0.0 == 0.0 < … < inf < NaN.
    ascending = await listed(order_by="price")
    assert ascending[:5] == [-math.inf, -2.0, -0.0, 1.5, math.inf]
    assert isinstance(ascending[5], float) and math.isnan(ascending[5])
    assert (await listed(order_by="-price"))[1:] == ascending[:5][::-1]
    assert len(await listed(filter={"price": math.nan})) == 1
    assert await listed(filter={"price": 0}) == [-0.0]  # an int operand, compared exactly
    huge = await listed(filter={"price__gt": 1e308}, order_by="price")
    assert [str(price) for price in huge] == ["inf", "nan"]
    names = [d["name"] async for d in client.documents(schema_id, filter={"logo": bytes([4])})]
    assert names == ["ñ4"]
    names = [
        d["name"]
        async for d in client.documents(schema_id, filter={"name__contains": "ñ"}, limit=2)
    ]
    assert len(names) == 2
    resolved = await client.get_document(made[0].document_id, resolve_depth=2)
    assert resolved["link"] == nowhere and resolved["logo"] == b"\x00"


# -- watches --------------------------------------------------------------------------------------


async def test_watch_sends_existing_documents_caught_up_then_every_change_in_order(
    client: Client, node: Node
) -> None:
    schema_id = await client.create_schema("post", "Posts", {"title": "str", "likes": "int"})
    first = await client.create(schema_id, {"title": "first", "likes": 0})
    quiet = await client.create(schema_id, {"title": "quiet", "likes": 0})
    await client.get_document(quiet.document_id, after=quiet)
    listeners = watches_on(node)

    changes = client.watch(schema_id, filter={"likes__lt": 10})
    existing = [await next_change(changes), await next_change(changes)]
    assert [c.kind for c in existing] == ["existing", "existing"]
    assert sorted(c.document.id for c in existing if c.document) == sorted(
        [first.document_id, quiet.document_id]
    )
    assert await next_change(changes) == Change("caught_up", None)
    assert watches_on(node) == listeners + 1

    friend = client.with_key_pair(KeyPair())
    second = await friend.create(schema_id, {"title": "second", "likes": 1})
    liked = await client.update(first.document_id, {"likes": 5})
    left = await client.update(first.document_id, {"likes": 50})  # out of the filter
    await friend.create(schema_id, {"title": "popular", "likes": 99})  # never matches
    gone = await client.delete(quiet.document_id)
    seen = [await next_change(changes) for _ in range(4)]
    assert [(c.kind, c.document.view_id if c.document else None) for c in seen] == [
        ("created", second.view_id),
        ("updated", liked.view_id),
        ("left", left.view_id),
        ("deleted", gone.view_id),
    ]
    assert seen[0].document is not None and seen[0].document.owner == friend.public_key
    assert seen[1].document is not None and seen[1].document["likes"] == 5

    # A document that left the filter and matches again comes back as "updated".
    back = await client.update(first.document_id, {"likes": 7})
    returned = await next_change(changes)
    assert (returned.kind, returned.document) == (
        "updated",
        await client.get_document(first.document_id, after=back),
    )

    # Closing the iterator ends the call: the node drops the watch.
    await changes.aclose()
    await eventually(
        watch_count_is(node, listeners), what="the node to drop the watch", timeout=DEADLINE
    )


async def test_a_watch_left_by_break_or_cancelled_task_ends_on_the_node(
    client: Client, node: Node
) -> None:
    schema_id = await client.create_schema("tick", "Ticks", {"n": "int"})
    tick = await client.create(schema_id, {"n": 0})
    await client.get_document(tick.document_id, after=tick)
    listeners = watches_on(node)

    # Leaving an `async for` early, inside contextlib.aclosing, as the docs advise.
    async with contextlib.aclosing(client.watch(schema_id)) as changes:
        async for change in changes:
            if change.kind == "caught_up":
                break
    await eventually(
        watch_count_is(node, listeners), what="the node to drop the watch", timeout=DEADLINE
    )

    # A task blocked on a watch, cancelled.
    async def follow() -> None:
        async for _ in client.watch(schema_id):
            pass

    task = asyncio.create_task(follow())
    await eventually(
        watch_count_is(node, listeners + 1), what="the watch to start", timeout=DEADLINE
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(
        watch_count_is(node, listeners), what="the node to drop the watch", timeout=DEADLINE
    )

    # A plain `break`, the generator then dropped: its finalizer cancels the call.
    async for change in client.watch(schema_id):
        if change.kind == "caught_up":
            break
    await eventually(
        watch_count_is(node, listeners), what="the node to drop the watch", timeout=DEADLINE
    )


async def test_a_watch_right_after_creating_the_schema_sees_the_first_document(
    client: Client,
) -> None:
    for round_ in range(3):
        schema_id = await client.create_schema(f"fresh{round_}", "New", {"n": "int"})
        changes = client.watch(schema_id)
        assert await next_change(changes) == Change("caught_up", None)
        created = await client.create(schema_id, {"n": round_})
        change = await next_change(changes)
        assert change.kind == "created" and change.document is not None
        assert change.document.id == created.document_id
        await changes.aclose()
        listed = [d.id async for d in client.documents(schema_id, after=created)]
        assert listed == [created.document_id]


async def test_a_watch_after_a_write_lists_it_among_the_existing_documents(
    client: Client, node: Node
) -> None:
    schema_id = await client.create_schema("memo", "Memos", {"n": "int"})
    async with Client.connect(node.address, timeout=DEADLINE) as other:
        for round_ in range(3):
            created = await client.create(schema_id, {"n": round_})
            # Another connection knows nothing of the write: only ``after`` makes it wait.
            changes = other.watch(schema_id, after=created)
            seen = []
            while (change := await next_change(changes)).kind == "existing":
                assert change.document is not None
                seen.append(change.document.id)
            assert change == Change("caught_up", None)
            assert created.document_id in seen
            await changes.aclose()


async def test_a_watch_after_a_write_that_never_arrives_raises_node_unavailable(
    client: Client, node: Node
) -> None:
    schema_id = await client.create_schema("memo", "Memos", {"n": "int"})
    never = "0020" + "ef" * 32
    async with Client.connect(node.address, timeout=0.5) as impatient:
        with pytest.raises(NodeUnavailableError, match="not materialized") as raised:
            await next_change(impatient.watch(schema_id, after=never))
    assert raised.value.metadata["operation_id"] == never


# -- blobs and schemas ----------------------------------------------------------------------------


async def test_a_blob_of_several_pieces_round_trips_byte_for_byte(client: Client) -> None:
    data = os.urandom(256_000 * 2 + 12_345)  # three pieces, the last one short
    steps: list[tuple[int, int | None]] = []
    blob = await client.put_blob(
        data, "application/x-test", progress=lambda d, t: steps.append((d, t))
    )
    assert blob.schema_id == "blob_v1" and blob.action == "create"
    assert steps[-1] == (3, 3)

    fetched = await client.get_blob(blob.document_id, after=blob)
    assert fetched.data == data
    assert fetched.mime_type == "application/x-test"
    assert fetched.view_id == blob.view_id
    by_view = await client.get_blob(view_id=blob.view_id)
    assert by_view.data == data

    document = await client.get_document(blob.document_id, resolve_depth=1)
    assert document["length"] == len(data) and document["mime_type"] == "application/x-test"
    pieces = document["pieces"]
    assert isinstance(pieces, list) and len(pieces) == 3
    assert b"".join(p["data"] for p in pieces if isinstance(p, Document)) == data  # type: ignore[misc]

    empty = await client.put_blob(b"", "text/plain")
    assert (await client.get_blob(empty.document_id, after=empty)).data == b""
    with pytest.raises(ResourceNotFoundError):
        await client.get_blob("0020" + "ef" * 32)
    with pytest.raises(ValueError, match="document_id or a view_id"):
        await client.get_blob()


async def test_schemas_are_listed_and_fetched_from_the_query_service(
    client: Client, node: Node
) -> None:
    venue_schema = await client.create_schema("venue", "A place", {"name": "str"})
    event_schema = await client.create_schema(
        "event", "At a venue", {"title": "str", "venue": relation(venue_schema), "n": "int"}
    )
    anything = await client.create(
        event_schema, {"title": "x", "venue": "0020" + "ab" * 32, "n": 1}
    )
    await client.get_document(anything.document_id, after=anything)

    listed = {str(schema.id): schema for schema in await client.list_schemas()}
    assert {
        "schema_definition_v1",
        "schema_field_definition_v1",
        "blob_v1",
        "blob_piece_v1",
        venue_schema,
        event_schema,
    } <= set(listed)
    event = listed[event_schema]
    assert event.description == "At a venue"
    assert {name: str(t) for name, t in event.fields.items()} == {
        "title": "str",
        "venue": f"relation({venue_schema})",
        "n": "int",
    }
    # A fresh client (no cache) gets the same schema from the node.
    async with Client.connect(node.address) as reader:
        fetched = await reader.get_schema(event_schema)
        assert fetched == event
        system = await reader.get_schema("blob_v1")
        assert set(system.fields) == {"length", "mime_type", "pieces"}
