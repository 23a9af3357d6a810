"""Each stored entry keeps its store sequence; directories written before that are migrated
once at open (dependency-safe order for entries whose order was not kept); the store-order
scan of ReadMissingEntries starts where the peer's lack begins."""

from __future__ import annotations

import struct
from contextlib import closing
from pathlib import Path

import grpc
import grpc.aio
from rocksdict import Options, Rdict

from pandanode.core.operation import decode_operation
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.services.ingest.reads import HaveSet, missing_ranges
from pandanode.services.ingest.store import LAYOUT, LogStore, StoredEntry
from pandanode.services.node import Node
from tests.services.support import assert_checks_clean, node_settings

from .helpers import FIELD_DEFINITION, SCHEMA_DEFINITION, Author, Signed, publish, publish_schema
from .test_missing_entries import flat, hashes, read_missing

_U64 = struct.Struct(">Q")


async def fill(data_dir: Path) -> list[Signed]:
    """Publish, on a node over ``data_dir``, a note schema, then notes of two authors."""
    settings = node_settings(data_dir)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        a, b = Author(), Author()
        if b.public_key > a.public_key:  # B's logs sort first: (key, log) order would be wrong
            a, b = b, a
        published: list[Signed] = []
        notes = await publish_schema(ingest, a, "note", {"text": "str"})
        published += a.logs[0] + a.logs[1]
        for signed in (
            b.create(notes, {"text": "b"}),
            a.create(notes, {"text": "a"}),
        ):
            await publish(ingest, signed)
            published.append(signed)
        update = b.update(notes, published[-1].hash, [published[-1].hash], {"text": "b2"})
        await publish(ingest, update)
        published.append(update)
    return published


def make_legacy(path: Path, *, cursor: int | None = None, pre_outbox: bool = False) -> None:
    """Rewrite a stopped node's log store as layout 1 wrote it.

    Entry values lose their store sequence; records at or below the cursor are dropped (as
    the announcer did); ``cursor`` sets the cursor first; ``pre_outbox`` drops N, C and every
    record, as before the outbox existed.
    """
    options = Options(raw_mode=True)
    db = Rdict(str(path), options=options)
    try:
        del db[b"V"]
        for key, value in list(db.items(from_key=b"E")):
            assert isinstance(key, bytes) and isinstance(value, bytes)
            if not key.startswith(b"E"):
                break
            (length,) = struct.unpack_from(">H", value, 34)
            assert length & 0x8000, "written with its store sequence"
            length &= 0x7FFF
            db[key] = value[:34] + struct.pack(">H", length) + value[44:]
        if cursor is not None:
            db[b"C"] = _U64.pack(cursor)
        cursor_value = db.get(b"C")
        announced = _U64.unpack(cursor_value)[0] if isinstance(cursor_value, bytes) else 0
        for key in list(db.keys(from_key=b"Q")):
            assert isinstance(key, bytes)
            if not key.startswith(b"Q"):
                break
            if pre_outbox or _U64.unpack_from(key, 1)[0] <= announced:
                del db[key]
        if pre_outbox:
            del db[b"N"]
            del db[b"C"]
    finally:
        db.close()


def every_entry(store: LogStore) -> list[StoredEntry]:
    return sorted(
        (entry for log in store.logs() for entry in store.read_log(log.public_key, log.log_id)),
        key=lambda entry: entry.sequence,
    )


async def test_a_directory_without_store_sequences_is_migrated_definitions_first(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    published = await fill(data_dir)
    make_legacy(data_dir / "ingest")
    with closing(LogStore(data_dir / "ingest", migrate=False)) as legacy:
        assert legacy.layout() == 1
        assert {entry.sequence for entry in every_entry(legacy)} == {0}, "no sequence kept"
    store = LogStore(data_dir / "ingest")
    try:
        assert store.layout() == LAYOUT
        entries = every_entry(store)
        assert [entry.sequence for entry in entries] == list(range(1, len(published) + 1))
        logs = {(log.public_key, log.log_id): log.schema_id for log in store.logs()}
        schemas = [logs[(e.public_key, e.log_id)] for e in entries]
        assert schemas[:2] == [FIELD_DEFINITION, SCHEMA_DEFINITION]
        order = [(e.public_key, e.log_id, e.seq_num) for e in entries]
        for position in order:
            earlier = [o for o in order[: order.index(position)] if o[:2] == position[:2]]
            assert [o[2] for o in earlier] == list(range(1, position[2])), "a log in seq order"
        assert [op for _, op in store.store_order(1)] == [bytes.fromhex(e.hash) for e in entries]
        seen: set[str] = set()
        for entry in entries:  # every operation after those it names as previous
            assert set(decode_operation(entry.operation).previous or ()) <= seen
            seen.add(entry.hash)
        assert store.next_outbox_sequence() == len(published) + 1
        assert store.outbox(store.outbox_cursor(), 10) == [], "nothing to announce again"
    finally:
        store.close()
    settings = node_settings(data_dir)
    async with Node(settings) as node, grpc.aio.insecure_channel(node.address) as channel:
        ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        served = flat(await read_missing(ingest))
        assert sorted(hashes(served)) == sorted(hashes(published))
        author = Author()
        await publish(ingest, author.create(FIELD_DEFINITION, {"name": "n", "type": "str"}))
        newest = flat(await read_missing(ingest))[-1]
        assert newest.sequence == len(published) + 1
        assert newest.public_key == author.public_key
    await assert_checks_clean(data_dir)


async def test_entries_still_in_the_outbox_keep_their_sequences(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    published = await fill(data_dir)
    total = len(published)
    with closing(LogStore(data_dir / "ingest")) as store:
        before = {entry.hash: entry.sequence for entry in every_entry(store)}
    make_legacy(data_dir / "ingest", cursor=total - 2)  # the last two never announced
    with closing(LogStore(data_dir / "ingest")) as store:
        after = {entry.hash: entry.sequence for entry in every_entry(store)}
        assert store.outbox_cursor() == total - 2
        assert store.next_outbox_sequence() == total + 1
        unannounced = [op for record in store.outbox(total - 2, 10) for op in record.operation_ids]
    assert unannounced == [s.hash for s in published[-2:]]
    assert {h: after[h] for h in unannounced} == {h: before[h] for h in unannounced}
    assert sorted(after.values()) == list(range(1, total + 1))


async def test_a_directory_from_before_the_outbox_is_numbered_from_1(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    published = await fill(data_dir)
    make_legacy(data_dir / "ingest", pre_outbox=True)
    with closing(LogStore(data_dir / "ingest")) as store:
        entries = every_entry(store)
        assert [entry.sequence for entry in entries] == list(range(1, len(published) + 1))
        assert store.next_outbox_sequence() == len(published) + 1
        assert store.outbox_cursor() == len(published)
        first = [(e.sequence, e.hash) for e in entries]
        store._migrate()  # again, as after a crash before the layout version was written
        assert [(e.sequence, e.hash) for e in every_entry(store)] == first


async def test_the_store_order_scan_starts_at_the_first_entry_the_peer_lacks(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    published = await fill(data_dir)
    with closing(LogStore(data_dir / "ingest")) as store:
        lacking = published[-1]  # B's update: B's second log, seq 1
        have = HaveSet(100)
        for log in store.logs():
            if (log.public_key, log.log_id) != (lacking.public_key, lacking.log_id):
                have.add(log.public_key, log.log_id, log.seq_num)
        ranges, start = missing_ranges(store, (), have.heights)
        assert start == len(published), "the scan begins at the lacking entry, not at 1"
        assert list(ranges.values()) == [(1, 1)]
        scanned = list(store.store_order(start))
        assert [op.hex() for _, op in scanned] == [lacking.hash]
