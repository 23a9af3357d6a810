"""The log store of ingest: entries, operations and the indexes publishing needs, in RocksDB.

One RocksDB (``rocksdict``, raw bytes) with one-byte key prefixes; every multi-byte integer is
big-endian so keys sort by (public key, log id, seq num). Every read the publish rules need is a
point lookup, so a :class:`WriteBatchView` can overlay not-yet-committed writes of a group
commit and later items of the same batch see earlier ones. The hot path writes each entry with
E, H and G (and A, M, D only where a log or a document begins or ends), with keys built from raw
bytes the caller converts once per entry.

Keys (``pk`` 32 raw bytes, ids 34 raw bytes, integers u64 big-endian)::

    E pk log seq      -> entry hash(34) ‖ entry length(u16, top bit set) ‖ store sequence(u64)
                         ‖ entry ‖ operation     (written before the store sequence was kept:
                         entry hash ‖ entry length(u16, top bit clear) ‖ entry ‖ operation;
                         :meth:`LogStore.__init__` migrates those once, see :data:`LAYOUT`)
    H op_id           -> pk ‖ log ‖ seq ‖ document id(34) ‖ schema id (utf-8)
    G pk log          -> document id(34) ‖ latest seq(u64) ‖ schema id (utf-8)
    A pk document_id  -> log
    M pk              -> highest log id in use
    D document_id     -> deleted flag(1) ‖ schema id (utf-8)   written by CREATE and DELETE
    O document_id op_id -> (empty)            the operations of a schema or field definition
                         document (the schema registry rebuilds schemas from them); other
                         documents' operations are not indexed by document (ingest never reads
                         them so; directories written before this index was narrowed still hold
                         O keys for every document, which nothing misreads)
    Q first_seq       -> last_seq(u64) ‖ op_id × n   one record per commit, holding the
                         commit's entries (store sequences first..last) in store order. The
                         records after the cursor are the outbox; all of them together are the
                         store-order index replication reads (kept, not dropped once announced)
    C                 -> outbox cursor (u64): every entry at or below it was announced
    P                 -> first(u64) ‖ last(u64): the commits being announced as one group
                         (written with C before publishing a group of several commits, so
                         the group is announced again as the same messages after a crash)
    N                 -> next store sequence (u64): each entry's position in store order
    V                 -> layout version (u64); missing: written before the store sequence was
                         kept per entry (migrated at open)
    S schema_id       -> JSON of an application schema built from stored definitions

It stays one module: the key layout above, the reads and the writer's batch view
(:class:`WriteBatchView`) must agree on every key and value format, which is easiest to keep
when they sit in one place.
"""

from __future__ import annotations

import heapq
import logging
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pandanode.core.errors import PandanodeError
from pandanode.core.operation import decode_operation
from pandanode.services.runtime.rocks import DEFAULT_WRITE_BUFFER_BYTES, RocksStore
from pandanode.services.runtime.schemas import FIELD_DEFINITION, SCHEMA_DEFINITION

__all__ = [
    "LAYOUT",
    "LogRange",
    "LogStore",
    "OutboxRecord",
    "StoredEntry",
    "StoredLog",
    "WriteBatchView",
    "split_entry_value",
]

log = logging.getLogger(__name__)

_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_MISSING = object()
_HAS_SEQUENCE = 0x8000
_MIGRATION_CHUNK = 4096

LAYOUT: Final = 2
"""The layout version this code writes: 2 keeps each entry's store sequence in its E value."""


def u64(value: int) -> bytes:
    """Encode an unsigned 64-bit integer big-endian (so keys sort numerically)."""
    return _U64.pack(value)


def _entry_key(public_key: bytes, log_id: int, seq_num: int) -> bytes:
    return b"E" + public_key + _U64.pack(log_id) + _U64.pack(seq_num)


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry as stored, with the operation it signs."""

    public_key: str
    log_id: int
    seq_num: int
    hash: str
    entry: bytes
    operation: bytes
    sequence: int = 0
    """The entry's store sequence: its position in the order entries were stored."""


@dataclass(frozen=True, slots=True)
class LogRange:
    """Entries ``from_seq_num``..``to_seq_num`` of one log (raw public key)."""

    public_key: bytes
    log_id: int
    from_seq_num: int
    to_seq_num: int


@dataclass(frozen=True, slots=True)
class StoredOperationRef:
    """Where an operation lives and what it belongs to."""

    public_key: str
    log_id: int
    seq_num: int
    document_id: str
    schema_id: str


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """One commit's entries waiting to be announced: store sequences ``first``..``last``."""

    first: int
    last: int
    operation_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredLog:
    """One log: its document, schema and height."""

    public_key: str
    log_id: int
    seq_num: int
    document_id: str
    schema_id: str


def _entry_value(entry_hash: bytes, sequence: int, entry: bytes, operation: bytes) -> bytes:
    return (
        entry_hash + _U16.pack(len(entry) | _HAS_SEQUENCE) + _U64.pack(sequence) + entry + operation
    )


def split_entry_value(value: bytes) -> tuple[int, bytes, bytes]:
    """(store sequence, 0 if not kept; entry; operation) of an E value of either layout."""
    (length,) = _U16.unpack_from(value, 34)
    if length & _HAS_SEQUENCE:
        length &= ~_HAS_SEQUENCE
        return _U64.unpack_from(value, 36)[0], value[44 : 44 + length], value[44 + length :]
    return 0, value[36 : 36 + length], value[36 + length :]


def _decode_entry_value(pk: bytes, log_id: int, seq_num: int, value: bytes) -> StoredEntry:
    sequence, entry, operation = split_entry_value(value)
    return StoredEntry(
        public_key=pk.hex(),
        log_id=log_id,
        seq_num=seq_num,
        hash=value[:34].hex(),
        entry=entry,
        operation=operation,
        sequence=sequence,
    )


class _Reads:
    """Point reads shared by the store and by a write batch's overlaid view."""

    def _get(self, key: bytes) -> bytes | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def entry(self, public_key: str, log_id: int, seq_num: int) -> StoredEntry | None:
        """Return the entry at a log position, if stored."""
        pk = bytes.fromhex(public_key)
        value = self._get(_entry_key(pk, log_id, seq_num))
        return None if value is None else _decode_entry_value(pk, log_id, seq_num, value)

    def entry_hash_at(self, public_key: str, log_id: int, seq_num: int) -> str | None:
        """Return the hash of the entry at a log position, if stored."""
        value = self._get(_entry_key(bytes.fromhex(public_key), log_id, seq_num))
        return None if value is None else value[:34].hex()

    def operation_ref(self, operation_id: str) -> StoredOperationRef | None:
        """Return where an operation lives and its document and schema, if stored."""
        value = self._get(b"H" + bytes.fromhex(operation_id))
        if value is None:
            return None
        return StoredOperationRef(
            public_key=value[:32].hex(),
            log_id=_U64.unpack_from(value, 32)[0],
            seq_num=_U64.unpack_from(value, 40)[0],
            document_id=value[48:82].hex(),
            schema_id=value[82:].decode(),
        )

    def log(self, public_key: str, log_id: int) -> StoredLog | None:
        """Return a log's document, schema and height, if the log has entries."""
        value = self._get(b"G" + bytes.fromhex(public_key) + _U64.pack(log_id))
        if value is None:
            return None
        return StoredLog(
            public_key=public_key,
            log_id=log_id,
            document_id=value[:34].hex(),
            seq_num=_U64.unpack_from(value, 34)[0],
            schema_id=value[42:].decode(),
        )

    def author_log_id(self, public_key: str, document_id: str) -> int | None:
        """Return the log id an author uses for a document, if any."""
        value = self._get(b"A" + bytes.fromhex(public_key) + bytes.fromhex(document_id))
        return None if value is None else int(_U64.unpack(value)[0])

    def max_log_id(self, public_key: str) -> int | None:
        """Return the highest log id an author has used, if any."""
        value = self._get(b"M" + bytes.fromhex(public_key))
        return None if value is None else int(_U64.unpack(value)[0])

    def document_deleted(self, document_id: str) -> bool:
        """Whether a document holds a DELETE operation."""
        value = self._get(b"D" + bytes.fromhex(document_id))
        return value is not None and value[0] == 1

    def document_schema_id(self, document_id: str) -> str | None:
        """The schema id of a stored document."""
        value = self._get(b"D" + bytes.fromhex(document_id))
        return None if value is None else value[1:].decode()

    def next_outbox_sequence(self) -> int:
        """The store sequence the next stored entry gets."""
        value = self._get(b"N")
        return 1 if value is None else int(_U64.unpack(value)[0])

    # -- raw reads of the hot path (ids as raw bytes, no dataclasses) -------------------------

    def operation_document(self, operation_id: bytes) -> tuple[bytes, str] | None:
        """The raw document id and the schema id of a stored operation (raw id), if stored."""
        value = self._get(b"H" + operation_id)
        return None if value is None else (value[48:82], value[82:].decode())

    def log_state(
        self, public_key: bytes, log_id: int, seq_nums: Iterable[int]
    ) -> tuple[int | None, dict[int, str]]:
        """A log's latest seq num (None: empty) and its entry hashes (hex) at ``seq_nums``."""
        log = _U64.pack(log_id)
        value = self._get(b"G" + public_key + log)
        latest = None if value is None else int(_U64.unpack_from(value, 34)[0])
        hashes: dict[int, str] = {}
        if latest is None:
            return latest, hashes
        prefix = b"E" + public_key + log
        for seq_num in seq_nums:
            entry = self._get(prefix + _U64.pack(seq_num))
            if entry is not None:
                hashes[seq_num] = entry[:34].hex()
        return latest, hashes

    def document_state(self, public_key: bytes, document_id: bytes) -> tuple[bool, int | None]:
        """Whether a document (raw id) was deleted, and the log id an author uses for it."""
        deleted = self._get(b"D" + document_id)
        log = self._get(b"A" + public_key + document_id)
        return (
            deleted is not None and deleted[0] == 1,
            None if log is None else int(_U64.unpack(log)[0]),
        )


class LogStore(RocksStore, _Reads):
    """The RocksDB log store. One process owns it (RocksDB refuses a second writer).

    Args:
        path: The directory of the database (created if missing).
        migrate: Bring a directory written by an older layout up to :data:`LAYOUT` on open
            (once; see :meth:`_migrate`). Off for a read-only look (``pandanode check``).
    """

    # Publishing looks every entry up by its hash before checking its signature (the echo
    # fast path); nearly all are new, and a bloom filter answers such a miss without reading
    # the table files (measured 3-5 µs → ~1 µs per lookup at 50k entries).
    bloom_filter_bits = 10
    # The same lookups mostly miss the memtables too (the entries of the last minutes): a
    # filter over their keys answers a miss in ~0.45 µs instead of a skip-list seek (~0.8 µs
    # at 60k entries, measured; more under load, where the seek's cache misses dominate).
    memtable_bloom_ratio = 0.1

    def __init__(
        self,
        path: Path,
        *,
        migrate: bool = True,
        write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES,
    ) -> None:
        super().__init__(path, write_buffer_bytes=write_buffer_bytes)
        if migrate and self.layout() < LAYOUT:
            self._migrate()

    def layout(self) -> int:
        """The layout version the directory is in (1: written before :data:`LAYOUT` 2)."""
        value = self._get(b"V")
        return 1 if value is None else int(_U64.unpack(value)[0])

    def _migrate(self) -> None:
        """Give every entry stored before layout 2 its store sequence, in dependency order.

        Entries still in the outbox (after the cursor) keep the sequence their record gives
        them. The others (announced, their records dropped) were stored in an order nobody
        kept; they get sequences 1, 2, … in a dependency-first order (see
        :meth:`_unordered_entries`): field definitions, then schema definitions, then every
        other document, each document's operations after their backlinks and previous ones.
        If those sequences would reach the outbox's, the outbox is renumbered after them (its
        entries were never announced, so no one has seen their old sequences).

        Each step is idempotent, and the layout version is written last, so a crash midway
        runs the migration again on the next open.
        """
        if next(self._scan(b"E"), None) is None:
            self._write({b"V": _U64.pack(LAYOUT)}, sync=True)
            return
        cursor = self.outbox_cursor()
        outbox = self.outbox(cursor, 2**62)
        logs = list(self.logs())
        total = sum(stored.seq_num for stored in logs)
        unannounced = sum(len(record.operation_ids) for record in outbox)
        orphans = total - unannounced
        log.info("migrating the log store: keeping the store sequence of %d entries", total)
        first_kept = outbox[0].first if outbox else self.next_outbox_sequence()
        batch: dict[bytes, bytes | None] = {}
        if orphans >= first_kept:
            renumbered: list[OutboxRecord] = []
            first = orphans + 1
            for record in outbox:
                batch[b"Q" + _U64.pack(record.first)] = None
                last = first + len(record.operation_ids) - 1
                renumbered.append(OutboxRecord(first, last, record.operation_ids))
                first = last + 1
            outbox = renumbered
            for record in outbox:
                batch[b"Q" + _U64.pack(record.first)] = _U64.pack(record.last) + b"".join(
                    bytes.fromhex(op_id) for op_id in record.operation_ids
                )
            batch[b"N"] = _U64.pack(first)
            batch[b"C"] = _U64.pack(orphans)
        elif cursor < orphans:
            batch[b"C"] = _U64.pack(orphans)
        kept: set[bytes] = set()
        for record in outbox:
            for sequence, op_id in enumerate(record.operation_ids, start=record.first):
                raw = bytes.fromhex(op_id)
                kept.add(raw)
                ref = self._get(b"H" + raw)
                value = None if ref is None else self._get(b"E" + ref[:48])
                if ref is not None and value is not None:
                    _, entry, operation = split_entry_value(value)
                    batch[b"E" + ref[:48]] = _entry_value(raw, sequence, entry, operation)
        self._write(batch, sync=True)

        chunk: dict[bytes, bytes | None] = {}
        ids: list[bytes] = []
        sequence = 1
        for key, value in self._unordered_entries(logs, kept):
            entry_hash = value[:34]
            _, entry, operation = split_entry_value(value)
            chunk[key] = _entry_value(entry_hash, sequence + len(ids), entry, operation)
            ids.append(entry_hash)
            if len(ids) >= _MIGRATION_CHUNK:
                sequence = self._write_migrated(chunk, ids, sequence)
        self._write_migrated(chunk, ids, sequence)
        self._write({b"V": _U64.pack(LAYOUT)}, sync=True)
        log.info("migrated the log store to layout %d", LAYOUT)

    def _unordered_entries(
        self, logs: Sequence[StoredLog], kept: set[bytes]
    ) -> Iterator[tuple[bytes, bytes]]:
        """(E key, value) of the entries whose store order was not kept, dependencies first.

        Documents by kind (field definitions, schema definitions, the rest), then by id; in a
        document written in one log, that log in seq order; in one written in several (other
        authors' UPDATEs), a topological order of its operations (each after its backlink and
        after the operations it names as previous), ties broken by (public key, log id, seq
        num). Only one document's entries are held at a time.
        """
        documents: dict[str, list[StoredLog]] = {}
        for stored in logs:
            documents.setdefault(stored.document_id, []).append(stored)

        def rank(item: tuple[str, list[StoredLog]]) -> tuple[int, str]:
            kind = {FIELD_DEFINITION: 0, SCHEMA_DEFINITION: 1}.get(item[1][0].schema_id, 2)
            return kind, item[0]

        for _, document_logs in sorted(documents.items(), key=rank):
            entries: list[tuple[bytes, bytes]] = []
            for stored in document_logs:
                prefix = b"E" + bytes.fromhex(stored.public_key) + _U64.pack(stored.log_id)
                entries.extend(
                    (key, value) for key, value in self._scan(prefix) if value[:34] not in kept
                )
            if len(document_logs) == 1:
                yield from entries
            else:
                yield from _dependencies_first(entries)

    def _write_migrated(
        self, chunk: dict[bytes, bytes | None], ids: list[bytes], first: int
    ) -> int:
        """Write migrated entries with their order record; return the next sequence."""
        if not ids:
            return first
        last = first + len(ids) - 1
        chunk[b"Q" + _U64.pack(first)] = _U64.pack(last) + b"".join(ids)
        self._write(chunk, sync=True)
        chunk.clear()
        ids.clear()
        return last + 1

    def begin(self) -> WriteBatchView:
        """Start a group commit: writes are buffered and visible to reads through the view."""
        return WriteBatchView(self)

    def commit(self, view: WriteBatchView, *, sync: bool = True) -> None:
        """Write a batch atomically; with ``sync`` it is durable (WAL fsynced) on return.

        The batch's outbox record (its entries, for announcing) is part of the same write.
        """
        view.seal()
        self._write(view.overlay, sync=sync)
        view.overlay.clear()

    def read_log(
        self, public_key: str, log_id: int, from_seq_num: int = 1
    ) -> Iterator[StoredEntry]:
        """Yield the entries of one log in seq order, from ``from_seq_num``."""
        pk = bytes.fromhex(public_key)
        prefix = b"E" + pk + _U64.pack(log_id)
        for key, value in self._scan(prefix, prefix + _U64.pack(max(from_seq_num, 1))):
            seq_num = _U64.unpack_from(key, 41)[0]
            yield _decode_entry_value(pk, log_id, seq_num, value)

    def logs(self, after: bytes = b"") -> Iterator[StoredLog]:
        """Yield every log with its document, schema and height, by (public key, log id).

        Args:
            after: Raw public key ‖ log id (u64) of the log to start after; empty: the first.
        """
        for key, value in self._scan(b"G", b"G" + after + b"\x00" if after else None):
            yield StoredLog(
                public_key=key[1:33].hex(),
                log_id=_U64.unpack_from(key, 33)[0],
                document_id=value[:34].hex(),
                seq_num=_U64.unpack_from(value, 34)[0],
                schema_id=value[42:].decode(),
            )

    def document_operation_ids(self, document_id: str) -> list[str]:
        """Return the ids of every stored operation of a schema or field definition document.

        Only those documents are indexed by document (see the module docstring); for any other
        document the answer is empty (or, in a directory written by an older version, complete).
        """
        prefix = b"O" + bytes.fromhex(document_id)
        return [key[35:].hex() for key, _ in self._scan(prefix)]

    def outbox(self, after: int, limit: int) -> list[OutboxRecord]:
        """Return up to ``limit`` outbox records of entries stored after sequence ``after``."""
        records: list[OutboxRecord] = []
        for key, value in self._scan(b"Q", b"Q" + _U64.pack(after + 1)):
            if len(records) >= limit:
                break
            ids = value[8:]
            records.append(
                OutboxRecord(
                    first=_U64.unpack_from(key, 1)[0],
                    last=_U64.unpack_from(value, 0)[0],
                    operation_ids=tuple(ids[i : i + 34].hex() for i in range(0, len(ids), 34)),
                )
            )
        return records

    def outbox_cursor(self) -> int:
        """The highest store sequence known to be announced."""
        value = self._get(b"C")
        return 0 if value is None else int(_U64.unpack(value)[0])

    def advance_outbox(self, cursor: int) -> None:
        """Record that every entry up to store sequence ``cursor`` was announced.

        The announced outbox records stay: they are the store-order index
        (:meth:`entries_in_store_order`).
        """
        self._db.put(b"C", _U64.pack(cursor), write_opt=self._async)

    def begin_announcing(self, cursor: int, first: int, last: int) -> None:
        """Record that store sequences ``first``..``last`` are being announced as one group.

        Written (not synced: it only has to outlive the process) before the group is
        published, with the cursor, which is ``first - 1``; see :meth:`announcing`.
        """
        self._write({b"C": _U64.pack(cursor), b"P": _U64.pack(first) + _U64.pack(last)}, sync=False)

    def announcing(self) -> tuple[int, int] | None:
        """The (first, last) store sequences of the group announced last, if one was recorded.

        Only meaningful while the cursor is ``first - 1``: the group may be in the stream, and
        is to be announced again exactly so (same messages, same ids).
        """
        value = self._get(b"P")
        if value is None or len(value) != 16:
            return None
        return int(_U64.unpack_from(value, 0)[0]), int(_U64.unpack_from(value, 8)[0])

    def entry_sequence(self, public_key: bytes, log_id: int, seq_num: int) -> int | None:
        """The store sequence of the entry at a log position (raw public key), if stored."""
        value = self._get(_entry_key(public_key, log_id, seq_num))
        return None if value is None else split_entry_value(value)[0]

    def store_order(self, start: int) -> Iterator[tuple[int, bytes]]:
        """Yield (store sequence, raw operation id) of the entries from ``start`` on, in order.

        Read from the per-commit records (``Q``), starting at the one holding ``start``.
        """
        it = self._db.iter()
        it.seek_for_prev(b"Q" + _U64.pack(start))
        if not it.valid() or not bytes(it.key()).startswith(b"Q"):
            it.seek(b"Q")
        while it.valid():
            key = bytes(it.key())
            if not key.startswith(b"Q"):
                return
            value = bytes(it.value())
            first = _U64.unpack_from(key, 1)[0]
            for index in range(max(0, start - first), (len(value) - 8) // 34):
                yield first + index, value[8 + 34 * index : 42 + 34 * index]
            it.next()

    def entries_in_store_order(
        self, ranges: Mapping[bytes, tuple[int, int]], start: int
    ) -> Iterator[StoredEntry]:
        """Yield the entries of some log ranges, in store order (so per log in seq order).

        Args:
            ranges: Raw public key ‖ log id (u64) → (first, last) seq num wanted of that log.
            start: A store sequence at or below that of every wanted entry (where the scan of
                the store-order index begins).
        """
        remaining = sum(last - first + 1 for first, last in ranges.values() if last >= first)
        if remaining <= 0:
            return
        for sequence, op_id in self.store_order(start):
            ref = self._get(b"H" + op_id)
            if ref is None:  # pragma: no cover - written in one batch
                continue
            span = ranges.get(ref[:40])
            if span is None:
                continue
            seq_num = _U64.unpack_from(ref, 40)[0]
            if not span[0] <= seq_num <= span[1]:
                continue
            value = self._get(b"E" + ref[:48])
            if value is None:  # pragma: no cover - written in one batch
                continue
            stored = _decode_entry_value(ref[:32], _U64.unpack_from(ref, 32)[0], seq_num, value)
            yield StoredEntry(
                public_key=stored.public_key,
                log_id=stored.log_id,
                seq_num=seq_num,
                hash=stored.hash,
                entry=stored.entry,
                operation=stored.operation,
                sequence=sequence,
            )
            remaining -= 1
            if remaining == 0:
                return

    def application_schemas(self) -> Iterator[tuple[str, bytes]]:
        """Yield (schema id, serialized schema) of every stored application schema."""
        for key, value in self._scan(b"S"):
            yield key[1:].decode(), value

    def put_schema(self, schema_id: str, data: bytes) -> None:
        """Store a built application schema (synced)."""
        self._write({b"S" + schema_id.encode(): data}, sync=True)


def _dependencies_first(entries: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Order one document's (E key, value) pairs so each follows its backlink and previous."""
    by_hash = {value[:34]: (key, value) for key, value in entries}
    hash_at = {key: value[:34] for key, value in entries}
    waiting_on: dict[bytes, int] = {}
    unblocks: dict[bytes, list[bytes]] = {}
    for key, value in entries:
        depends: set[bytes] = set()
        seq_num = _U64.unpack_from(key, 41)[0]
        backlink = hash_at.get(key[:41] + _U64.pack(seq_num - 1)) if seq_num > 1 else None
        if backlink is not None:
            depends.add(backlink)
        try:
            previous = decode_operation(split_entry_value(value)[2]).previous or ()
        except PandanodeError:  # stored, so valid; never drop an entry over it
            previous = ()
        depends.update(raw for raw in map(bytes.fromhex, previous) if raw in by_hash)
        depends.discard(value[:34])
        waiting_on[value[:34]] = len(depends)
        for dependency in depends:
            unblocks.setdefault(dependency, []).append(value[:34])
    ready = [by_hash[h] for h, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[tuple[bytes, bytes]] = []
    while ready:
        key, value = heapq.heappop(ready)
        ordered.append((key, value))
        for follower in unblocks.get(value[:34], ()):
            waiting_on[follower] -= 1
            if waiting_on[follower] == 0:
                heapq.heappush(ready, by_hash[follower])
    if len(ordered) < len(entries):  # pragma: no cover - hash links cannot form a cycle
        done = {key for key, _ in ordered}
        ordered.extend(sorted(item for item in entries if item[0] not in done))
    return ordered


class WriteBatchView(_Reads):
    """Buffered writes of one group commit, overlaid on the store for reads."""

    def __init__(self, store: LogStore) -> None:
        self._store = store
        self.overlay: dict[bytes, bytes | None] = {}
        self._outbox: list[bytes] = []
        self._outbox_first = 0
        self._next_sequence = 0

    def _get(self, key: bytes) -> bytes | None:
        value = self.overlay.get(key, _MISSING)
        if value is _MISSING:
            return self._store._get(key)
        return value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.overlay)

    def put_entry(
        self,
        *,
        public_key: bytes,
        log_id: int,
        seq_num: int,
        entry_hash: bytes,
        entry: bytes,
        operation: bytes,
        document_id: bytes,
        schema_id: str,
        action: str,
        index_by_document: bool = False,
    ) -> int:
        """Buffer an entry with its indexes; return its store sequence.

        Args:
            public_key: The author's raw public key (32 bytes).
            log_id: The entry's log id.
            seq_num: The entry's seq num.
            entry_hash: The raw entry hash (34 bytes): the operation id.
            entry: The encoded entry.
            operation: The encoded operation.
            document_id: The raw id (34 bytes) of the operation's document.
            schema_id: The operation's schema id.
            action: ``create``, ``update`` or ``delete``.
            index_by_document: Also index the operation under its document (``O``), for
                :meth:`LogStore.document_operation_ids`.
        """
        if not self._outbox:
            self._outbox_first = self._next_sequence = self.next_outbox_sequence()
        sequence = self._next_sequence
        self._next_sequence = sequence + 1
        self._outbox.append(entry_hash)
        log = _U64.pack(log_id)
        seq = _U64.pack(seq_num)
        schema = schema_id.encode()
        overlay = self.overlay
        overlay[b"E" + public_key + log + seq] = (
            entry_hash
            + _U16.pack(len(entry) | _HAS_SEQUENCE)
            + _U64.pack(sequence)
            + entry
            + operation
        )
        overlay[b"H" + entry_hash] = public_key + log + seq + document_id + schema
        overlay[b"G" + public_key + log] = document_id + seq + schema
        if seq_num == 1:
            overlay[b"A" + public_key + document_id] = log
            max_log = self._get(b"M" + public_key)
            if max_log is None or log_id > _U64.unpack(max_log)[0]:
                overlay[b"M" + public_key] = log
        if action == "create":
            overlay[b"D" + document_id] = b"\x00" + schema
        elif action == "delete":
            overlay[b"D" + document_id] = b"\x01" + schema
        if index_by_document:
            overlay[b"O" + document_id + entry_hash] = b""
        return sequence

    def seal(self) -> None:
        """Add the outbox record of the buffered entries (one for the whole commit)."""
        if not self._outbox:
            return
        last = self._outbox_first + len(self._outbox) - 1
        self.overlay[b"Q" + _U64.pack(self._outbox_first)] = _U64.pack(last) + b"".join(
            self._outbox
        )
        self.overlay[b"N"] = _U64.pack(last + 1)
        self._outbox = []
