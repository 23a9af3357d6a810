"""The client's one error boundary: gRPC statuses back to pandanode's exception classes.

The node puts a ``google.rpc.ErrorInfo`` (domain ``pandanode``, a stable reason) into every
status it sends (design rule 6). :func:`from_rpc_error` reads the status code and that reason
and raises the *same* class the node raised — :class:`~pandanode.core.SchemaNotFoundError`,
:class:`~pandanode.core.LogIntegrityError`, :class:`~pandanode.core.SignatureError`, … — with
the node's message and reason. Statuses that carry no pandanode reason (the node is down, a
deadline passed, a service is not served) become the client's own classes below, which are
pandanode errors too, and also builtin ``ConnectionError`` / ``TimeoutError`` where that fits.
"""

from __future__ import annotations

from typing import Final, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from pandanode.core.errors import (
    ERROR_DOMAIN,
    DecodeError,
    DocumentError,
    EntryDecodeError,
    HashDecodeError,
    InvalidRequestError,
    LimitExceededError,
    LogIntegrityError,
    NotFoundError,
    OperationDecodeError,
    PandanodeError,
    Reason,
    ResourceNotFoundError,
    SchemaError,
    SchemaIdError,
    SchemaNotFoundError,
    SignatureError,
    UnavailableError,
    ValidationError,
)

__all__ = [
    "ERROR_DOMAIN",
    "DeadlineExceededError",
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


class KeyFileError(PandanodeError):
    """A key file that is missing, unreadable, or does not hold a private key."""

    default_reason = Reason.INVALID_PRIVATE_KEY


# Which class a reason maps to, per status code. A reason is only meaningful with its code:
# INVALID_FIELD_VALUE is an OperationDecodeError under INVALID_ARGUMENT but a SchemaError under
# FAILED_PRECONDITION, exactly as the core raises them.
_DECODE: Final[dict[Reason, type[PandanodeError]]] = {
    Reason.INVALID_VARU64: EntryDecodeError,
    Reason.NON_CANONICAL_VARU64: EntryDecodeError,
    Reason.ENTRY_TOO_SHORT: EntryDecodeError,
    Reason.INVALID_PUBLIC_KEY: EntryDecodeError,
    Reason.INVALID_SEQ_NUM: EntryDecodeError,
    Reason.INVALID_LOG_ID: EntryDecodeError,
    Reason.INVALID_LINKS: EntryDecodeError,
    Reason.INVALID_SIGNATURE: SignatureError,
    Reason.INVALID_HASH: HashDecodeError,
    Reason.INVALID_HEX: HashDecodeError,
    Reason.INVALID_DOCUMENT_VIEW_ID: HashDecodeError,
    Reason.INVALID_SCHEMA_ID: SchemaIdError,
    Reason.UNSUPPORTED_SYSTEM_SCHEMA: SchemaIdError,
    Reason.INVALID_CBOR: OperationDecodeError,
    Reason.INVALID_OPERATION: OperationDecodeError,
    Reason.UNSUPPORTED_VERSION: OperationDecodeError,
    Reason.UNKNOWN_ACTION: OperationDecodeError,
    Reason.UNSORTED_FIELDS: OperationDecodeError,
    Reason.DUPLICATE_FIELD: OperationDecodeError,
    Reason.INVALID_FIELD_VALUE: OperationDecodeError,
    Reason.INVALID_ARGUMENT: InvalidRequestError,
    Reason.MALFORMED_REQUEST: InvalidRequestError,
    Reason.LIMIT_EXCEEDED: InvalidRequestError,
}
_VALIDATION: Final[dict[Reason, type[PandanodeError]]] = {
    **dict.fromkeys(
        (
            Reason.SEQ_NUM_MISMATCH,
            Reason.SKIPLINK_MISSING,
            Reason.SKIPLINK_MISMATCH,
            Reason.BACKLINK_MISMATCH,
            Reason.PAYLOAD_HASH_MISMATCH,
            Reason.PAYLOAD_SIZE_MISMATCH,
            Reason.LOG_ID_MISMATCH,
            Reason.LOG_ID_IN_USE,
            Reason.LOG_NOT_FOUND,
            Reason.MAX_SEQ_NUM_REACHED,
            Reason.MAX_LOG_ID_REACHED,
        ),
        LogIntegrityError,
    ),
    Reason.SCHEMA_NOT_FOUND: SchemaNotFoundError,
    **dict.fromkeys(
        (
            Reason.SCHEMA_MISMATCH,
            Reason.MISSING_FIELD,
            Reason.UNEXPECTED_FIELD,
            Reason.FIELD_TYPE_MISMATCH,
            Reason.INVALID_SCHEMA_DEFINITION,
            Reason.INVALID_FIELD_DEFINITION,
            Reason.INVALID_SYSTEM_FIELD,
            Reason.INVALID_FIELD_VALUE,
            Reason.INVALID_CLAIMED_SCHEMA,
        ),
        SchemaError,
    ),
    **dict.fromkeys(
        (
            Reason.MULTIPLE_DOCUMENTS,
            Reason.DOCUMENT_DELETED,
            Reason.INVALID_GRAPH,
            Reason.INVALID_REDUCTION,
        ),
        DocumentError,
    ),
    Reason.PREVIOUS_NOT_FOUND: NotFoundError,
    Reason.VIEW_NOT_FOUND: NotFoundError,
}
_ByReason = dict[Reason, type[PandanodeError]]
_BY_CODE: Final[dict[grpc.StatusCode, tuple[_ByReason, type[PandanodeError]]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (_DECODE, DecodeError),
    grpc.StatusCode.FAILED_PRECONDITION: (_VALIDATION, ValidationError),
    grpc.StatusCode.NOT_FOUND: (
        {Reason.SCHEMA_NOT_FOUND: SchemaNotFoundError},
        ResourceNotFoundError,
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: ({}, LimitExceededError),
    grpc.StatusCode.UNAVAILABLE: ({}, NodeUnavailableError),
    grpc.StatusCode.DEADLINE_EXCEEDED: ({}, DeadlineExceededError),
    grpc.StatusCode.UNIMPLEMENTED: ({}, NotServedError),
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
    by_reason, fallback = _BY_CODE.get(code, ({}, RpcError))
    cls = by_reason.get(known, fallback) if known is not None else fallback
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
    if status is not None:
        message = status.message or message
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                reason = str(info.reason)
                break
    error = error_for(code, reason, message)
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
