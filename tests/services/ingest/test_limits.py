"""Configured limits: operation size, batch length and gRPC message size, each enforced at its
boundary with the documented status, and nothing of a refused request stored."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import grpc.aio
import pytest

from pandanode.services.runtime.settings import Settings
from tests.services.support import node_settings

from .helpers import (
    Author,
    create_operation,
    log_heights,
    publish,
    publish_batches,
    rejection,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub

MAX_OPERATION = 2048
MAX_BATCH = 10
MAX_MESSAGE = 16 * 1024


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A node with small limits (overrides the shared fixture for this module)."""
    return node_settings(
        tmp_path / "data",
        max_operation_bytes=MAX_OPERATION,
        max_batch_items=MAX_BATCH,
        max_message_bytes=MAX_MESSAGE,
    )


def blob_piece(size: int) -> bytes:
    """A blob_piece_v1 CREATE of exactly ``size`` bytes."""
    overhead = len(create_operation("blob_piece_v1", {"data": bytes(300)})) - 300
    operation = create_operation("blob_piece_v1", {"data": bytes(size - overhead)})
    assert len(operation) == size
    return operation


async def test_an_operation_at_the_limit_is_accepted_and_one_byte_more_is_not(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    at_limit = author.sign_next(blob_piece(MAX_OPERATION))
    assert (await publish(ingest, at_limit)).operation_id == at_limit.hash
    author.record(at_limit)
    over = author.sign_next(blob_piece(MAX_OPERATION + 1))
    rejected = await rejection(publish(ingest, over))
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
    )
    assert str(MAX_OPERATION) in rejected.message
    assert await log_heights(ingest) == {(author.public_key, 0): 1}


async def test_a_batch_at_max_batch_items_is_accepted_and_one_more_item_is_not(
    ingest: IngestServiceAsyncStub,
) -> None:
    author = Author()
    operation = create_operation("blob_piece_v1", {"data": b"x"})
    full = [author.sign_at(operation, log_id=i, seq_num=1) for i in range(MAX_BATCH)]
    (results,) = await publish_batches(ingest, [full])
    assert [r.ok.operation_id for r in results] == [s.hash for s in full]
    over = [author.sign_at(operation, log_id=100 + i, seq_num=1) for i in range(MAX_BATCH + 1)]
    rejected = await rejection(publish_batches(ingest, [over]))
    assert (rejected.code, rejected.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "LIMIT_EXCEEDED",
    )
    assert len(await log_heights(ingest)) == MAX_BATCH


async def test_a_message_over_the_grpc_limit_is_refused(ingest: IngestServiceAsyncStub) -> None:
    author = Author()
    # Every item is within the item limits, the batch within max_batch_items, but the message
    # holds more than max_message_bytes.
    operation = blob_piece(MAX_OPERATION - 48)
    items = [author.sign_at(operation, log_id=i, seq_num=1) for i in range(MAX_BATCH)]
    assert sum(len(s.entry) + len(s.operation) for s in items) > MAX_MESSAGE
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await publish_batches(ingest, [items])
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await log_heights(ingest) == {}
