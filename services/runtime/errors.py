"""The one error boundary of the services: domain errors to gRPC status, with details.

Every status carries a ``google.rpc.ErrorInfo`` (domain ``pandanode``, the machine-readable
reason, the error's metadata) so clients in any language can act on it; the bundled client maps
it back to the same exception classes. Following AIP-193, an INVALID_ARGUMENT that names the
request field at fault also carries a ``google.rpc.BadRequest`` with that field violation, and
UNAVAILABLE and RESOURCE_EXHAUSTED carry a ``google.rpc.RetryInfo``.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pandanode.core.errors import (
    ERROR_DOMAIN,
    InvalidRequestError,
    LimitExceededError,
    PandanodeError,
    Reason,
    ResourceNotFoundError,
    UnavailableError,
    status_code_name,
)

__all__ = [
    "ERROR_DOMAIN",
    "MAX_ERROR_MESSAGE",
    "RETRY_DELAYS",
    "ResourceNotFoundError",
    "abort",
    "bounded_message",
    "error_info",
    "InvalidRequestError",
    "LimitExceededError",
    "UnavailableError",
    "status_code_for",
    "to_status",
]


def status_code_for(error: PandanodeError) -> grpc.StatusCode:
    """Return the gRPC status code a domain error maps to (the core's table, by code name)."""
    return grpc.StatusCode[status_code_name(error)]


MAX_ERROR_MESSAGE = 1024
"""Most bytes (UTF-8) of a status message: a last resort behind :func:`pandanode.core.errors.quote`.

gRPC sends the message twice in the trailers (``grpc-message``, percent-encoded, and in the
``google.rpc.Status`` details), and a default client refuses trailers over 8 KiB, so a message
that quoted a long input in full would hide the status and its ErrorInfo from the client.
"""

_CUT = "… (message cut)"


def bounded_message(error: PandanodeError) -> str:
    """The message of ``error``, cut to :data:`MAX_ERROR_MESSAGE` bytes of UTF-8."""
    return _bounded(error.message)


# A field violation's description repeats the message once more in the trailers: shorter.
_MAX_DESCRIPTION: Final = 512


def _bounded(message: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    raw = message.encode("utf-8", "replace")
    if len(raw) <= limit:
        return message
    keep = limit - len(_CUT.encode())
    return raw[:keep].decode("utf-8", "ignore") + _CUT


RETRY_DELAYS: Final = {
    grpc.StatusCode.UNAVAILABLE: 1.0,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 1.0,
}
"""Seconds a client should wait before retrying (``google.rpc.RetryInfo``), by status code,
unless the error names its own ``retry_delay``."""

_SAME_ANSWER_ON_RETRY: Final = frozenset({Reason.BUDGET_EXCEEDED})
"""Reasons whose errors get no RetryInfo unless they name their own ``retry_delay``.

A response over its budget (documents, bytes) is over it again when the same request is
repeated a second later; RetryInfo would only make clients wait in vain before failing.
"""


def _packed(message: Any) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def error_info(error: PandanodeError) -> error_details_pb2.ErrorInfo:
    """The ``google.rpc.ErrorInfo`` of ``error``: its reason, the domain, its metadata.

    The one source of what an error says it is about, for a status's details and for the
    per-item errors of a stream (``PublishError.metadata``) alike.
    """
    return error_details_pb2.ErrorInfo(
        reason=error.reason.value, domain=ERROR_DOMAIN, metadata=error.metadata
    )


def to_status(error: PandanodeError) -> grpc.Status:
    """Build a rich gRPC status for a domain error.

    Its details: a ``google.rpc.ErrorInfo`` (reason and metadata); a ``google.rpc.BadRequest``
    when the error names request fields at fault (its ``field_violations``, or for an
    INVALID_ARGUMENT its ``field`` metadata); a ``google.rpc.RetryInfo`` for UNAVAILABLE and
    RESOURCE_EXHAUSTED (not for a response over its budget: repeated, it is over it again).
    """
    code = status_code_for(error)
    message = bounded_message(error)
    details = [_packed(error_info(error))]
    violations = [(v.field, v.description) for v in error.field_violations]
    if not violations and code is grpc.StatusCode.INVALID_ARGUMENT and "field" in error.metadata:
        violations = [(error.metadata["field"], error.message)]
    if violations:
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=field,
                            description=_bounded(description, _MAX_DESCRIPTION),
                            reason=error.reason.value,
                        )
                        for field, description in violations
                    ]
                )
            )
        )
    delay = error.retry_delay
    if delay is None and error.reason not in _SAME_ANSWER_ON_RETRY:
        delay = RETRY_DELAYS.get(code)
    if delay is not None and code in RETRY_DELAYS:
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        retry.retry_delay.FromNanoseconds(round(delay * 1e9))
        details.append(_packed(retry))
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


async def abort(context: Any, error: PandanodeError) -> NoReturn:
    """End the current call with the rich status of ``error`` (never returns)."""
    await context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
