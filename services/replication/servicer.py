"""The gRPC face of replication: streams in, sessions out, records as messages. Nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
import grpc.aio
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pandanode.core.errors import ERROR_DOMAIN, AdminOnlyError
from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc as pb_grpc
from pandanode.services.runtime.addresses import split_host_port
from pandanode.services.runtime.clients import client_address, is_loopback
from pandanode.services.runtime.errors import abort
from pandanode.services.runtime.guard import MalformedRequestError
from pandanode.services.runtime.peers import split_scheme

from .driver import SessionRecord
from .replication import PeerRecord, Replication, SessionsFullError
from .session import Phase

__all__ = ["ReplicationServicer", "peer_to_pb", "session_to_pb", "status_code_of"]

_STATES: Final = {
    Phase.START: pb.SESSION_STATE_ANNOUNCING,
    Phase.ANNOUNCE: pb.SESSION_STATE_ANNOUNCING,
    Phase.DIGEST: pb.SESSION_STATE_ANNOUNCING,
    Phase.SYNC: pb.SESSION_STATE_SYNCING,
    Phase.LIVE: pb.SESSION_STATE_LIVE,
    Phase.DONE: pb.SESSION_STATE_DONE,
    Phase.FAILED: pb.SESSION_STATE_FAILED,
}

_CODES: Final = {
    "PEER_REFUSED": grpc.StatusCode.PERMISSION_DENIED,
    "DUPLICATE_SESSION": grpc.StatusCode.ALREADY_EXISTS,
    "TOO_MANY_SESSIONS": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "SYNC_IDLE_TIMEOUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "INGEST_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "STOPPING": grpc.StatusCode.UNAVAILABLE,
    "PEER_LOST": grpc.StatusCode.UNAVAILABLE,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "LIVE_DRIFT": grpc.StatusCode.ABORTED,
    "SELF_SYNC": grpc.StatusCode.FAILED_PRECONDITION,
    "UNSUPPORTED_VERSION": grpc.StatusCode.FAILED_PRECONDITION,
}


def status_code_of(reason: str) -> grpc.StatusCode:
    """The status a session failing with ``reason`` ends the stream with."""
    return _CODES.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


def _status(code: grpc.StatusCode, reason: str, message: str) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    text = message[:1000] or reason
    return rpc_status.to_status(
        status_pb2.Status(code=code.value[0], message=text, details=[detail])
    )


def _time(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def session_to_pb(record: SessionRecord) -> pb.Session:
    """A session record as the ``Session`` message."""
    return pb.Session(
        node_id=record.node_id,
        address=record.address,
        state=_STATES[record.phase],
        target_schema_ids=list(record.target),
        entries_sent=record.entries_sent,
        entries_received=record.entries_received,
        entries_rejected=record.entries_rejected,
        bytes_sent=record.bytes_sent,
        bytes_received=record.bytes_received,
        started=_time(record.started),
        ended=_time(record.ended),
        error_reason=record.error_reason,
        initiator=record.initiator,
        held_peak=record.held_peak,
        held_dropped=record.held_dropped,
    )


def peer_to_pb(peer: PeerRecord, blocked: bool) -> pb.PeerStatus:
    """A peer record as the ``PeerStatus`` message."""
    return pb.PeerStatus(
        node_id=peer.node_id,
        address=peer.address,
        failures=len(peer.failures),
        retry_after=_time(peer.retry_after if peer.consecutive else None),
        banned_until=_time(peer.banned_until),
        last_error_reason=peer.last_error_reason,
        blocked=blocked,
    )


class _ServerTransport:
    """The acceptor's side of a Sync call.

    Reads through the request iterator (where the server's guard turns unparseable bytes into
    ``MALFORMED_REQUEST``), writes through the context.
    """

    def __init__(self, requests: AsyncIterator[pb.SyncMessage], context: Any) -> None:
        self._requests = requests
        self._context = context
        self.malformed: MalformedRequestError | None = None

    async def send(self, message: pb.SyncMessage) -> None:
        try:
            await self._context.write(message)
        except Exception as err:  # the call ended: grpc raises several kinds here
            raise ConnectionError(f"the stream ended: {err}") from None

    async def receive(self) -> pb.SyncMessage | None:
        try:
            return await anext(self._requests)
        except StopAsyncIteration:
            return None
        except MalformedRequestError as err:
            self.malformed = err
            raise

    async def close_send(self) -> None:
        """Nothing to do: the acceptor's side ends when the handler returns."""


class ReplicationServicer(pb_grpc.ReplicationServiceServicer):
    """Serves ``pandanode.replication.v1.ReplicationService``."""

    def __init__(self, replication: Replication) -> None:
        self._replication = replication

    async def Sync(  # type: ignore[override]  # noqa: N802 - gRPC method name
        self, request_iterator: Any, context: Any
    ) -> None:
        """One session a peer dialed; ends with the failure's status, if it failed."""
        transport = _ServerTransport(request_iterator, context)
        try:
            record = await self._replication.accept(transport)
        except SessionsFullError as err:
            await context.abort_with_status(
                _status(grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_SESSIONS", str(err))
            )
            return
        if transport.malformed is not None:
            raise transport.malformed  # the guard answers it (MALFORMED_REQUEST)
        if record.error_reason:
            await context.abort_with_status(
                _status(
                    status_code_of(record.error_reason),
                    record.error_reason,
                    f"replication session ended: {record.error_reason}",
                )
            )

    async def SyncWith(  # noqa: N802 - gRPC method name
        self, request: pb.SyncWithRequest, context: Any
    ) -> pb.Session:
        """One catch-up session with the node at an address; answers when it ended.

        An admin method: it makes the node dial any address, so from loopback only unless
        ``admin_allow_remote`` (PERMISSION_DENIED, ``ADMIN_ONLY``).
        """
        settings = self._replication.settings
        caller = client_address(context, settings.trusted_networks)
        # Trusted proxies may name the client; only a client on loopback is admin.
        if not (is_loopback(caller) or settings.admin_allow_remote):
            await abort(
                context,
                AdminOnlyError(
                    "SyncWith is an admin method, taken from this node's machine only: run "
                    "`pandanode sync` there (or have the operator set admin_allow_remote)"
                ).about(client_address=caller),
            )
        try:
            split_host_port(split_scheme(request.address)[1])
        except ValueError as err:
            await context.abort_with_status(
                _status(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", f"address {err}")
            )
        record = await self._replication.sync_with(request.address)
        return session_to_pb(record)

    async def ListSessions(  # noqa: N802 - gRPC method name
        self, request: pb.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSessionsResponse:
        """Running and recent sessions; peers backed off, banned or blocked."""
        replication = self._replication
        return pb.ListSessionsResponse(
            sessions=[session_to_pb(record) for record in replication.sessions()],
            peers=[
                peer_to_pb(peer, peer.node_id in replication.block)
                for peer in replication.troubled_peers()
            ],
        )
