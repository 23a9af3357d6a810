"""The closed set of events the services share over NATS JetStream: subjects, ids, payloads.

Every event is a protobuf message of ``pandanode.events.v1``, carried by an :class:`Outgoing`
that only this module makes (the bus publishes nothing else), with its subject and its
JetStream message id. A re-publish of the same event carries the same id, so the stream's
duplicate window (an hour, longer than a restart) drops the copy.

``operations.ingested`` — one subject, ``pandanode.v1.evt.operations.ingested``, for every
batch. Ingest announces each group commit as one ``OperationsIngested`` message holding the
commit's operations in store order (log order within each log), each with its store sequence
(strictly increasing across commits). NATS refuses messages over its ``max_payload`` (1 MiB by
default) and a commit of up to ``write_batch_max`` entries of up to 272 KiB operations does not
fit, so :func:`operations_ingested` splits a commit by byte size into messages of consecutive
operations. Each message's id is ``ops.<first sequence>.<last sequence>.<last operation id>``:
the outbox, re-publishing a commit after a crash, splits it the same way and gets the same ids.
Consumers are idempotent per operation id anyway (a different ``max_payload`` after a restart
would cut differently).

``peer.discovered`` and ``peer.lost`` have no hash: a peer can be found, lost and found again
within the duplicate window, and each of those is news. Their key is the peer's node id, the
event and the *sighting* it belongs to, named by the sighting's ``first_seen`` time in
microseconds. A retried publish of one event keeps its id and is deduplicated; finding a peer
again (also after a restart) starts a new sighting, a new id. Subjects:
``pandanode.v1.evt.peer.discovered.<node_id>`` and ``pandanode.v1.evt.peer.lost.<node_id>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pandanode.discovery.v1.discovery_pb2 import Peer
from pandanode.events.v1.events_pb2 import (
    IngestedOperation,
    OperationsIngested,
    PeerDiscovered,
    PeerLost,
)

__all__ = [
    "DUPLICATE_WINDOW_SECONDS",
    "EVENT_KINDS",
    "OPERATIONS_INGESTED",
    "PEER_DISCOVERED",
    "PEER_LOST",
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "SUBJECT_PREFIX",
    "EventKind",
    "IngestedOperation",
    "OperationsIngested",
    "Outgoing",
    "PeerDiscovered",
    "PeerLost",
    "operations_ingested",
    "operations_ingested_range",
    "parse_operations_ingested",
    "peer_discovered",
    "peer_event_message_id",
    "peer_event_subject",
    "peer_lost",
]

SUBJECT_PREFIX: Final = "pandanode.v1.evt"
STREAM_NAME: Final = "PANDANODE"
STREAM_SUBJECTS: Final = (f"{SUBJECT_PREFIX}.>",)
# Long enough to cover a restart: re-announcing after a crash stays deduplicated.
DUPLICATE_WINDOW_SECONDS: Final = 3600.0


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of event: its name and the subject filter it lives under."""

    name: str
    subject_filter: str


OPERATIONS_INGESTED: Final = EventKind(
    name="operations.ingested", subject_filter=f"{SUBJECT_PREFIX}.operations.ingested"
)
PEER_DISCOVERED: Final = EventKind(
    name="peer.discovered", subject_filter=f"{SUBJECT_PREFIX}.peer.discovered.>"
)
PEER_LOST: Final = EventKind(name="peer.lost", subject_filter=f"{SUBJECT_PREFIX}.peer.lost.>")
EVENT_KINDS: Final = (OPERATIONS_INGESTED, PEER_DISCOVERED, PEER_LOST)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready for the bus. Made by the functions of this module only.

    Attributes:
        kind: The kind of event.
        subject: The NATS subject.
        message_id: The JetStream message id (``Nats-Msg-Id``): equal for equal events.
        payload: The serialized protobuf message.
    """

    kind: EventKind
    subject: str
    message_id: str
    payload: bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_OPERATIONS_TAG: Final = b"\x0a"  # OperationsIngested.operations: field 1, length-delimited


def operations_ingested(operations: Sequence[IngestedOperation], max_bytes: int) -> list[Outgoing]:
    """The ``OperationsIngested`` messages of one commit, split to stay within ``max_bytes``.

    Operations keep their order; each message holds a run of consecutive ones, at least one.
    The split depends only on the operations and ``max_bytes``, so a re-publish gets the same
    messages and ids.

    Args:
        operations: The commit's operations in store order (``sequence`` increasing).
        max_bytes: The largest payload a message may have.

    Raises:
        ValueError: one operation alone is larger than ``max_bytes``.
    """
    messages: list[Outgoing] = []
    parts: list[bytes] = []
    size = 0
    first = last = operations[0] if operations else None

    def flush() -> None:
        assert first is not None and last is not None
        messages.append(
            Outgoing(
                kind=OPERATIONS_INGESTED,
                subject=OPERATIONS_INGESTED.subject_filter,
                message_id=f"ops.{first.sequence}.{last.sequence}.{last.operation_id}",
                payload=b"".join(parts),
            )
        )

    for operation in operations:
        body = operation.SerializeToString()
        size_of_body = len(body)
        # Nearly every operation's event is 128 bytes to 16 KiB long: a two-byte varint.
        if 0x80 <= size_of_body < 0x4000:
            head = bytes(((size_of_body & 0x7F) | 0x80, size_of_body >> 7))
        else:
            head = _varint(size_of_body)
        part = _OPERATIONS_TAG + head + body
        if len(part) > max_bytes:
            raise ValueError(
                f"operation {operation.operation_id} needs {len(part)} bytes in an event, over "
                f"the bus's limit of {max_bytes}: raise NATS max_payload"
            )
        if parts and size + len(part) > max_bytes:
            flush()
            parts, size, first = [], 0, operation
        parts.append(part)
        size += len(part)
        last = operation
    if parts:
        flush()
    return messages


def operations_ingested_range(message_id: str) -> tuple[int, int] | None:
    """The (first, last) store sequences an ``operations.ingested`` message id names.

    Lets a watcher follow announcing from message headers alone. None for any other id.
    """
    parts = message_id.split(".")
    if len(parts) != 4 or parts[0] != "ops" or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(parts[1]), int(parts[2])


def parse_operations_ingested(payload: bytes) -> OperationsIngested:
    """Read an ``OperationsIngested`` payload.

    Raises:
        google.protobuf.message.DecodeError: bytes that are not the message.
    """
    event = OperationsIngested()
    event.ParseFromString(payload)
    return event


def peer_event_subject(kind: EventKind, node_id: str) -> str:
    """Subject of a peer event: ``…peer.discovered.<node_id>`` or ``…peer.lost.<node_id>``."""
    if kind not in (PEER_DISCOVERED, PEER_LOST):
        raise ValueError(f"{kind.name} is not a peer event")
    return f"{SUBJECT_PREFIX}.{kind.name}.{node_id}"


def peer_event_message_id(kind: EventKind, node_id: str, first_seen: float) -> str:
    """JetStream message id of a peer event: ``<node_id>.<discovered|lost>.<first_seen µs>``.

    Args:
        kind: :data:`PEER_DISCOVERED` or :data:`PEER_LOST`.
        node_id: The peer's node id.
        first_seen: When the sighting the event belongs to began (seconds since the epoch).
    """
    event = kind.name.removeprefix("peer.")
    # The microseconds of the event's ``peer.first_seen`` Timestamp (nanoseconds, rounded).
    micros = round(first_seen * 1_000_000_000) // 1000
    return f"{node_id}.{event}.{micros}"


def peer_discovered(peer: Peer, observer_node_id: str, first_seen: float) -> Outgoing:
    """The ``peer.discovered`` message of a sighting that began at ``first_seen``."""
    payload = PeerDiscovered(peer=peer, observer_node_id=observer_node_id)
    return Outgoing(
        kind=PEER_DISCOVERED,
        subject=peer_event_subject(PEER_DISCOVERED, peer.node_id),
        message_id=peer_event_message_id(PEER_DISCOVERED, peer.node_id, first_seen),
        payload=payload.SerializeToString(),
    )


def peer_lost(peer: Peer, observer_node_id: str, first_seen: float) -> Outgoing:
    """The ``peer.lost`` message ending the sighting that began at ``first_seen``."""
    payload = PeerLost(peer=peer, observer_node_id=observer_node_id)
    return Outgoing(
        kind=PEER_LOST,
        subject=peer_event_subject(PEER_LOST, peer.node_id),
        message_id=peer_event_message_id(PEER_LOST, peer.node_id, first_seen),
        payload=payload.SerializeToString(),
    )
