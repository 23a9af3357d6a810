"""The schema registry of ingest, over its log store.

Ingest builds a schema at once, inside the writer, so the very next publish can use it (see
:mod:`pandanode.services.runtime.schemas`). Built schemas are persisted in the log store and
loaded at start; definitions still waiting for a field definition are re-tried whenever a field
definition arrives.
"""

from __future__ import annotations

from collections.abc import Iterable

from pandanode.core.document import DocumentOperation
from pandanode.core.operation import decode_operation
from pandanode.core.schema import Schema
from pandanode.services.runtime.schemas import (
    FIELD_DEFINITION,
    SCHEMA_DEFINITION,
    decode_schema,
)
from pandanode.services.runtime.schemas import SchemaRegistry as _Registry

from .store import LogStore

__all__ = ["FIELD_DEFINITION", "SCHEMA_DEFINITION", "SchemaRegistry"]


class _LogStoreSchemas:
    """The :class:`~pandanode.services.runtime.schemas.SchemaStore` of ingest."""

    def __init__(self, store: LogStore) -> None:
        self._store = store

    def document_operations(self, document_id: str) -> list[DocumentOperation]:
        operations = []
        for op_id in self._store.document_operation_ids(document_id):
            ref = self._store.operation_ref(op_id)
            stored = (
                None if ref is None else self._store.entry(ref.public_key, ref.log_id, ref.seq_num)
            )
            if stored is None:  # pragma: no cover - the indexes are written atomically
                raise LookupError(f"operation {op_id} is indexed but not stored")
            operations.append(
                DocumentOperation(op_id, stored.public_key, decode_operation(stored.operation))
            )
        return operations

    def operation_document_id(self, operation_id: str) -> str | None:
        ref = self._store.operation_ref(operation_id)
        return None if ref is None else ref.document_id

    def document_schema_id(self, document_id: str) -> str | None:
        return self._store.document_schema_id(document_id)

    def put_schema(self, schema_id: str, data: bytes) -> None:
        self._store.put_schema(schema_id, data)


class SchemaRegistry:
    """Looks up schemas by id and builds application schemas from the log store's definitions."""

    def __init__(self, store: LogStore) -> None:
        self._source = _LogStoreSchemas(store)
        self._registry = _Registry(decode_schema(data) for _, data in store.application_schemas())
        definitions = {
            log_.document_id for log_ in store.logs() if log_.schema_id == SCHEMA_DEFINITION
        }
        self.refresh(definitions)

    def get(self, schema_id: str) -> Schema | None:
        """Return the schema with this id, system or application, if known."""
        return self._registry.get(schema_id)

    def application_schemas(self) -> list[Schema]:
        """Every application schema built so far."""
        return self._registry.application_schemas()

    def refresh(self, document_ids: Iterable[str]) -> list[Schema]:
        """Re-examine schema and field definition documents that just changed.

        Returns:
            The schemas built by this call.
        """
        return self._registry.refresh(self._source, document_ids)
