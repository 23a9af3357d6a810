"""An operations.ingested payload is exactly the protobuf encoding of its operations."""

from __future__ import annotations

import pytest

from pandanode.services.runtime.events import (
    IngestedOperation,
    OperationsIngested,
    operations_ingested,
)


def _operation(body_bytes: int, sequence: int) -> IngestedOperation:
    """An operation whose serialized event is ``body_bytes`` long."""
    operation = IngestedOperation(operation_id="0020" + "ab" * 32, sequence=sequence)
    operation.entry = b"e" * max(0, body_bytes - operation.ByteSize() - 6)
    while operation.ByteSize() < body_bytes:
        operation.entry += b"e"
    assert operation.ByteSize() == body_bytes
    return operation


@pytest.mark.parametrize("body_bytes", [90, 127, 128, 129, 300, 16_383, 16_384, 70_001])
def test_the_payload_is_the_messages_protobuf_encoding(body_bytes: int) -> None:
    operations = [_operation(body_bytes, 1), _operation(body_bytes, 2)]
    (message,) = operations_ingested(operations, 1 << 20)
    assert message.payload == OperationsIngested(operations=operations).SerializeToString()
    parsed = OperationsIngested.FromString(message.payload)
    assert list(parsed.operations) == operations
