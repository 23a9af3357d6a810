"""The log store of ingest: entries, operations and the indexes publishing needs, in RocksDB.

One RocksDB (``rocksdict``, raw bytes) with one-byte key prefixes; every multi-byte integer is
big-endian so keys sort by (public key, log id, seq num). Every read the publish rules need is a
point lookup, so a :class:`WriteBatchView` can overlay not-yet-committed writes of a group
commit and later items of the same batch see earlier ones.

Keys (``pk`` 32 raw bytes, ids 34 raw bytes, integers u64 big-endian)::

    E pk log seq      -> entry hash(34) ‖ entry length(u16) ‖ entry ‖ operation
    H op_id           -> pk ‖ log ‖ seq ‖ document id(34) ‖ schema id (utf-8)
    G pk log          -> document id(34) ‖ latest seq(u64) ‖ schema id (utf-8)
    A pk document_id  -> log
    M pk              -> highest log id in use
    D document_id     -> deleted flag(1) ‖ schema id (utf-8)
    O document_id op_id -> (empty)            the document's operations
    Q first_seq       -> last_seq(u64) ‖ op_id × n   the outbox: one record per commit, holding
                         the commit's entries (store sequences first..last) in store order
    C                 -> outbox cursor (u64): every entry at or below it was announced
    N                 -> next store sequence (u64): each entry's position in store order
    S schema_id       -> JSON of an application schema built from stored definitions
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
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
        """Return the ids of every stored operation of a document."""
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
        public_key: str,
        log_id: int,
        seq_num: int,
        entry_hash: str,
        entry: bytes,
        operation: bytes,
        document_id: str,
        schema_id: str,
        deletes_document: bool,
    ) -> int:
        """Buffer an entry with every index; return its store sequence."""
        pk = bytes.fromhex(public_key)
        op_id = bytes.fromhex(entry_hash)
        doc = bytes.fromhex(document_id)
        log = _U64.pack(log_id)
        schema = schema_id.encode()
        put = self.overlay.__setitem__
        put(_entry_key(pk, log_id, seq_num), op_id + _U16.pack(len(entry)) + entry + operation)
        put(b"H" + op_id, pk + log + _U64.pack(seq_num) + doc + schema)
        put(b"G" + pk + log, doc + _U64.pack(seq_num) + schema)
        if seq_num == 1:
            put(b"A" + pk + doc, log)
            max_log = self.max_log_id(public_key)
            if max_log is None or log_id > max_log:
                put(b"M" + pk, log)
        if deletes_document or self._get(b"D" + doc) is None:
            put(b"D" + doc, (b"\x01" if deletes_document else b"\x00") + schema)
        put(b"O" + doc + op_id, b"")
        sequence = self.next_outbox_sequence()
        if not self._outbox:
            self._outbox_first = sequence
        self._outbox.append(op_id)
        put(b"N", _U64.pack(sequence + 1))
        return sequence

    def seal(self) -> None:
        """Add the outbox record of the buffered entries (one for the whole commit)."""
        if not self._outbox:
            return
        last = self._outbox_first + len(self._outbox) - 1
        self.overlay[b"Q" + _U64.pack(self._outbox_first)] = _U64.pack(last) + b"".join(
            self._outbox
        )
        self._outbox = []
