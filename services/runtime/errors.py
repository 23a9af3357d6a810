"""The one error boundary of the services: domain errors to gRPC status, with details.

Every status carries a ``google.rpc.ErrorInfo`` (domain ``pandanode``, the machine-readable
reason) so clients in any language can act on it; the bundled client maps it back to the same
exception classes.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pandanode.core.errors import (
    ERROR_DOMAIN,
    InvalidRequestError,
    LimitExceededError,
    PandanodeError,
    ResourceNotFoundError,
    UnavailableError,
    status_code_name,
)

__all__ = [
    "ERROR_DOMAIN",
    "MAX_ERROR_MESSAGE",
    "ResourceNotFoundError",
    "abort",
    "bounded_message",
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
    message = error.message
    raw = message.encode("utf-8", "replace")
    if len(raw) <= MAX_ERROR_MESSAGE:
        return message
    keep = MAX_ERROR_MESSAGE - len(_CUT.encode())
    return raw[:keep].decode("utf-8", "ignore") + _CUT


def to_status(error: PandanodeError) -> grpc.Status:
    """Build a rich gRPC status (code, message, ``google.rpc.ErrorInfo``) for a domain error."""
    code = status_code_for(error)
    info = error_details_pb2.ErrorInfo(reason=error.reason.value, domain=ERROR_DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=bounded_message(error), details=[detail])
    return rpc_status.to_status(status)


async def abort(context: Any, error: PandanodeError) -> NoReturn:
    """End the current call with the rich status of ``error`` (never returns)."""
    await context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returned")  # pragma: no cover
