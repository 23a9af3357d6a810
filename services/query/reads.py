"""Reads of the committed query store that take more than one lookup: views, blobs, schemas.

The query use cases (:class:`~.service.Query`) read the store directly; these functions hold
the reads that combine records. They take ids as lowercase hex (view ids ``_``-joined), read
committed data only, and are safe to call from the event loop while the materializer applies a
batch, and from worker threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from pandanode.core.errors import PandanodeError
from pandanode.core.schema import SYSTEM_SCHEMAS, Schema, system_schema
from pandanode.services.runtime.schemas import decode_schema

from .model import MaterializedDocument
from .store import QueryStore
from .views import build_view

__all__ = ["Blob", "StoredSchemas", "read_blob", "read_view"]


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


class StoredSchemas:
    """The system schemas and the application schemas the materializer has committed.

    A schema id names one definition view, so a stored schema never changes: each is decoded
    once and kept.

    Args:
        store: The query store.
    """

    def __init__(self, store: QueryStore) -> None:
        self._store = store
        self._decoded: dict[str, Schema] = {}

    def get(self, schema_id: str) -> Schema | None:
        """A system schema or a built application schema; None when not known (yet)."""
        schema = self._decoded.get(schema_id)
        if schema is not None:
            return schema
        try:
            schema = system_schema(schema_id)
        except PandanodeError:
            return None
        if schema is not None:
            return schema
        data = self._store.application_schema(schema_id)
        if data is None:
            return None
        schema = decode_schema(data)
        self._decoded[schema_id] = schema
        return schema

    def all(self) -> list[Schema]:
        """The four system schemas and every built application schema, by schema id."""
        built = [self.get(schema_id) for schema_id in self._store.application_schema_ids()]
        schemas = [*SYSTEM_SCHEMAS.values(), *(schema for schema in built if schema is not None)]
        return sorted(schemas, key=lambda schema: str(schema.id))


def read_view(
    store: QueryStore, schemas: StoredSchemas, view_id: str
) -> MaterializedDocument | None:
    """One view of a document, by view id.

    A pinned view or the current view is read from the store. Any other view of a document
    whose current view has folded in all of the view's operations is built on demand from the
    stored operations (``materialize`` to that view id, spec §6.4).

    Returns:
        The view (its ``view_id`` is the one p2panda computes, which for a view id whose
        operations are ancestors of one another names only the latest), or None.
    """
    pinned = store.pinned_view(view_id)
    if pinned is not None:
        return pinned
    ids = view_id.split("_")
    document_id = store.operation_document_id(ids[0])
    current = None if document_id is None else store.document(document_id)
    if current is None or not all(
        store.is_folded(op_id) and store.operation_document_id(op_id) == document_id
        for op_id in ids
    ):
        return None
    if current.view_id == view_id:
        return current
    schema = schemas.get(current.schema_id)
    if schema is None:  # pragma: no cover - a materialized document has its schema
        return None
    try:
        return build_view(store.document_operations(current.document_id), schema, view_id)
    except PandanodeError:
        return None


def read_blob(store: QueryStore, *, document_id: str = "", view_id: str = "") -> Blob | None:
    """An assembled blob, by the ``blob_v1`` document (its current view) or by view id.

    Returns:
        The blob, or None when unknown, not a blob, or its pieces are not all stored.
    """
    if document_id:
        document = store.document(document_id)
        if document is None:
            return None
        view_id = document.view_id
    header = store.blob_header(view_id) if view_id else None
    if header is None:
        return None
    return Blob(
        header.mime_type, header.length, _chunks(store, view_id, header.chunk_count), view_id
    )


def _chunks(store: QueryStore, view_id: str, count: int) -> Iterator[bytes]:
    for index in range(count):
        chunk = store.blob_chunk(view_id, index)
        if chunk is None:
            raise LookupError(f"blob {view_id} was removed while it was being read")
        yield chunk
