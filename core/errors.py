"""One hierarchy of typed errors, each with a machine-readable reason.

Every error the protocol core raises is a :class:`PandanodeError`. Its ``reason`` is a stable
upper-case code (a :class:`Reason`) that services put into ``google.rpc.ErrorInfo`` and that
clients map back to the same classes; its message says what was wrong in words a person can act on.

The tree::

    PandanodeError
    ├── DecodeError               malformed bytes or text (gRPC INVALID_ARGUMENT)
    │   ├── EntryDecodeError
    │   │   └── SignatureError    the signature does not verify
    │   ├── HashDecodeError
    │   ├── OperationDecodeError
    │   └── SchemaIdError
    └── ValidationError           well-formed, but breaks a rule (gRPC FAILED_PRECONDITION)
        ├── LogIntegrityError     seq num, backlink, skiplink, log id, payload
        ├── SchemaError           the operation does not fit its schema, or a schema is invalid
        │   └── SchemaNotFoundError
        ├── DocumentError         operation graph or reducer failures, deleted documents
        └── NotFoundError         a referenced operation or document is unknown

Request-level errors (raised by services, mapped back by the client): InvalidRequestError
(INVALID_ARGUMENT; ``LIMIT_EXCEEDED`` for a request over a size limit), LimitExceededError
(RESOURCE_EXHAUSTED, ``BUDGET_EXCEEDED``), UnavailableError (UNAVAILABLE),
ResourceNotFoundError (NOT_FOUND). ``ERROR_DOMAIN`` is the ``google.rpc.ErrorInfo`` domain.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = [
    "ERROR_DOMAIN",
    "DecodeError",
    "DocumentError",
    "EntryDecodeError",
    "HashDecodeError",
    "InvalidRequestError",
    "LimitExceededError",
    "LogIntegrityError",
    "NotFoundError",
    "OperationDecodeError",
    "PandanodeError",
    "QUOTE_LIMIT",
    "Reason",
    "ResourceNotFoundError",
    "SchemaError",
    "SchemaIdError",
    "SchemaNotFoundError",
    "SignatureError",
    "UnavailableError",
    "ValidationError",
    "quote",
]

QUOTE_LIMIT: Final = 80
"""Most characters of an input value an error message quotes (see :func:`quote`)."""


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """Quote an input value for an error message: its ``repr``, cut to a bounded slice.

    Every message that repeats what a request or an operation holds quotes it through this,
    so a 10,000-character id never makes a 10 KB message. A cut value ends in ``…`` and says
    how long it was.

    Args:
        value: What to quote (text and bytes are cut to ``limit`` characters or bytes).
        limit: Most characters or bytes of ``value`` to show.
    """
    if isinstance(value, str | bytes) and len(value) > limit:
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}… ({len(value)} {unit})"
    text = repr(value)
    if len(text) > 2 * limit:
        return f"{text[: 2 * limit]}…"
    return text


class Reason(StrEnum):
    """Machine-readable reasons; stable across versions, used as ``google.rpc.ErrorInfo.reason``."""

    # varu64 and hashes
    INVALID_VARU64 = "INVALID_VARU64"
    NON_CANONICAL_VARU64 = "NON_CANONICAL_VARU64"
    INVALID_HASH = "INVALID_HASH"
    INVALID_HEX = "INVALID_HEX"
    # entries
    ENTRY_TOO_SHORT = "ENTRY_TOO_SHORT"
    INVALID_PUBLIC_KEY = "INVALID_PUBLIC_KEY"
    INVALID_PRIVATE_KEY = "INVALID_PRIVATE_KEY"
    INVALID_SEQ_NUM = "INVALID_SEQ_NUM"
    INVALID_LOG_ID = "INVALID_LOG_ID"
    INVALID_LINKS = "INVALID_LINKS"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    # operations
    INVALID_CBOR = "INVALID_CBOR"
    INVALID_OPERATION = "INVALID_OPERATION"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNKNOWN_ACTION = "UNKNOWN_ACTION"
    UNSORTED_FIELDS = "UNSORTED_FIELDS"
    DUPLICATE_FIELD = "DUPLICATE_FIELD"
    INVALID_FIELD_VALUE = "INVALID_FIELD_VALUE"
    INVALID_DOCUMENT_VIEW_ID = "INVALID_DOCUMENT_VIEW_ID"
    # schemas
    INVALID_SCHEMA_ID = "INVALID_SCHEMA_ID"
    UNSUPPORTED_SYSTEM_SCHEMA = "UNSUPPORTED_SYSTEM_SCHEMA"
    SCHEMA_NOT_FOUND = "SCHEMA_NOT_FOUND"
    SCHEMA_MISMATCH = "SCHEMA_MISMATCH"
    MISSING_FIELD = "MISSING_FIELD"
    UNEXPECTED_FIELD = "UNEXPECTED_FIELD"
    FIELD_TYPE_MISMATCH = "FIELD_TYPE_MISMATCH"
    INVALID_SCHEMA_DEFINITION = "INVALID_SCHEMA_DEFINITION"
    INVALID_FIELD_DEFINITION = "INVALID_FIELD_DEFINITION"
    INVALID_SYSTEM_FIELD = "INVALID_SYSTEM_FIELD"
    # log integrity (publish)
    SEQ_NUM_MISMATCH = "SEQ_NUM_MISMATCH"
    SKIPLINK_MISSING = "SKIPLINK_MISSING"
    SKIPLINK_MISMATCH = "SKIPLINK_MISMATCH"
    BACKLINK_MISMATCH = "BACKLINK_MISMATCH"
    PAYLOAD_HASH_MISMATCH = "PAYLOAD_HASH_MISMATCH"
    PAYLOAD_SIZE_MISMATCH = "PAYLOAD_SIZE_MISMATCH"
    LOG_ID_MISMATCH = "LOG_ID_MISMATCH"
    LOG_ID_IN_USE = "LOG_ID_IN_USE"
    LOG_NOT_FOUND = "LOG_NOT_FOUND"
    MAX_SEQ_NUM_REACHED = "MAX_SEQ_NUM_REACHED"
    MAX_LOG_ID_REACHED = "MAX_LOG_ID_REACHED"
    # documents
    PREVIOUS_NOT_FOUND = "PREVIOUS_NOT_FOUND"
    INVALID_CLAIMED_SCHEMA = "INVALID_CLAIMED_SCHEMA"
    MULTIPLE_DOCUMENTS = "MULTIPLE_DOCUMENTS"
    DOCUMENT_DELETED = "DOCUMENT_DELETED"
    INVALID_GRAPH = "INVALID_GRAPH"
    INVALID_REDUCTION = "INVALID_REDUCTION"
    VIEW_NOT_FOUND = "VIEW_NOT_FOUND"
    # service level (requests, limits, availability)
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # INVALID_ARGUMENT: the request itself is over a configured size limit (an entry, an
    # operation, a batch); the same request never succeeds, whatever the node's state.
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    # RESOURCE_EXHAUSTED: a per-request or per-client budget of the node's resources ran out
    # (the documents or bytes a response would hold, the changes buffered for a watcher);
    # depends on the data and on the client's pace.
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_FOUND = "NOT_FOUND"


class PandanodeError(Exception):
    """Base of every error pandanode raises on purpose.

    Attributes:
        reason: A stable machine-readable code.
        message: What went wrong, for a person.
    """

    default_reason: Reason = Reason.INVALID_OPERATION

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason if reason is not None else self.default_reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason.value})"


class DecodeError(PandanodeError):
    """Bytes or text that cannot be decoded into a protocol value."""


class EntryDecodeError(DecodeError):
    """A Bamboo entry that is malformed."""

    default_reason = Reason.ENTRY_TOO_SHORT


class SignatureError(EntryDecodeError):
    """An entry whose signature does not verify against its public key."""

    default_reason = Reason.INVALID_SIGNATURE


class HashDecodeError(DecodeError):
    """A YASMF hash (or an id made of hashes) that is malformed."""

    default_reason = Reason.INVALID_HASH


class OperationDecodeError(DecodeError):
    """An operation whose CBOR is malformed or does not follow p2panda's encoding rules."""

    default_reason = Reason.INVALID_OPERATION


class SchemaIdError(DecodeError):
    """A schema id string that does not parse."""

    default_reason = Reason.INVALID_SCHEMA_ID


class ValidationError(PandanodeError):
    """Well-formed data that breaks a protocol rule."""


class LogIntegrityError(ValidationError):
    """An entry that does not fit the log it claims to extend."""

    default_reason = Reason.SEQ_NUM_MISMATCH


class SchemaError(ValidationError):
    """An operation that does not fit its schema, or a schema definition that is invalid."""

    default_reason = Reason.SCHEMA_MISMATCH


class SchemaNotFoundError(SchemaError):
    """An operation whose schema this node does not know."""

    default_reason = Reason.SCHEMA_NOT_FOUND


class DocumentError(ValidationError):
    """A document whose operations cannot be ordered or reduced, or that was deleted."""

    default_reason = Reason.INVALID_GRAPH


class NotFoundError(ValidationError):
    """A referenced operation, document or view that is not known."""

    default_reason = Reason.PREVIOUS_NOT_FOUND


ERROR_DOMAIN: Final = "pandanode"
"""The ``google.rpc.ErrorInfo`` domain of every error a pandanode service reports."""


class InvalidRequestError(PandanodeError):
    """A request whose arguments are malformed (not protocol data): INVALID_ARGUMENT."""

    default_reason = Reason.INVALID_ARGUMENT


class LimitExceededError(PandanodeError):
    """A per-request or per-client budget of the node ran out: RESOURCE_EXHAUSTED.

    A request that is itself over a size limit is an :class:`InvalidRequestError` with the
    reason ``LIMIT_EXCEEDED`` (INVALID_ARGUMENT) instead: per AIP-193, INVALID_ARGUMENT is
    for a request that is wrong regardless of the system's state, RESOURCE_EXHAUSTED for a
    resource or quota that ran out.
    """

    default_reason = Reason.BUDGET_EXCEEDED


class UnavailableError(PandanodeError):
    """A dependency (store, NATS) is unavailable; safe to retry later: UNAVAILABLE."""

    default_reason = Reason.UNAVAILABLE


class ResourceNotFoundError(PandanodeError):
    """A requested resource does not exist: NOT_FOUND."""

    default_reason = Reason.NOT_FOUND
