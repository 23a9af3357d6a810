"""Schemas as the client knows them: a cache, the node's answer, or the node's logs.

A write is checked against its schema before it is signed, so the client needs the schema
first: from its cache (system schemas and schemas seen before), from QueryService, or — before
the query service caught up, or on a node without it — built from the definition documents
in ingest's logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Final

from pandanode.core.errors import Reason, SchemaNotFoundError
from pandanode.core.operation import PinnedRelationList
from pandanode.core.schema import (
    SCHEMA_DEFINITION_V1,
    SCHEMA_FIELD_DEFINITION_V1,
    FieldType,
    Schema,
    system_schema,
)
from pandanode.core.schema_id import SchemaId, parse_schema_id
from pandanode.query.v1 import query_pb2 as qpb

from ._connection import Connection
from ._errors import NotServedError, ResourceNotFoundError
from ._values import schema_from_pb

if TYPE_CHECKING:
    from ._logreads import LogReader
    from ._requests import SchemaLike
    from ._writer import Writer

__all__ = ["Schemas", "create_schema"]

_LIST_PAGE_SIZE: Final = 1000
"""The page size of the list calls (a node lowers it to its own largest page)."""


class Schemas:
    """Looks schemas up (and remembers them) for the clients of one connection.

    Args:
        connection: The connection; its schema caches are used.
        logs: Makes the reader of schema definitions from ingest's logs (the fallback; made
            when first needed, so a client that only lists schemas never loads it).
    """

    def __init__(self, connection: Connection, logs: Callable[[], LogReader]) -> None:
        self._connection = connection
        self._logs = logs

    async def get(self, schema: SchemaLike) -> Schema:
        """The schema with this id (see :meth:`pandanode.client.Client.get_schema`)."""
        connection = self._connection
        if isinstance(schema, Schema):
            connection.schemas.setdefault(schema.id, schema)
            return schema
        if isinstance(schema, str):
            known = connection.schemas_by_text.get(schema)
            if known is not None:
                return known
        schema_id = schema if isinstance(schema, SchemaId) else parse_schema_id(schema)
        cached = connection.schemas.get(schema_id) or system_schema(schema_id)
        if cached is not None:
            if isinstance(schema, str):
                connection.schemas_by_text[schema] = cached
            return cached
        found = await self._from_query(schema_id)
        if found is None:
            found = await connection.call(lambda: self._logs().schema(schema_id))
        if found is None:
            raise SchemaNotFoundError(
                f"schema {schema_id} is not known to the node at {connection.address}: create it "
                "first (`pandanode schema create`) or check the id",
                Reason.SCHEMA_NOT_FOUND,
            )
        connection.schemas[schema_id] = found
        if isinstance(schema, str):
            connection.schemas_by_text[schema] = found
        return found

    async def _from_query(self, schema_id: SchemaId) -> Schema | None:
        connection = self._connection
        if not connection.query_served:
            return None
        request = qpb.GetSchemaRequest(schema_id=str(schema_id))
        query = connection.query
        try:
            response = await connection.call(
                lambda: query.GetSchema(request, timeout=connection.timeout)
            )
        except NotServedError:
            connection.query_served = False
            return None
        except (ResourceNotFoundError, SchemaNotFoundError):
            return None
        return schema_from_pb(response.schema)

    async def list(self) -> list[Schema]:
        """Every schema the node knows (QueryService, every page); each is remembered."""
        connection = self._connection
        query = connection.query
        schemas: list[Schema] = []
        request = qpb.ListSchemasRequest(page_size=_LIST_PAGE_SIZE)
        while True:
            response = await connection.query_call(
                partial(query.ListSchemas, request, timeout=connection.timeout)
            )
            schemas += [schema_from_pb(message) for message in response.schemas]
            if not response.next_page_token:
                break
            request = qpb.ListSchemasRequest(
                page_size=_LIST_PAGE_SIZE, page_token=response.next_page_token
            )
        for schema in schemas:
            connection.schemas.setdefault(schema.id, schema)
        return schemas

    def remember(self, schema: Schema) -> None:
        """Keep a schema made through this connection."""
        self._connection.schemas[schema.id] = schema

    def consistency(self, schema: Schema) -> qpb.Consistency | None:
        """Wait for a schema's definition when this connection created it (else None)."""
        view_id = schema.id.view_id
        if view_id is None or self._connection.writes.latest(str(view_id)) is None:
            return None
        return qpb.Consistency(document_view_id=str(view_id))


async def create_schema(
    writer: Writer, schemas: Schemas, name: str, description: str, types: Mapping[str, FieldType]
) -> str:
    """Publish a new application schema with checked field ``types``; return its id.

    See :meth:`pandanode.client.Client.create_schema`.
    """
    from ._requests import system_operation

    field_schema = SCHEMA_FIELD_DEFINITION_V1
    field_definitions = await asyncio.gather(
        *(
            writer.publish(
                system_operation(field_schema, {"name": field_name, "type": str(field_type)}),
                field_schema,
                "create",
                None,
            )
            for field_name, field_type in types.items()
        )
    )
    pinned = PinnedRelationList([[published.view_id] for published in field_definitions])
    values = {"name": name, "description": description, "fields": pinned}
    created = await writer.publish(
        system_operation(SCHEMA_DEFINITION_V1, values), SCHEMA_DEFINITION_V1, "create", None
    )
    schema = Schema(SchemaId.application(name, created.view_id), description, dict(types))
    schemas.remember(schema)
    return str(schema.id)
