"""The closed set of events the services share over NATS JetStream, with their subjects.

Every event is a protobuf message of ``pandanode.events.v1``. Publishers set the JetStream
message id to the event's natural key (for ``operation.ingested``: the entry hash), so a
re-publish after a crash is deduplicated by the stream.

``peer.discovered`` and ``peer.lost`` have no hash: a peer can be found, lost and found again
within the duplicate window, and each of those is news. Their key is the peer's node id, the
event and the *sighting* it belongs to, named by the sighting's ``first_seen`` time in
microseconds (:func:`peer_event_message_id`). A retried publish of one event keeps its id and is
deduplicated; finding a peer again (also after a restart) starts a new sighting, a new id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pandanode.events.v1.events_pb2 import OperationIngested, PeerDiscovered, PeerLost

__all__ = [
    "OPERATION_INGESTED",
    "PEER_DISCOVERED",
    "PEER_LOST",
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "SUBJECT_PREFIX",
    "EventKind",
    "OperationIngested",
    "PeerDiscovered",
    "PeerLost",
    "operation_ingested_subject",
    "peer_event_message_id",
    "peer_event_subject",
]

SUBJECT_PREFIX: Final = "pandanode.v1.evt"
STREAM_NAME: Final = "PANDANODE"
STREAM_SUBJECTS: Final = (f"{SUBJECT_PREFIX}.>",)
# Long enough to cover a restart: re-announcing after a crash stays deduplicated.
DUPLICATE_WINDOW_SECONDS: Final = 3600.0


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of event: its name, the subject filter it lives under and its message type."""

    name: str
    subject_filter: str


OPERATION_INGESTED: Final = EventKind(
    name="operation.ingested", subject_filter=f"{SUBJECT_PREFIX}.operation.ingested.>"
)


def operation_ingested_subject(public_key: str, log_id: int) -> str:
    """Subject of an ``operation.ingested`` event: ``…operation.ingested.<public_key>.<log_id>``."""
    return f"{SUBJECT_PREFIX}.operation.ingested.{public_key}.{log_id}"


PEER_DISCOVERED: Final = EventKind(
    name="peer.discovered", subject_filter=f"{SUBJECT_PREFIX}.peer.discovered.>"
)
PEER_LOST: Final = EventKind(name="peer.lost", subject_filter=f"{SUBJECT_PREFIX}.peer.lost.>")


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
