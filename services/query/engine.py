"""The materializer's batch engine: applies a run of ingested operations in one write batch.

Applying a batch works like aquadoggo's task queue (spec §6.5), run to completion inside the
batch (:class:`UnitOfWork`, one per batch, with tasks of the kinds of :class:`TaskKind`):

- *document* — store the new operations and bring the document's current view up to date:
  folded when the new operations extend the stored view in a line, else rebuilt from **all**
  its operations (:mod:`.views`). The view is stored when its view id changed. A document whose
  schema is not built yet, or whose operations do not build a document yet, stays pending and
  is re-tried when the schema is built or another operation of it arrives.
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
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pandanode.core.document import DocumentOperation
from pandanode.core.errors import PandanodeError
from pandanode.core.schema import BLOB_V1, Schema
from pandanode.services.runtime.schemas import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    SchemaRegistry,
    decode_schema,
)

from .blobs import InvalidBlobError, assemble_blob, blob_piece_views, is_blob
from .ingested import IngestedEvent
from .model import DocumentChange, MaterializedDocument
from .store import QueryStore, StoreBatch
from .views import (
    affected_documents,
    build_view,
    change_kind,
    claimed_schema_id,
    create_view,
    fold_into_view,
    linear_extension,
    operation_pins,
    pinned_view_ids,
)

__all__ = ["Applied", "Engine", "TaskKind", "UnitOfWork"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one committed batch did.

    Attributes:
        checkpoint: The stream sequence committed with it.
        changes: One change per document whose current view changed, in stream order.
        folded: The operations folded into current views.
    """

    checkpoint: int
    changes: list[DocumentChange]
    folded: list[str]


class TaskKind(enum.Enum):
    """What a task of a :class:`UnitOfWork` brings up to date."""

    DOCUMENT = "document"
    """A document's current view (its key: the document id)."""
    VIEW = "view"
    """A view named by a pinned relation (its key: the view id)."""
    BLOB = "blob"
    """An assembled blob (its key: the ``blob_v1`` view id)."""


class Engine:
    """The materializer's state between batches, and :meth:`apply`. Used from one thread.

    Args:
        store: The query store; the state is loaded from it.
    """

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

    def apply(self, events: Sequence[IngestedEvent], checkpoint: int) -> Applied:
        """Apply events (all after the stored checkpoint) and commit them with ``checkpoint``."""
        batch = self.store.begin()
        unit = UnitOfWork(self, batch)
        fresh = []
        # A re-published operation (an outbox re-send after a crash) is stored already.
        seen = batch.stored_operations([event.operation.operation_id for event in events])
        for event in events:
            if event.operation.operation_id not in seen:
                seen.add(event.operation.operation_id)
                batch.put_operation(event.operation, event.entry, event.decoded)
                fresh.append(event)
                unit.fresh.setdefault(event.operation.document_id, []).append(event.decoded)
        for document_id, sequence in affected_documents(fresh).items():
            unit.queue(TaskKind.DOCUMENT, document_id, sequence)
        unit.run()
        batch.set_checkpoint(checkpoint)
        self.store.commit(batch)
        return Applied(checkpoint, unit.changes(), unit.folded)


class UnitOfWork:
    """The work of one batch: a FIFO of tasks, each carrying the stream sequence that caused it.

    Args:
        engine: The engine whose state the tasks update.
        batch: The write batch the tasks write to.
    """

    def __init__(self, engine: Engine, batch: StoreBatch) -> None:
        self.engine = engine
        self.batch = batch
        self.registry = engine.registry
        self.fresh: dict[str, list[DocumentOperation]] = {}
        self.folded: list[str] = []
        self._todo: dict[tuple[TaskKind, str], int] = {}
        self._before: dict[str, MaterializedDocument | None] = {}
        self._after: dict[str, tuple[MaterializedDocument, int]] = {}

    def queue(self, kind: TaskKind, key: str, sequence: int) -> None:
        """Add a task (a task already waiting keeps its place and the later sequence)."""
        task = (kind, key)
        self._todo[task] = max(sequence, self._todo.get(task, 0))

    def run(self) -> None:
        """Run tasks until none is left."""
        while self._todo:
            task = next(iter(self._todo))
            sequence = self._todo.pop(task)
            kind, key = task
            if kind is TaskKind.DOCUMENT:
                self._reduce_document(key, sequence)
            elif kind is TaskKind.VIEW:
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
        if batch.is_pending_document(document_id):
            return False
        previous = batch.document(document_id)
        if previous is None:
            return self._create_document(document_id, fresh, sequence)
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

    def _create_document(
        self, document_id: str, fresh: list[DocumentOperation], sequence: int
    ) -> bool:
        """Build a new document from its CREATE and fold the batch's other operations on top.

        A document with neither a current view nor a pending mark has no stored operations
        (storing one either materializes its document or marks it pending), so ``fresh`` is
        all of them. When they are the CREATE and a line on top of it, folding gives the view
        a full build would, without walking the whole graph; anything else is rebuilt.
        """
        create = next((op for op in fresh if op.id == document_id and op.is_create), None)
        schema = None if create is None else self.registry.get(create.schema_id)
        if create is None or schema is None:
            return False
        try:
            base = create_view(create, schema)
            line = linear_extension(base, [op for op in fresh if op is not create])
            if line is None:
                return False
            document = fold_into_view(base, line, schema) if line else base
        except PandanodeError:
            return False  # the full rebuild reports it
        self._queue_waiting_views(fresh, sequence)
        self._store_document(None, document, fresh, schema, sequence)
        return True

    def _rebuild_document(self, document_id: str, sequence: int) -> None:
        batch = self.batch
        operations = batch.document_operations(document_id)
        if not operations:
            return
        self._queue_waiting_views(operations, sequence)
        schema_id = claimed_schema_id(document_id, operations)
        schema = self._schema(schema_id, sequence)
        if schema is None:
            batch.set_pending_document(document_id, schema_id)
            self.engine.waiting_for_schema.setdefault(schema_id, set()).add(document_id)
            return
        try:
            document = build_view(operations, schema)
        except PandanodeError as err:
            log.debug(
                "document %s does not build (yet): %s",
                document_id,
                err,
                extra={"document_id": document_id, "reason": err.reason.value},
            )
            batch.set_pending_document(document_id, "")
            return
        batch.set_pending_document(document_id, None)
        previous = batch.document(document_id)
        new_operations = [op for op in operations if not batch.is_folded(op.id)]
        self._store_document(previous, document, new_operations, schema, sequence)

    def _queue_waiting_views(self, operations: Iterable[DocumentOperation], sequence: int) -> None:
        for op in operations:
            for view_id in sorted(self.engine.views_by_operation.get(op.id, ())):
                self.queue(TaskKind.VIEW, view_id, sequence)

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

        for view_id in operation_pins(new_operations, schema):
            self.queue(TaskKind.VIEW, view_id, sequence)
        if schema.id == BLOB_V1.id:
            if previous is not None and not batch.has_pinned_view(previous.view_id):
                self._drop_blob(previous.view_id)
            if is_blob(document):
                self.queue(TaskKind.BLOB, document.view_id, sequence)
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
            self.queue(TaskKind.DOCUMENT, document_id, sequence)

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
            self.queue(TaskKind.VIEW, pinned, sequence)
        for blob_view in sorted(self.engine.blobs_by_piece.get(view_id, ())):
            self.queue(TaskKind.BLOB, blob_view, sequence)
        if is_blob(document):
            self.queue(TaskKind.BLOB, view_id, sequence)

    def _build_view(self, view_id: str, sequence: int) -> MaterializedDocument | None:
        batch = self.batch
        first = batch.operation(view_id.split("_", 1)[0])
        if first is None:
            return None
        current = batch.document(first.document_id)
        if current is not None and current.view_id == view_id:
            return current
        operations = batch.document_operations(first.document_id)
        schema = self._schema(claimed_schema_id(first.document_id, operations), sequence)
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
