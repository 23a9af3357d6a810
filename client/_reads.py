"""Reading documents: one, pages of a listing, a watch, a blob — and the view a write builds on.

Reads go to QueryService. The one read a write needs — the current view of a document it
updates — falls back to ingest's logs when the query service is not there or has not caught
up, and never returns a view older than this connection's (or key pair's) own last write.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Final

import grpc
import grpc.aio

from pandanode.core.errors import DecodeError, NotFoundError
from pandanode.query.v1 import query_pb2 as qpb

from ._connection import Connection, not_served
from ._errors import (
    InvalidRequestError,
    NodeUnavailableError,
    NotServedError,
    ResourceNotFoundError,
    from_rpc_error,
    told_by_node,
)
from ._models import Blob, Change, ChangeKind, Document, Page, Published
from ._requests import (
    DocumentLike,
    SchemaLike,
    Target,
    blob_request,
    consistency,
    document_request,
    filters,
    order_by,
)
from ._schemas import Schemas
from ._values import document_from_pb

if TYPE_CHECKING:
    from ._logreads import LogReader

__all__ = ["Reader"]

_CHANGE_KINDS: Final[dict[int, ChangeKind]] = {
    qpb.CHANGE_KIND_EXISTING: "existing",
    qpb.CHANGE_KIND_CAUGHT_UP: "caught_up",
    qpb.CHANGE_KIND_CREATED: "created",
    qpb.CHANGE_KIND_UPDATED: "updated",
    qpb.CHANGE_KIND_DELETED: "deleted",
    qpb.CHANGE_KIND_LEFT: "left",
}


class Reader:
    """The reads of one client (see the methods of the same names on ``Client``).

    Args:
        connection: The connection.
        schemas: Where schemas are looked up.
        logs: Makes the reader of documents from ingest's logs (the fallback of
            :meth:`target`; made when first needed).
        public_key: The client's key pair's public key (None for a read-only client).
    """

    def __init__(
        self,
        connection: Connection,
        schemas: Schemas,
        logs: Callable[[], LogReader],
        public_key: str | None,
    ) -> None:
        self._connection = connection
        self._schemas = schemas
        self._logs = logs
        self._public_key = public_key

    # -- the view a write builds on -------------------------------------------------------------

    async def target(self, document: DocumentLike) -> Target:
        """The document view a write to ``document`` builds on."""
        if isinstance(document, Document):
            return Target(document.id, document.view_id, document.schema_id)
        if isinstance(document, Published):
            return Target(document.document_id, document.view_id, document.schema_id)
        return await self._current_view(document)

    async def _current_view(self, document_id: str) -> Target:
        """The latest view of a document this client knows, to build a write on.

        Never older than the last write to the document through this connection (by any
        ``with_key_pair`` sibling), nor than this key pair's last write to it that the node
        stores (made through another connection, e.g. by an earlier CLI command): the query
        service is asked to wait until those writes are materialized. A write still in flight
        in a bulk stream is built on directly.
        """
        document_id = document_id.lower()
        latest = self._connection.writes.latest(document_id)
        if latest is not None and not latest.stored:
            return Target(document_id, latest.operation_id, latest.schema_id)
        waits = [] if latest is None else [latest.operation_id]
        if self._public_key is not None:
            own = await self._stored_own_write(self._public_key, document_id)
            if own is not None and own not in waits:
                waits.insert(0, own)
        found = await self._materialized_view(document_id, waits)
        if found is not None:
            return found
        view = await self._connection.call(lambda: self._logs().document(document_id))
        if view is None:
            raise ResourceNotFoundError(
                f"document {document_id} is not known to the node at {self._connection.address}"
            )
        return Target(view.document_id, str(view.view_id), view.schema_id)

    async def _materialized_view(self, document_id: str, waits: list[str]) -> Target | None:
        """The query service's view once it has every operation of ``waits``; None if it can't."""
        if not self._connection.query_served:
            return None
        try:
            for earlier in waits[:-1]:
                await self.document(document_id, None, after=earlier)
            found = await self.document(document_id, None, after=waits[-1] if waits else None)
        except (NotServedError, ResourceNotFoundError):
            return None
        except NodeUnavailableError as err:
            if not told_by_node(err):
                raise
            return None  # not materialized within the deadline: the logs hold every stored write
        return Target(found.id, found.view_id, found.schema_id)

    async def _stored_own_write(self, public_key: str, document_id: str) -> str | None:
        """The latest operation of this key pair on a document, as the node stores it."""
        try:
            # The CREATE's id is a view of the document: enough to find this author's log.
            args = await self._connection.next_args(public_key, document_id)
        except (NotFoundError, DecodeError, InvalidRequestError):
            return None  # unknown or malformed: reading the document says so
        return args.backlink if args.seq_num > 1 else None

    # -- documents ------------------------------------------------------------------------------

    async def document(
        self,
        document_id: str | None,
        view_id: str | None,
        *,
        resolve_depth: int = 0,
        after: Published | str | None = None,
    ) -> Document:
        """One document: its current view, or the view ``view_id``."""
        request = document_request(document_id, view_id, resolve_depth=resolve_depth, after=after)
        connection = self._connection
        query = connection.query
        response = await connection.query_call(
            lambda: query.GetDocument(request, timeout=connection.timeout),
            waits=after is not None,
        )
        return document_from_pb(response.document)

    async def pages(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None,
        order: str | None,
        page_size: int,
        page_token: str,
        resolve_depth: int,
        after: Published | str | None,
    ) -> AsyncGenerator[Page, None]:
        """The pages of a listing, one call per page."""
        resolved = await self._schemas.get(schema)
        request = qpb.ListDocumentsRequest(
            schema_id=str(resolved.id),
            filters=filters(resolved, filter or {}),
            page_size=page_size,
            page_token=page_token,
            resolve_depth=resolve_depth,
            consistency=consistency(after) or self._schemas.consistency(resolved),
        )
        order_by(request, resolved, order)
        connection = self._connection
        query = connection.query
        while True:
            response = await connection.query_call(
                lambda: query.ListDocuments(request, timeout=connection.timeout),
                waits=request.HasField("consistency"),
            )
            yield Page(
                documents=[document_from_pb(message) for message in response.documents],
                next_page_token=response.next_page_token,
                total_size=response.total_size,
            )
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token
            request.ClearField("consistency")

    async def documents(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None,
        order: str | None,
        limit: int | None,
        page_size: int,
        resolve_depth: int,
        after: Published | str | None,
    ) -> AsyncGenerator[Document, None]:
        """Every matching document, page after page; at most ``limit``."""
        if limit is not None and page_size == 0:
            page_size = min(max(limit, 1), 1000)
        count = 0
        async for page in self.pages(
            schema,
            filter=filter,
            order=order,
            page_size=page_size,
            page_token="",
            resolve_depth=resolve_depth,
            after=after,
        ):
            for document in page.documents:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield document
            if limit is not None and count >= limit:
                return

    async def watch(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None,
        after: Published | str | None,
    ) -> AsyncGenerator[Change, None]:
        """The matching documents now, ``caught_up``, then every change."""
        resolved = await self._schemas.get(schema)
        connection = self._connection
        # A schema created through this connection may not be built by the query service yet:
        # without ``after``, the watch waits for the schema's definition.
        wait = consistency(after) or self._schemas.consistency(resolved)
        if wait is not None:
            # The stream has no deadline: the wait gets the client's timeout of one call.
            wait.timeout.FromNanoseconds(round(connection.timeout * 1e9))
        request = qpb.WatchDocumentsRequest(
            schema_id=str(resolved.id), filters=filters(resolved, filter or {}), consistency=wait
        )
        call = connection.query.WatchDocuments(request)
        try:
            async for response in call:
                for change in response.changes:
                    document = (
                        document_from_pb(change.document) if change.HasField("document") else None
                    )
                    yield Change(_CHANGE_KINDS.get(change.kind, "updated"), document)
        except grpc.aio.AioRpcError as err:
            error = from_rpc_error(err)
            if isinstance(error, NotServedError):
                raise not_served(connection.address) from err
            raise error from err
        finally:
            call.cancel()

    async def blob(
        self, document_id: str | None, view_id: str | None, after: Published | str | None
    ) -> Blob:
        """Download a blob (its current view, or the view ``view_id``)."""
        request = blob_request(document_id, view_id, after)
        connection = self._connection
        query = connection.query

        async def download() -> Blob:
            header: qpb.BlobHeader | None = None
            chunks: list[bytes] = []
            async for response in query.GetBlob(request, timeout=connection.timeout):
                if response.HasField("header"):
                    header = response.header
                else:
                    chunks.append(response.data)
            if header is None:
                raise ResourceNotFoundError("the node sent no blob header")
            return Blob(b"".join(chunks), header.mime_type, header.document_view_id)

        return await connection.query_call(download, waits=after is not None)
