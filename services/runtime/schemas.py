"""The schema registry: the system schemas plus every application schema that can be built.

An application schema comes into existence when its ``schema_definition_v1`` document and every
pinned ``schema_field_definition_v1`` view are stored (spec §5.5). Ingest and query both keep a
registry; neither owns the other's store, so the registry reads and writes through a small
:class:`SchemaStore` that each service implements over its own RocksDB (query passes its open
write batch, so schemas are persisted atomically with the documents that made them).

Like aquadoggo, :meth:`SchemaRegistry.refresh` builds a schema from the *current* view of a
definition whenever a definition or a field definition changes. :meth:`SchemaRegistry.resolve`
additionally builds one schema id from the very definition view it names, which makes the
result independent of when definitions were seen (the query service relies on that to give the
same views however the event stream is batched).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from pandanode.core.document import Document, DocumentOperation, materialize
from pandanode.core.errors import PandanodeError
from pandanode.core.ids import DocumentViewId
from pandanode.core.schema import (
    SCHEMA_DEFINITION_V1_ID,
    SCHEMA_FIELD_DEFINITION_V1_ID,
    FieldType,
    Schema,
    SchemaId,
    build_schema,
    system_schema,
)
from pandanode.core.schema_id import parse_schema_id

__all__ = [
    "FIELD_DEFINITION",
    "SCHEMA_DEFINITION",
    "SchemaRegistry",
    "SchemaStore",
    "decode_schema",
    "encode_schema",
]

SCHEMA_DEFINITION: Final = SCHEMA_DEFINITION_V1_ID
FIELD_DEFINITION: Final = SCHEMA_FIELD_DEFINITION_V1_ID

log = logging.getLogger(__name__)


class SchemaStore(Protocol):
    """What the registry needs from a service's store."""

    def document_operations(self, document_id: str) -> Sequence[DocumentOperation]:
        """Every stored operation of a document (any order; empty when unknown)."""
        ...

    def operation_document_id(self, operation_id: str) -> str | None:
        """The document a stored operation belongs to; None when the operation is unknown."""
        ...

    def document_schema_id(self, document_id: str) -> str | None:
        """The schema id of a stored document; None when unknown."""
        ...

    def put_schema(self, schema_id: str, data: bytes) -> None:
        """Persist a built application schema (``data`` from :func:`encode_schema`)."""
        ...


def encode_schema(schema: Schema) -> bytes:
    """Serialize a schema (JSON: id, description and ``[name, type]`` pairs)."""
    return json.dumps(
        {
            "id": str(schema.id),
            "description": schema.description,
            "fields": [[name, str(field_type)] for name, field_type in schema.fields.items()],
        }
    ).encode()


def decode_schema(data: bytes) -> Schema:
    """Read a schema written by :func:`encode_schema`."""
    value = json.loads(data)
    return Schema(
        SchemaId.from_str(value["id"]),
        value["description"],
        {name: FieldType.from_str(type_text) for name, type_text in value["fields"]},
    )


class SchemaRegistry:
    """Looks up schemas by id and builds application schemas from stored definitions.

    Args:
        schemas: Application schemas built before (loaded from the store).
    """

    def __init__(self, schemas: Iterable[Schema] = ()) -> None:
        self._schemas: dict[str, Schema] = {str(schema.id): schema for schema in schemas}
        self._pending: set[str] = set()  # definitions waiting for a field definition

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

    def refresh(self, store: SchemaStore, document_ids: Iterable[str]) -> list[Schema]:
        """Re-examine schema and field definition documents that just changed.

        A changed definition is (re-)built from its current view; a changed field definition
        re-tries every definition that is still waiting for one.

        Returns:
            The schemas built by this call (including ones that were known already).
        """
        retry = False
        for document_id in document_ids:
            schema_id = store.document_schema_id(document_id)
            if schema_id == SCHEMA_DEFINITION:
                self._pending.add(document_id)
            retry = retry or schema_id in (SCHEMA_DEFINITION, FIELD_DEFINITION)
        built: list[Schema] = []
        if retry:
            for document_id in sorted(self._pending):
                schema = self._build_current(store, document_id)
                if schema is not None:
                    built.append(schema)
        return built

    def resolve(self, store: SchemaStore, schema_id: str) -> Schema | None:
        """Return a schema, building an application schema from the view its id names.

        ``<name>_<view id>`` is built from exactly that view of its definition document (and
        the field definition views it pins), even when the document has moved on since.

        Returns:
            The schema, or None when the id does not parse or its definition cannot be built
            (yet).
        """
        known = self.get(schema_id)
        if known is not None:
            return known
        try:
            parsed = parse_schema_id(schema_id)
        except PandanodeError:
            return None
        if parsed.view_id is None:
            return None
        document_id = store.operation_document_id(parsed.view_id.ids[0])
        if document_id is None or store.document_schema_id(document_id) != SCHEMA_DEFINITION:
            return None
        try:
            definition = _document(store, document_id, parsed.view_id)
        except PandanodeError as err:
            log.debug("schema definition view %s not buildable yet: %s", parsed.view_id, err)
            return None
        field_views = _field_views(store, definition)
        if field_views is None:
            return None
        schema = self._build(store, definition, field_views)
        return schema if schema is not None and schema.id == parsed else None

    def _build_current(self, store: SchemaStore, definition_id: str) -> Schema | None:
        try:
            definition = _document(store, definition_id)
        except PandanodeError as err:
            log.debug("schema definition %s not buildable yet: %s", definition_id, err)
            return None
        field_views = None if definition.deleted else _field_views(store, definition)
        if field_views is None and not definition.deleted:
            return None  # a field definition is still missing: stay pending
        self._pending.discard(definition_id)
        return None if field_views is None else self._build(store, definition, field_views)

    def _build(
        self, store: SchemaStore, definition: Document, field_views: dict[str, dict[str, object]]
    ) -> Schema | None:
        """Build (and persist, when new) the schema a definition view defines."""
        if definition.fields is None:
            return None
        try:
            schema = build_schema(definition.view_id, dict(definition.fields), field_views)
        except PandanodeError as err:
            log.info("schema definition %s is invalid: %s", definition.view_id, err.message)
            return None
        schema_id = str(schema.id)
        if schema_id not in self._schemas:
            store.put_schema(schema_id, encode_schema(schema))
            self._schemas[schema_id] = schema
            log.info("built schema %s", schema_id)
        return schema


def _document(
    store: SchemaStore, document_id: str, view_id: DocumentViewId | None = None
) -> Document:
    return materialize(store.document_operations(document_id), view_id)


def _field_views(store: SchemaStore, definition: Document) -> dict[str, dict[str, object]] | None:
    """The field definition views a definition pins, by view id; None while one is missing.

    Malformed items of ``fields`` are left out here; :func:`build_schema` reports them.
    """
    listed = (definition.fields or {}).get("fields")
    field_views: dict[str, dict[str, object]] = {}
    for view in listed if isinstance(listed, tuple) else ():
        if not isinstance(view, tuple) or not view:
            continue
        try:
            view_id = DocumentViewId(tuple(str(op_id) for op_id in view))
        except PandanodeError:
            continue
        document_id = store.operation_document_id(view_id.ids[0])
        if document_id is None:
            return None
        try:
            field_view = _document(store, document_id, view_id)
        except PandanodeError:
            return None
        if field_view.fields is not None:
            field_views[str(view_id)] = dict(field_view.fields)
    return field_views
