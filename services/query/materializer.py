"""The materializer: turns ``operations.ingested`` events into document views (spec §6, §10).

It consumes the event stream with a durable consumer of the bus
(:mod:`pandanode.services.runtime.bus`) and applies whatever has arrived — whole messages, up
to about a batch of operations, without waiting for more — in one RocksDB write batch together
with the checkpoint (the stream sequence of the last applied message), then acknowledges. Each
message holds one ingest commit's operations, applied in their order. Not waiting keeps the lag
low when events trickle in; under load batches fill up by themselves. Messages at or below the
checkpoint are skipped, so a redelivery is harmless (and an operation already stored is skipped
too, so a re-published batch is); on start (and after any failure) the durable consumer is
re-created at ``checkpoint + 1``, so the query store, not JetStream, says where to resume.

Each operation's position — :attr:`IngestedEvent.sequence`, which becomes
:attr:`~.model.DocumentChange.sequence` — is ``stream sequence × 2**20 + index in the message``:
strictly increasing in stream order, and comparable with :attr:`Materializer.position`, the
position of the last operation a committed checkpoint can hold.

Applying a batch works like aquadoggo's task queue (spec §6.5), run to completion inside the
batch:

- *document* — store the new operations and bring the document's current view up to date.
  When the stored view's tip is open and the new operations form a line from it (each an
  UPDATE or DELETE naming exactly the one before, :func:`pandanode.core.document.extends_tip`
  — a document edited in a line, the common case), they are folded into the stored view at a
  cost that does not grow with the document (:func:`fold_into_view`). Otherwise the view is
  rebuilt from **all** its operations with :func:`pandanode.core.document.materialize`. Either
  way the fields are typed with the schema (:func:`pandanode.core.schema.typed_fields`) and
  the view is stored when its view id changed. A document whose schema is not built yet, or
  whose operations do not build a document yet, stays pending and is re-tried when the schema
  is built or another operation of it arrives.
- *view* — every view named by a pinned relation in an operation of a materialized document is
  materialized to that view id and stored (also views pinned by pinned views). One that cannot
  be built yet stays pending and is re-tried when a document holding one of its operations
  is rebuilt.
- *blob* — when a ``blob_v1`` view (a current or a pinned one) and all its pinned piece views
  are stored, the pieces are concatenated in list order, checked (count and total length) and
  stored. A blob of a view that is no longer current nor pinned is removed.
- *schema* — changes to ``schema_definition_v1`` / ``schema_field_definition_v1`` documents
  build application schemas as ingest does (:mod:`pandanode.services.runtime.schemas`); a
  document of an unknown application schema also builds the schema from the definition view
  its id names. Documents waiting for a schema are then re-tried.

Pins are taken from every operation rather than only from the views a document passed
through, and schemas are built from the definition view a schema id names, so the stored
views do not depend on how the stream was cut into batches: a rebuild gives the same views.

After each commit, :meth:`Materializer.add_listener` callbacks receive the batch's
:class:`~.model.DocumentChange` objects in stream order (one per document whose current view
changed; changes within one batch are collapsed), and ``wait_for_*`` callers are woken.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from pandanode.core.document import DocumentOperation, extends_tip, materialize, open_tip
from pandanode.core.errors import PandanodeError
from pandanode.core.hexid import is_hex
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import PinnedRelation, PinnedRelationList
from pandanode.core.schema import BLOB_V1, SYSTEM_SCHEMAS, Schema, typed_fields
from pandanode.services.runtime.bus import Bus, Consumer, Delivery
from pandanode.services.runtime.events import (
    OPERATIONS_INGESTED,
    IngestedOperation,
    parse_operations_ingested,
)
from pandanode.services.runtime.schemas import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    SchemaRegistry,
    decode_schema,
)

from .blobs import InvalidBlobError, assemble_blob, blob_piece_views, is_blob
from .model import ChangeKind, DocumentChange, MaterializedDocument, TypedValue
from .store import QueryStore, StoreBatch, StoredEntry, StoredOperation

__all__ = [
    "POSITIONS_PER_MESSAGE",
    "Blob",
    "IngestedEvent",
    "Materializer",
    "affected_documents",
    "build_view",
    "change_kind",
    "fold_into_view",
    "linear_extension",
    "pinned_view_ids",
    "rebuild",
]

log = logging.getLogger(__name__)

DEFAULT_DURABLE: Final = "query"
DEFAULT_BATCH_SIZE: Final = 256
_FETCH_TIMEOUT: Final = 5.0
POSITIONS_PER_MESSAGE: Final = 1 << 20
"""Operations one message may hold; positions are ``stream sequence × this + index``."""


# -- events and pure rules ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One operation of an ``operations.ingested`` message, and its position in the stream.

    Attributes:
        sequence: Its position: the message's stream sequence × :data:`POSITIONS_PER_MESSAGE`
            + its index in the message (strictly increasing in stream order).
        operation: The operation with its ids, as ingest announced it.
        entry: The entry bytes.
        decoded: The operation decoded.
    """

    sequence: int
    operation: StoredOperation
    entry: bytes
    decoded: DocumentOperation

    @classmethod
    def parse(cls, sequence: int, event: IngestedOperation) -> IngestedEvent:
        """Read one ``pandanode.events.v1.IngestedOperation`` at position ``sequence``.

        Raises:
            ValueError: malformed ids.
            PandanodeError: operation bytes that do not decode.
        """
        for value, length, name in (
            (event.operation_id, 68, "operation_id"),
            (event.document_id, 68, "document_id"),
            (event.public_key, 64, "public_key"),
        ):
            if not is_hex(value, length, lowercase=True):
                raise ValueError(f"event {sequence}: {name} is not {length} hex characters")
        operation = StoredOperation(
            operation_id=event.operation_id,
            public_key=event.public_key,
            log_id=event.log_id,
            seq_num=event.seq_num,
            document_id=event.document_id,
            schema_id=event.schema_id,
            operation=event.operation,
        )
        return cls(sequence, operation, event.entry, operation.decode())

    @classmethod
    def parse_message(cls, stream_sequence: int, payload: bytes) -> list[IngestedEvent]:
        """Read the operations of an ``OperationsIngested`` message, in order.

        Operations that do not parse are logged and left out; the rest still apply.

        Raises:
            ValueError: a payload that is not the message, or holds too many operations.
        """
        try:
            message = parse_operations_ingested(payload)
        except Exception as err:
            raise ValueError(f"message {stream_sequence} is not OperationsIngested") from err
        if len(message.operations) >= POSITIONS_PER_MESSAGE:
            raise ValueError(f"message {stream_sequence} holds too many operations")
        events = []
        base = stream_sequence * POSITIONS_PER_MESSAGE
        for index, operation in enumerate(message.operations):
            try:
                events.append(cls.parse(base + index, operation))
            except Exception:  # a malformed event must not stop the stream
                log.exception(
                    "skipping malformed operation %d of stream message %d", index, stream_sequence
                )
        return events


def affected_documents(events: Iterable[IngestedEvent]) -> dict[str, int]:
    """The documents a run of events touches → the sequence of the last event touching each.

    Documents come in the order of their first event.
    """
    affected: dict[str, int] = {}
    for event in events:
        affected[event.operation.document_id] = event.sequence
    return affected


def pinned_view_ids(fields: Mapping[str, TypedValue]) -> list[str]:
    """The view ids named by pinned relation (list) values, in field order, each once."""
    views: dict[str, None] = {}
    for value in fields.values():
        if isinstance(value, PinnedRelation):
            views.setdefault("_".join(value.view_id))
        elif isinstance(value, PinnedRelationList):
            for view_id in value.view_ids:
                views.setdefault("_".join(view_id))
    return list(views)


def change_kind(
    previous: MaterializedDocument | None, current: MaterializedDocument
) -> ChangeKind | None:
    """How a document's current view changed; None when it did not."""
    if previous is not None and previous.view_id == current.view_id:
        return None
    if current.deleted:
        return ChangeKind.DELETED
    return ChangeKind.CREATED if previous is None else ChangeKind.UPDATED


def build_view(
    operations: Iterable[DocumentOperation], schema: Schema, view_id: str | None = None
) -> MaterializedDocument:
    """Materialize a document (its current view, or ``view_id``) and type its fields.

    Raises:
        PandanodeError: the operations do not build that view (see
            :func:`pandanode.core.document.materialize`), or a value does not fit the schema.
    """
    document = materialize(
        operations, None if view_id is None else DocumentViewId.from_str(view_id)
    )
    fields = {} if document.fields is None else typed_fields(document.fields, schema)
    return MaterializedDocument(
        document_id=document.document_id,
        view_id=str(document.view_id),
        schema_id=str(schema.id),
        owner=document.owner,
        edited=document.edited,
        deleted=document.deleted,
        fields=fields,
        appendable=view_id is None and open_tip(document) is not None,
    )


def linear_extension(
    view: MaterializedDocument, operations: Iterable[DocumentOperation]
) -> list[DocumentOperation] | None:
    """Order new operations into a line starting at the view's open tip, if they form one.

    Args:
        view: A stored current view.
        operations: Operations of the document that are not folded into ``view``.

    Returns:
        The operations in line order when each extends the tip left by the one before
        (:func:`pandanode.core.document.extends_tip`), else None (a full rebuild is needed).
    """
    if not view.appendable:
        return None
    by_previous: dict[tuple[str, ...], list[DocumentOperation]] = {}
    count = 0
    for op in operations:
        by_previous.setdefault(op.previous, []).append(op)
        count += 1
    line: list[DocumentOperation] = []
    tip, deleted = view.view_id, view.deleted
    while len(line) < count:
        following = by_previous.get((tip,), [])
        if len(following) != 1 or not extends_tip(tip, view.schema_id, deleted, following[0]):
            return None
        op = following[0]
        line.append(op)
        tip, deleted = op.id, op.is_delete
    return line


def fold_into_view(
    view: MaterializedDocument, line: Sequence[DocumentOperation], schema: Schema
) -> MaterializedDocument:
    """The view with a line of operations from :func:`linear_extension` applied on top.

    Equal to :func:`build_view` of all the document's operations (see
    :func:`pandanode.core.document.open_tip` for why).

    Raises:
        PandanodeError: a value does not fit the schema.
    """
    fields = dict(view.fields)
    edited, deleted = view.edited, view.deleted
    for op in line:
        if op.is_delete:
            fields, edited, deleted = {}, True, True
        else:
            fields.update(typed_fields(op.fields, schema))
            edited = edited or bool(op.fields)
    return MaterializedDocument(
        document_id=view.document_id,
        view_id=line[-1].id if line else view.view_id,
        schema_id=view.schema_id,
        owner=view.owner,
        edited=edited,
        deleted=deleted,
        fields=dict(sorted(fields.items())),
        appendable=view.appendable,
    )


def _claimed_schema_id(document_id: str, operations: Sequence[DocumentOperation]) -> str:
    for op in operations:
        if op.id == document_id:
            return op.schema_id
    return operations[0].schema_id


def _operation_pins(operations: Iterable[DocumentOperation], schema: Schema) -> list[str]:
    """The view ids pinned by any of these operations (typed with their document's schema)."""
    pinned_fields = {
        name
        for name, field_type in schema.fields.items()
        if field_type.kind in ("pinned_relation", "pinned_relation_list")
    }
    views: dict[str, None] = {}
    if not pinned_fields:
        return []
    for op in operations:
        plain = {name: value for name, value in op.fields.items() if name in pinned_fields}
        try:
            views.update(dict.fromkeys(pinned_view_ids(typed_fields(plain, schema))))
        except PandanodeError:
            continue
    return list(views)


# -- applying a batch -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Applied:
    """What one committed batch did."""

    checkpoint: int
    changes: list[DocumentChange]
    folded: list[str]


_DOCUMENT, _VIEW, _BLOB = "document", "view", "blob"


class _Engine:
    """The materializer's state between batches, and :meth:`apply`. Used from one thread."""

    def __init__(self, store: QueryStore) -> None:
        self.store = store
        self.registry = SchemaRegistry(decode_schema(data) for data in store.application_schemas())
        self.waiting_for_schema: dict[str, set[str]] = {}
        for document_id, schema_id in store.pending_documents().items():
            if schema_id:
                self.waiting_for_schema.setdefault(schema_id, set()).add(document_id)
        self.views_by_operation: dict[str, set[str]] = {}
        for view_id in store.pending_views():
            for op_id in view_id.split("_"):
                self.views_by_operation.setdefault(op_id, set()).add(view_id)
        self.pending_blobs: dict[str, list[str]] = store.pending_blobs()
        self.blobs_by_piece: dict[str, set[str]] = {}
        for blob_view, missing in self.pending_blobs.items():
            for piece in missing:
                self.blobs_by_piece.setdefault(piece, set()).add(blob_view)
        # Definitions waiting for field definitions are not persisted: find them again.
        batch = store.begin()
        self.registry.refresh(batch, list(store.document_ids(SCHEMA_DEFINITION)))
        store.commit(batch)

    def apply(self, events: Sequence[IngestedEvent], checkpoint: int) -> _Applied:
        """Apply events (all after the stored checkpoint) and commit them with ``checkpoint``."""
        batch = self.store.begin()
        unit = _Unit(self, batch)
        fresh = []
        for event in events:
            if batch.operation(event.operation.operation_id) is None:
                batch.put_operation(event.operation, event.entry, event.decoded)
                fresh.append(event)
                unit.fresh.setdefault(event.operation.document_id, []).append(event.decoded)
        for document_id, sequence in affected_documents(fresh).items():
            unit.queue(_DOCUMENT, document_id, sequence)
        unit.run()
        batch.set_checkpoint(checkpoint)
        self.store.commit(batch)
        return _Applied(checkpoint, unit.changes(), unit.folded)


class _Unit:
    """The work of one batch: a FIFO of tasks, each carrying the stream sequence that caused it."""

    def __init__(self, engine: _Engine, batch: StoreBatch) -> None:
        self.engine = engine
        self.batch = batch
        self.registry = engine.registry
        self.fresh: dict[str, list[DocumentOperation]] = {}
        self.folded: list[str] = []
        self._todo: dict[tuple[str, str], int] = {}
        self._before: dict[str, MaterializedDocument | None] = {}
        self._after: dict[str, tuple[MaterializedDocument, int]] = {}

    def queue(self, kind: str, key: str, sequence: int) -> None:
        """Add a task (a task already waiting keeps its place and the later sequence)."""
        task = (kind, key)
        self._todo[task] = max(sequence, self._todo.get(task, 0))

    def run(self) -> None:
        """Run tasks until none is left."""
        while self._todo:
            task = next(iter(self._todo))
            sequence = self._todo.pop(task)
            kind, key = task
            if kind == _DOCUMENT:
                self._reduce_document(key, sequence)
            elif kind == _VIEW:
                self._reduce_view(key, sequence)
            else:
                self._assemble_blob(key)

    def changes(self) -> list[DocumentChange]:
        """One change per document whose current view changed, in stream order."""
        changes = []
        for document_id, (document, sequence) in self._after.items():
            previous = self._before[document_id]
            kind = change_kind(previous, document)
            if kind is not None:
                changes.append(DocumentChange(kind, document, previous, sequence))
        changes.sort(key=lambda change: change.sequence)
        return changes

    # -- documents --------------------------------------------------------------------------

    def _reduce_document(self, document_id: str, sequence: int) -> None:
        fresh = self.fresh.pop(document_id, [])
        if not fresh or not self._fold_document(document_id, fresh, sequence):
            self._rebuild_document(document_id, sequence)

    def _fold_document(
        self, document_id: str, fresh: list[DocumentOperation], sequence: int
    ) -> bool:
        """Fold new operations into the stored view if they extend it in a line."""
        batch = self.batch
        previous = batch.document(document_id)
        if previous is None or batch.is_pending_document(document_id):
            return False
        line = linear_extension(previous, fresh)
        schema = None if line is None else self.registry.get(previous.schema_id)
        if line is None or schema is None:
            return False
        try:
            document = fold_into_view(previous, line, schema)
        except PandanodeError:
            return False  # the full rebuild reports it
        self._queue_waiting_views(fresh, sequence)
        self._store_document(previous, document, line, schema, sequence)
        return True

    def _rebuild_document(self, document_id: str, sequence: int) -> None:
        batch = self.batch
        operations = batch.document_operations(document_id)
        if not operations:
            return
        self._queue_waiting_views(operations, sequence)
        schema_id = _claimed_schema_id(document_id, operations)
        schema = self._schema(schema_id, sequence)
        if schema is None:
            batch.set_pending_document(document_id, schema_id)
            self.engine.waiting_for_schema.setdefault(schema_id, set()).add(document_id)
            return
        try:
            document = build_view(operations, schema)
        except PandanodeError as err:
            log.debug("document %s does not build (yet): %s", document_id, err)
            batch.set_pending_document(document_id, "")
            return
        batch.set_pending_document(document_id, None)
        previous = batch.document(document_id)
        new_operations = [op for op in operations if not batch.is_folded(op.id)]
        self._store_document(previous, document, new_operations, schema, sequence)

    def _queue_waiting_views(self, operations: Iterable[DocumentOperation], sequence: int) -> None:
        for op in operations:
            for view_id in sorted(self.engine.views_by_operation.get(op.id, ())):
                self.queue(_VIEW, view_id, sequence)

    def _store_document(
        self,
        previous: MaterializedDocument | None,
        document: MaterializedDocument,
        new_operations: Sequence[DocumentOperation],
        schema: Schema,
        sequence: int,
    ) -> None:
        batch = self.batch
        document_id = document.document_id
        if change_kind(previous, document) is None:
            return
        folded = [op.id for op in new_operations]
        batch.put_document(document, new=previous is None, folded=folded)
        self.folded.extend(folded)
        self._before.setdefault(document_id, previous)
        self._after[document_id] = (document, sequence)

        for view_id in _operation_pins(new_operations, schema):
            self.queue(_VIEW, view_id, sequence)
        if schema.id == BLOB_V1.id:
            if previous is not None and not batch.has_pinned_view(previous.view_id):
                self._drop_blob(previous.view_id)
            if is_blob(document):
                self.queue(_BLOB, document.view_id, sequence)
        if document.schema_id in (SCHEMA_DEFINITION, FIELD_DEFINITION):
            for built in self.registry.refresh(batch, [document_id]):
                self._schema_built(str(built.id), sequence)

    def _schema(self, schema_id: str, sequence: int) -> Schema | None:
        schema = self.registry.get(schema_id)
        if schema is None:
            schema = self.registry.resolve(self.batch, schema_id)
            if schema is not None:
                self._schema_built(schema_id, sequence)
        return schema

    def _schema_built(self, schema_id: str, sequence: int) -> None:
        for document_id in sorted(self.engine.waiting_for_schema.pop(schema_id, ())):
            self.queue(_DOCUMENT, document_id, sequence)

    # -- pinned views -----------------------------------------------------------------------

    def _reduce_view(self, view_id: str, sequence: int) -> None:
        batch = self.batch
        if batch.has_pinned_view(view_id):
            self._set_view_pending(view_id, False)
            return
        document = self._build_view(view_id, sequence)
        self._set_view_pending(view_id, document is None)
        if document is None:
            return
        # Only a current view can be appended to; a pinned view is the same wherever it came from.
        batch.put_pinned_view(view_id, dataclasses.replace(document, appendable=False))
        for pinned in pinned_view_ids(document.fields):
            self.queue(_VIEW, pinned, sequence)
        for blob_view in sorted(self.engine.blobs_by_piece.get(view_id, ())):
            self.queue(_BLOB, blob_view, sequence)
        if is_blob(document):
            self.queue(_BLOB, view_id, sequence)

    def _build_view(self, view_id: str, sequence: int) -> MaterializedDocument | None:
        batch = self.batch
        first = batch.operation(view_id.split("_", 1)[0])
        if first is None:
            return None
        current = batch.document(first.document_id)
        if current is not None and current.view_id == view_id:
            return current
        operations = batch.document_operations(first.document_id)
        schema = self._schema(_claimed_schema_id(first.document_id, operations), sequence)
        if schema is None:
            return None
        try:
            return build_view(operations, schema, view_id)
        except PandanodeError as err:
            log.debug("view %s does not build (yet): %s", view_id, err)
            return None

    def _set_view_pending(self, view_id: str, pending: bool) -> None:
        self.batch.set_pending_view(view_id, pending)
        for op_id in view_id.split("_"):
            views = self.engine.views_by_operation.setdefault(op_id, set())
            if pending:
                views.add(view_id)
            else:
                views.discard(view_id)
            if not views:
                del self.engine.views_by_operation[op_id]

    # -- blobs ------------------------------------------------------------------------------

    def _stored_view(self, view_id: str) -> MaterializedDocument | None:
        pinned = self.batch.pinned_view(view_id)
        if pinned is not None:
            return pinned
        document_id = self.batch.operation_document_id(view_id.split("_", 1)[0])
        current = None if document_id is None else self.batch.document(document_id)
        return current if current is not None and current.view_id == view_id else None

    def _assemble_blob(self, view_id: str) -> None:
        batch = self.batch
        blob = self._stored_view(view_id)
        if batch.blob_header(view_id) is not None or blob is None or not is_blob(blob):
            self._set_blob_pending(view_id, None)
            return
        listed = blob_piece_views(blob)
        pieces = {}
        for piece in listed:
            view = batch.pinned_view(piece)
            if view is not None:
                pieces[piece] = view
        missing = [piece for piece in dict.fromkeys(listed) if piece not in pieces]
        self._set_blob_pending(view_id, missing or None)
        if missing:
            return
        try:
            assembled = assemble_blob(blob, [pieces[piece] for piece in listed])
        except InvalidBlobError as err:
            log.info("blob not stored: %s", err)
            return
        batch.put_blob(view_id, assembled.mime_type, assembled.length, assembled.chunks)

    def _drop_blob(self, view_id: str) -> None:
        self.batch.delete_blob(view_id)
        self._set_blob_pending(view_id, None)

    def _set_blob_pending(self, view_id: str, missing: list[str] | None) -> None:
        engine = self.engine
        for piece in engine.pending_blobs.pop(view_id, ()):
            blobs = engine.blobs_by_piece.get(piece, set())
            blobs.discard(view_id)
            if not blobs:
                engine.blobs_by_piece.pop(piece, None)
        if missing is not None:
            engine.pending_blobs[view_id] = missing
            for piece in missing:
                engine.blobs_by_piece.setdefault(piece, set()).add(view_id)
        self.batch.set_pending_blob(view_id, missing)


# -- the service ----------------------------------------------------------------------------


class Blob(NamedTuple):
    """An assembled blob, ready to stream.

    Attributes:
        mime_type: The MIME type its ``blob_v1`` view gives.
        length: Its length in bytes.
        chunks: Its bytes in order, one chunk per piece (read lazily from the store).
        view_id: The ``blob_v1`` view it was assembled from.
    """

    mime_type: str
    length: int
    chunks: Iterator[bytes]
    view_id: str


ChangeListener = Callable[[DocumentChange], None]
"""A callback that receives every change, in stream order, after it is committed."""


def _parse_events(
    messages: Sequence[Delivery], after: int, limit: int
) -> list[tuple[list[IngestedEvent], int]]:
    """The messages after stream sequence ``after``, parsed, in runs of about ``limit`` events.

    Each run is (its events, the stream sequence of its last message); a message is never cut.
    """
    runs: list[tuple[list[IngestedEvent], int]] = []
    events: list[IngestedEvent] = []
    last = after
    for message in messages:
        if message.sequence <= last:
            continue  # a redelivery of something applied already
        if events and len(events) >= limit:
            runs.append((events, last))
            events = []
        last = message.sequence
        try:
            events.extend(IngestedEvent.parse_message(message.sequence, message.payload))
        except Exception:  # a malformed message must not stop the stream
            log.exception("skipping malformed message at stream sequence %d", message.sequence)
    if last > after:
        runs.append((events, last))
    return runs


class Materializer:
    """Keeps the query store up to date with the event stream, and reads it.

    Read methods take ids as lowercase hex (view ids ``_``-joined) and raise ``ValueError``
    for text that is not hex; they read committed data only and are safe to call from the
    event loop while a batch is being applied.

    Args:
        store: The query store (owned by this object once started).
        bus: The event bus.
        durable: The name of the durable consumer; every query replica needs its own.
        batch_size: About how many operations to commit at once (whole messages).
    """

    def __init__(
        self,
        store: QueryStore,
        bus: Bus,
        *,
        durable: str = DEFAULT_DURABLE,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.store = store
        self._bus = bus
        self._durable = durable
        self._batch_size = batch_size
        self._engine: _Engine | None = None
        self._consumer: Consumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._applying = False
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="materializer")
        self._listeners: list[ChangeListener] = []
        self._operation_waiters: dict[str, set[asyncio.Future[None]]] = {}
        # Set while a batch is being applied: its commit is visible in the store before its
        # listeners were called, so waiters hold back until both happened.
        self._in_flight: asyncio.Future[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Position the durable consumer at the checkpoint and start applying events."""
        loop = asyncio.get_running_loop()
        self._engine = await loop.run_in_executor(self._pool, _Engine, self.store)
        self._consumer = await self._subscribe()
        self._task = asyncio.create_task(self._run(), name="query-materializer")

    async def stop(self) -> None:
        """Finish the batch being applied (if any), then stop consuming.

        The durable consumer is deleted too: :meth:`start` re-creates it at the checkpoint
        anyway.
        """
        self._stopping = True
        if self._task is not None:
            if not self._applying:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._unsubscribe()
        self._pool.shutdown(wait=True)

    @property
    def checkpoint(self) -> int:
        """The stream sequence of the last message applied and committed."""
        return self.store.checkpoint()

    @property
    def position(self) -> int:
        """The highest :attr:`IngestedEvent.sequence` the committed checkpoint can cover.

        Every :class:`~.model.DocumentChange` committed so far has a sequence at or below it;
        every later one is above it.
        """
        return (self.store.checkpoint() + 1) * POSITIONS_PER_MESSAGE - 1

    async def _subscribe(self) -> Consumer:
        checkpoint = self.store.checkpoint()
        last = await self._bus.last_sequence()
        if last < checkpoint:
            log.error(
                "the event stream ends at %d, before the query store's checkpoint %d: the "
                "stream was reset; run `pandanode query rebuild`",
                last,
                checkpoint,
            )
        # Whatever JetStream thinks was delivered, resume exactly after the checkpoint.
        return await self._bus.consume(
            OPERATIONS_INGESTED,
            start_sequence=checkpoint + 1,
            durable=self._durable,
            max_pending=2 * self._batch_size,
        )

    async def _unsubscribe(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.close()
            self._consumer = None

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                assert self._consumer is not None
                messages = await self._consumer.take(self._batch_size, _FETCH_TIMEOUT)
                # A batch being applied is finished even when stop() is called meanwhile.
                self._applying = True
                try:
                    await self._handle(messages)
                finally:
                    self._applying = False
                backoff = 0.1
            except TimeoutError:
                continue  # no events for a while
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("materializing failed; resuming from the checkpoint")
                await asyncio.sleep(backoff)  # back off before retrying NATS / the store
                backoff = min(backoff * 2, 5.0)
                with contextlib.suppress(Exception):
                    await self._restart()

    async def _restart(self) -> None:
        """Reload the state from the store and re-create the consumer at the checkpoint."""
        loop = asyncio.get_running_loop()
        await self._unsubscribe()
        self._engine = await loop.run_in_executor(self._pool, _Engine, self.store)
        self._consumer = await self._subscribe()

    async def _handle(self, messages: Sequence[Delivery]) -> None:
        assert self._engine is not None and self._consumer is not None
        loop = asyncio.get_running_loop()
        for events, last in _parse_events(messages, self.store.checkpoint(), self._batch_size):
            self._in_flight = loop.create_future()
            try:
                applied = await loop.run_in_executor(self._pool, self._engine.apply, events, last)
                self._notify(applied)
            finally:
                self._in_flight.set_result(None)
                self._in_flight = None
        if messages:
            await self._consumer.ack(messages[-1])  # acknowledges every message up to it

    # -- notifications ----------------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` with every change from now on, in stream order, once each.

        It is called in the event loop right after the change is committed; it must not block
        (hand the change to a queue). Exceptions it raises are logged and ignored.

        Returns:
            A function that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _notify(self, applied: _Applied) -> None:
        for change in applied.changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:
                    log.exception("a change listener failed")
        if not self._operation_waiters:
            return
        for op_id in applied.folded:
            for future in self._operation_waiters.get(op_id, ()):
                if not future.done():
                    future.set_result(None)

    async def wait_for_operation(self, operation_id: str, timeout: float) -> bool:
        """Wait until an operation is materialized (folded into its document's current view).

        Listeners have been called with the change by the time this returns True.

        Returns:
            True once it is (at once if it is already), False after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        in_flight = self._in_flight
        if in_flight is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(in_flight), timeout)
        if self.is_operation_materialized(operation_id):
            return True
        timeout = max(0.0, deadline - loop.time())
        future: asyncio.Future[None] = loop.create_future()
        waiters = self._operation_waiters.setdefault(operation_id, set())
        waiters.add(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters.discard(future)
            if not waiters and self._operation_waiters.get(operation_id) is waiters:
                del self._operation_waiters[operation_id]

    async def wait_for_view(self, view_id: str, timeout: float) -> bool:
        """Wait until a document view is materialized: every operation of it is.

        A view stored because a pinned relation names it counts as materialized too.

        Returns:
            True once it is, False after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.store.has_pinned_view(view_id):
            return True
        for operation_id in view_id.split("_"):
            if not await self.wait_for_operation(operation_id, max(0.0, deadline - loop.time())):
                return False
        return True

    # -- reads ------------------------------------------------------------------------------

    def is_operation_materialized(self, operation_id: str) -> bool:
        """Whether an operation is folded into the stored current view of its document."""
        return self.store.is_folded(operation_id)

    def document(self, document_id: str) -> MaterializedDocument | None:
        """The current view of a document (also when deleted); None if not materialized."""
        return self.store.document(document_id)

    def view(self, view_id: str) -> MaterializedDocument | None:
        """One view of a document, by view id.

        A pinned view or the current view is read from the store. Any other view of a
        document whose current view has folded in all of the view's operations is built on
        demand from the stored operations (``materialize`` to that view id, spec §6.4).

        Returns:
            The view (its ``view_id`` is the one p2panda computes, which for a view id whose
            operations are ancestors of one another names only the latest), or None.
        """
        pinned = self.store.pinned_view(view_id)
        if pinned is not None:
            return pinned
        ids = view_id.split("_")
        document_id = self.store.operation_document_id(ids[0])
        current = None if document_id is None else self.store.document(document_id)
        if current is None or not all(
            self.store.is_folded(op_id) and self.store.operation_document_id(op_id) == document_id
            for op_id in ids
        ):
            return None
        if current.view_id == view_id:
            return current
        schema = self.schema(current.schema_id)
        if schema is None:  # pragma: no cover - a materialized document has its schema
            return None
        try:
            return build_view(self.store.document_operations(current.document_id), schema, view_id)
        except PandanodeError:
            return None

    def documents(self, schema_id: str) -> Iterator[MaterializedDocument]:
        """The current views of every document of a schema, deleted ones too, by document id."""
        return self.store.documents(schema_id)

    def schema(self, schema_id: str) -> Schema | None:
        """A system schema or a built application schema."""
        assert self._engine is not None, "the materializer is not started"
        return self._engine.registry.get(schema_id)

    def schemas(self) -> list[Schema]:
        """The four system schemas and every built application schema, by schema id."""
        assert self._engine is not None, "the materializer is not started"
        schemas = [*SYSTEM_SCHEMAS.values(), *self._engine.registry.application_schemas()]
        return sorted(schemas, key=lambda schema: str(schema.id))

    def blob(self, *, document_id: str = "", view_id: str = "") -> Blob | None:
        """An assembled blob, by the ``blob_v1`` document (its current view) or by view id.

        Returns:
            The blob, or None when unknown, not a blob, or its pieces are not all stored.
        """
        if document_id:
            document = self.store.document(document_id)
            if document is None:
                return None
            view_id = document.view_id
        header = self.store.blob_header(view_id) if view_id else None
        if header is None:
            return None
        return Blob(
            header.mime_type, header.length, self._chunks(view_id, header.chunk_count), view_id
        )

    def _chunks(self, view_id: str, count: int) -> Iterator[bytes]:
        for index in range(count):
            chunk = self.store.blob_chunk(view_id, index)
            if chunk is None:
                raise LookupError(f"blob {view_id} was removed while it was being read")
            yield chunk

    def entries(self, public_key: str, log_id: int, from_seq_num: int = 1) -> Iterator[StoredEntry]:
        """The raw entries of one log with their operations, in seq num order."""
        return self.store.entries(public_key, log_id, from_seq_num)


# -- rebuild --------------------------------------------------------------------------------


async def rebuild(path: Path, bus: Bus, *, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Wipe the query store at ``path`` and re-apply the whole event stream from sequence 1.

    Uses a temporary consumer of its own; a durable consumer of a query service re-positions
    itself at the rebuilt checkpoint when the service starts. The store must not be in use.

    Returns:
        How many operations were applied.

    Raises:
        Exception: the store is in use by another process (RocksDB's lock), or NATS failed.
    """
    QueryStore(path).close()  # fails while a running service holds the store
    QueryStore.destroy(path)
    store = QueryStore(path)
    consumer = None
    try:
        engine = await asyncio.to_thread(_Engine, store)
        target = await bus.last_sequence(OPERATIONS_INGESTED)
        applied = 0
        if target == 0:
            return 0
        consumer = await bus.consume(OPERATIONS_INGESTED, start_sequence=1, max_pending=batch_size)
        while store.checkpoint() < target:
            messages = await consumer.take(batch_size, timeout=_FETCH_TIMEOUT)
            for events, last in _parse_events(messages, store.checkpoint(), batch_size):
                await asyncio.to_thread(engine.apply, events, last)
                applied += len(events)
            if messages:
                await consumer.ack(messages[-1])
        return applied
    finally:
        if consumer is not None:
            await consumer.close()
        store.close()
