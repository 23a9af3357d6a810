"""The catalog: one :class:`SchemaIndex` per schema, and documents routed to theirs."""

from __future__ import annotations

from pandanode.core.errors import Reason, quote
from pandanode.core.schema import Schema
from pandanode.services.runtime.errors import ResourceNotFoundError

from ..model import DocumentChange, MaterializedDocument
from .changelog import DEFAULT_CHANGE_LOG_BYTES
from .index import MAX_PAGE_SIZE, SchemaIndex
from .tokens import PageTokens

__all__ = ["Catalog"]


class Catalog:
    """One :class:`SchemaIndex` per schema, and documents routed to theirs.

    Args:
        max_page_size: The largest page of every index.
        token_secret: The node's secret that authenticates its page tokens (at least 16
            bytes); None: a random secret of this process.
        change_log_bytes: The byte budget of each index's change log (see
            :class:`~.changelog.ChangeLog`).
    """

    def __init__(
        self,
        *,
        max_page_size: int = MAX_PAGE_SIZE,
        token_secret: bytes | None = None,
        change_log_bytes: int = DEFAULT_CHANGE_LOG_BYTES,
    ) -> None:
        self._max_page_size = max_page_size
        self._tokens = PageTokens(token_secret)
        self._change_log_bytes = change_log_bytes
        self._indexes: dict[str, SchemaIndex] = {}
        self._schema_of: dict[str, str] = {}

    def add_schema(self, schema: Schema) -> SchemaIndex:
        """Return the index of a schema, creating an empty one if it has none yet."""
        schema_id = str(schema.id)
        index = self._indexes.get(schema_id)
        if index is None:
            index = SchemaIndex(
                schema,
                max_page_size=self._max_page_size,
                tokens=self._tokens,
                change_log_bytes=self._change_log_bytes,
            )
            self._indexes[schema_id] = index
        return index

    def get(self, schema_id: str) -> SchemaIndex | None:
        """Return the index of a schema id, or None."""
        return self._indexes.get(schema_id)

    def index(self, schema_id: str) -> SchemaIndex:
        """Return the index of a schema id.

        Raises:
            ResourceNotFoundError: reason ``SCHEMA_NOT_FOUND`` when the schema is unknown.
        """
        index = self._indexes.get(schema_id)
        if index is None:
            raise ResourceNotFoundError(
                f"unknown schema {quote(schema_id)}", Reason.SCHEMA_NOT_FOUND
            ).about(schema_id=schema_id)
        return index

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self._indexes

    def schemas(self) -> tuple[Schema, ...]:
        """Return the schemas that have an index, in the order they were added."""
        return tuple(index.schema for index in self._indexes.values())

    def get_document(self, document_id: str) -> MaterializedDocument | None:
        """Return a document's current view by its id, whatever its schema; None if unknown."""
        schema_id = self._schema_of.get(document_id)
        return None if schema_id is None else self._indexes[schema_id].get(document_id)

    def upsert(self, document: MaterializedDocument) -> MaterializedDocument | None:
        """Add or replace a document in the index of its schema; return the view it replaced.

        Raises:
            ResourceNotFoundError: The document's schema has no index yet.
            ValueError: See :meth:`SchemaIndex.upsert`.
        """
        previous = self.index(document.schema_id).upsert(document)
        self._schema_of[document.document_id] = document.schema_id
        return previous

    def apply(self, change: DocumentChange) -> None:
        """Apply a change from the materializer (the new view replaces the previous one)."""
        self.upsert(change.document)

    def remove(self, document_id: str) -> MaterializedDocument | None:
        """Forget a document; return its last view, or None if it was unknown."""
        schema_id = self._schema_of.pop(document_id, None)
        return None if schema_id is None else self._indexes[schema_id].remove(document_id)
