"""The error boundary: one status code per limit reason (AIP-193), bounded messages."""

from __future__ import annotations

import grpc

from pandanode.core.errors import InvalidRequestError, LimitExceededError, Reason
from pandanode.services.runtime.errors import MAX_ERROR_MESSAGE, bounded_message, status_code_for


def test_over_a_size_limit_is_invalid_argument_and_a_used_up_budget_resource_exhausted() -> None:
    too_big = InvalidRequestError("a batch holds at most 1000 items", Reason.LIMIT_EXCEEDED)
    used_up = LimitExceededError("the response would hold more than 5000 documents")
    assert (status_code_for(too_big), too_big.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.LIMIT_EXCEEDED,
    )
    assert (status_code_for(used_up), used_up.reason) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        Reason.BUDGET_EXCEEDED,
    )


def test_a_long_message_is_cut_to_the_byte_limit_at_the_boundary() -> None:
    for text in ("x" * 50_000, "軟" * 50_000):
        message = bounded_message(InvalidRequestError(f"unknown field {text}"))
        assert len(message.encode()) <= MAX_ERROR_MESSAGE
        assert message.startswith("unknown field ")
        assert message.endswith("(message cut)")
    assert bounded_message(InvalidRequestError("short")) == "short"
