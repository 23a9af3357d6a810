"""The schema registry of ingest: system schemas plus every application schema it can build.

An application schema comes into existence when its ``schema_definition_v1`` document and every
pinned ``schema_field_definition_v1`` view are stored (spec §5.5). The registry builds it at
once, inside the writer, so the very next publish can use it. Built schemas are persisted in the
log store and loaded at start; definitions still waiting for a field definition are re-tried
whenever a field definition arrives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from pandanode.core.document import Document, DocumentOperation, materialize
from pandanode.core.errors import PandanodeError
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import decode_operation
from pandanode.core.schema import FieldType, Schema, SchemaId, build_schema, system_schema

from .store import LogStore

__all__ = ["FIELD_DEFINITION", "SCHEMA_DEFINITION", "SchemaRegistry"]

SCHEMA_DEFINITION = "schema_definition_v1"
FIELD_DEFINITION = "schema_field_definition_v1"

log = logging.getLogger(__name__)


def _to_json(schema: Schema) -> bytes:
    return json.dumps(
        {
            "id": str(schema.id),
            "description": schema.description,
            "fields": [[name, str(field_type)] for name, field_type in schema.fields.items()],
        }
    ).encode()


def _from_json(data: bytes) -> Schema:
    value = json.loads(data)
    return Schema(
        SchemaId.from_str(value["id"]),
        value["description"],
        {name: FieldType.from_str(type_text) for name, type_text in value["fields"]},
    )


class SchemaRegistry:
    """Looks up schemas by id and builds application schemas from stored definitions."""

    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._schemas: dict[str, Schema] = {}
        self._pending: set[str] = set()
        for schema_id, data in store.application_schemas():
            self._schemas[schema_id] = _from_json(data)
        definitions = {
            log_.document_id for log_ in store.logs() if log_.schema_id == SCHEMA_DEFINITION
        }
        self.refresh(definitions)

    def get(self, schema_id: str) -> Schema | None:
        """Return the schema with this id, system or application, if known."""
        schema = self._schemas.get(schema_id)
        if schema is not None:
            return schema
        try:
            return system_schema(schema_id)
        except PandanodeError:
            return None

    def application_schemas(self) -> list[Schema]:
        """Every application schema built so far."""
        return list(self._schemas.values())

    def refresh(self, document_ids: Iterable[str]) -> list[Schema]:
        """Re-examine schema and field definition documents that just changed.

        Returns:
            The schemas built by this call.
        """
        built: list[Schema] = []
        retry_pending = False
        for document_id in document_ids:
            schema_id = self._store.document_schema_id(document_id)
            if schema_id == SCHEMA_DEFINITION:
                self._pending.add(document_id)
            elif schema_id == FIELD_DEFINITION:
                retry_pending = True
            retry_pending = retry_pending or schema_id == SCHEMA_DEFINITION
        if retry_pending:
            for document_id in sorted(self._pending):
                schema = self._try_build(document_id)
                if schema is not None:
                    built.append(schema)
        return built

    def _document(self, document_id: str, view_id: DocumentViewId | None = None) -> Document:
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
        return materialize(operations, view_id)

    def _try_build(self, definition_id: str) -> Schema | None:
        try:
            definition = self._document(definition_id)
        except PandanodeError as err:
            log.debug("schema definition %s not buildable yet: %s", definition_id, err)
            return None
        if definition.deleted or definition.fields is None:
            self._pending.discard(definition_id)
            return None
        field_views: dict[str, dict[str, object]] = {}
        listed = definition.fields.get("fields")
        for view in listed if isinstance(listed, tuple) else ():
            if not isinstance(view, tuple) or not view:
                continue
            try:
                view_id = DocumentViewId(tuple(str(op_id) for op_id in view))
                ref = self._store.operation_ref(view_id.ids[0])
                if ref is None:
                    return None  # a field definition is still missing: stay pending
                field_view = self._document(ref.document_id, view_id)
            except PandanodeError:
                return None
            if field_view.fields is not None:
                field_views[str(view_id)] = dict(field_view.fields)
        try:
            schema = build_schema(definition.view_id, dict(definition.fields), field_views)
        except PandanodeError as err:
            log.info("schema definition %s is invalid: %s", definition.view_id, err.message)
            self._pending.discard(definition_id)
            return None
        self._pending.discard(definition_id)
        schema_id = str(schema.id)
        if schema_id not in self._schemas:
            self._store.put_schema(schema_id, _to_json(schema))
            self._schemas[schema_id] = schema
            log.info("built schema %s", schema_id)
        return schema
