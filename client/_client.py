"""The async client: one gRPC channel to a node, typed calls, local signing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypeVar, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pandanode.client._endpoints import EndpointChannel
from pandanode.core.entry import decode_entry, sign_and_encode_entry
from pandanode.core.errors import (
    DecodeError,
    LogIntegrityError,
    NotFoundError,
    PandanodeError,
    Reason,
    SchemaError,
    SchemaNotFoundError,
)
from pandanode.core.hash import generate_hash
from pandanode.core.keypair import KeyPair
from pandanode.core.operation import PinnedRelationList, decode_operation, encode_operation
from pandanode.core.publish import NextArgs
from pandanode.core.schema import (
    MAX_BLOB_PIECE_LENGTH,
    MAX_SCHEMA_FIELDS,
    FieldType,
    Schema,
    system_schema,
    validate_operation,
)
from pandanode.core.schema_id import (
    SchemaId,
    is_valid_description,
    is_valid_field_name,
    is_valid_schema_name,
    parse_schema_id,
)
from pandanode.discovery.v1 import discovery_pb2 as dpb
from pandanode.discovery.v1 import discovery_pb2_grpc
from pandanode.ingest.v1 import ingest_pb2 as pb
from pandanode.ingest.v1 import ingest_pb2_grpc
from pandanode.query.v1 import query_pb2 as qpb
from pandanode.query.v1 import query_pb2_grpc

from ._errors import (
    DeadlineExceededError,
    InvalidRequestError,
    KeyFileError,
    NodeUnavailableError,
    NotServedError,
    ResourceNotFoundError,
    error_for_code,
    from_rpc_error,
    mark_remote,
    told_by_node,
)
from ._keys import load_key_pair
from ._logreads import LogReader
from ._logs import Author, LogState, Writes
from ._models import (
    Blob,
    BulkResult,
    Change,
    ChangeKind,
    Create,
    Delete,
    Document,
    NodeStatus,
    Page,
    Peer,
    Published,
    Update,
)
from ._values import document_from_pb, fields_for, peer_from_pb, schema_from_pb, to_field_value

if TYPE_CHECKING:
    from pandanode.discovery.v1.discovery_pb2_grpc import DiscoveryServiceAsyncStub
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

__all__ = [
    "DEFAULT_ADDRESS",
    "Client",
    "DocumentLike",
    "FieldTypeLike",
    "SchemaLike",
    "pinned_relation",
    "pinned_relation_list",
    "relation",
    "relation_list",
]

DEFAULT_ADDRESS: Final = "127.0.0.1:2020"
_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
_MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
_INGEST: Final = "pandanode.ingest.v1.IngestService"
_QUERY: Final = "pandanode.query.v1.QueryService"
_DISCOVERY: Final = "pandanode.discovery.v1.DiscoveryService"
_KNOWN_SERVICES: Final = (
    _INGEST,
    _QUERY,
    "pandanode.replication.v1.ReplicationService",
    _DISCOVERY,
)
# A write that lost a race on its log position is re-signed once on fresh next arguments.
_POSITION_REASONS: Final = frozenset(
    {
        Reason.SEQ_NUM_MISMATCH,
        Reason.BACKLINK_MISMATCH,
        Reason.SKIPLINK_MISMATCH,
        Reason.SKIPLINK_MISSING,
        Reason.LOG_ID_MISMATCH,
        Reason.LOG_ID_IN_USE,
        Reason.LOG_NOT_FOUND,
    }
)
# Raw imports retry items that may only lack an earlier item (another log's, or a schema).
_DEPENDENCY_REASONS: Final = _POSITION_REASONS | {
    Reason.SCHEMA_NOT_FOUND,
    Reason.PREVIOUS_NOT_FOUND,
}
_CHANGE_KINDS: Final[dict[int, ChangeKind]] = {
    qpb.CHANGE_KIND_EXISTING: "existing",
    qpb.CHANGE_KIND_CAUGHT_UP: "caught_up",
    qpb.CHANGE_KIND_CREATED: "created",
    qpb.CHANGE_KIND_UPDATED: "updated",
    qpb.CHANGE_KIND_DELETED: "deleted",
    qpb.CHANGE_KIND_LEFT: "left",
}
_FILTER_OPERATORS: Final = {
    "eq": qpb.FILTER_OPERATOR_EQ,
    "not_eq": qpb.FILTER_OPERATOR_NOT_EQ,
    "ne": qpb.FILTER_OPERATOR_NOT_EQ,
    "in": qpb.FILTER_OPERATOR_IN,
    "not_in": qpb.FILTER_OPERATOR_NOT_IN,
    "gt": qpb.FILTER_OPERATOR_GT,
    "gte": qpb.FILTER_OPERATOR_GTE,
    "lt": qpb.FILTER_OPERATOR_LT,
    "lte": qpb.FILTER_OPERATOR_LTE,
    "contains": qpb.FILTER_OPERATOR_CONTAINS,
    "not_contains": qpb.FILTER_OPERATOR_NOT_CONTAINS,
}
_META_FIELDS: Final = {
    "owner": qpb.META_FIELD_OWNER,
    "document_id": qpb.META_FIELD_DOCUMENT_ID,
    "id": qpb.META_FIELD_DOCUMENT_ID,
    "view_id": qpb.META_FIELD_DOCUMENT_VIEW_ID,
    "document_view_id": qpb.META_FIELD_DOCUMENT_VIEW_ID,
    "edited": qpb.META_FIELD_EDITED,
    "deleted": qpb.META_FIELD_DELETED,
}

SchemaLike: TypeAlias = str | SchemaId | Schema
"""A schema: its id as a string or :class:`SchemaId`, or the :class:`Schema` itself."""

DocumentLike: TypeAlias = Document | Published | str
"""A document to write to: a :class:`Document` or :class:`Published` (the write builds on that
view), or a document id (the write builds on the current view)."""

FieldTypeLike: TypeAlias = str | FieldType
"""A field type: ``"str"``, ``"relation(<schema id>)"``, … or a :class:`FieldType`."""

_T = TypeVar("_T")
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]


def _target_id(target: SchemaLike) -> SchemaId:
    if isinstance(target, Schema):
        return target.id
    if isinstance(target, SchemaId):
        return target
    return parse_schema_id(target)


def relation(target: SchemaLike) -> FieldType:
    """The type of a field holding one document of schema ``target`` (its current view)."""
    return FieldType("relation", _target_id(target))


def relation_list(target: SchemaLike) -> FieldType:
    """The type of a field holding a list of documents of schema ``target``."""
    return FieldType("relation_list", _target_id(target))


def pinned_relation(target: SchemaLike) -> FieldType:
    """The type of a field holding one document view of schema ``target``."""
    return FieldType("pinned_relation", _target_id(target))


def pinned_relation_list(target: SchemaLike) -> FieldType:
    """The type of a field holding a list of document views of schema ``target``."""
    return FieldType("pinned_relation_list", _target_id(target))


@dataclass(frozen=True, slots=True)
class _Target:
    """The document a write builds on."""

    document_id: str
    view_id: str
    schema_id: str


@dataclass(slots=True)
class _Outgoing:
    """One item of a bulk stream: what to send and what it means."""

    index: int
    entry: bytes
    operation: bytes
    schema_id: str
    action: Literal["create", "update", "delete"]
    public_key: str
    log_id: int
    seq_num: int
    log: LogState | None = None
    document_id: str = ""  # set for items signed here: the document and the operation's id
    operation_id: str = ""


@dataclass(eq=False)
class _Shared:
    """What every :class:`Client` made from one ``connect`` shares."""

    address: str
    channel: grpc.aio.Channel
    ingest: IngestServiceAsyncStub
    query: QueryServiceAsyncStub
    discovery: DiscoveryServiceAsyncStub
    timeout: float
    retries: int
    schemas: dict[SchemaId, Schema] = field(default_factory=dict)
    schemas_by_text: dict[str, Schema] = field(default_factory=dict)
    authors: dict[str, Author] = field(default_factory=dict)
    writes: Writes = field(default_factory=Writes)
    query_served: bool = True


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

    def __init__(self, shared: _Shared, key_pair: KeyPair | None) -> None:
        self._shared = shared
        self._key_pair = key_pair
        self._logs = LogReader(shared.ingest, shared.timeout)

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

        Returns:
            The client; use it as ``async with`` (or call :meth:`aclose`).
        """
        if isinstance(key_pair, str | os.PathLike):
            key_pair = load_key_pair(key_pair)
        options = [
            ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ]
        # Calls go straight to the process serving each service once the node says where.
        channel = EndpointChannel(address, options=options, interceptors=list(interceptors) or None)
        shared = _Shared(
            address=address,
            channel=channel,
            ingest=ingest_pb2_grpc.IngestServiceStub(channel),
            query=query_pb2_grpc.QueryServiceStub(channel),
            discovery=discovery_pb2_grpc.DiscoveryServiceStub(channel),
            timeout=timeout,
            retries=retries,
        )
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

    # -- calls ----------------------------------------------------------------------------------

    async def _call(
        self, call: Callable[[], Awaitable[_T]], *, retry: bool = True, waits: bool = False
    ) -> _T:
        """Run one unary call through the error boundary, retrying UNAVAILABLE if safe.

        With ``waits`` the call waits on the node for a write to be materialized: an
        UNAVAILABLE the node answered then means the wait used up the deadline, and is not
        retried (only an unreachable node is).
        """
        attempts = self._shared.retries + 1 if retry else 1
        delay = 0.05
        for attempt in range(attempts):
            try:
                return await call()
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
                if (
                    isinstance(error, NodeUnavailableError)
                    and attempt + 1 < attempts
                    and not (waits and told_by_node(error))
                ):
                    await asyncio.sleep(delay)  # back off before the next attempt
                    delay *= 4
                    continue
                raise error from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def _query_call(self, call: Callable[[], Awaitable[_T]], *, waits: bool = False) -> _T:
        try:
            return await self._call(call, waits=waits)
        except NotServedError as err:
            raise _not_served(self.address) from err

    def _author(self) -> Author:
        key_pair = self._key_pair
        if key_pair is None:
            raise KeyFileError(
                "this client has no key pair to sign with: pass key_pair= to Client.connect "
                "(a KeyPair or the path of a key file)"
            )
        public_key = key_pair.public_key()
        author = self._shared.authors.get(public_key)
        if author is None:
            author = self._shared.authors[public_key] = Author(key_pair)
        return author

    async def next_args(self, document: DocumentLike | None = None) -> NextArgs:
        """Ask the node where this client's next entry goes (for a new document, or one).

        Writing methods do this themselves; this is for inspection.
        """
        author = self._author()
        view_id = "" if document is None else (await self._target(document)).view_id
        return await self._next_args(author.public_key, view_id)

    async def _next_args(self, public_key: str, view_id: str) -> NextArgs:
        request = pb.NextArgsRequest(public_key=public_key, document_view_id=view_id)
        ingest = self._shared.ingest
        response = await self._call(lambda: ingest.NextArgs(request, timeout=self._shared.timeout))
        args = response.next_args
        return NextArgs(
            log_id=args.log_id,
            seq_num=args.seq_num,
            backlink=args.backlink or None,
            skiplink=args.skiplink or None,
        )

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
        types = _check_schema_description(name, description, fields)
        definitions = await asyncio.gather(
            *(
                self._create_system(
                    "schema_field_definition_v1", {"name": field_name, "type": str(field_type)}
                )
                for field_name, field_type in types.items()
            )
        )
        definition = await self._create_system(
            "schema_definition_v1",
            {
                "name": name,
                "description": description,
                "fields": PinnedRelationList([[published.view_id] for published in definitions]),
            },
        )
        schema = Schema(SchemaId.application(name, definition.view_id), description, types)
        self._shared.schemas[schema.id] = schema
        return str(schema.id)

    async def _create_system(self, schema_id: str, fields: Mapping[str, object]) -> Published:
        schema = system_schema(schema_id)
        assert schema is not None
        operation = encode_operation(
            action="create",
            schema_id=schema_id,
            fields={
                name: to_field_value(name, value, schema.fields[name])
                for name, value in fields.items()
            },
        )
        return await self._publish_operation(operation, schema, "create", None)

    async def get_schema(self, schema: SchemaLike) -> Schema:
        """The schema with this id (system schemas included).

        Looks in this client's cache, then asks QueryService, then reads the schema's
        definition from the node's logs (so it works before the query service caught up).

        Raises:
            SchemaIdError: The id does not parse.
            SchemaNotFoundError: The node knows no such schema.
        """
        if isinstance(schema, Schema):
            self._shared.schemas.setdefault(schema.id, schema)
            return schema
        if isinstance(schema, str):
            known = self._shared.schemas_by_text.get(schema)
            if known is not None:
                return known
        schema_id = schema if isinstance(schema, SchemaId) else parse_schema_id(schema)
        cached = self._shared.schemas.get(schema_id) or system_schema(schema_id)
        if cached is not None:
            if isinstance(schema, str):
                self._shared.schemas_by_text[schema] = cached
            return cached
        found = await self._schema_from_query(schema_id)
        if found is None:
            found = await self._call(lambda: self._logs.schema(schema_id))
        if found is None:
            raise SchemaNotFoundError(
                f"schema {schema_id} is not known to the node at {self.address}: create it "
                "first (`pandanode schema create`) or check the id",
                Reason.SCHEMA_NOT_FOUND,
            )
        self._shared.schemas[schema_id] = found
        if isinstance(schema, str):
            self._shared.schemas_by_text[schema] = found
        return found

    async def _schema_from_query(self, schema_id: SchemaId) -> Schema | None:
        if not self._shared.query_served:
            return None
        request = qpb.GetSchemaRequest(schema_id=str(schema_id))
        query = self._shared.query
        try:
            response = await self._call(
                lambda: query.GetSchema(request, timeout=self._shared.timeout)
            )
        except NotServedError:
            self._shared.query_served = False
            return None
        except (ResourceNotFoundError, SchemaNotFoundError):
            return None
        return schema_from_pb(response.schema)

    async def list_schemas(self) -> list[Schema]:
        """Every schema the node knows (QueryService)."""
        query = self._shared.query
        response = await self._query_call(
            lambda: query.ListSchemas(qpb.ListSchemasRequest(), timeout=self._shared.timeout)
        )
        schemas = [schema_from_pb(message) for message in response.schemas]
        for schema in schemas:
            self._shared.schemas.setdefault(schema.id, schema)
        return schemas

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
        resolved = await self.get_schema(schema)
        operation = encode_operation(
            action="create",
            schema_id=str(resolved.id),
            fields=fields_for(resolved, fields, create=True),
        )
        return await self._publish_operation(operation, resolved, "create", None)

    async def update(self, document: DocumentLike, fields: Mapping[str, object]) -> Published:
        """Update some fields of a document.

        Args:
            document: The document (see :data:`DocumentLike`).
            fields: Field name → new value, at least one.

        Returns:
            The receipt; its ``view_id`` is the new view.
        """
        target = await self._target(document)
        resolved = await self.get_schema(target.schema_id)
        operation = encode_operation(
            action="update",
            schema_id=target.schema_id,
            previous=target.view_id,
            fields=fields_for(resolved, fields, create=False),
        )
        return await self._publish_operation(operation, resolved, "update", target)

    async def delete(self, document: DocumentLike) -> Published:
        """Delete a document (no operation is accepted on it afterwards)."""
        target = await self._target(document)
        resolved = await self.get_schema(target.schema_id)
        operation = encode_operation(
            action="delete", schema_id=target.schema_id, previous=target.view_id
        )
        return await self._publish_operation(operation, resolved, "delete", target)

    async def _target(self, document: DocumentLike) -> _Target:
        if isinstance(document, Document):
            return _Target(document.id, document.view_id, document.schema_id)
        if isinstance(document, Published):
            return _Target(document.document_id, document.view_id, document.schema_id)
        return await self._current_view(document)

    async def _current_view(self, document_id: str) -> _Target:
        """The latest view of a document this client knows, to build a write on.

        Never older than the last write to the document through this connection (by any
        :meth:`with_key_pair` sibling), nor than this key pair's last write to it that the node
        stores (made through another connection, e.g. by an earlier CLI command): the query
        service is asked to wait until those writes are materialized. A write still in flight
        in a bulk stream is built on directly.
        """
        document_id = document_id.lower()
        latest = self._shared.writes.latest(document_id)
        if latest is not None and not latest.stored:
            return _Target(document_id, latest.operation_id, latest.schema_id)
        waits = [] if latest is None else [latest.operation_id]
        if self._key_pair is not None:
            own = await self._stored_own_write(document_id)
            if own is not None and own not in waits:
                waits.insert(0, own)
        if self._shared.query_served:
            try:
                for earlier in waits[:-1]:
                    await self.get_document(document_id, after=earlier)
                found = await self.get_document(document_id, after=waits[-1] if waits else None)
            except (NotServedError, ResourceNotFoundError):
                pass
            except NodeUnavailableError as err:
                if not told_by_node(err):
                    raise
                # Not materialized within the deadline: the logs hold every stored write.
            else:
                return _Target(found.id, found.view_id, found.schema_id)
        view = await self._call(lambda: self._logs.document(document_id))
        if view is None:
            raise ResourceNotFoundError(
                f"document {document_id} is not known to the node at {self.address}"
            )
        return _Target(view.document_id, str(view.view_id), view.schema_id)

    async def _stored_own_write(self, document_id: str) -> str | None:
        """The latest operation of this key pair on a document, as the node stores it."""
        try:
            # The CREATE's id is a view of the document: enough to find this author's log.
            args = await self._next_args(self._author().public_key, document_id)
        except (NotFoundError, DecodeError, InvalidRequestError):
            return None  # unknown or malformed: reading the document says so
        return args.backlink if args.seq_num > 1 else None

    def _check(self, operation: bytes, schema: Schema) -> None:
        # The node's own schema check, run here so nothing invalid is ever signed.
        validate_operation(decode_operation(operation), schema)

    async def _publish_operation(
        self,
        operation: bytes,
        schema: Schema,
        action: Literal["create", "update", "delete"],
        target: _Target | None,
    ) -> Published:
        self._check(operation, schema)
        author = self._author()
        for attempt in range(2):
            log, hint = await self._choose_log(author, target, refresh=attempt > 0)
            async with log.lock:
                args = log.next_args()
                if args is None:
                    if hint is None:
                        hint = await self._next_args(
                            author.public_key, "" if target is None else target.view_id
                        )
                    if hint.log_id != log.log_id:
                        log.forget()
                        continue
                    log.load(hint)
                    args = log.next_args()
                    assert args is not None
                entry = sign_and_encode_entry(
                    operation,
                    author.key_pair,
                    log_id=args.log_id,
                    seq_num=args.seq_num,
                    backlink=args.backlink,
                    skiplink=args.skiplink,
                )
                try:
                    response = await self._publish(entry, operation)
                except LogIntegrityError as err:
                    log.forget()
                    if attempt == 0 and err.reason in _POSITION_REASONS:
                        continue
                    raise
                following = response.next_args
                log.advance(
                    args.seq_num,
                    response.operation_id,
                    NextArgs(
                        log_id=following.log_id,
                        seq_num=following.seq_num,
                        backlink=following.backlink or None,
                        skiplink=following.skiplink or None,
                    ),
                )
                author.documents[response.document_id] = log.log_id
                self._shared.writes.wrote(
                    response.document_id, response.operation_id, str(schema.id), stored=True
                )
                return Published(
                    operation_id=response.operation_id,
                    document_id=response.document_id,
                    view_id=response.operation_id,
                    schema_id=str(schema.id),
                    action=action,
                    public_key=author.public_key,
                    log_id=args.log_id,
                    seq_num=args.seq_num,
                )
        raise LogIntegrityError(
            "could not find a free log position for this write after asking the node twice; "
            "is another process writing with the same key pair?",
            Reason.SEQ_NUM_MISMATCH,
        )

    async def _choose_log(
        self, author: Author, target: _Target | None, *, refresh: bool
    ) -> tuple[LogState, NextArgs | None]:
        """Pick the log of a write (and the node's next arguments if they were asked)."""
        async with author.lock:
            if target is None:
                proposed = 0
                if author.next_log_id is None or refresh:
                    proposed = (await self._next_args(author.public_key, "")).log_id
                return author.reserve_new_log(proposed), None
            if not refresh:
                log_id = author.documents.get(target.document_id)
                if log_id is not None:
                    return author.log(log_id), None
            args = await self._next_args(author.public_key, target.view_id)
            if args.seq_num == 1:
                log = author.reserve_new_log(args.log_id)
                author.documents[target.document_id] = log.log_id
                return log, None
            author.documents[target.document_id] = args.log_id
            return author.log(args.log_id), args

    async def _publish(self, entry: bytes, operation: bytes) -> pb.PublishResponse:
        # Publishing the very same entry again is idempotent, so UNAVAILABLE is retried.
        request = pb.PublishRequest(entry=entry, operation=operation)
        ingest = self._shared.ingest
        return await self._call(lambda: ingest.Publish(request, timeout=self._shared.timeout))

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
        blob = system_schema("blob_v1")
        assert blob is not None
        # Check the MIME type before any piece is published.
        self._check(
            encode_operation(
                schema_id="blob_v1",
                fields={
                    "length": len(data),
                    "mime_type": mime_type,
                    "pieces": PinnedRelationList([]),
                },
            ),
            blob,
        )
        pieces = [
            Create("blob_piece_v1", {"data": data[start : start + MAX_BLOB_PIECE_LENGTH]})
            for start in range(0, max(len(data), 1), MAX_BLOB_PIECE_LENGTH)
        ]
        result = await self.publish_many(pieces, batch_size=8, progress=progress)
        result.raise_for_errors()
        return await self.create(
            "blob_v1",
            {
                "length": len(data),
                "mime_type": mime_type,
                "pieces": [published.view_id for published in result.published],
            },
        )

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
        request = qpb.GetBlobRequest(consistency=_consistency(after))
        if view_id:
            request.document_view_id = view_id
        elif document_id:
            request.document_id = document_id
        else:
            raise ValueError("get_blob needs a document_id or a view_id")
        query = self._shared.query

        async def download() -> Blob:
            header: qpb.BlobHeader | None = None
            chunks: list[bytes] = []
            async for response in query.GetBlob(request, timeout=self._shared.timeout):
                if response.HasField("header"):
                    header = response.header
                else:
                    chunks.append(response.data)
            if header is None:
                raise ResourceNotFoundError("the node sent no blob header")
            return Blob(b"".join(chunks), header.mime_type, header.document_view_id)

        return await self._query_call(download, waits=after is not None)

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
        request = qpb.GetDocumentRequest(
            resolve_depth=resolve_depth, consistency=_consistency(after)
        )
        if view_id:
            request.document_view_id = view_id
        elif document_id:
            request.document_id = document_id
        else:
            raise ValueError("get_document needs a document_id or a view_id")
        query = self._shared.query
        response = await self._query_call(
            lambda: query.GetDocument(request, timeout=self._shared.timeout),
            waits=after is not None,
        )
        return document_from_pb(response.document)

    async def pages(
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
        resolved = await self.get_schema(schema)
        request = qpb.ListDocumentsRequest(
            schema_id=str(resolved.id),
            filters=_filters(resolved, filter or {}),
            page_size=page_size,
            page_token=page_token,
            resolve_depth=resolve_depth,
            consistency=_consistency(after) or self._schema_consistency(resolved),
        )
        if order_by:
            descending = order_by.startswith("-")
            key = order_by.lstrip("-")
            request.descending = descending
            if key.startswith("@"):
                request.order_by.meta = _meta_field(key[1:])
            else:
                _known_field(resolved, key)
                request.order_by.field = key
        query = self._shared.query
        while True:
            response = await self._query_call(
                lambda: query.ListDocuments(request, timeout=self._shared.timeout),
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
        if limit is not None and page_size == 0:
            page_size = min(max(limit, 1), 1000)
        count = 0
        async for page in self.pages(
            schema,
            filter=filter,
            order_by=order_by,
            page_size=page_size,
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
        filter: Mapping[str, object] | None = None,
    ) -> AsyncGenerator[Change, None]:
        """The matching documents now (``existing``), ``caught_up``, then every change.

        Runs until the caller stops iterating (or the node goes away). There is no deadline
        on the stream as a whole. Leaving the iteration early ends the call on the node once
        the generator is closed: use ``contextlib.aclosing(node.watch(...))``, or call its
        ``aclose()`` (a dropped generator is closed by the event loop soon after).
        See :data:`ChangeKind` for what each change means.
        """
        resolved = await self.get_schema(schema)
        request = qpb.WatchDocumentsRequest(
            schema_id=str(resolved.id), filters=_filters(resolved, filter or {})
        )
        built = self._schema_consistency(resolved)
        if built is not None:
            # A schema created through this connection may not be built by the query service
            # yet; a watch cannot wait by itself, so wait for its definition first.
            definition = qpb.GetDocumentRequest(
                document_view_id=built.document_view_id, consistency=built
            )
            query = self._shared.query
            await self._query_call(
                lambda: query.GetDocument(definition, timeout=self._shared.timeout), waits=True
            )
        call = self._shared.query.WatchDocuments(request)
        try:
            async for response in call:
                document = (
                    document_from_pb(response.document) if response.HasField("document") else None
                )
                yield Change(_CHANGE_KINDS.get(response.kind, "updated"), document)
        except grpc.aio.AioRpcError as err:
            error = from_rpc_error(err)
            if isinstance(error, NotServedError):
                raise _not_served(self.address) from err
            raise error from err
        finally:
            call.cancel()

    def _schema_consistency(self, schema: Schema) -> qpb.Consistency | None:
        """Wait for a schema's definition when this connection created it (else None)."""
        view_id = schema.id.view_id
        if view_id is None or self._shared.writes.latest(str(view_id)) is None:
            return None
        return qpb.Consistency(document_view_id=str(view_id))

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
        author = self._author()
        total = len(operations) if isinstance(operations, list | tuple) else None

        async def outgoing() -> AsyncIterator[_Outgoing | tuple[int, PandanodeError]]:
            index = 0
            async for operation in _aiter(operations):
                try:
                    yield await self._sign_for_stream(author, index, operation)
                except PandanodeError as err:
                    yield index, err
                index += 1

        return await self._stream(
            outgoing(),
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            progress=progress,
            total=total,
        )

    async def _sign_for_stream(
        self, author: Author, index: int, item: Create | Update | Delete
    ) -> _Outgoing:
        target: _Target | None = None
        if isinstance(item, Create):
            schema = await self.get_schema(cast(SchemaLike, item.schema))
            action: Literal["create", "update", "delete"] = "create"
            operation = encode_operation(
                schema_id=str(schema.id), fields=fields_for(schema, item.fields, create=True)
            )
        else:
            target = await self._target(item.document)
            schema = await self.get_schema(target.schema_id)
            if isinstance(item, Update):
                action = "update"
                operation = encode_operation(
                    action="update",
                    schema_id=target.schema_id,
                    previous=target.view_id,
                    fields=fields_for(schema, item.fields, create=False),
                )
            else:
                action = "delete"
                operation = encode_operation(
                    action="delete", schema_id=target.schema_id, previous=target.view_id
                )
        if schema.id.is_system:
            # fields_for checked field names, types and ids; the system schemas have extra
            # rules (names, MIME types, piece sizes), checked here as the node checks them.
            self._check(operation, schema)
        log, hint = await self._choose_log(author, target, refresh=False)
        async with log.lock:
            args = log.next_args()
            if args is None and hint is not None and log.latest is None:
                log.load(hint)
                args = log.next_args()
            if args is None and log.latest is not None:
                await self._fill_hashes(author.public_key, log)
                args = log.next_args()
            if args is None:
                log.load(
                    await self._next_args(
                        author.public_key, "" if target is None else target.view_id
                    )
                )
                args = log.next_args()
            if args is None or args.log_id != log.log_id:
                raise LogIntegrityError(
                    f"cannot work out the next position in log {log.log_id}",
                    Reason.SEQ_NUM_MISMATCH,
                )
            entry = sign_and_encode_entry(
                operation,
                author.key_pair,
                log_id=args.log_id,
                seq_num=args.seq_num,
                backlink=args.backlink,
                skiplink=args.skiplink,
            )
            operation_id = generate_hash(entry)
            log.advance(args.seq_num, operation_id)
        document_id = operation_id if target is None else target.document_id
        # Later items of this stream that update the document by id build on this one.
        self._shared.writes.wrote(document_id, operation_id, str(schema.id), stored=False)
        return _Outgoing(
            index=index,
            entry=entry,
            operation=operation,
            schema_id=str(schema.id),
            action=action,
            public_key=author.public_key,
            log_id=args.log_id,
            seq_num=args.seq_num,
            log=log,
            document_id=document_id,
            operation_id=operation_id,
        )

    async def _fill_hashes(self, public_key: str, log: LogState) -> None:
        request = pb.ReadLogRequest(public_key=public_key, log_id=log.log_id)
        ingest = self._shared.ingest

        async def read() -> None:
            async for response in ingest.ReadLog(request, timeout=self._shared.timeout):
                for stored in response.entries:
                    log.hashes.setdefault(stored.seq_num, generate_hash(stored.entry))

        await self._call(read)

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
        total = len(entries) if isinstance(entries, list | tuple) else None
        kept: dict[int, _Outgoing] | None = {} if retry_dependencies else None

        async def outgoing() -> AsyncIterator[_Outgoing | tuple[int, PandanodeError]]:
            index = 0
            async for entry, operation in _aiter(entries):
                try:
                    item = _raw_item(index, entry, operation)
                except PandanodeError as err:
                    yield index, err
                else:
                    yield item
                index += 1

        result = await self._stream(
            outgoing(),
            batch_size=batch_size,
            max_in_flight=max_in_flight,
            progress=progress,
            total=total,
            waiting=kept,
        )
        results = list(result.results)
        started = time.perf_counter() - result.elapsed
        while kept:
            waiting = [kept[index] for index in sorted(kept)]
            kept = {}

            async def again(
                items: list[_Outgoing] = waiting,
            ) -> AsyncIterator[_Outgoing | tuple[int, PandanodeError]]:
                for item in items:
                    yield item

            retried = await self._stream(
                again(),
                batch_size=batch_size,
                max_in_flight=max_in_flight,
                progress=None,
                total=None,
                indices=[item.index for item in waiting],
                waiting=kept,
            )
            progressed = False
            for item, outcome in zip(waiting, retried.results, strict=True):
                if isinstance(outcome, Published):
                    progressed = True
                results[item.index] = outcome
            if not progressed:
                break
        return BulkResult(results, time.perf_counter() - started)

    async def _stream(
        self,
        items: AsyncIterator[_Outgoing | tuple[int, PandanodeError]],
        *,
        batch_size: int,
        max_in_flight: int,
        progress: Callable[[int, int | None], None] | None,
        total: int | None,
        indices: list[int] | None = None,
        waiting: dict[int, _Outgoing] | None = None,
    ) -> BulkResult:
        """Send items over one PublishStream with bounded in-flight batches; gather results.

        With ``indices`` the results are in the order of that list (a retry pass); otherwise
        they are indexed by each item's ``index``. Items rejected only for a missing
        dependency are put into ``waiting`` (when given), to be sent again.
        """
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be 1 to 1000 (the node's max_batch_items)")
        started = time.perf_counter()
        results: dict[int, Published | PandanodeError] = {}
        slots = asyncio.Semaphore(max(1, max_in_flight))
        sent: deque[list[_Outgoing]] = deque()
        wake = asyncio.Event()
        writer_done = False
        done = 0
        call = self._shared.ingest.PublishStream(None)
        writes = self._shared.writes
        unanswered: dict[int, _Outgoing] = {}  # signed here and handed to the writer

        def report(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, total)

        async def send(batch: list[_Outgoing]) -> None:
            await slots.acquire()
            sent.append(batch)
            wake.set()
            request = pb.PublishStreamRequest(
                items=[pb.PublishRequest(entry=i.entry, operation=i.operation) for i in batch]
            )
            await call.write(request)

        async def writer() -> None:
            nonlocal writer_done
            try:
                batch: list[_Outgoing] = []
                size = 0
                async for item in items:
                    if isinstance(item, tuple):
                        results[item[0]] = item[1]
                        report(1)
                        continue
                    batch.append(item)
                    if item.document_id:
                        unanswered[item.index] = item
                    size += len(item.entry) + len(item.operation)
                    if len(batch) >= batch_size or size >= _MAX_BATCH_BYTES:
                        await send(batch)
                        batch, size = [], 0
                if batch:
                    await send(batch)
                await call.done_writing()
            finally:
                writer_done = True
                wake.set()

        writing = asyncio.create_task(writer())
        try:
            while True:
                while not sent and not writer_done:
                    await wake.wait()
                    wake.clear()
                if not sent:
                    await writing  # raises what the writer raised
                    break
                try:
                    response = await asyncio.wait_for(call.read(), self._shared.timeout)
                except TimeoutError:
                    raise DeadlineExceededError(
                        f"the node did not answer a batch within {self._shared.timeout} s"
                    ) from None
                if response is _EOF:
                    raise NodeUnavailableError("the node ended the publish stream early")
                assert isinstance(response, pb.PublishStreamResponse)
                batch = sent.popleft()
                slots.release()
                for item, outcome in zip(batch, response.results, strict=True):
                    result = results[item.index] = _outcome(item, outcome)
                    if unanswered.pop(item.index, None) is not None:
                        if isinstance(result, Published):
                            writes.stored(item.document_id, item.operation_id)
                        else:
                            writes.rejected(item.document_id, item.operation_id)
                    if (
                        waiting is not None
                        and isinstance(result, PandanodeError)
                        and result.reason in _DEPENDENCY_REASONS
                    ):
                        waiting[item.index] = item
                report(len(batch))
        except grpc.aio.AioRpcError as err:
            raise from_rpc_error(err) from err
        finally:
            if not writing.done():
                writing.cancel()
                with contextlib.suppress(BaseException):
                    await writing
            call.cancel()
            # The stream broke: whether these were stored is unknown, so later writes ask the
            # node instead of building on them.
            for item in unanswered.values():
                writes.rejected(item.document_id, item.operation_id)
                if item.log is not None:
                    item.log.forget()
        order = indices if indices is not None else sorted(results)
        return BulkResult([results[index] for index in order], time.perf_counter() - started)

    async def export(
        self, *, schema_ids: Iterable[str] = (), public_key: str | None = None
    ) -> AsyncGenerator[tuple[bytes, bytes], None]:
        """Every stored ``(entry, operation)`` pair, log by log, in seq order.

        Logs of schema field definitions come first, then schema definitions, blob pieces,
        blobs and everything else, so that :meth:`bulk_import` into another node mostly finds
        what an entry builds on already there.

        Args:
            schema_ids: Only logs of documents of these schemas (all when empty).
            public_key: Only this author's logs.
        """
        request = pb.GetLogHeightsRequest(schema_ids=list(schema_ids))
        ingest = self._shared.ingest
        response = await self._call(
            lambda: ingest.GetLogHeights(request, timeout=self._shared.timeout)
        )
        rank = {
            "schema_field_definition_v1": 0,
            "schema_definition_v1": 1,
            "blob_piece_v1": 2,
            "blob_v1": 3,
        }
        heights = sorted(
            (h for h in response.log_heights if public_key in (None, h.public_key)),
            key=lambda h: (rank.get(h.schema_id, 4), h.public_key, h.log_id),
        )
        for height in heights:
            read = pb.ReadLogRequest(public_key=height.public_key, log_id=height.log_id)
            try:
                async for page in ingest.ReadLog(read, timeout=self._shared.timeout):
                    for stored in page.entries:
                        yield stored.entry, stored.operation
            except grpc.aio.AioRpcError as err:
                raise from_rpc_error(err) from err

    # -- peers ----------------------------------------------------------------------------------

    async def peers(self) -> list[Peer]:
        """The other nodes the node knows: its discovery service's peer table, by node id.

        Raises:
            NotServedError: The node does not run the discovery service.
        """
        discovery = self._shared.discovery
        try:
            response = await self._call(
                lambda: discovery.ListPeers(dpb.ListPeersRequest(), timeout=self._shared.timeout)
            )
        except NotServedError as err:
            raise _not_served(self.address, "DiscoveryService", "does not run discovery") from err
        return [peer_from_pb(peer) for peer in response.peers]

    # -- status ---------------------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        """Health of the node and of each pandanode service, and how much it stores."""
        health = health_pb2_grpc.HealthStub(self._shared.channel)
        started = time.perf_counter()
        overall = await self._call(
            lambda: health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._shared.timeout
            )
        )
        latency = (time.perf_counter() - started) * 1000
        services: dict[str, str] = {}
        for name in _KNOWN_SERVICES:
            try:
                answer = await health.Check(
                    health_pb2.HealthCheckRequest(service=name), timeout=self._shared.timeout
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    continue
                raise from_rpc_error(err) from err
            services[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        logs = entries = None
        if services.get(_INGEST) == "SERVING":
            ingest = self._shared.ingest
            heights = await self._call(
                lambda: ingest.GetLogHeights(
                    pb.GetLogHeightsRequest(), timeout=self._shared.timeout
                )
            )
            logs = len(heights.log_heights)
            entries = sum(h.seq_num for h in heights.log_heights)
        return NodeStatus(
            address=self.address,
            serving=overall.status == health_pb2.HealthCheckResponse.SERVING,
            services=services,
            latency_ms=latency,
            logs=logs,
            entries=entries,
        )


# -- helpers ------------------------------------------------------------------------------------


async def _aiter(items: Iterable[_T] | AsyncIterable[_T]) -> AsyncIterator[_T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _not_served(address: str, service: str = "QueryService", why: str = "(yet)") -> NotServedError:
    error = NotServedError(
        f"the node at {address} does not serve {service} {why}, which this needs"
    )
    mark_remote(error, grpc.StatusCode.UNIMPLEMENTED)
    return error


def _raw_item(index: int, entry: bytes, operation: bytes) -> _Outgoing:
    decoded = decode_entry(entry, verify=False)  # the node verifies; this only reads positions
    op = decode_operation(operation)
    return _Outgoing(
        index=index,
        entry=entry,
        operation=operation,
        schema_id=op.schema_id,
        action=op.action,
        public_key=decoded.public_key,
        log_id=decoded.log_id,
        seq_num=decoded.seq_num,
    )


def _outcome(item: _Outgoing, result: pb.PublishResult) -> Published | PandanodeError:
    if result.HasField("ok"):
        return Published(
            operation_id=result.ok.operation_id,
            document_id=result.ok.document_id,
            view_id=result.ok.operation_id,
            schema_id=item.schema_id,
            action=item.action,
            public_key=item.public_key,
            log_id=item.log_id,
            seq_num=item.seq_num,
        )
    if item.log is not None:
        item.log.forget()
    return error_for_code(result.error.code, result.error.reason, result.error.message)


def _consistency(after: Published | str | None) -> qpb.Consistency | None:
    if after is None:
        return None
    operation_id = after.operation_id if isinstance(after, Published) else after
    return qpb.Consistency(operation_id=operation_id)


def _check_schema_description(
    name: str, description: str, fields: Mapping[str, FieldTypeLike]
) -> dict[str, FieldType]:
    def fail(problem: str) -> SchemaError:
        return SchemaError(problem, Reason.INVALID_SCHEMA_DEFINITION)

    if not is_valid_schema_name(name):
        raise fail(
            f"invalid schema name {name!r}: 2 to 64 characters from A-Z, a-z, 0-9 and '_', "
            "starting with a letter and not ending with '_'"
        )
    if not is_valid_description(description):
        raise fail(f"the description has {len(description)} characters, at most 256 are allowed")
    if not 1 <= len(fields) <= MAX_SCHEMA_FIELDS:
        raise fail(f"a schema has 1 to {MAX_SCHEMA_FIELDS} fields, got {len(fields)}")
    types: dict[str, FieldType] = {}
    for field_name, field_type in fields.items():
        if not is_valid_field_name(field_name):
            raise fail(
                f"invalid field name {field_name!r}: 1 to 64 characters from A-Z, a-z, 0-9 and "
                "'_', starting with a letter"
            )
        types[field_name] = (
            field_type if isinstance(field_type, FieldType) else FieldType.from_str(field_type)
        )
    return types


def _known_field(schema: Schema, name: str) -> FieldType:
    field_type = schema.fields.get(name)
    if field_type is None:
        raise SchemaError(
            f"unknown field '{name}': schema {schema.name} has the fields "
            f"{schema.describe_fields()} (and @owner, @document_id, @view_id, @edited, @deleted)",
            Reason.UNEXPECTED_FIELD,
        )
    return field_type


def _meta_field(name: str) -> qpb.MetaField.ValueType:
    meta = _META_FIELDS.get(name)
    if meta is None:
        raise ValueError(
            f"unknown document property '@{name}': use @owner, @document_id, @view_id, "
            "@edited or @deleted"
        )
    return meta


def _filters(schema: Schema, conditions: Mapping[str, object]) -> list[qpb.Filter]:
    filters = []
    for key, value in conditions.items():
        target, _, operator_name = key.partition("__")
        operator = _FILTER_OPERATORS.get(operator_name or "eq")
        if operator is None:
            raise ValueError(
                f"unknown filter operator '{operator_name}' in {key!r}: use one of "
                f"{', '.join(sorted(_FILTER_OPERATORS))}"
            )
        message = qpb.Filter(operator=operator)
        if target.startswith("@"):
            message.meta = _meta_field(target[1:])
            by_view = message.meta == qpb.META_FIELD_DOCUMENT_VIEW_ID
        else:
            kind = _known_field(schema, target).kind
            message.field = target
            by_view = kind in ("pinned_relation", "pinned_relation_list")
        if operator in (qpb.FILTER_OPERATOR_IN, qpb.FILTER_OPERATOR_NOT_IN):
            if not isinstance(value, list | tuple | set | frozenset):
                raise ValueError(f"filter {key!r} takes a list of values")
            message.values.extend(_filter_value(key, item, by_view) for item in value)
        else:
            message.value.CopyFrom(_filter_value(key, value, by_view))
        filters.append(message)
    return filters


def _filter_value(key: str, value: object, by_view: bool) -> qpb.FilterValue:
    """One operand; documents and receipts stand for their id (``by_view``: their view id)."""
    if isinstance(value, Document):
        value = value.view_id if by_view else value.id
    elif isinstance(value, Published):
        value = value.view_id if by_view else value.document_id
    if isinstance(value, bool):
        return qpb.FilterValue(bool_value=value)
    if isinstance(value, int):  # also for float fields: the node compares exact values
        return qpb.FilterValue(int_value=value)
    if isinstance(value, float):
        return qpb.FilterValue(float_value=value)
    if isinstance(value, str):
        return qpb.FilterValue(str_value=value)
    if isinstance(value, bytes):
        return qpb.FilterValue(bytes_value=value)
    raise ValueError(f"filter {key!r}: cannot compare with {type(value).__name__} {value!r:.40}")
