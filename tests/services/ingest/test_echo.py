"""An entry already stored is answered from its hash before its signature is checked (a peer's
echo costs a lookup); an entry whose hash is not stored is verified as always."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import grpc
import pytest

from pandanode.core.entry import Entry, verify_entries
from pandanode.core.errors import SignatureError
from pandanode.services.node import Node

from .helpers import (
    FIELD_DEFINITION,
    Author,
    publish,
    publish_batches,
    rejection,
    stored_state,
)

if TYPE_CHECKING:
    from pandanode.ingest.v1.ingest_pb2_grpc import IngestServiceAsyncStub


@pytest.fixture
def verified(node: Node) -> Iterator[list[bytes]]:
    """The entries whose signature the node's ingest checks, in order (through its seam)."""
    ingest = node.ingest
    assert ingest is not None
    checked: list[bytes] = []

    def counting(entries: Sequence[Entry]) -> list[SignatureError | None]:
        checked.extend(entry.raw for entry in entries)
        return verify_entries(entries)

    seam = ingest.verify_entries
    ingest.verify_entries = counting
    yield checked
    ingest.verify_entries = seam


async def test_an_entry_sent_again_is_answered_as_the_first_time_without_a_signature_check(
    ingest: IngestServiceAsyncStub, verified: list[bytes]
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "n", "type": "str"})
    updated = author.update(FIELD_DEFINITION, created.hash, [created.hash], {"name": "m"})
    first = [await publish(ingest, created), await publish(ingest, updated)]
    assert verified == [created.entry, updated.entry]
    again = [await publish(ingest, created), await publish(ingest, updated)]
    assert again == first
    [streamed] = await publish_batches(ingest, [[created, updated]])
    assert [result.ok for result in streamed] == first
    assert verified == [created.entry, updated.entry], "no signature checked again"


async def test_an_echo_with_another_operation_is_refused(
    ingest: IngestServiceAsyncStub, verified: list[bytes]
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "n", "type": "str"})
    await publish(ingest, created)
    other = author.create(FIELD_DEFINITION, {"name": "other", "type": "str"}).operation
    before = await stored_state(ingest)
    forged = created.request()
    forged.operation = other
    refused = await rejection(ingest.Publish(forged))
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.reason == "PAYLOAD_HASH_MISMATCH"
    assert await stored_state(ingest) == before


async def test_a_forged_entry_whose_hash_is_not_stored_is_still_verified_and_rejected(
    ingest: IngestServiceAsyncStub, verified: list[bytes]
) -> None:
    author = Author()
    created = author.create(FIELD_DEFINITION, {"name": "n", "type": "str"})
    await publish(ingest, created)
    before = await stored_state(ingest)
    forged = bytearray(created.entry)
    forged[-1] ^= 0x01  # in the signature: another hash, not stored
    request = created.request()
    request.entry = bytes(forged)
    refused = await rejection(ingest.Publish(request))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.reason == "INVALID_SIGNATURE"
    assert verified[-1] == bytes(forged), "checked, not answered from the store"
    [streamed] = await publish_batches(ingest, [[created]])
    assert streamed[0].WhichOneof("outcome") == "ok"
    assert await stored_state(ingest) == before
