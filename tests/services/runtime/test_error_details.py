"""The details of every status (AIP-193): ErrorInfo metadata, BadRequest, RetryInfo; and the
ErrorReason enum of the protos, which lists every reason the code can give."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from pandanode.core.errors import (
    ERROR_CLASSES,
    METADATA_VALUE_LIMIT,
    InvalidRequestError,
    LimitExceededError,
    PandanodeError,
    Reason,
    SchemaError,
    UnavailableError,
)
from pandanode.errors.v1 import errors_pb2
from pandanode.services.runtime.errors import to_status

ROOT = Path(__file__).resolve().parents[3]


def _details(error: PandanodeError) -> tuple[grpc.StatusCode, list[object]]:
    status = to_status(error)
    (value,) = [v for k, v in status.trailing_metadata if k == "grpc-status-details-bin"]
    assert isinstance(value, bytes)
    rich = status_pb2.Status.FromString(value)
    found: list[object] = []
    for detail in rich.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            message = kind()
            if detail.Unpack(message):
                found.append(message)
    return status.code, found


def _of(kind: type, found: list[object]) -> list[Any]:
    return [detail for detail in found if isinstance(detail, kind)]


def test_error_info_carries_the_metadata_of_the_error() -> None:
    error = SchemaError("field 'age' does not match", Reason.FIELD_TYPE_MISMATCH).about(
        field="age", schema_id="people_0020" + "ab" * 32, seq_num=7
    )
    code, found = _details(error)
    (info,) = _of(error_details_pb2.ErrorInfo, found)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert info.reason == "FIELD_TYPE_MISMATCH"
    assert dict(info.metadata) == {
        "field": "age",
        "schema_id": "people_0020" + "ab" * 32,
        "seq_num": "7",
    }
    # A FAILED_PRECONDITION is not a malformed request: no BadRequest.
    assert not _of(error_details_pb2.BadRequest, found)
    assert not _of(error_details_pb2.RetryInfo, found)


def test_metadata_values_are_cut_to_a_bounded_length_and_first_values_are_kept() -> None:
    error = InvalidRequestError("bad").about(schema_id="z" * 10_000)
    error.about(schema_id="other", log_id=None)
    assert len(error.metadata["schema_id"]) == METADATA_VALUE_LIMIT
    assert error.metadata["schema_id"].endswith("…")
    assert "log_id" not in error.metadata


def test_an_invalid_argument_naming_a_field_carries_a_bad_request_field_violation() -> None:
    error = InvalidRequestError("malformed page token: altered", Reason.INVALID_PAGE_TOKEN)
    code, found = _details(error.violation("page_token"))
    (bad_request,) = _of(error_details_pb2.BadRequest, found)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description, v.reason) for v in bad_request.field_violations] == [
        ("page_token", "malformed page token: altered", "INVALID_PAGE_TOKEN")
    ]
    (info,) = _of(error_details_pb2.ErrorInfo, found)
    assert info.metadata["field"] == "page_token"


def test_an_invalid_argument_with_field_metadata_only_still_gets_its_field_violation() -> None:
    _, found = _details(InvalidRequestError("limit").about(field="items", limit=1000))
    (bad_request,) = _of(error_details_pb2.BadRequest, found)
    assert [v.field for v in bad_request.field_violations] == ["items"]


def test_unavailable_and_resource_exhausted_carry_retry_info() -> None:
    for error, seconds in (
        (UnavailableError("the node is shutting down"), 1.0),
        (LimitExceededError("watch again", Reason.WATCH_TOO_SLOW), 1.0),
        (LimitExceededError("watch again", Reason.WATCH_TOO_SLOW, retry_delay=0.25), 0.25),
    ):
        _, found = _details(error)
        (retry,) = _of(error_details_pb2.RetryInfo, found)
        assert retry.retry_delay.ToNanoseconds() / 1e9 == seconds
    _, found = _details(InvalidRequestError("never retry this", retry_delay=3.0))
    assert not _of(error_details_pb2.RetryInfo, found)


def test_a_response_over_its_budget_says_nothing_about_retrying() -> None:
    # The same request meets the same budget again: RetryInfo would make clients wait in vain.
    _, found = _details(LimitExceededError("too many documents"))
    assert not _of(error_details_pb2.RetryInfo, found)


def _enum_reasons() -> set[str]:
    values = errors_pb2.DESCRIPTOR.enum_types_by_name["ErrorReason"].values_by_name
    return {name for name in values if name != "ERROR_REASON_UNSPECIFIED"}


def test_the_error_reason_enum_lists_exactly_the_reasons_of_the_code() -> None:
    assert _enum_reasons() == {reason.value for reason in Reason}


def test_every_reason_the_code_can_raise_is_in_the_error_reason_enum() -> None:
    """The reasons of the status table, every error class's default, and every Reason.X the
    source names (the client and the services included)."""
    tabled = {reason for _, by_reason in ERROR_CLASSES.values() for reason in by_reason}
    defaults: set[Reason] = set()
    pending: list[type[PandanodeError]] = [PandanodeError]
    while pending:
        cls = pending.pop()
        defaults.add(cls.default_reason)
        pending.extend(cls.__subclasses__())
    named = {
        match
        for folder in ("core", "services", "client")
        for path in (ROOT / folder).rglob("*.py")
        for match in re.findall(r"\bReason\.([A-Z][A-Z0-9_]+)\b", path.read_text())
    }
    assert named, "found no Reason.X in the source"
    enum = _enum_reasons()
    assert {reason.value for reason in tabled | defaults} <= enum
    assert named <= enum, named - enum
