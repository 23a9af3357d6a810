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

from .resolvers import CALL_TIMEOUT, RequestContext
from .schema import SubscriptionFields, build_schema, field_kinds
from .upstream import Upstreams
from .validation import RULES

__all__ = ["SCHEMA_TTL", "GraphQLApi", "Snapshot", "is_coroutine"]

log = logging.getLogger(__name__)

SCHEMA_TTL = 1.0
"""Seconds the list of the node's schemas is trusted before it is asked for again."""
# Most characters of a query document parsed.
MAX_QUERY_CHARS = 100_000
# Most validated query documents kept (apps send the same few queries again and again).
MAX_CACHED_DOCUMENTS = 256


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


class GraphQLApi:
    """aquadoggo's GraphQL API over the upstream services.

    Args:
        upstreams: The ingest and query stubs.

    Attributes:
        subscriptions: Adds a ``SubscriptionRoot`` to every schema built (set it before the
            first request; :mod:`.subscriptions` does).
    """

    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams
        self.subscriptions: SubscriptionFields | None = None
        self._documents: OrderedDict[tuple[tuple[str, ...], str], DocumentNode] = OrderedDict()
        self._snapshot: Snapshot | None = None
        self._checked = float("-inf")
        self._refreshing: asyncio.Task[Snapshot] | None = None

    async def schema(self, *, fresh: bool = False) -> Snapshot:
        """The current schema, rebuilt when the node's schemas changed.

        Asks the query service for its schemas at most every :data:`SCHEMA_TTL` seconds (or
        now, with ``fresh``).
        """
        stale = time.monotonic() - self._checked > SCHEMA_TTL
        if self._snapshot is not None and not stale and not fresh:
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
        key = (snapshot.key, query)
        document = self._documents.get(key)
        if document is not None:
            self._documents.move_to_end(key)
            return document
        try:
            document = parse(query)
        except GraphQLSyntaxError as err:
            return [err]
        problems = validate(snapshot.schema, document, RULES)
        if problems:
            return problems
        self._documents[key] = document
        if len(self._documents) > MAX_CACHED_DOCUMENTS:
            self._documents.popitem(last=False)
        return document

    def context(self, snapshot: Snapshot) -> RequestContext:
        """A fresh context for the resolvers of one request (or one subscription)."""
        return RequestContext(self.upstreams, snapshot.kinds)


def _errors(errors: list[GraphQLError]) -> dict[str, Any]:
    return {"errors": [error.formatted for error in errors]}
