"""The use cases of the query service, in plain async code over the query store.

The materializer keeps the durable views in the store; this layer reads them there, keeps the
in-memory listing indexes (one per schema, loaded on first use, then kept current from the
materializer's changes), resolves relations, and answers watches and read-your-writes waits
(through the materializer, which knows what it has applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence

from pandanode.core.errors import Reason, SchemaIdError, SchemaNotSupportedError, quote
from pandanode.core.hexid import PUBLIC_KEY_HEX_LENGTH, require_hex, require_hex_ids
from pandanode.core.schema import Schema
from pandanode.core.schema_id import parse_schema_id
from pandanode.services.runtime import metrics
from pandanode.services.runtime.errors import (
    InvalidRequestError,
    ResourceNotFoundError,
    UnavailableError,
)
from pandanode.services.runtime.paging import KeysetPages
from pandanode.services.runtime.settings import Settings

from .listing import DEFAULT_CHANGE_LOG_BYTES, Catalog, Page, SchemaIndex
from .materializer import Materializer
from .model import DocumentChange, MaterializedDocument, Order, Predicate
from .reads import Blob, StoredSchemas, read_blob, read_view
from .relations import BoundedResolver, Related, resolve_relations
from .store import QueryStore, StoredEntry
from .watch import DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_BYTES, Watch, WatchEvent, WatchStats

__all__ = ["MAX_RESOLVE_DEPTH", "Query"]

MAX_RESOLVE_DEPTH = 4
"""Deeper relation resolution is lowered to this (each level can multiply the response)."""

_DEFAULTS = Settings()


class Query:
    """Reads over the materialized documents.

    Args:
        store: The query store the materializer writes.
        materializer: The started materializer (for its changes and read-your-writes waits).
        max_page_size: Largest page ListDocuments returns.
        max_watch_queue: Most changes buffered for one slow watcher.
        listing_change_log_bytes: Byte budget of each listed schema's change log.
        token_secret: The node's secret that authenticates its page tokens (see
            :mod:`.token_secret`); None: a random secret of this process.
        max_watch_queue_bytes: Most bytes of documents buffered for one slow watcher (the
            ``watch_queue_bytes`` setting).
        max_resolved_documents: Most documents one read's response holds, resolved
            relations included (the setting of the same name).
        max_response_bytes: Most bytes (approximately) one read's response holds (the
            ``max_message_bytes`` setting).
        supported_schemas: The node's schema allow list (``Settings.supported_schemas``);
            None: any schema. Schemas outside it are not listed, and neither they nor their
            documents are served (PERMISSION_DENIED, ``SCHEMA_NOT_SUPPORTED``): documents
            stored before the list was set stay in the store, unseen.
    """

    def __init__(
        self,
        store: QueryStore,
        materializer: Materializer,
        *,
        max_page_size: int = 1000,
        listing_change_log_bytes: int = DEFAULT_CHANGE_LOG_BYTES,
        token_secret: bytes | None = None,
        max_watch_queue: int = DEFAULT_MAX_QUEUE,
        max_watch_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_resolved_documents: int = _DEFAULTS.max_resolved_documents,
        max_response_bytes: int = _DEFAULTS.max_message_bytes,
        supported_schemas: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self._supported = supported_schemas
        self.materializer = materializer
        self._schemas = StoredSchemas(store)
        self.max_resolved_documents = max_resolved_documents
        self.max_response_bytes = max_response_bytes
        self.catalog = Catalog(
            max_page_size=max_page_size,
            token_secret=token_secret,
            change_log_bytes=listing_change_log_bytes,
        )
        self._schema_pages = KeysetPages("schemas", token_secret, max_page_size)
        self._max_watch_queue = max_watch_queue
        self._max_watch_queue_bytes = max_watch_queue_bytes
        self._watches: set[Watch] = set()
        self._applied: dict[str, int] = {}
        self._remove_listener = materializer.add_listener(self._on_change)

    def supports(self, schema_id: str) -> bool:
        """Whether the allow list takes ``schema_id`` (canonical form, as stored)."""
        return self._supported is None or schema_id in self._supported

    def _require_supported(self, schema_id: str) -> None:
        if self._supported is None:
            return
        try:
            canonical = str(parse_schema_id(schema_id))
        except SchemaIdError:
            return  # not a schema id: the lookup says what is wrong with it
        if canonical not in self._supported:
            raise SchemaNotSupportedError(
                f"this node does not serve schema {quote(schema_id)} (its supported_schema_ids "
                "does not list it): ask a node that supports it",
            ).about(schema_id=schema_id)

    def close(self) -> None:
        """Stop following the materializer."""
        self._remove_listener()

    def _on_change(self, change: DocumentChange) -> None:
        schema_id = change.document.schema_id
        if self.catalog.get(schema_id) is not None:
            self.catalog.apply(change)
        self._applied[schema_id] = max(self._applied.get(schema_id, 0), change.sequence)

    def index(self, schema_id: str) -> SchemaIndex:
        """The listing index of a schema, loaded from the store on first use.

        Raises:
            ResourceNotFoundError: the schema is not known (SCHEMA_NOT_FOUND).
        """
        index = self.catalog.get(schema_id)
        if index is not None:
            return index
        schema = self.schema(schema_id)
        # The store may hold commits whose changes are not announced yet: the index then
        # already contains them, so watches must treat them as part of the snapshot.
        loaded_at = self.materializer.position
        index = self.catalog.add_schema(schema)
        for document in self.store.documents(schema_id):
            index.upsert(document)
        self._applied[schema_id] = max(self._applied.get(schema_id, 0), loaded_at)
        return index

    # -- consistency ------------------------------------------------------------------------

    async def wait(self, *, operation_id: str = "", view_id: str = "", timeout: float) -> None:
        """Wait until an operation or a view is materialized (read-your-writes).

        Raises:
            UnavailableError: not materialized within ``timeout`` seconds.
        """
        if operation_id:
            done = await self.materializer.wait_for_operation(
                require_hex_ids(operation_id, "consistency.operation_id"), timeout
            )
        elif view_id:
            done = await self.materializer.wait_for_view(
                require_hex_ids(view_id, "consistency.document_view_id"), timeout
            )
        else:
            return
        if not done:
            raise UnavailableError(
                f"{quote(operation_id or view_id, 140)} was not materialized within "
                f"{timeout:.1f}s; was it published to this node? retry later"
            ).about(operation_id=operation_id or None, document_view_id=view_id or None)

    # -- documents --------------------------------------------------------------------------

    def document(self, *, document_id: str = "", view_id: str = "") -> MaterializedDocument:
        """A document's current view, or a view by view id.

        Raises:
            InvalidRequestError: neither or both ids given, or malformed.
            ResourceNotFoundError: unknown here.
        """
        if bool(document_id) == bool(view_id):
            raise InvalidRequestError(
                "give exactly one of document_id and document_view_id"
            ).violation("document_id" if document_id else "document_view_id")
        if document_id:
            found = self.store.document(require_hex_ids(document_id, "document_id"))
        else:
            found = read_view(
                self.store, self._schemas, require_hex_ids(view_id, "document_view_id")
            )
        if found is None:
            raise ResourceNotFoundError(
                f"document {quote(document_id or view_id, 140)} not found"
            ).about(document_id=document_id or None, document_view_id=view_id or None)
        self._require_supported(found.schema_id)
        return found

    def resolve(self, target: str, pinned: bool) -> MaterializedDocument | None:
        """The current view of a document id, or (``pinned``) the view of a view id.

        Safe to call from a worker thread (store reads only): deep resolutions run in one.
        """
        try:
            if pinned:
                found = read_view(self.store, self._schemas, target)
            else:
                found = self.store.document(target)
        except ValueError:
            return None
        # A relation to a document of a schema the node does not serve stays unresolved.
        return found if found is None or self.supports(found.schema_id) else None

    async def resolve_relations(
        self, documents: Sequence[MaterializedDocument], resolve_depth: int
    ) -> tuple[int, Related]:
        """Read the documents related to a response's documents (see :mod:`.relations`).

        Each distinct related document is read once (with :meth:`resolve`), in a worker thread
        when there are relations to resolve; the response is bounded by
        ``max_resolved_documents`` and ``max_response_bytes``.

        Returns:
            The depth resolved (``resolve_depth`` lowered to :data:`MAX_RESOLVE_DEPTH`) and the
            related documents.

        Raises:
            LimitExceededError: the response would exceed a budget (BUDGET_EXCEEDED).
        """
        depth = min(resolve_depth, MAX_RESOLVE_DEPTH)
        resolver = BoundedResolver(
            self.resolve,
            max_documents=self.max_resolved_documents,
            max_bytes=self.max_response_bytes,
        )
        if depth <= 0:
            return 0, resolve_relations(documents, 0, resolver)
        return depth, await asyncio.to_thread(resolve_relations, documents, depth, resolver)

    def list_documents(
        self,
        schema_id: str,
        predicates: Sequence[Predicate],
        order: Order,
        page_size: int,
        page_token: str,
    ) -> Page:
        """One page of a schema's documents (see :mod:`.listing` for the semantics)."""
        return self.index(schema_id).list(predicates, order, page_size or None, page_token or None)

    async def watch(
        self, schema_id: str, predicates: Sequence[Predicate]
    ) -> AsyncIterator[list[WatchEvent]]:
        """The matching documents now, CAUGHT_UP, then every change, in batches (:mod:`.watch`)."""
        index = self.index(schema_id)
        matches = index.filter(predicates)
        watch = Watch(schema_id, matches, self._max_watch_queue, self._max_watch_queue_bytes)
        remove = self.materializer.add_listener(watch.on_change)
        self._watches.add(watch)
        metrics.watchers.inc()
        try:
            snapshot = list(index.documents())
            snapshot_sequence = self._applied.get(schema_id, 0)
            async for batch in watch.batches(snapshot, snapshot_sequence):
                yield batch
        finally:
            metrics.watchers.dec()
            self._watches.discard(watch)
            remove()

    def watches(self) -> list[WatchStats]:
        """What every open watch holds now (queued changes and their bytes)."""
        return [watch.stats() for watch in self._watches]

    # -- schemas, blobs, entries ------------------------------------------------------------

    def schemas(self) -> list[Schema]:
        """Every schema this node knows and serves: the system schemas and the built ones.

        With an allow list, only those it lists (and the definition schemas).
        """
        return [schema for schema in self._schemas.all() if self.supports(str(schema.id))]

    def list_schemas(self, page_size: int, page_token: str) -> tuple[list[Schema], str]:
        """One page of :meth:`schemas` (by schema id) and the next page's token (AIP-158).

        Raises:
            InvalidRequestError: reason ``INVALID_PAGE_TOKEN``.
        """
        return self._schema_pages.page(
            self.schemas(), lambda schema: str(schema.id), page_size, page_token
        )

    def schema(self, schema_id: str) -> Schema:
        """One schema.

        Raises:
            ResourceNotFoundError: unknown here (SCHEMA_NOT_FOUND).
            SchemaNotSupportedError: not on the allow list.
        """
        self._require_supported(schema_id)
        schema = self._schemas.get(schema_id)
        if schema is None:
            raise ResourceNotFoundError(
                f"schema {quote(schema_id)} is not known to this node (yet)",
                Reason.SCHEMA_NOT_FOUND,
            ).about(schema_id=schema_id)
        return schema

    def blob(self, *, document_id: str = "", view_id: str = "") -> Blob:
        """An assembled blob.

        Raises:
            InvalidRequestError: neither or both ids given, or malformed.
            ResourceNotFoundError: unknown, not a blob, or its pieces are not all here.
            SchemaNotSupportedError: the allow list does not list ``blob_v1``.
        """
        self._require_supported("blob_v1")
        if bool(document_id) == bool(view_id):
            raise InvalidRequestError(
                "give exactly one of document_id and document_view_id"
            ).violation("document_id" if document_id else "document_view_id")
        blob = read_blob(
            self.store,
            document_id=require_hex_ids(document_id, "document_id") if document_id else "",
            view_id=require_hex_ids(view_id, "document_view_id") if view_id else "",
        )
        if blob is None:
            raise ResourceNotFoundError(
                f"blob {quote(document_id or view_id, 140)} not found (unknown, not a blob_v1 "
                "document, or not all of its pieces are here yet)"
            ).about(document_id=document_id or None, document_view_id=view_id or None)
        return blob

    def entries(self, public_key: str, log_id: int, from_seq_num: int) -> Iterator[StoredEntry]:
        """Raw entries of one log, in seq num order."""
        key = require_hex(public_key, "public_key", PUBLIC_KEY_HEX_LENGTH)
        return self.store.entries(key, log_id, max(from_seq_num, 1))
