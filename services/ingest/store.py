"""The log store of ingest: entries, operations and the indexes publishing needs, in RocksDB.

One RocksDB (``rocksdict``, raw bytes) with one-byte key prefixes; every multi-byte integer is
big-endian so keys sort by (public key, log id, seq num). Every read the publish rules need is a
point lookup, so a :class:`WriteBatchView` can overlay not-yet-committed writes of a group
commit and later items of the same batch see earlier ones. The hot path writes each entry with
E, H and G (and A, M, D only where a log or a document begins or ends), with keys built from raw
bytes the caller converts once per entry.

Keys (``pk`` 32 raw bytes, ids 34 raw bytes, integers u64 big-endian)::

    E pk log seq      -> entry hash(34) ‖ entry length(u16) ‖ entry ‖ operation
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
    Q first_seq       -> last_seq(u64) ‖ op_id × n   the outbox: one record per commit, holding
                         the commit's entries (store sequences first..last) in store order
    C                 -> outbox cursor (u64): every entry at or below it was announced
    N                 -> next store sequence (u64): each entry's position in store order
    S schema_id       -> JSON of an application schema built from stored definitions
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from rocksdict import WriteBatch

from pandanode.services.runtime.rocks import RocksStore

__all__ = ["LogStore", "OutboxRecord", "StoredEntry", "StoredLog", "WriteBatchView"]

_U64 = struct.Struct(">Q")
_U16 = struct.Struct(">H")
_MISSING = object()


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


def _decode_entry_value(pk: bytes, log_id: int, seq_num: int, value: bytes) -> StoredEntry:
    (length,) = _U16.unpack_from(value, 34)
    return StoredEntry(
        public_key=pk.hex(),
        log_id=log_id,
        seq_num=seq_num,
        hash=value[:34].hex(),
        entry=value[36 : 36 + length],
        operation=value[36 + length :],
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
    """The RocksDB log store. One process owns it (RocksDB refuses a second writer)."""

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

    def logs(self) -> Iterator[StoredLog]:
        """Yield every log with its document, schema and height."""
        for key, value in self._scan(b"G"):
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

    def advance_outbox(self, firsts: Sequence[int], cursor: int) -> None:
        """Record that every entry up to ``cursor`` was announced; drop the announced records.

        Args:
            firsts: The first store sequences of the outbox records now announced.
            cursor: The last store sequence announced.
        """
        batch = WriteBatch(raw_mode=True)
        for first in firsts:
            batch.delete(b"Q" + _U64.pack(first))
        batch.put(b"C", _U64.pack(cursor))
        self._db.write(batch, write_opt=self._async)

    def application_schemas(self) -> Iterator[tuple[str, bytes]]:
        """Yield (schema id, serialized schema) of every stored application schema."""
        for key, value in self._scan(b"S"):
            yield key[1:].decode(), value

    def put_schema(self, schema_id: str, data: bytes) -> None:
        """Store a built application schema (synced)."""
        self._write({b"S" + schema_id.encode(): data}, sync=True)


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
        log = _U64.pack(log_id)
        seq = _U64.pack(seq_num)
        schema = schema_id.encode()
        overlay = self.overlay
        overlay[b"E" + public_key + log + seq] = (
            entry_hash + _U16.pack(len(entry)) + entry + operation
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
        if not self._outbox:
            self._outbox_first = self._next_sequence = self.next_outbox_sequence()
        sequence = self._next_sequence
        self._next_sequence = sequence + 1
        self._outbox.append(entry_hash)
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
