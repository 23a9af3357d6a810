"""One gRPC channel to a node, what every client made from it shares, and the call boundary.

Every call of the client goes through :meth:`Connection.call`: the one place where a failed
gRPC call becomes pandanode's exception and where calls that are safe to repeat are retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Final, TypeVar

import grpc
import grpc.aio

from pandanode.core.errors import PandanodeError

from ._errors import (
    LimitExceededError,
    NodeUnavailableError,
    NotServedError,
    from_rpc_error,
    mark_remote,
    told_by_node,
)

if TYPE_CHECKING:
    from pandanode.core.publish import NextArgs
    from pandanode.core.schema import Schema
    from pandanode.core.schema_id import SchemaId
    from pandanode.discovery.v1.discovery_pb2_grpc import DiscoveryServiceAsyncStub
    from pandanode.ingest.v1 import ingest_pb2 as pb
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

    from ._logs import Author, Writes

__all__ = ["MAX_MESSAGE_BYTES", "Connection", "next_args_from_pb", "not_served", "retry_wait"]

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""The largest gRPC message the client sends or receives."""

_T = TypeVar("_T")


@dataclass(eq=False)
class Connection:
    """What every :class:`~pandanode.client.Client` made from one ``connect`` shares.

    Attributes:
        address: The node's address.
        channel: The gRPC channel.
        timeout: Deadline of each call, in seconds.
        retries: How often a call that is safe to repeat is retried when the node is unavailable.
        schemas: Schemas by id, as far as known here.
        schemas_by_text: The same, by the text they were asked for with.
        authors: Each key pair's logs, by public key.
        writes: The latest write to each document through this connection.
        query_served: False once the node said it does not serve QueryService.
    """

    address: str
    channel: grpc.aio.Channel
    timeout: float
    retries: int
    schemas: dict[SchemaId, Schema] = field(default_factory=dict)
    schemas_by_text: dict[str, Schema] = field(default_factory=dict)
    authors: dict[str, Author] = field(default_factory=dict)
    query_served: bool = True

    @cached_property
    def writes(self) -> Writes:
        """The latest write to each document through this connection."""
        from ._logs import Writes

        return Writes()

    # Each service's generated code loads with the first call to it.
    @cached_property
    def ingest(self) -> IngestServiceAsyncStub:
        """The IngestService stub."""
        from pandanode.ingest.v1 import ingest_pb2_grpc

        return ingest_pb2_grpc.IngestServiceStub(self.channel)

    @cached_property
    def query(self) -> QueryServiceAsyncStub:
        """The QueryService stub."""
        from pandanode.query.v1 import query_pb2_grpc

        return query_pb2_grpc.QueryServiceStub(self.channel)

    @cached_property
    def discovery(self) -> DiscoveryServiceAsyncStub:
        """The DiscoveryService stub."""
        from pandanode.discovery.v1 import discovery_pb2_grpc

        return discovery_pb2_grpc.DiscoveryServiceStub(self.channel)

    async def call(
        self, call: Callable[[], Awaitable[_T]], *, retry: bool = True, waits: bool = False
    ) -> _T:
        """Run one unary call through the error boundary, retrying when that is safe and useful.

        A call that is safe to repeat is retried on UNAVAILABLE, and on RESOURCE_EXHAUSTED
        when the node said when to retry (a ``google.rpc.RetryInfo``). Before each retry it
        waits the node's ``RetryInfo`` delay if there was one, else its own growing back-off;
        a wait that would not end within the call's timeout (counted from its first attempt)
        is not waited: the error is raised at once (see :func:`retry_wait`).

        With ``waits`` the call waits on the node for a write to be materialized: an
        UNAVAILABLE the node answered then means the wait used up the deadline, and is not
        retried (only an unreachable node is).
        """
        attempts = self.retries + 1 if retry else 1
        backoff = 0.05
        started = time.monotonic()
        for attempt in range(attempts):
            try:
                return await call()
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
                if attempt + 1 < attempts and _retryable(error, waits=waits):
                    remaining = self.timeout - (time.monotonic() - started)
                    wait = retry_wait(backoff, error.retry_delay, remaining)
                    if wait is not None:
                        await asyncio.sleep(wait)  # as the node asked, or our back-off
                        backoff *= 4
                        continue
                raise error from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def query_call(self, call: Callable[[], Awaitable[_T]], *, waits: bool = False) -> _T:
        """Like :meth:`call`, for QueryService: a node without it raises a clear NotServedError."""
        try:
            return await self.call(call, waits=waits)
        except NotServedError as err:
            raise not_served(self.address) from err

    async def next_args(self, public_key: str, view_id: str) -> NextArgs:
        """The node's next entry arguments for an author (for a new document, or a view's)."""
        from pandanode.ingest.v1 import ingest_pb2 as pb

        request = pb.NextArgsRequest(public_key=public_key, document_view_id=view_id)
        ingest = self.ingest
        response = await self.call(lambda: ingest.NextArgs(request, timeout=self.timeout))
        return next_args_from_pb(response.next_args)


def retry_wait(backoff: float, retry_delay: float | None, remaining: float) -> float | None:
    """How long to wait before retrying a failed call, or None to give up at once.

    Args:
        backoff: The client's own back-off before this retry, in seconds.
        retry_delay: The delay the node asked for (``google.rpc.RetryInfo``), or None.
        remaining: Seconds left of the call's timeout.

    Returns:
        The node's delay when it sent one, else ``backoff``; None when that wait would not
        end within ``remaining`` (a retry could not finish in time, so the error is raised
        now rather than after a pointless wait).
    """
    wait = backoff if retry_delay is None else max(retry_delay, 0.0)
    return None if wait > remaining else wait


def _retryable(error: PandanodeError, *, waits: bool) -> bool:
    if isinstance(error, NodeUnavailableError):
        return not (waits and told_by_node(error))
    # A budget that ran out is worth another try only when the node says when.
    return isinstance(error, LimitExceededError) and error.retry_delay is not None


def next_args_from_pb(args: pb.NextArguments) -> NextArgs:
    """A ``NextArgs`` message as the core's :class:`NextArgs`."""
    from pandanode.core.publish import NextArgs

    return NextArgs(
        log_id=args.log_id,
        seq_num=args.seq_num,
        backlink=args.backlink or None,
        skiplink=args.skiplink or None,
    )


def not_served(address: str, service: str = "QueryService", why: str = "(yet)") -> NotServedError:
    """The error for a node that does not serve ``service``, as if the node had said so."""
    error = NotServedError(
        f"the node at {address} does not serve {service} {why}, which this needs"
    )
    mark_remote(error, grpc.StatusCode.UNIMPLEMENTED)
    return error
