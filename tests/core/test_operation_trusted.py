"""decode_trusted_operation (for operations ingest already accepted) reads as decode_operation.

The query service reads the operations of ``operations.ingested`` events with it; skipping the
canonical re-encode check must never change what a valid operation decodes to.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.operation import decode_operation, decode_trusted_operation
from tests.core.test_operation_fast_path import (
    CANONICAL,
    HEAD,
    LEFT_TO_THE_GENERAL_READER,
    h,
    mutate,
    operations,
    outcome,
)
from tests.core.test_vectors import _operations
from tests.interop.cases import OPERATIONS_ACCEPTED


def assert_trusted_reads_as_full(data: bytes) -> None:
    """For bytes decode_operation accepts, the trusted decode gives the very same operation."""
    full = outcome(decode_operation, data)
    if full[0] == "ok":
        assert outcome(decode_trusted_operation, data) == full, data.hex()
        trusted, reference = decode_trusted_operation(data), decode_operation(data)
        for name, value in (reference.fields or {}).items():
            if type(value) is float:  # NaN != NaN: compare the bits
                other = (trusted.fields or {})[name]
                assert struct.pack(">d", other) == struct.pack(">d", value), data.hex()
            else:
                assert (trusted.fields or {})[name] == value, data.hex()
        assert (trusted.action, trusted.schema_id, trusted.previous) == (
            reference.action,
            reference.schema_id,
            reference.previous,
        )


def test_every_spec_vector_operation_reads_the_same_trusted(spec_vectors: dict[str, Any]) -> None:
    found = _operations(spec_vectors)
    assert found
    for path, hex_bytes in found:
        raw = bytes.fromhex(hex_bytes)
        assert decode_trusted_operation(raw) == decode_operation(raw), path


@pytest.mark.parametrize("name", sorted(OPERATIONS_ACCEPTED))
def test_every_operation_p2panda_js_accepts_reads_the_same_trusted(name: str) -> None:
    assert_trusted_reads_as_full(OPERATIONS_ACCEPTED[name])


@pytest.mark.parametrize("data", CANONICAL, ids=lambda data: data.hex()[:24])
def test_canonical_operations_read_the_same_trusted(data: bytes) -> None:
    assert outcome(decode_operation, data)[0] == "ok"
    assert_trusted_reads_as_full(data)


@pytest.mark.parametrize("name", sorted(LEFT_TO_THE_GENERAL_READER))
def test_lenient_encodings_p2panda_accepts_read_the_same_trusted(name: str) -> None:
    assert_trusted_reads_as_full(LEFT_TO_THE_GENERAL_READER[name])


def test_nans_with_any_payload_read_bit_for_bit_the_same_trusted() -> None:
    for bits in [*range(0x7C01, 0x8000), *range(0xFC01, 0x10000)]:
        assert_trusted_reads_as_full(HEAD + h("a1 61 61 f9") + bits.to_bytes(2, "big"))


def test_bytes_decode_operation_rejects_get_the_same_error_when_not_recognised() -> None:
    data = h("84 02 00") + HEAD[3:] + h("a0")  # version 2
    assert outcome(decode_trusted_operation, data) == outcome(decode_operation, data)


@settings(max_examples=300, deadline=None)
@given(operations())
def test_every_operation_p2panda_writes_reads_the_same_trusted(data: bytes) -> None:
    assert_trusted_reads_as_full(data)


@settings(max_examples=1000, deadline=None)
@given(operations(), st.integers(min_value=0, max_value=2**32), st.integers(1, 3))
def test_mutated_operations_that_decode_read_the_same_trusted(
    data: bytes, seed: int, rounds: int
) -> None:
    for n in range(rounds):
        data = mutate(seed + n, data)
    assert_trusted_reads_as_full(data)
