"""The query store: operations, materialized views, schemas, blobs and the consumer checkpoint.

One RocksDB (``rocksdict``, raw bytes) under ``<data_dir>/query``, written only by the
materializer, one :class:`StoreBatch` per fetched batch of events (the batch also carries the
checkpoint, so applying events and advancing past them is atomic). Integers are big-endian so
keys sort numerically; ids are raw bytes (34 per operation id, 32 per public key); a view id is
the concatenation of its raw operation ids (``view``), so its length tells how many it has.

The module is longer than most because it is the one place that knows the key layout and the
value codecs below: every read and write of a record sits next to its key's description.

Keys::

    E pk log seq            -> op_id ‖ entry length (u16) ‖ entry     raw entries, per log
    O op_id                 -> pk ‖ log ‖ seq ‖ document_id ‖ schema id length (u16) ‖ schema id
                               ‖ operation                         every operation seen
    P document_id op_id     -> ''                                  a document's operations
    F op_id                 -> ''                                  the operation is folded into
                                                                   its document's current view
    D document_id           -> current view (view codec below)
    I schema_id 00 document_id -> ''                               documents by schema id
    V view                  -> a view pinned by a pinned relation (view codec), keyed by the
                               view id as pinned
    S schema_id             -> an application schema (JSON, as ingest writes it)
    B view                  -> blob header: CBOR [mime_type, length, chunk count]
    K view chunk (u32)      -> blob bytes: chunk i is the data of piece i, in list order
    C                       -> checkpoint: the last applied stream sequence (u64)
    W document_id           -> pending document: the schema id it waits for ('' when its
                               operations do not build a document yet)
    X view                  -> pending pinned view (not buildable yet)
    Y view                  -> pending blob: CBOR list of the piece views still missing
    Z                       -> the store's format version (u32); a store of another version
                               is wiped on open and re-materialized from the event stream

Blobs are kept in RocksDB rather than as files, so an assembled blob is written in the same
atomic batch as the views it was assembled from (a crash never leaves half a blob).

View codec: a CBOR array ``[2, document_id, view, schema_id, owner, flags, fields]`` with ids
as raw bytes, ``flags`` = 1 (edited) | 2 (deleted) | 4 (appendable), ``fields`` a list
of ``[name, kind, value]`` (kind: 0 bool, 1 int, 2 float as 8 IEEE bytes, 3 str, 4 bytes,
5 relation, 6 relation list, 7 pinned relation, 8 pinned relation list) so every typed value —
NaN payloads and -0.0 included — reads back exactly as written.

It stays one module: the view codec, the reads and the write batch share the key layout and
the codec above, and must agree on every byte of them.
"""

from __future__ import annotations

import logging
import shutil
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cbor2 import dumps as _cbor2_dumps
from cbor2 import loads as _cbor2_loads

from pandanode.core.cbor import CborValue, dumps, loads
from pandanode.core.document import DocumentOperation
from pandanode.core.operation import (
    PinnedRelation,
    PinnedRelationList,
    Relation,
    RelationList,
    decode_operation,
)
from pandanode.services.runtime.rocks import DEFAULT_WRITE_BUFFER_BYTES, RocksStore
from pandanode.services.runtime.settings import Settings

from .model import MaterializedDocument, TypedValue

__all__ = [
    "DEFAULT_DECODED_CACHE_BYTES",
    "BlobHeader",
    "QueryStore",
    "StoreBatch",
    "StoredEntry",
    "StoredOperation",
    "decode_view",
    "decoded_size",
    "encode_view",
    "view_key",
]

log = logging.getLogger(__name__)

FORMAT_VERSION: Final = 2
_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_U16: Final = struct.Struct(">H")
_F64: Final = struct.Struct(">d")
_ID: Final = 34
DEFAULT_DECODED_CACHE_BYTES: Final = Settings().decoded_cache_bytes
_MISSING: Final = object()

_EDITED, _DELETED, _APPENDABLE = 1, 2, 4
_BOOL, _INT, _FLOAT, _STR, _BYTES, _RELATION, _RELATION_LIST, _PINNED, _PINNED_LIST = range(9)


# -- ids ------------------------------------------------------------------------------------


def view_key(view_id: str) -> bytes:
    """The raw form of a view id (``_``-joined hex ids): its operation ids concatenated."""
    return bytes.fromhex(view_id.replace("_", ""))


def _ids_hex(raw: bytes) -> tuple[str, ...]:
    return tuple(raw[i : i + _ID].hex() for i in range(0, len(raw), _ID))


def _view_str(raw: bytes) -> str:
    return "_".join(_ids_hex(raw))


def _join_ids(ids: Iterable[str]) -> bytes:
    return b"".join(bytes.fromhex(op_id) for op_id in ids)


# -- view codec -----------------------------------------------------------------------------


def _encode_value(value: TypedValue) -> list[CborValue]:
    if isinstance(value, bool):
        return [_BOOL, value]
    if isinstance(value, int):
        return [_INT, value]
    if isinstance(value, float):
        return [_FLOAT, _F64.pack(value)]
    if isinstance(value, str):
        return [_STR, value]
    if isinstance(value, bytes):
        return [_BYTES, value]
    if isinstance(value, Relation):
        return [_RELATION, bytes.fromhex(value.document_id)]
    if isinstance(value, RelationList):
        return [_RELATION_LIST, _join_ids(value.document_ids)]
    if isinstance(value, PinnedRelation):
        return [_PINNED, _join_ids(value.view_id)]
    return [_PINNED_LIST, [_join_ids(view_id) for view_id in value.view_ids]]


def _decode_value(kind: int, value: CborValue) -> TypedValue:
    if kind in (_BOOL, _INT, _STR):
        assert isinstance(value, bool | int | str)
        return value
    if kind == _PINNED_LIST:
        assert isinstance(value, list)
        return PinnedRelationList([_ids_hex(bytes(item)) for item in value])  # type: ignore[arg-type]
    assert isinstance(value, bytes)
    if kind == _FLOAT:
        return float(_F64.unpack(value)[0])
    if kind == _BYTES:
        return value
    if kind == _RELATION:
        return Relation(value.hex())
    if kind == _RELATION_LIST:
        return RelationList(_ids_hex(value))
    if kind == _PINNED:
        return PinnedRelation(_ids_hex(value))
    raise ValueError(f"unknown field kind {kind} in a stored view")


def encode_view(document: MaterializedDocument) -> bytes:
    """Serialize a view (see the module docstring for the layout)."""
    flags = (
        (_EDITED if document.edited else 0)
        | (_DELETED if document.deleted else 0)
        | (_APPENDABLE if document.appendable else 0)
    )
    fields: list[CborValue] = [
        [name, *_encode_value(value)] for name, value in document.fields.items()
    ]
    return _dumps_view(
        [
            FORMAT_VERSION,
            bytes.fromhex(document.document_id),
            view_key(document.view_id),
            document.schema_id,
            bytes.fromhex(document.owner),
            flags,
            fields,
        ]
    )


def _dumps_view(value: list[CborValue]) -> bytes:
    # A view holds only ints, text, bytes, booleans and arrays (floats are stored as their 8
    # bytes), which cbor2's C encoder writes byte for byte as our writer does, many times faster.
    try:
        return _cbor2_dumps(value)
    except Exception:  # e.g. text cbor2 cannot write: ours writes it or gives the error
        return dumps(value)


def decode_view(data: bytes) -> MaterializedDocument:
    """Read a view written by :func:`encode_view`."""
    # The store's own bytes, in the plain encoding cbor2's C decoder reads as ours does.
    value = _cbor2_loads(data)
    assert isinstance(value, list) and value[0] == FORMAT_VERSION, "unknown view format"
    _, document_id, view, schema_id, owner, flags, fields = value
    assert isinstance(document_id, bytes) and isinstance(view, bytes)
    assert isinstance(schema_id, str) and isinstance(owner, bytes) and isinstance(flags, int)
    assert isinstance(fields, list)
    typed: dict[str, TypedValue] = {}
    for item in fields:
        assert isinstance(item, list)
        name, kind, field_value = item
        assert isinstance(name, str) and isinstance(kind, int)
        typed[name] = _decode_value(kind, field_value)
    return MaterializedDocument(
        document_id=document_id.hex(),
        view_id=_view_str(view),
        schema_id=schema_id,
        owner=owner.hex(),
        edited=bool(flags & _EDITED),
        deleted=bool(flags & _DELETED),
        fields=typed,
        appendable=bool(flags & _APPENDABLE),
    )


# -- records --------------------------------------------------------------------------------


def _plain_size(value: object) -> int:
    if isinstance(value, str | bytes):
        return 50 + len(value)
    if isinstance(value, list | tuple):
        return 60 + sum(_plain_size(item) for item in value)
    return 32


def decoded_size(operation: DocumentOperation) -> int:
    """About how many bytes of memory a decoded operation takes (Python objects included).

    Within ~20% of a deep ``sys.getsizeof`` for small operations and for blob pieces; it errs
    on the high side for relation lists (ids are held as 68-character strings).
    """
    decoded = operation.operation
    size = 900 + 120 * len(decoded.previous or ())
    for name, value in (decoded.fields or {}).items():
        size += 100 + len(name) + _plain_size(value)
    return size


@dataclass(frozen=True, slots=True)
class StoredOperation:
    """An operation as the query store keeps it: raw bytes and where it came from.

    Attributes:
        operation_id: The operation id (the hash of its entry).
        public_key: The author.
        log_id: The log of the entry.
        seq_num: The position of the entry in its log.
        document_id: The document the operation belongs to.
        schema_id: The schema id the operation claims.
        operation: The operation bytes, exactly as published.
    """

    operation_id: str
    public_key: str
    log_id: int
    seq_num: int
    document_id: str
    schema_id: str
    operation: bytes

    def decode(self) -> DocumentOperation:
        """The operation decoded, ready for :func:`pandanode.core.document.materialize`."""
        return DocumentOperation(
            self.operation_id, self.public_key, decode_operation(self.operation)
        )


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A raw entry with the operation it signs, as published.

    Attributes:
        public_key: The author.
        log_id: The log.
        seq_num: The position in the log.
        operation_id: The entry hash (the operation id).
        entry: The entry bytes.
        operation: The operation bytes.
    """

    public_key: str
    log_id: int
    seq_num: int
    operation_id: str
    entry: bytes
    operation: bytes


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """An assembled blob: what its ``blob_v1`` view says and how it is stored.

    Attributes:
        view_id: The view id of the ``blob_v1`` document view it was assembled from.
        mime_type: The MIME type.
        length: The length in bytes (checked against the pieces).
        chunk_count: How many chunks (pieces) hold the bytes.
    """

    view_id: str
    mime_type: str
    length: int
    chunk_count: int


def _operation_value(value: bytes, operation_id: str) -> StoredOperation:
    (schema_length,) = _U16.unpack_from(value, 82)
    return StoredOperation(
        operation_id=operation_id,
        public_key=value[:32].hex(),
        log_id=_U64.unpack_from(value, 32)[0],
        seq_num=_U64.unpack_from(value, 40)[0],
        document_id=value[48:82].hex(),
        schema_id=value[84 : 84 + schema_length].decode(),
        operation=value[84 + schema_length :],
    )


# -- reads ----------------------------------------------------------------------------------


class _Reads:
    """Point reads, shared by the store and by a batch (which overlays its pending writes)."""

    def _get(self, key: bytes) -> bytes | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def checkpoint(self) -> int:
        """The last stream sequence applied (0 before the first)."""
        value = self._get(b"C")
        return 0 if value is None else int(_U64.unpack(value)[0])

    def operation(self, operation_id: str) -> StoredOperation | None:
        """An operation by id, if stored."""
        value = self._get(b"O" + bytes.fromhex(operation_id))
        return None if value is None else _operation_value(value, operation_id)

    def operation_document_id(self, operation_id: str) -> str | None:
        """The document a stored operation belongs to."""
        value = self._get(b"O" + bytes.fromhex(operation_id))
        return None if value is None else value[48:82].hex()

    def document_schema_id(self, document_id: str) -> str | None:
        """The schema id claimed by a document's CREATE, if stored."""
        stored = self.operation(document_id)
        return None if stored is None else stored.schema_id

    def is_folded(self, operation_id: str) -> bool:
        """Whether an operation is folded into its document's stored current view."""
        return self._get(b"F" + bytes.fromhex(operation_id)) is not None

    def is_pending_document(self, document_id: str) -> bool:
        """Whether a document has operations its stored view (if any) does not reflect."""
        return self._get(b"W" + bytes.fromhex(document_id)) is not None

    def document(self, document_id: str) -> MaterializedDocument | None:
        """The current view of a document, if materialized."""
        value = self._get(b"D" + bytes.fromhex(document_id))
        return None if value is None else decode_view(value)

    def pinned_view(self, view_id: str) -> MaterializedDocument | None:
        """A view stored because a pinned relation names it."""
        value = self._get(b"V" + view_key(view_id))
        return None if value is None else decode_view(value)

    def has_pinned_view(self, view_id: str) -> bool:
        """Whether a pinned view is stored."""
        return self._get(b"V" + view_key(view_id)) is not None

    def blob_header(self, view_id: str) -> BlobHeader | None:
        """The header of the blob assembled from a ``blob_v1`` view, if assembled."""
        value = self._get(b"B" + view_key(view_id))
        if value is None:
            return None
        header = loads(value)
        assert isinstance(header, list)
        mime_type, length, chunk_count = header
        assert isinstance(mime_type, str) and isinstance(length, int)
        assert isinstance(chunk_count, int)
        return BlobHeader(view_id, mime_type, length, chunk_count)

    def blob_chunk(self, view_id: str, index: int) -> bytes | None:
        """Chunk ``index`` of an assembled blob."""
        return self._get(b"K" + view_key(view_id) + _U32.pack(index))


class QueryStore(RocksStore, _Reads):
    """The RocksDB store of the query service. One process owns it (RocksDB locks it).

    Args:
        path: The directory of the database (created if missing).
        decoded_cache_bytes: Memory budget of the decoded operations kept for rebuilding
            documents (the ``decoded_cache_bytes`` setting); measured with
            :func:`decoded_size`, least recently used dropped first.
    """

    bloom_filter_bits = 10
    """The materializer's lookups mostly miss (is this operation stored? folded? is this
    document pending?): a miss then skips the table files instead of reading their blocks."""

    def __init__(
        self,
        path: Path,
        *,
        decoded_cache_bytes: int = DEFAULT_DECODED_CACHE_BYTES,
        write_buffer_bytes: int = DEFAULT_WRITE_BUFFER_BYTES,
    ) -> None:
        super().__init__(path, write_buffer_bytes=write_buffer_bytes)
        self.path = path
        self._write_buffer_bytes = write_buffer_bytes
        if self._get(b"Z") != _U32.pack(FORMAT_VERSION):
            self._reset_if_other_format()
        # Rebuilding a document decodes all its operations; decoding costs ~25 µs each, so
        # recently used ones are kept (operations never change once stored).
        # The budget is in bytes, not items: blob pieces are 256 KB each.
        self._decoded: OrderedDict[str, tuple[DocumentOperation, int]] = OrderedDict()
        self._decoded_lock = threading.Lock()
        self._decoded_budget = decoded_cache_bytes
        self.decoded_cache_bytes = 0
        """Bytes (by :func:`decoded_size`) of the decoded operations kept now."""

    def _reset_if_other_format(self) -> None:
        # Everything here is derived from the event stream, so a store of another format is
        # rebuilt from it (the materializer starts over at checkpoint 0) rather than migrated.
        if next(self._scan(b""), None) is not None:
            log.warning(
                "the query store at %s has another format; wiping it: it is re-materialized "
                "from the event stream",
                self.path,
            )
            self.close()
            self.destroy(self.path)
            RocksStore.__init__(self, self.path, write_buffer_bytes=self._write_buffer_bytes)
        self._write({b"Z": _U32.pack(FORMAT_VERSION)}, sync=True)

    @staticmethod
    def destroy(path: Path) -> None:
        """Delete a (closed) store and everything in it."""
        shutil.rmtree(path, ignore_errors=True)

    def begin(self) -> StoreBatch:
        """Start a batch: writes are buffered and visible to reads through the batch."""
        return StoreBatch(self)

    def commit(self, batch: StoreBatch) -> None:
        """Write a batch atomically; it survives the process being killed, not a power cut.

        The WAL is written but not synced: everything here is derived from the event stream,
        and the checkpoint is in the same batch, so losing the last batches to an OS crash
        only means re-applying them from the stream on start (the consumer is re-created at
        the stored checkpoint). An fsync per batch would compete with ingest's, which must be
        synced.
        """
        self._write(batch.overlay, sync=False)
        batch.overlay.clear()

    def document_operation_ids(self, document_id: str) -> list[str]:
        """The ids of every stored operation of a document."""
        prefix = b"P" + bytes.fromhex(document_id)
        return [key[1 + _ID :].hex() for key, _ in self._scan(prefix)]

    def document_operations(self, document_id: str) -> list[DocumentOperation]:
        """Every stored operation of a document, decoded."""
        operations = []
        for op_id in self.document_operation_ids(document_id):
            with self._decoded_lock:
                cached = self._decoded.get(op_id)
                if cached is not None:
                    self._decoded.move_to_end(op_id)
            if cached is not None:
                operations.append(cached[0])
                continue
            stored = self.operation(op_id)
            if stored is None:  # pragma: no cover - indexed and stored in one batch
                continue
            decoded = stored.decode()
            self._keep_decoded(op_id, decoded)
            operations.append(decoded)
        return operations

    def _keep_decoded(self, op_id: str, decoded: DocumentOperation) -> None:
        size = decoded_size(decoded)
        if size > self._decoded_budget:
            return
        with self._decoded_lock:
            previous = self._decoded.pop(op_id, None)
            if previous is not None:
                self.decoded_cache_bytes -= previous[1]
            self._decoded[op_id] = (decoded, size)
            self.decoded_cache_bytes += size
            while self.decoded_cache_bytes > self._decoded_budget:
                _, (_, dropped) = self._decoded.popitem(last=False)
                self.decoded_cache_bytes -= dropped

    def document_ids(self, schema_id: str) -> Iterator[str]:
        """The ids of the materialized documents of a schema, ascending."""
        prefix = b"I" + schema_id.encode() + b"\x00"
        for key, _ in self._scan(prefix):
            yield key[len(prefix) :].hex()

    def documents(self, schema_id: str) -> Iterator[MaterializedDocument]:
        """The current views of a schema's documents (deleted ones too), by document id."""
        for document_id in self.document_ids(schema_id):
            document = self.document(document_id)
            if document is not None:
                yield document

    def entries(self, public_key: str, log_id: int, from_seq_num: int = 1) -> Iterator[StoredEntry]:
        """The entries of one log in seq num order, from ``from_seq_num``."""
        prefix = b"E" + bytes.fromhex(public_key) + _U64.pack(log_id)
        for key, value in self._scan(prefix, prefix + _U64.pack(max(from_seq_num, 1))):
            operation_id = value[:_ID].hex()
            (length,) = _U16.unpack_from(value, _ID)
            stored = self.operation(operation_id)
            yield StoredEntry(
                public_key=public_key,
                log_id=log_id,
                seq_num=_U64.unpack_from(key, 41)[0],
                operation_id=operation_id,
                entry=value[_ID + 2 : _ID + 2 + length],
                operation=b"" if stored is None else stored.operation,
            )

    def application_schemas(self) -> Iterator[bytes]:
        """Every stored application schema, serialized."""
        for _, value in self._scan(b"S"):
            yield value

    def application_schema(self, schema_id: str) -> bytes | None:
        """One stored application schema, serialized; None if it is not built."""
        return self._get(b"S" + schema_id.encode())

    def application_schema_ids(self) -> Iterator[str]:
        """The ids of every stored application schema, ascending."""
        for key, _ in self._scan(b"S"):
            yield key[1:].decode()

    def pending_documents(self) -> dict[str, str]:
        """Documents not materialized yet → the schema id they wait for ('' for operations)."""
        return {key[1:].hex(): value.decode() for key, value in self._scan(b"W")}

    def pending_views(self) -> list[str]:
        """Pinned views that cannot be built yet."""
        return [_view_str(key[1:]) for key, _ in self._scan(b"X")]

    def pending_blobs(self) -> dict[str, list[str]]:
        """Blob views waiting for pieces → the piece views still missing."""
        pending = {}
        for key, value in self._scan(b"Y"):
            missing = loads(value)
            assert isinstance(missing, list)
            pending[_view_str(key[1:])] = [_view_str(bytes(item)) for item in missing]  # type: ignore[arg-type]
        return pending

    def pinned_view_ids(self) -> Iterator[str]:
        """Every stored pinned view id."""
        for key, _ in self._scan(b"V"):
            yield _view_str(key[1:])

    def blob_view_ids(self) -> Iterator[str]:
        """Every view id with an assembled blob."""
        for key, _ in self._scan(b"B"):
            yield _view_str(key[1:])

    def dump(self) -> Iterator[tuple[bytes, bytes]]:
        """Every key and value, in key order (to compare two stores, e.g. after a rebuild)."""
        return self._scan(b"")


class StoreBatch(_Reads):
    """Buffered writes of one batch, overlaid on the store for reads.

    Only point reads see the overlay, except :meth:`document_operations`, which adds the
    operations put in this batch to the stored ones.
    """

    def __init__(self, store: QueryStore) -> None:
        self._store = store
        self.overlay: dict[bytes, bytes | None] = {}
        self._new_operations: dict[str, list[DocumentOperation]] = {}
        self._new_ids: set[str] = set()

    def _get(self, key: bytes) -> bytes | None:
        value = self.overlay.get(key, _MISSING)
        if value is _MISSING:
            return self._store._get(key)
        return value  # type: ignore[return-value]

    def stored_operations(self, operation_ids: Sequence[str]) -> set[str]:
        """Which of these operations are stored (or put in this batch): one lookup for all."""
        keys = [b"O" + bytes.fromhex(op_id) for op_id in operation_ids]
        overlay = self.overlay  # operations are never deleted: a key here was put
        return {
            op_id
            for op_id, key, value in zip(
                operation_ids, keys, self._store._get_many(keys), strict=True
            )
            if value is not None or key in overlay
        }

    def is_folded(self, operation_id: str) -> bool:
        """Whether an operation is folded into its document's current view (with this batch)."""
        if operation_id in self._new_ids:
            # Put in this batch, so only this batch can have folded it: no store lookup.
            return b"F" + bytes.fromhex(operation_id) in self.overlay
        return super().is_folded(operation_id)

    # -- reads beyond point lookups ---------------------------------------------------------

    def document_operations(self, document_id: str) -> list[DocumentOperation]:
        """Every operation of a document: stored ones and ones put in this batch, decoded."""
        operations = self._store.document_operations(document_id)
        operations.extend(self._new_operations.get(document_id, ()))
        return operations

    # -- writes -----------------------------------------------------------------------------

    def put_operation(
        self, stored: StoredOperation, entry: bytes, decoded: DocumentOperation
    ) -> None:
        """Store an operation with its entry and index it under its document."""
        op_id = bytes.fromhex(stored.operation_id)
        pk = bytes.fromhex(stored.public_key)
        doc = bytes.fromhex(stored.document_id)
        log = _U64.pack(stored.log_id)
        schema = stored.schema_id.encode()
        put = self.overlay.__setitem__
        put(b"E" + pk + log + _U64.pack(stored.seq_num), op_id + _U16.pack(len(entry)) + entry)
        put(
            b"O" + op_id,
            pk
            + log
            + _U64.pack(stored.seq_num)
            + doc
            + _U16.pack(len(schema))
            + schema
            + stored.operation,
        )
        put(b"P" + doc + op_id, b"")
        self._new_operations.setdefault(stored.document_id, []).append(decoded)
        self._new_ids.add(stored.operation_id)

    def put_document(
        self, document: MaterializedDocument, *, new: bool, folded: Iterable[str]
    ) -> None:
        """Store a document's current view (``new``: it had none, so index it too).

        Args:
            document: The new current view.
            new: The document had no current view yet.
            folded: The operations this view folds in that the previous one did not.
        """
        doc = bytes.fromhex(document.document_id)
        self.overlay[b"D" + doc] = encode_view(document)
        if new:
            self.overlay[b"I" + document.schema_id.encode() + b"\x00" + doc] = b""
        for op_id in folded:
            self.overlay[b"F" + bytes.fromhex(op_id)] = b""

    def put_pinned_view(self, view_id: str, document: MaterializedDocument) -> None:
        """Store a view named by a pinned relation, under the view id as pinned."""
        self.overlay[b"V" + view_key(view_id)] = encode_view(document)

    def put_schema(self, schema_id: str, data: bytes) -> None:
        """Store a built application schema."""
        self.overlay[b"S" + schema_id.encode()] = data

    def put_blob(self, view_id: str, mime_type: str, length: int, chunks: list[bytes]) -> None:
        """Store an assembled blob: its header and its chunks."""
        key = view_key(view_id)
        self.overlay[b"B" + key] = dumps([mime_type, length, len(chunks)])
        for index, chunk in enumerate(chunks):
            self.overlay[b"K" + key + _U32.pack(index)] = chunk

    def delete_blob(self, view_id: str) -> None:
        """Remove an assembled blob, if there is one."""
        header = self.blob_header(view_id)
        if header is None:
            return
        key = view_key(view_id)
        self.overlay[b"B" + key] = None
        for index in range(header.chunk_count):
            self.overlay[b"K" + key + _U32.pack(index)] = None

    def set_checkpoint(self, sequence: int) -> None:
        """Record that every event up to stream sequence ``sequence`` is applied."""
        self.overlay[b"C"] = _U64.pack(sequence)

    def set_pending_document(self, document_id: str, schema_id: str | None) -> None:
        """Mark a document pending (waiting for ``schema_id``, '' for operations) or not (None)."""
        self._set(
            b"W" + bytes.fromhex(document_id), None if schema_id is None else schema_id.encode()
        )

    def set_pending_view(self, view_id: str, pending: bool) -> None:
        """Mark a pinned view pending or not."""
        self._set(b"X" + view_key(view_id), b"" if pending else None)

    def set_pending_blob(self, view_id: str, missing: Sequence[str] | None) -> None:
        """Mark a blob view pending with the piece views it misses, or not pending (None)."""
        value = None if missing is None else dumps([view_key(v) for v in missing])
        self._set(b"Y" + view_key(view_id), value)

    def _set(self, key: bytes, value: bytes | None) -> None:
        # Clearing a record that does not exist writes nothing (no needless tombstones).
        if value is not None or self._get(key) is not None:
            self.overlay[key] = value
