"""The log heights digest replicating nodes compare (issue 12's HaveDigest)."""

from __future__ import annotations

import blake3
import pytest

from pandanode.core.errors import InvalidRequestError
from pandanode.core.replication import (
    LOG_HEIGHT_ENCODING_SIZE,
    encode_log_height,
    log_heights_digest,
)

A = "ab" * 32
B = "01" * 32
HEIGHTS = [(A, 2, 7), (B, 0, 1), (B, 1, 300)]
# BLAKE3 of B‖0‖1, B‖1‖300, A‖2‖7 (raw key, u64 BE log id, u64 BE seq num), committed so
# that every implementation (and every later version) must agree on it.
VECTOR = "6cd668948f272d9e5ec25fbfe6bc117e961cfee9edb2fe42d4160d38c83494f3"


def test_the_digest_of_a_committed_vector_is_stable() -> None:
    assert log_heights_digest(HEIGHTS).hex() == VECTOR


def test_the_digest_is_blake3_over_the_sorted_48_byte_encodings() -> None:
    encoded = (
        bytes.fromhex(B) + (0).to_bytes(8, "big") + (1).to_bytes(8, "big"),
        bytes.fromhex(B) + (1).to_bytes(8, "big") + (300).to_bytes(8, "big"),
        bytes.fromhex(A) + (2).to_bytes(8, "big") + (7).to_bytes(8, "big"),
    )
    assert all(len(item) == LOG_HEIGHT_ENCODING_SIZE for item in encoded)
    assert encode_log_height(B, 1, 300) == encoded[1]
    assert log_heights_digest(HEIGHTS) == blake3.blake3(b"".join(encoded)).digest()


def test_the_digest_ignores_the_order_and_the_case_of_the_heights() -> None:
    shuffled = [(A.upper(), 2, 7), (B, 1, 300), (B, 0, 1)]
    assert log_heights_digest(shuffled) == log_heights_digest(HEIGHTS)
    assert log_heights_digest(iter(HEIGHTS)) == log_heights_digest(HEIGHTS)


def test_the_digest_changes_with_any_height() -> None:
    assert log_heights_digest([(A, 2, 8), *HEIGHTS[1:]]) != log_heights_digest(HEIGHTS)
    assert log_heights_digest(HEIGHTS[:2]) != log_heights_digest(HEIGHTS)


def test_the_digest_of_no_logs_is_blake3_of_nothing() -> None:
    assert log_heights_digest([]) == blake3.blake3(b"").digest()


@pytest.mark.parametrize(
    "height", [("ab" * 31, 0, 1), ("zz" * 32, 0, 1), (A, -1, 1), (A, 0, 2**64)]
)
def test_a_malformed_height_is_refused(height: tuple[str, int, int]) -> None:
    with pytest.raises(InvalidRequestError):
        log_heights_digest([height])
