"""The closed set of events the services share over NATS JetStream, with their subjects.

Every event is a protobuf message of ``pandanode.events.v1``. Publishers set the JetStream
message id to the event's natural key (for ``operation.ingested``: the entry hash), so a
re-publish after a crash is deduplicated by the stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pandanode.events.v1.events_pb2 import OperationIngested

__all__ = [
    "STREAM_NAME",
    "STREAM_SUBJECTS",
    "SUBJECT_PREFIX",
    "EventKind",
    "OperationIngested",
    "operation_ingested_subject",
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
