"""The gRPC face of the query service: translate, call the use cases, map errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pandanode.core.errors import PandanodeError
from pandanode.query.v1 import query_pb2 as pb
from pandanode.query.v1 import query_pb2_grpc as pb_grpc
from pandanode.services.runtime.errors import abort

from .convert import (
    document_to_pb,
    documents_to_pb,
    order_from_pb,
    predicates_from_pb,
    schema_to_pb,
)
from .model import MaterializedDocument
from .service import Query
from .watch import WatchKind

__all__ = ["QueryServicer"]

_DEFAULT_WAIT_SECONDS = 10.0
_BLOB_CHUNK = 64 * 1024
_ENTRIES_PAGE = 200

_KINDS = {
    WatchKind.EXISTING: pb.CHANGE_KIND_EXISTING,
    WatchKind.CAUGHT_UP: pb.CHANGE_KIND_CAUGHT_UP,
    WatchKind.CREATED: pb.CHANGE_KIND_CREATED,
    WatchKind.UPDATED: pb.CHANGE_KIND_UPDATED,
    WatchKind.DELETED: pb.CHANGE_KIND_DELETED,
    WatchKind.LEFT: pb.CHANGE_KIND_LEFT,
}


def _wait_seconds(consistency: pb.Consistency, context: Any) -> float:
    if consistency.HasField("timeout") and consistency.timeout.ToNanoseconds() > 0:
        return consistency.timeout.ToNanoseconds() / 1e9
    if consistency.timeout_ms:  # deprecated: only when timeout is unset
        return float(consistency.timeout_ms) / 1000
    remaining = context.time_remaining()
    return _DEFAULT_WAIT_SECONDS if remaining is None else max(0.0, float(remaining) - 0.05)


class QueryServicer(pb_grpc.QueryServiceServicer):
    """Serves ``pandanode.query.v1.QueryService``."""

    def __init__(self, query: Query) -> None:
        self._query = query

    async def _documents_to_pb(
        self, documents: Sequence[MaterializedDocument], resolve_depth: int
    ) -> list[pb.Document]:
        depth, related = await self._query.resolve_relations(documents, resolve_depth)
        if depth == 0:
            return documents_to_pb(documents, 0, related)
        # Up to max_resolved_documents of them: converted off the event loop too.
        return await asyncio.to_thread(documents_to_pb, documents, depth, related)

    async def _consistent(self, request: Any, context: Any) -> None:
        if request.HasField("consistency"):
            consistency = request.consistency
            await self._query.wait(
                operation_id=consistency.operation_id,
                view_id=consistency.document_view_id,
                timeout=_wait_seconds(consistency, context),
            )

    async def GetDocument(  # noqa: N802 - gRPC method name
        self, request: pb.GetDocumentRequest, context: Any
    ) -> pb.GetDocumentResponse:
        """One document by id or view id, relations resolved to the requested depth."""
        self._query.materializer.note_call()
        try:
            await self._consistent(request, context)
            document = self._query.document(
                document_id=request.document_id, view_id=request.document_view_id
            )
            (converted,) = await self._documents_to_pb([document], request.resolve_depth)
            return pb.GetDocumentResponse(document=converted)
        except PandanodeError as err:
            await abort(context, err)

    async def ListDocuments(  # noqa: N802 - gRPC method name
        self, request: pb.ListDocumentsRequest, context: Any
    ) -> pb.ListDocumentsResponse:
        """A page of a schema's documents, filtered and ordered."""
        self._query.materializer.note_call()
        try:
            await self._consistent(request, context)
            page = self._query.list_documents(
                request.schema_id,
                predicates_from_pb(request.filters),
                order_from_pb(request.order_by, request.descending),
                request.page_size,
                request.page_token,
            )
            return pb.ListDocumentsResponse(
                documents=await self._documents_to_pb(page.documents, request.resolve_depth),
                next_page_token=page.next_page_token or "",
                total_size=page.total_size,
            )
        except PandanodeError as err:
            await abort(context, err)

    async def WatchDocuments(  # noqa: N802 - gRPC method name
        self, request: pb.WatchDocumentsRequest, context: Any
    ) -> AsyncIterator[pb.WatchDocumentsResponse]:
        """The matching documents now, then every change as it is materialized.

        With a ``consistency``, the watch starts once that write is materialized (as reads do).
        One message per batch of the watch: every change that queued up while the previous
        message was being written goes into the next one.
        """
        self._query.materializer.note_call()
        try:
            await self._consistent(request, context)
            batches = self._query.watch(request.schema_id, predicates_from_pb(request.filters))
            async for batch in batches:
                yield pb.WatchDocumentsResponse(
                    changes=[
                        pb.DocumentChange(
                            kind=_KINDS[event.kind],
                            document=None
                            if event.document is None
                            else document_to_pb(event.document),
                        )
                        for event in batch
                    ]
                )
        except PandanodeError as err:
            await abort(context, err)

    async def ListSchemas(  # noqa: N802 - gRPC method name
        self, request: pb.ListSchemasRequest, context: Any
    ) -> pb.ListSchemasResponse:
        """A page of the schemas this node knows, by schema id."""
        self._query.materializer.note_call()
        try:
            schemas, next_page_token = self._query.list_schemas(
                request.page_size, request.page_token
            )
            return pb.ListSchemasResponse(
                schemas=[schema_to_pb(s) for s in schemas], next_page_token=next_page_token
            )
        except PandanodeError as err:
            await abort(context, err)

    async def GetSchema(  # noqa: N802 - gRPC method name
        self, request: pb.GetSchemaRequest, context: Any
    ) -> pb.GetSchemaResponse:
        """One schema with its fields."""
        self._query.materializer.note_call()
        try:
            return pb.GetSchemaResponse(schema=schema_to_pb(self._query.schema(request.schema_id)))
        except PandanodeError as err:
            await abort(context, err)

    async def GetBlob(  # noqa: N802 - gRPC method name
        self, request: pb.GetBlobRequest, context: Any
    ) -> AsyncIterator[pb.GetBlobResponse]:
        """A header (mime type, length), then the blob's bytes in chunks."""
        self._query.materializer.note_call()
        try:
            await self._consistent(request, context)
            blob = self._query.blob(
                document_id=request.document_id, view_id=request.document_view_id
            )
        except PandanodeError as err:
            await abort(context, err)
        yield pb.GetBlobResponse(
            header=pb.BlobHeader(
                mime_type=blob.mime_type, length=blob.length, document_view_id=blob.view_id
            )
        )
        for chunk in blob.chunks:
            for start in range(0, len(chunk), _BLOB_CHUNK):
                yield pb.GetBlobResponse(data=chunk[start : start + _BLOB_CHUNK])

    async def GetEntries(  # noqa: N802 - gRPC method name
        self, request: pb.GetEntriesRequest, context: Any
    ) -> AsyncIterator[pb.GetEntriesResponse]:
        """Raw entries of one log with their operations, in pages."""
        self._query.materializer.note_call()
        try:
            entries = self._query.entries(request.public_key, request.log_id, request.from_seq_num)
        except PandanodeError as err:
            await abort(context, err)
        page: list[pb.Entry] = []
        for stored in entries:
            page.append(
                pb.Entry(seq_num=stored.seq_num, entry=stored.entry, operation=stored.operation)
            )
            if len(page) >= _ENTRIES_PAGE:
                yield pb.GetEntriesResponse(entries=page)
                page = []
        if page:
            yield pb.GetEntriesResponse(entries=page)
