"""The client's one error boundary: gRPC statuses back to pandanode's exception classes.

The node puts a ``google.rpc.ErrorInfo`` (domain ``pandanode``, a stable reason) into every
status it sends (design rule 6). :func:`from_rpc_error` reads the status code and that reason
and raises the *same* class the node raised — :class:`~pandanode.core.SchemaNotFoundError`,
:class:`~pandanode.core.LogIntegrityError`, :class:`~pandanode.core.SignatureError`, … — with
the node's message and reason, by the core's table (:data:`pandanode.core.errors.ERROR_CLASSES`,
the one the node's error boundary reports with). Statuses that carry no pandanode reason (the
node is down, a deadline passed, a service is not served) become the client's own classes
below, which are pandanode errors too, and also builtin ``ConnectionError`` / ``TimeoutError``
where that fits.

The rest of the status details come along on the exception: ``ErrorInfo.metadata`` as its
``metadata`` (``{"schema_id": …}``, ``{"field": "page_token"}``, …), a ``google.rpc.BadRequest``
as its ``field_violations`` and a ``google.rpc.RetryInfo`` as its ``retry_delay`` in seconds.
"""

from __future__ import annotations

from typing import Final, cast

import grpc
import grpc.aio
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pandanode.core.errors import (
    ERROR_DOMAIN,
    FieldViolation,
    InvalidRequestError,
    KeyFileError,
    LimitExceededError,
    PandanodeError,
    Reason,
    ResourceNotFoundError,
    UnavailableError,
    error_class,
)

__all__ = [
    "ERROR_DOMAIN",
    "DeadlineExceededError",
    "FieldViolation",
    "InvalidRequestError",
    "KeyFileError",
    "LimitExceededError",
    "NodeUnavailableError",
    "NotServedError",
    "ResourceNotFoundError",
    "RpcError",
    "error_for",
    "from_rpc_error",
    "mark_remote",
    "status_code_of",
    "told_by_node",
]


class NodeUnavailableError(UnavailableError, ConnectionError):
    """The node cannot be reached, or said it is unavailable (gRPC UNAVAILABLE).

    Safe to retry later; reads and re-sent entries are retried by the client a few times first.
    """


class DeadlineExceededError(PandanodeError, TimeoutError):
    """A call did not finish within its deadline (gRPC DEADLINE_EXCEEDED)."""

    default_reason = Reason.UNAVAILABLE


class NotServedError(PandanodeError):
    """The node does not serve the service or method a call needs (gRPC UNIMPLEMENTED)."""

    default_reason = Reason.UNAVAILABLE


class RpcError(PandanodeError):
    """Any other failed call (INTERNAL, UNKNOWN, CANCELLED, …), with the node's message."""

    default_reason = Reason.UNAVAILABLE


# What the client raises instead of the core's class (or for a code the core has no class for).
_CLIENT_CLASSES: Final[dict[str, type[PandanodeError]]] = {
    "UNAVAILABLE": NodeUnavailableError,
    "DEADLINE_EXCEEDED": DeadlineExceededError,
    "UNIMPLEMENTED": NotServedError,
}
_CODES_BY_VALUE: Final = {code.value[0]: code for code in grpc.StatusCode}
_STATUS_ATTRIBUTE: Final = "_pandanode_status_code"
_TOLD_ATTRIBUTE: Final = "_pandanode_told_by_node"


def error_for(code: grpc.StatusCode, reason: str, message: str) -> PandanodeError:
    """Build the exception a status code, an ErrorInfo reason and a message stand for.

    Args:
        code: The gRPC status code.
        reason: The ``google.rpc.ErrorInfo`` reason (empty when the status had none).
        message: The status message.

    Returns:
        An instance of the matching pandanode class, marked as coming from the node (see
        :func:`status_code_of`).
    """
    known = Reason(reason) if reason in Reason.__members__ else None
    cls = _CLIENT_CLASSES.get(code.name) or error_class(code.name, known) or RpcError
    if cls is RpcError:
        message = f"{code.name}: {message}"
    return mark_remote(cls(message or code.name.lower().replace("_", " "), known), code)


def error_for_code(code: int, reason: str, message: str) -> PandanodeError:
    """Like :func:`error_for`, with the numeric code of a ``PublishError`` stream item."""
    return error_for(_CODES_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN), reason, message)


def from_rpc_error(err: grpc.RpcError) -> PandanodeError:
    """Translate a failed gRPC call into the pandanode exception it stands for.

    Args:
        err: The error grpc raised (``grpc.aio.AioRpcError`` or a sync ``grpc.RpcError`` call).

    Returns:
        The exception to raise (``raise from_rpc_error(err) from err``).
    """
    call = cast(grpc.Call, err)
    code = call.code()
    message = call.details() or ""
    reason = ""
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a status whose message disagrees with the details: use the plain parts
        status = None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_delay: float | None = None
    if status is not None:
        message = status.message or message
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            bad_request = error_details_pb2.BadRequest()
            retry = error_details_pb2.RetryInfo()
            if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
                if info.domain == ERROR_DOMAIN and not reason:
                    reason = str(info.reason)
                    metadata = dict(info.metadata)
            elif detail.Is(bad_request.DESCRIPTOR) and detail.Unpack(bad_request):
                violations += [
                    FieldViolation(v.field, v.description) for v in bad_request.field_violations
                ]
            elif detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
                retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    error = error_for(code, reason, message)
    error.about(**metadata)
    error.field_violations = (*error.field_violations, *violations)
    if retry_delay is not None:
        error.retry_delay = retry_delay
    setattr(error, _TOLD_ATTRIBUTE, bool(reason))
    return error


def mark_remote(error: PandanodeError, code: grpc.StatusCode) -> PandanodeError:
    """Mark ``error`` as an answer of the node with status ``code``; returns it."""
    setattr(error, _STATUS_ATTRIBUTE, code)
    return error


def told_by_node(error: BaseException) -> bool:
    """Whether the node itself decided on ``error`` (its status carried a pandanode reason).

    An UNAVAILABLE the node sent after waiting for a write to be materialized is such an
    answer; one raised by gRPC because the node cannot be reached is not.
    """
    return bool(getattr(error, _TOLD_ATTRIBUTE, False))


def status_code_of(error: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code the node answered with, or None for an error raised locally.

    A :class:`~pandanode.core.SchemaError` with a code was a rejection by the node; without one
    the client caught the problem before anything was sent.
    """
    code = getattr(error, _STATUS_ATTRIBUTE, None)
    return code if isinstance(code, grpc.StatusCode) else None
