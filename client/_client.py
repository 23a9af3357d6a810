"""The async client: one gRPC channel to a node, typed calls, local signing.

:class:`Client` is the facade; the work is done by small modules it delegates to:

- ``_connection`` — the channel, what every client of one ``connect`` shares, the call boundary
  (errors, retries);
- ``_writer`` — the one writer: signs entries and owns the log positions of a key pair, for
  single writes and for streams alike;
- ``_requests`` — building operations and read requests (values, filters, orderings);
- ``_schemas``, ``_reads`` — schema lookups, documents, listings, watches, blobs;
- ``_bulk`` — many entries over one ``PublishStream``, raw imports, exports;
- ``_status`` — the node's health and its peers.

This module is a little over 500 lines because it holds the documentation of the public API:
every method is a docstring and a call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping, Sequence
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from pandanode.client._endpoints import EndpointChannel, tls_credentials

from ._connection import MAX_MESSAGE_BYTES, Connection
from ._defaults import DEFAULT_ADDRESS

# The rest loads with the first call that needs it: `pandanode status` pays for neither the
# query service's protos nor signing, and `schema list` not for writing. Re-exported for the
# package (``DocumentLike`` & co.) from ``_requests``.
if TYPE_CHECKING:
    from pandanode.core.keypair import KeyPair
    from pandanode.core.publish import NextArgs
    from pandanode.core.schema import Schema

    from ._logreads import LogReader
    from ._models import (
        Blob,
        BulkResult,
        Change,
        Create,
        Delete,
        Document,
        NodeStatus,
        Page,
        Peer,
        Published,
        Update,
    )
    from ._reads import Reader
    from ._replication import ReplicationPeer, SyncSession
    from ._requests import DocumentLike, FieldTypeLike, SchemaLike, Target
    from ._schemas import Schemas
    from ._writer import Writer

__all__ = ["DEFAULT_ADDRESS", "Client"]


class Client:
    """An async client of a pandanode node.

    Use :meth:`connect`::

        async with Client.connect("127.0.0.1:2020", key_pair=KeyPair()) as node:
            schema_id = await node.create_schema("venue", "A place", {"name": "str"})
            venue = await node.create(schema_id, {"name": "Panda Hall"})

    Entries are signed here; the private key never leaves the process. Every call has a
    deadline (``timeout``); failed calls raise the pandanode exception the node raised
    (:mod:`pandanode.core.errors`), or :class:`NodeUnavailableError`,
    :class:`DeadlineExceededError`, :class:`NotServedError`.
    """

    def __init__(self, shared: Connection, key_pair: KeyPair | None) -> None:
        self._shared = shared
        self._key_pair = key_pair

    @cached_property
    def _schemas(self) -> Schemas:
        from ._schemas import Schemas

        return Schemas(self._shared, lambda: self._logs)

    @cached_property
    def _reads(self) -> Reader:
        from ._reads import Reader

        return Reader(self._shared, self._schemas, lambda: self._logs, self.public_key)

    @cached_property
    def _logs(self) -> LogReader:
        from ._logreads import LogReader

        return LogReader(self._shared.ingest, self._shared.timeout)

    # -- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        address: str = DEFAULT_ADDRESS,
        *,
        key_pair: KeyPair | str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        tls: bool = False,
        tls_ca: str | os.PathLike[str] | None = None,
    ) -> Client:
        """Open a client to the node at ``address`` (``host:port``); no call is made yet.

        Args:
            address: The node's gRPC address.
            key_pair: The key pair to sign with, or the path of a key file; None for a
                read-only client (writes then raise :class:`KeyFileError`).
            timeout: Deadline of each call in seconds (streams: of each message).
            retries: How often a call that is safe to repeat is retried when the node is
                unavailable (reads, and re-sending the very same entry).
            interceptors: gRPC client interceptors for every call (e.g. to add metadata for
                an authenticating proxy, or to trace calls).
            tls: Dial the node over TLS, verifying its certificate against the system's CAs
                (or ``tls_ca``). Every call then goes to ``address`` (no direct endpoints).
            tls_ca: A PEM file of the CA certificates to verify the node with (a self-signed
                node certificate is its own CA); implies ``tls``.

        Returns:
            The client; use it as ``async with`` (or call :meth:`aclose`).

        Raises:
            KeyFileError: ``key_pair`` names a key file that cannot be used.
            OSError: ``tls_ca`` cannot be read.
        """
        if isinstance(key_pair, str | os.PathLike):
            from ._keys import load_key_pair

            key_pair = load_key_pair(key_pair)
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        credentials = tls_credentials(tls_ca) if tls or tls_ca is not None else None
        # Calls go straight to the process serving each service once the node says where.
        channel = EndpointChannel(
            address,
            options=options,
            interceptors=list(interceptors) or None,
            credentials=credentials,
        )
        shared = Connection(address=address, channel=channel, timeout=timeout, retries=retries)
        return cls(shared, key_pair)

    def with_key_pair(self, key_pair: KeyPair) -> Client:
        """A client on the same connection (and caches) that signs with ``key_pair``."""
        return Client(self._shared, key_pair)

    async def aclose(self) -> None:
        """Close the connection (of every client made from the same :meth:`connect`)."""
        await self._shared.channel.close(grace=None)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def address(self) -> str:
        """The node's address."""
        return self._shared.address

    @property
    def key_pair(self) -> KeyPair | None:
        """The key pair writes are signed with."""
        return self._key_pair

    @property
    def public_key(self) -> str | None:
        """The public key of :attr:`key_pair` (hex)."""
        return None if self._key_pair is None else self._key_pair.public_key()

    def __repr__(self) -> str:
        return f"Client({self.address!r}, public_key={self.public_key!r})"

    def _writer(self) -> Writer:
        from ._errors import KeyFileError
        from ._writer import Writer

        if self._key_pair is None:
            raise KeyFileError(
                "this client has no key pair to sign with: pass key_pair= to Client.connect "
                "(a KeyPair or the path of a key file)"
            )
        return Writer(self._shared, self._key_pair)

    async def _target(self, document: DocumentLike) -> Target:
        """The document view a write to ``document`` builds on (the CLI's update uses it)."""
        return await self._reads.target(document)

    async def next_args(self, document: DocumentLike | None = None) -> NextArgs:
        """Ask the node where this client's next entry goes (for a new document, or one).

        Writing methods do this themselves; this is for inspection.
        """
        public_key = self._writer().public_key
        view_id = "" if document is None else (await self._reads.target(document)).view_id
        return await self._shared.next_args(public_key, view_id)

    # -- schemas --------------------------------------------------------------------------------

    async def create_schema(
        self, name: str, description: str, fields: Mapping[str, FieldTypeLike]
    ) -> str:
        """Publish a new application schema (spec §5.5) and return its schema id.

        Publishes one ``schema_field_definition_v1`` document per field, then the
        ``schema_definition_v1`` document pinning them.

        Args:
            name: 2 to 64 characters from A-Z, a-z, 0-9 and ``_``, starting with a letter.
            description: At most 256 characters.
            fields: Field name → type: ``"bool"``, ``"int"``, ``"float"``, ``"str"``,
                ``"bytes"``, or a relation made with :func:`relation`,
                :func:`relation_list`, :func:`pinned_relation`, :func:`pinned_relation_list`
                (or written as ``"relation(<schema id>)"``).

        Returns:
            The schema id, ``<name>_<view id of the definition>``.

        Raises:
            SchemaError: The description breaks a rule (checked before anything is sent).
        """
        from ._requests import check_schema_description
        from ._schemas import create_schema

        types = check_schema_description(name, description, fields)
        return await create_schema(self._writer(), self._schemas, name, description, types)

    async def get_schema(self, schema: SchemaLike) -> Schema:
        """The schema with this id (system schemas included).

        Looks in this client's cache, then asks QueryService, then reads the schema's
        definition from the node's logs (so it works before the query service caught up).

        Raises:
            SchemaIdError: The id does not parse.
            SchemaNotFoundError: The node knows no such schema.
        """
        return await self._schemas.get(schema)

    async def list_schemas(self) -> list[Schema]:
        """Every schema the node knows (QueryService)."""
        return await self._schemas.list()

    # -- writing documents ----------------------------------------------------------------------

    async def create(self, schema: SchemaLike, fields: Mapping[str, object]) -> Published:
        """Create a document.

        Args:
            schema: Its schema.
            fields: Every field of the schema → a Python value (see :data:`Value`; relations
                take ids, :class:`Document` or :class:`Published`).

        Returns:
            The receipt; its ``document_id`` names the new document.

        Raises:
            SchemaError: A field is unknown, missing or of the wrong type — raised before
                anything is signed or sent, naming the schema's fields.
            PandanodeError: The node rejected the entry (the node's own exception class).
        """
        from ._requests import create_operation

        resolved = await self._schemas.get(schema)
        operation = create_operation(resolved, fields)
        return await self._writer().publish(operation, resolved, "create", None)

    async def update(self, document: DocumentLike, fields: Mapping[str, object]) -> Published:
        """Update some fields of a document.

        Args:
            document: The document (see :data:`DocumentLike`).
            fields: Field name → new value, at least one.

        Returns:
            The receipt; its ``view_id`` is the new view.
        """
        from ._requests import update_operation

        target = await self._reads.target(document)
        resolved = await self._schemas.get(target.schema_id)
        operation = update_operation(resolved, target, fields)
        return await self._writer().publish(operation, resolved, "update", target)

    async def delete(self, document: DocumentLike) -> Published:
        """Delete a document (no operation is accepted on it afterwards)."""
        from ._requests import delete_operation

        target = await self._reads.target(document)
        resolved = await self._schemas.get(target.schema_id)
        return await self._writer().publish(delete_operation(target), resolved, "delete", target)

    # -- blobs ----------------------------------------------------------------------------------

    async def put_blob(
        self,
        data: bytes,
        mime_type: str,
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Published:
        """Upload a file: ``blob_piece_v1`` documents of at most 256 000 bytes, then ``blob_v1``.

        Args:
            data: The file's bytes.
            mime_type: Like ``image/png`` (lowercase).
            progress: Called with (pieces done, pieces in all).

        Returns:
            The receipt of the ``blob_v1`` document (relate to it from your documents).
        """
        from pandanode.core.schema import (
            BLOB_PIECE_V1_ID,
            BLOB_V1,
            BLOB_V1_ID,
            MAX_BLOB_PIECE_LENGTH,
        )

        from ._models import Create
        from ._requests import check_operation, system_operation

        header: dict[str, object] = {"length": len(data), "mime_type": mime_type, "pieces": []}
        check_operation(system_operation(BLOB_V1, header), BLOB_V1)  # before any piece is sent
        pieces = [
            Create(BLOB_PIECE_V1_ID, {"data": data[start : start + MAX_BLOB_PIECE_LENGTH]})
            for start in range(0, max(len(data), 1), MAX_BLOB_PIECE_LENGTH)
        ]
        result = await self.publish_many(pieces, batch_size=8, progress=progress)
        result.raise_for_errors()
        header["pieces"] = [published.view_id for published in result.published]
        return await self.create(BLOB_V1_ID, header)

    async def get_blob(
        self,
        document_id: str | None = None,
        *,
        view_id: str | None = None,
        after: Published | str | None = None,
    ) -> Blob:
        """Download a blob (its current view, or the view ``view_id``).

        Args:
            document_id: The ``blob_v1`` document.
            view_id: A view instead of the current one.
            after: Wait until this operation (receipt or id) is materialized first.
        """
        return await self._reads.blob(document_id, view_id, after)

    # -- reading documents ----------------------------------------------------------------------

    async def get_document(
        self,
        document_id: str | None = None,
        *,
        view_id: str | None = None,
        resolve_depth: int = 0,
        after: Published | str | None = None,
    ) -> Document:
        """One document: its current view, or the view ``view_id``.

        Args:
            document_id: The document id.
            view_id: A view id instead (that view, if the node keeps it).
            resolve_depth: Levels of relations to return as documents instead of ids.
            after: Wait (up to the deadline) until this operation — a :class:`Published` or an
                operation id — is materialized: read your own writes.

        Raises:
            ResourceNotFoundError: No such document (or view).
            NotServedError: The node does not serve QueryService.
        """
        return await self._reads.document(
            document_id, view_id, resolve_depth=resolve_depth, after=after
        )

    def pages(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None = None,
        order_by: str | None = None,
        page_size: int = 0,
        page_token: str = "",
        resolve_depth: int = 0,
        after: Published | str | None = None,
    ) -> AsyncGenerator[Page, None]:
        """The pages of a listing, one call per page, as an async iterator.

        Args:
            schema: The documents' schema.
            filter: Conditions, combined with AND: ``{"name": "Hall"}`` (equals),
                ``{"capacity__gte": 100}``, ``{"name__contains": "all"}``,
                ``{"city__in": ["Berlin", "Hamburg"]}``; operators ``eq``, ``not_eq``, ``in``,
                ``not_in``, ``gt``, ``gte``, ``lt``, ``lte``, ``contains``, ``not_contains``.
                Keys starting with ``@`` are document properties: ``@owner``,
                ``@document_id``, ``@view_id``, ``@edited``, ``@deleted``.
            order_by: A field name (or ``@document_id`` / ``@view_id``); prefix ``-`` for
                descending. Ties are broken by document id. Default: by document id.
            page_size: Documents per page (0: the node's default, 25).
            page_token: Start at this page (from an earlier :class:`Page`).
            resolve_depth: Levels of relations to return as documents.
            after: Read-your-writes, as for :meth:`get_document`.
        """
        return self._reads.pages(
            schema,
            filter=filter,
            order=order_by,
            page_size=page_size,
            page_token=page_token,
            resolve_depth=resolve_depth,
            after=after,
        )

    def documents(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        page_size: int = 0,
        resolve_depth: int = 0,
        after: Published | str | None = None,
    ) -> AsyncGenerator[Document, None]:
        """Every matching document, page after page, as an async iterator.

        Arguments as for :meth:`pages`; ``limit`` stops after that many documents.
        """
        return self._reads.documents(
            schema,
            filter=filter,
            order=order_by,
            limit=limit,
            page_size=page_size,
            resolve_depth=resolve_depth,
            after=after,
        )

    def watch(
        self,
        schema: SchemaLike,
        *,
        filter: Mapping[str, object] | None = None,
        after: Published | str | None = None,
    ) -> AsyncGenerator[Change, None]:
        """The matching documents now (``existing``), ``caught_up``, then every change.

        With ``after`` (a :class:`Published` or an operation id) the watch starts once that
        write is materialized, so the ``existing`` documents include it (read-your-writes, as
        for :meth:`get_document`; not materialized within the client's ``timeout``:
        :class:`NodeUnavailableError`).

        Runs until the caller stops iterating (or the node goes away). There is no deadline
        on the stream as a whole. Leaving the iteration early ends the call on the node once
        the generator is closed: use ``contextlib.aclosing(node.watch(...))``, or call its
        ``aclose()`` (a dropped generator is closed by the event loop soon after).
        See :data:`ChangeKind` for what each change means.

        Raises:
            NodeUnavailableError: ``after`` was not materialized within the timeout.
            LimitExceededError: the node cut the watch off because changes arrived faster than
                this client read them (reason ``WATCH_TOO_SLOW``; more than the node's
                ``watch_queue_bytes`` waited). Watch again: it starts from the current documents.
        """
        return self._reads.watch(schema, filter=filter, after=after)

    # -- bulk -----------------------------------------------------------------------------------

    async def publish_many(
        self,
        operations: Iterable[Create | Update | Delete] | AsyncIterable[Create | Update | Delete],
        *,
        batch_size: int = 500,
        max_in_flight: int = 4,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> BulkResult:
        """Sign and publish many operations fast, in batches over one ``PublishStream``.

        Positions are computed here (one ``NextArgs`` per new document's first write at most),
        so the node only verifies and stores. At most ``max_in_flight`` batches are unanswered
        at any time: a slow node slows the sender down (back-pressure) instead of piling up
        memory. Items are checked against their schemas first; an invalid item gets its error
        in the result and is not sent, a rejected one gets the node's error; the rest go on.

        Args:
            operations: :class:`Create`, :class:`Update` and :class:`Delete` items.
            batch_size: Items per message (the node takes at most 1000).
            max_in_flight: Batches sent but not yet answered.
            progress: Called with (items done, items in all or None when unknown).

        Returns:
            One result per item, in order.
        """
        from . import _bulk  # bulk work only: not loaded for one-off commands

        return await _bulk.publish_many(
            self._shared,
            self._writer(),
            operations,
            schema_of=self._schemas.get,
            target_of=self._reads.target,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            progress=progress,
        )

    async def bulk_import(
        self,
        entries: Iterable[tuple[bytes, bytes]] | AsyncIterable[tuple[bytes, bytes]],
        *,
        batch_size: int = 500,
        max_in_flight: int = 4,
        progress: Callable[[int, int | None], None] | None = None,
        retry_dependencies: bool = True,
    ) -> BulkResult:
        """Publish already signed ``(entry, operation)`` pairs (e.g. from :meth:`export`).

        The bytes are sent exactly as given. With ``retry_dependencies``, items rejected only
        because something they build on was not there yet (a schema, a previous operation, an
        earlier entry of their log) are sent again after the rest, as long as that helps, so
        the input need not be in dependency order. Entries the node already has are accepted
        again (publishing is idempotent).

        Returns:
            One result per pair, in order.
        """
        from . import _bulk  # bulk work only: not loaded for one-off commands

        return await _bulk.bulk_import(
            self._shared,
            entries,
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            progress=progress,
            retry_dependencies=retry_dependencies,
        )

    def export(
        self,
        *,
        schema_ids: Iterable[str] = (),
        public_key: str | None = None,
        definitions: bool = False,
    ) -> AsyncGenerator[tuple[bytes, bytes], None]:
        """Every stored ``(entry, operation)`` pair, log by log, in seq order.

        Logs of schema field definitions come first, then schema definitions, blob pieces,
        blobs and everything else, so that :meth:`bulk_import` into another node mostly finds
        what an entry builds on already there.

        Args:
            schema_ids: Only logs of documents of these schemas (all when empty).
            public_key: Only this author's logs.
            definitions: With ``schema_ids``: also the logs of those schemas' definitions (their
                ``schema_definition_v1`` and ``schema_field_definition_v1`` documents, and
                those of the schemas their relation fields point to), whoever wrote them, so
                that a node that has never seen the schemas can import the export.
        """
        from . import _bulk  # bulk work only: not loaded for one-off commands

        return _bulk.export(self._shared, schema_ids, public_key, definitions=definitions)

    # -- the node -------------------------------------------------------------------------------

    async def peers(self) -> list[Peer]:
        """The other nodes the node knows: its discovery service's peer table, by node id.

        Raises:
            NotServedError: The node does not run the discovery service.
        """
        from . import _status

        return await _status.peers(self._shared)

    async def sync_with(self, address: str) -> SyncSession:
        """Have the node catch up with the node at ``address`` now (one session, both ways).

        Raises:
            NotServedError: The node does not run the replication service.
        """
        from . import _replication

        return await _replication.sync_with(self._shared, address)

    async def sessions(self) -> tuple[list[SyncSession], list[ReplicationPeer]]:
        """The node's replication sessions (running, then recent) and its troubled peers.

        Raises:
            NotServedError: The node does not run the replication service.
        """
        from . import _replication

        return await _replication.list_sessions(self._shared)

    async def status(self) -> NodeStatus:
        """Health of the node and of each pandanode service, and how much it stores."""
        from . import _status

        return await _status.node_status(self._shared)
