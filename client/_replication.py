"""The node's replication: catch up with another node now, list the sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from google.protobuf.timestamp_pb2 import Timestamp

from pandanode.replication.v1 import replication_pb2 as pb
from pandanode.replication.v1 import replication_pb2_grpc

from ._connection import Connection, not_served
from ._errors import NotServedError

if TYPE_CHECKING:
    from pandanode.replication.v1.replication_pb2_grpc import ReplicationServiceAsyncStub

__all__ = ["ReplicationPeer", "SyncSession", "list_sessions", "sync_with"]

# Seconds a SyncWith may take beyond the client's timeout: a whole catch-up.
_SYNC_TIMEOUT = 600.0


def _time(stamp: Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


@dataclass(frozen=True, slots=True)
class SyncSession:
    """One replication session of the node with a peer.

    Attributes:
        node_id: The peer's node id (empty if it never announced itself).
        address: The peer's address, when known.
        state: ``announcing``, ``syncing``, ``live``, ``done`` or ``failed``.
        initiator: Whether the node dialed.
        target_schema_ids: The schema ids both replicate (``*``: any).
        entries_sent: Entries sent to the peer.
        entries_received: Entries received from it.
        entries_rejected: Received entries ingest rejected.
        bytes_sent: Message bytes sent.
        bytes_received: Message bytes received.
        started: When it began (UTC).
        ended: When it ended; None while it runs.
        error_reason: Why it failed; empty if it did not.
        held_peak: The most received entries held back at once for a missing dependency.
        held_dropped: Held entries dropped at the hold buffer's bound.
    """

    node_id: str
    address: str
    state: str
    initiator: bool
    target_schema_ids: tuple[str, ...]
    entries_sent: int
    entries_received: int
    entries_rejected: int
    bytes_sent: int
    bytes_received: int
    started: datetime | None
    ended: datetime | None
    error_reason: str
    held_peak: int = 0
    held_dropped: int = 0

    @classmethod
    def from_pb(cls, message: pb.Session) -> SyncSession:
        """From the ``Session`` message."""
        state = pb.SessionState.Name(message.state).removeprefix("SESSION_STATE_").lower()
        return cls(
            node_id=message.node_id,
            address=message.address,
            state=state,
            initiator=message.initiator,
            target_schema_ids=tuple(message.target_schema_ids),
            entries_sent=message.entries_sent,
            entries_received=message.entries_received,
            entries_rejected=message.entries_rejected,
            bytes_sent=message.bytes_sent,
            bytes_received=message.bytes_received,
            started=_time(message.started, message.HasField("started")),
            ended=_time(message.ended, message.HasField("ended")),
            error_reason=message.error_reason,
            held_peak=message.held_peak,
            held_dropped=message.held_dropped,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values (times as ISO 8601 strings)."""
        return {
            "node_id": self.node_id,
            "address": self.address,
            "state": self.state,
            "initiator": self.initiator,
            "target_schema_ids": list(self.target_schema_ids),
            "entries_sent": self.entries_sent,
            "entries_received": self.entries_received,
            "entries_rejected": self.entries_rejected,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "error_reason": self.error_reason,
            "held_peak": self.held_peak,
            "held_dropped": self.held_dropped,
        }


@dataclass(frozen=True, slots=True)
class ReplicationPeer:
    """A peer the node does not sync with now: backed off, banned or blocked.

    Attributes:
        node_id: Its node id.
        address: Its address, when known.
        failures: Its failed sessions in the last 10 minutes.
        retry_after: Not dialed before then; None when not backing off.
        banned_until: Refused both ways until then; None when not banned.
        blocked: Refused for good by the node's settings.
        last_error_reason: Why its last session failed.
    """

    node_id: str
    address: str
    failures: int
    retry_after: datetime | None
    banned_until: datetime | None
    blocked: bool
    last_error_reason: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values (times as ISO 8601 strings)."""
        return {
            "node_id": self.node_id,
            "address": self.address,
            "failures": self.failures,
            "retry_after": self.retry_after.isoformat() if self.retry_after else None,
            "banned_until": self.banned_until.isoformat() if self.banned_until else None,
            "blocked": self.blocked,
            "last_error_reason": self.last_error_reason,
        }


def _stub(connection: Connection) -> ReplicationServiceAsyncStub:
    return replication_pb2_grpc.ReplicationServiceStub(connection.channel)


async def sync_with(connection: Connection, address: str) -> SyncSession:
    """One catch-up session of the node with the node at ``address``, run to its end.

    Raises:
        NotServedError: The node does not run replication.
    """
    stub = _stub(connection)
    timeout = connection.timeout + _SYNC_TIMEOUT
    try:
        response = await connection.call(
            lambda: stub.SyncWith(pb.SyncWithRequest(address=address), timeout=timeout),
            retry=False,
        )
    except NotServedError as err:
        raise not_served(connection.address, "ReplicationService", "does not replicate") from err
    return SyncSession.from_pb(response)


async def list_sessions(
    connection: Connection,
) -> tuple[list[SyncSession], list[ReplicationPeer]]:
    """The node's running and recent sessions, and the peers it does not sync with now.

    Raises:
        NotServedError: The node does not run replication.
    """
    stub = _stub(connection)
    try:
        response = await connection.call(
            lambda: stub.ListSessions(pb.ListSessionsRequest(), timeout=connection.timeout)
        )
    except NotServedError as err:
        raise not_served(connection.address, "ReplicationService", "does not replicate") from err
    peers = [
        ReplicationPeer(
            node_id=peer.node_id,
            address=peer.address,
            failures=peer.failures,
            retry_after=_time(peer.retry_after, peer.HasField("retry_after")),
            banned_until=_time(peer.banned_until, peer.HasField("banned_until")),
            blocked=peer.blocked,
            last_error_reason=peer.last_error_reason,
        )
        for peer in response.peers
    ]
    return [SyncSession.from_pb(s) for s in response.sessions], peers
