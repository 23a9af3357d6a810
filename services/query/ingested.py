"""The operations of ``operations.ingested`` messages as the materializer applies them.

Each operation's position — :attr:`IngestedEvent.sequence`, which becomes
:attr:`~.model.DocumentChange.sequence` — is ``stream sequence × 2**20 + index in the message``:
strictly increasing in stream order, and comparable with the materializer's position (the
position of the last operation a committed checkpoint can hold).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from pandanode.core.document import DocumentOperation
from pandanode.core.errors import quote
from pandanode.core.hexid import is_hex
from pandanode.core.operation import decode_trusted_operation
from pandanode.services.runtime.bus import Delivery
from pandanode.services.runtime.events import IngestedOperation, parse_operations_ingested
from pandanode.services.runtime.guard import RateLimitedLog

from .store import StoredOperation

__all__ = ["POSITIONS_PER_MESSAGE", "IngestedEvent", "parse_runs"]

log = logging.getLogger(__name__)
_MALFORMED = RateLimitedLog(log)

POSITIONS_PER_MESSAGE: Final = 1 << 20
"""Operations one message may hold; positions are ``stream sequence × this + index``."""


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """One operation of an ``operations.ingested`` message, and its position in the stream.

    Attributes:
        sequence: Its position: the message's stream sequence × :data:`POSITIONS_PER_MESSAGE`
            + its index in the message (strictly increasing in stream order).
        operation: The operation with its ids, as ingest announced it.
        entry: The entry bytes.
        decoded: The operation decoded.
    """

    sequence: int
    operation: StoredOperation
    entry: bytes
    decoded: DocumentOperation

    @classmethod
    def parse(cls, sequence: int, event: IngestedOperation) -> IngestedEvent:
        """Read one ``pandanode.events.v1.IngestedOperation`` at position ``sequence``.

        Raises:
            ValueError: malformed ids.
            PandanodeError: operation bytes that do not decode.
        """
        # Each read of a field of the message makes a new object: read each once.
        operation_id, document_id = event.operation_id, event.document_id
        public_key, data = event.public_key, event.operation
        # The operation id is checked by DocumentOperation below (a YASMF hash).
        if not is_hex(document_id, 68, lowercase=True):
            raise ValueError(f"event {sequence}: document_id is not 68 hex characters")
        if not is_hex(public_key, 64, lowercase=True):
            raise ValueError(f"event {sequence}: public_key is not 64 hex characters")
        operation = StoredOperation(
            operation_id,
            public_key,
            event.log_id,
            event.seq_num,
            document_id,
            event.schema_id,
            data,
        )
        # Ingest announces only operations that decode_operation accepted, so the bytes are
        # read without proving them canonical again (SECURITY.md: events are trusted).
        decoded = DocumentOperation(operation_id, public_key, decode_trusted_operation(data))
        return cls(sequence, operation, event.entry, decoded)

    @classmethod
    def parse_message(cls, stream_sequence: int, payload: bytes) -> list[IngestedEvent]:
        """Read the operations of an ``OperationsIngested`` message, in order.

        Operations that do not parse are logged and left out; the rest still apply.

        Raises:
            ValueError: a payload that is not the message, or holds too many operations.
        """
        try:
            message = parse_operations_ingested(payload)
        except Exception as err:
            raise ValueError(f"message {stream_sequence} is not OperationsIngested") from err
        if len(message.operations) >= POSITIONS_PER_MESSAGE:
            raise ValueError(f"message {stream_sequence} holds too many operations")
        events = []
        base = stream_sequence * POSITIONS_PER_MESSAGE
        for index, operation in enumerate(message.operations):
            try:
                events.append(cls.parse(base + index, operation))
            except Exception as err:  # a malformed event must not stop the stream
                # Whoever can publish to NATS can send these: one bounded line now and then,
                # never a traceback per operation.
                _MALFORMED.warning(
                    "skipping malformed operation %d of stream message %d: %s",
                    index,
                    stream_sequence,
                    quote(f"{type(err).__name__}: {err}"),
                )
        return events


def parse_runs(
    messages: Sequence[Delivery], after: int, limit: int
) -> Iterator[tuple[list[IngestedEvent], int]]:
    """The messages after stream sequence ``after``, parsed, in runs of about ``limit`` events.

    Each run is (its events, the stream sequence of its last message); a message is never cut.
    Runs are parsed as they are asked for, so the first can be applied before the rest is read.
    """
    events: list[IngestedEvent] = []
    last = after
    for message in messages:
        if message.sequence <= last:
            continue  # a redelivery of something applied already
        if events and len(events) >= limit:
            yield events, last
            events = []
        last = message.sequence
        try:
            events.extend(IngestedEvent.parse_message(message.sequence, message.payload))
        except Exception as err:  # a malformed message must not stop the stream
            _MALFORMED.warning(
                "skipping malformed message at stream sequence %d: %s",
                message.sequence,
                quote(f"{type(err).__name__}: {err}"),
            )
    if last > after:
        yield events, last
