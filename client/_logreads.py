"""Reading documents and schemas straight from ingest's logs.

The query service is the place to read documents. These helpers are the client's fallback for
the two facts it needs before it can write — a schema (to check fields before signing) and a
document's current view (to build an update on) — when the node does not serve QueryService
or has not materialized the data yet. They read raw logs (``GetLogHeights`` + ``ReadLog``) and
materialize with the core's own reducer, so the answer is exactly what the node stores.
They scan logs, so they are meant for the occasional lookup, not for listing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pandanode.core.document import Document as CoreDocument
from pandanode.core.document import DocumentOperation, materialize
from pandanode.core.errors import PandanodeError
from pandanode.core.hash import generate_hash
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import decode_operation
from pandanode.core.schema import (
    SCHEMA_DEFINITION_V1_ID,
    SCHEMA_FIELD_DEFINITION_V1_ID,
    Schema,
    build_schema,
)
from pandanode.core.schema_id import SchemaId
from pandanode.ingest.v1 import ingest_pb2 as pb

from ._logheights import all_log_heights

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

__all__ = ["LogReader"]


class LogReader:
    """Materializes documents from ingest's raw logs.

    Args:
        ingest: The ingest stub.
        timeout: Deadline of each call, in seconds.
    """

    def __init__(self, ingest: IngestServiceAsyncStub, timeout: float) -> None:
        self._ingest = ingest
        self._timeout = timeout

    async def _heights(self, schema_ids: Iterable[str] = ()) -> list[pb.LogHeight]:
        async def get_page(request: pb.GetLogHeightsRequest) -> pb.GetLogHeightsResponse:
            return await self._ingest.GetLogHeights(request, timeout=self._timeout)

        return await all_log_heights(get_page, schema_ids)

    async def _read(self, height: pb.LogHeight) -> list[DocumentOperation]:
        request = pb.ReadLogRequest(public_key=height.public_key, log_id=height.log_id)
        operations = []
        async for response in self._ingest.ReadLog(request, timeout=self._timeout):
            for stored in response.entries:
                operations.append(
                    DocumentOperation(
                        id=generate_hash(stored.entry),
                        public_key=height.public_key,
                        operation=decode_operation(stored.operation),
                    )
                )
        return operations

    async def _documents(
        self, heights: list[pb.LogHeight], document_ids: set[str]
    ) -> dict[str, list[DocumentOperation]]:
        documents: dict[str, list[DocumentOperation]] = {}
        for height in heights:
            if height.document_id in document_ids:
                documents.setdefault(height.document_id, []).extend(await self._read(height))
        return documents

    async def documents_containing(
        self, operation_ids: Iterable[str], schema_id: str | None = None
    ) -> dict[str, list[DocumentOperation]]:
        """Every operation of the documents that hold any of ``operation_ids``.

        Args:
            operation_ids: Operation ids (e.g. of a view id).
            schema_id: Only look at documents of this schema (None: all logs).

        Returns:
            Document id → all its operations (over every author's log).
        """
        wanted = set(operation_ids)
        heights = await self._heights([schema_id] if schema_id else [])
        # Usually a view id names the CREATE (a document never updated): its id is the
        # document id. Otherwise read every log of the schema once to find the documents.
        documents = await self._documents(heights, wanted)
        found = {op.id for ops in documents.values() for op in ops}
        if not wanted <= found:
            for height in heights:
                if height.document_id in documents:
                    continue
                for op in await self._read(height):
                    if op.id in wanted:
                        documents[height.document_id] = []
                        break
            documents = await self._documents(heights, set(documents))
        return documents

    async def document(self, document_id: str, schema_id: str | None = None) -> CoreDocument | None:
        """The current view of ``document_id``, or None when no log holds it."""
        heights = await self._heights([schema_id] if schema_id else [])
        operations = (await self._documents(heights, {document_id})).get(document_id)
        return materialize(operations) if operations else None

    async def schema(self, schema_id: SchemaId) -> Schema | None:
        """Build application schema ``schema_id`` from its definition documents, or None."""
        view_id = schema_id.view_id
        if view_id is None:
            return None
        definitions = await self.documents_containing(view_id.ids, SCHEMA_DEFINITION_V1_ID)
        definition = _view_of(definitions, view_id)
        if definition is None or definition.fields is None:
            return None
        listed = definition.fields.get("fields")
        if not isinstance(listed, tuple):
            return None
        field_views = [DocumentViewId.from_ids(ids) for ids in listed if isinstance(ids, tuple)]
        field_documents = await self.documents_containing(
            {op_id for view in field_views for op_id in view.ids}, SCHEMA_FIELD_DEFINITION_V1_ID
        )
        field_definitions = {}
        for field_view in field_views:
            field_definition = _view_of(field_documents, field_view)
            if field_definition is None or field_definition.fields is None:
                return None
            field_definitions[str(field_view)] = dict(field_definition.fields)
        return build_schema(view_id, dict(definition.fields), field_definitions)


def _view_of(
    documents: dict[str, list[DocumentOperation]], view_id: DocumentViewId
) -> CoreDocument | None:
    for operations in documents.values():
        if set(view_id.ids) <= {op.id for op in operations}:
            try:
                return materialize(operations, view_id)
            except PandanodeError:
                return None
    return None
