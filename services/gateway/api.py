"""Running GraphQL requests against the upstream services.

The current schema (rebuilt when the node's schemas change), parsing, aquadoggo's validation
rules, execution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import CoroutineType
from typing import Any

import grpc
import grpc.aio
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    execute,
    parse,
    validate,
)
from graphql.error import GraphQLSyntaxError

from pandanode.query.v1 import query_pb2 as qpb

from .execution import PlainFieldsExecutionContext
from .resolvers import CALL_TIMEOUT, RequestContext
from .schema import SubscriptionFields, build_schema, field_kinds
from .upstream import Upstreams
from .validation import RULES

__all__ = [
    "DOCUMENT_CACHE_BYTES",
    "SCHEMA_TTL",
    "DocumentCache",
    "GraphQLApi",
    "Snapshot",
    "is_coroutine",
]

log = logging.getLogger(__name__)

SCHEMA_TTL = 1.0
"""Seconds the list of the node's schemas is trusted before it is asked for again."""
# Most characters of a query document parsed.
MAX_QUERY_CHARS = 100_000
DOCUMENT_CACHE_BYTES = 32 * 1024 * 1024
"""Default memory for validated query documents (:class:`DocumentCache`)."""
# graphql-core's syntax tree of a query takes some 50 to 140 bytes per character of its text
# (measured with tracemalloc); a cached document is counted as this many bytes per character.
_BYTES_PER_QUERY_CHAR = 160


def is_coroutine(value: Any) -> bool:
    """Whether a resolver's result is to be awaited: our resolvers return coroutines only.

    graphql-core's own check also looks for ``__await__`` on every value (each string, each
    number) it completes; this one is a type comparison.
    """
    return type(value) is CoroutineType


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The GraphQL schema built for one list of the node's schemas."""

    key: tuple[str, ...]
    schema: GraphQLSchema
    kinds: Mapping[str, Mapping[str, qpb.FieldKind.ValueType]]


class DocumentCache:
    """Parsed and validated query documents by schema and query text, least recently used out.

    Apps send the same few queries again and again; parsing and validating one costs more
    than executing it. The memory the documents take is bounded: each counts
    ``_BYTES_PER_QUERY_CHAR`` bytes per character of its query (an estimate of its syntax
    tree), and the least recently used go when the total would pass ``max_bytes``.

    Args:
        max_bytes: The most (estimated) bytes kept; a larger document is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._documents: OrderedDict[tuple[tuple[str, ...], str], DocumentNode] = OrderedDict()

    def __len__(self) -> int:
        return len(self._documents)

    def get(self, schema_key: tuple[str, ...], query: str) -> DocumentNode | None:
        """The document of ``query`` validated against the schema ``schema_key``, if kept."""
        key = (schema_key, query)
        document = self._documents.get(key)
        if document is not None:
            self._documents.move_to_end(key)
        return document

    def put(self, schema_key: tuple[str, ...], query: str, document: DocumentNode) -> None:
        """Keep ``document`` (``query`` validated against ``schema_key``), evicting as needed."""
        cost = len(query) * _BYTES_PER_QUERY_CHAR
        key = (schema_key, query)
        if cost > self.max_bytes or key in self._documents:
            return
        while self._documents and self.bytes + cost > self.max_bytes:
            (_, evicted), _ = self._documents.popitem(last=False)
            self.bytes -= len(evicted) * _BYTES_PER_QUERY_CHAR
        self._documents[key] = document
        self.bytes += cost


class GraphQLApi:
    """aquadoggo's GraphQL API over the upstream services.

    Args:
        upstreams: The ingest and query stubs.
        document_cache_bytes: Memory for validated query documents (:class:`DocumentCache`).

    Attributes:
        subscriptions: Adds a ``SubscriptionRoot`` to every schema built (set it before the
            first request; :mod:`.subscriptions` does).
        documents: The validated query documents kept.
    """

    def __init__(
        self, upstreams: Upstreams, document_cache_bytes: int = DOCUMENT_CACHE_BYTES
    ) -> None:
        self.upstreams = upstreams
        self.subscriptions: SubscriptionFields | None = None
        self.documents = DocumentCache(document_cache_bytes)
        self._snapshot: Snapshot | None = None
        self._checked = float("-inf")
        self._refreshing: asyncio.Task[Snapshot] | None = None

    async def schema(self, *, fresh: bool = False) -> Snapshot:
        """The current schema, rebuilt when the node's schemas changed.

        Asks the query service for its schemas at most every :data:`SCHEMA_TTL` seconds. When
        that time is up, the request goes on with the schema it has while the list is asked
        for in the background (a request never waits for that round trip, unless there is no
        schema yet or ``fresh`` asks for the node's list now).
        """
        stale = time.monotonic() - self._checked > SCHEMA_TTL
        if self._snapshot is not None and not fresh:
            if stale and (self._refreshing is None or self._refreshing.done()):
                self._refreshing = asyncio.ensure_future(self._refresh())
                self._refreshing.add_done_callback(_log_refresh_failure)
            return self._snapshot
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> Snapshot:
        response = await self.upstreams.query.ListSchemas(
            qpb.ListSchemasRequest(), timeout=CALL_TIMEOUT
        )
        schemas = list(response.schemas)
        key = tuple(sorted(s.schema_id for s in schemas))
        self._checked = time.monotonic()
        if self._snapshot is None or self._snapshot.key != key:
            # Many schemas take a while to build: off the event loop.
            built = await asyncio.to_thread(build_schema, schemas, self.subscriptions)
            self._snapshot = Snapshot(key, built, field_kinds(schemas))
            log.info("gateway: GraphQL schema built for %d p2panda schemas", len(key))
        return self._snapshot

    async def execute(
        self, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> dict[str, Any]:
        """Run one request; the JSON response (``data`` and/or ``errors``)."""
        prepared = await self.prepare(query)
        if isinstance(prepared, list):
            return _errors(prepared)
        snapshot, document = prepared
        result = execute(
            snapshot.schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=self.context(snapshot),
            is_awaitable=is_coroutine,
            execution_context_class=PlainFieldsExecutionContext,
        )
        if not isinstance(result, ExecutionResult):
            result = await result
        return dict(result.formatted)

    async def prepare(self, query: str) -> tuple[Snapshot, DocumentNode] | list[GraphQLError]:
        """Parse and validate ``query`` against the current schema; or what is wrong.

        A query that does not validate is checked again against a fresh list of the node's
        schemas (one may have been added since). Validated documents are cached per schema,
        so a query an app repeats is parsed once.
        """
        if len(query) > MAX_QUERY_CHARS:
            return [GraphQLError(f"the query is longer than {MAX_QUERY_CHARS} characters")]
        try:
            snapshot = await self.schema()
            prepared = self._validated(snapshot, query)
            if isinstance(prepared, list) and not any(
                isinstance(e, GraphQLSyntaxError) for e in prepared
            ):
                newer = await self.schema(fresh=True)
                if newer is not snapshot:
                    snapshot = newer
                    prepared = self._validated(snapshot, query)
        except grpc.aio.AioRpcError as err:
            return [GraphQLError(f"the query service is unavailable: {err.details()}")]
        if isinstance(prepared, list):
            return prepared
        return snapshot, prepared

    def _validated(self, snapshot: Snapshot, query: str) -> DocumentNode | list[GraphQLError]:
        document = self.documents.get(snapshot.key, query)
        if document is not None:
            return document
        try:
            document = parse(query)
        except GraphQLSyntaxError as err:
            return [err]
        problems = validate(snapshot.schema, document, RULES)
        if problems:
            return problems
        self.documents.put(snapshot.key, query, document)
        return document

    def context(self, snapshot: Snapshot) -> RequestContext:
        """A fresh context for the resolvers of one request (or one subscription)."""
        return RequestContext(self.upstreams, snapshot.kinds)


def _log_refresh_failure(task: asyncio.Task[Snapshot]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # The upstream watch already reports an unreachable query service.
        log.debug("gateway: could not refresh the list of schemas: %s", task.exception())


def _errors(errors: list[GraphQLError]) -> dict[str, Any]:
    return {"errors": [error.formatted for error in errors]}
