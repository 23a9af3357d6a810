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
ResourceNotFoundError (NOT_FOUND), SchemaNotSupportedError (PERMISSION_DENIED: the node's
schema allow list), AdminOnlyError (PERMISSION_DENIED: an admin method from another
machine). KeyFileError is a key file that cannot be used (never sent
over the wire). ``ERROR_DOMAIN`` is the ``google.rpc.ErrorInfo`` domain.

:data:`STATUS_CODES` and :data:`ERROR_CLASSES` are the one table between errors and gRPC
statuses (status codes by name: the core imports no gRPC), used by the services' error boundary
and by the client alike.

It is a little over 500 lines because it is the one table of every error: the reasons, the
exception classes and their gRPC codes are read together, and kept in step, here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Self

__all__ = [
    "AdminOnlyError",
    "ERROR_CLASSES",
    "ERROR_DOMAIN",
    "STATUS_CODES",
    "DecodeError",
    "DocumentError",
    "EntryDecodeError",
    "FieldViolation",
    "HashDecodeError",
    "InvalidRequestError",
    "KeyFileError",
    "METADATA_VALUE_LIMIT",
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
    "SchemaNotSupportedError",
    "SignatureError",
    "UnavailableError",
    "ValidationError",
    "error_class",
    "status_code_name",
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
    INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # INVALID_ARGUMENT: the request itself is over a configured size limit (an entry, an
    # operation, a batch); the same request never succeeds, whatever the node's state.
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    # RESOURCE_EXHAUSTED: a per-request or per-client budget of the node's resources ran out
    # (the documents or bytes a response would hold, the changes buffered for a watcher);
    # depends on the data and on the client's pace.
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    # RESOURCE_EXHAUSTED: a watcher read more slowly than changes arrived (its budget of
    # buffered changes ran out); watch again.
    WATCH_TOO_SLOW = "WATCH_TOO_SLOW"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_FOUND = "NOT_FOUND"
    # PERMISSION_DENIED: the node's allow list (``supported_schema_ids``) does not take
    # operations of this schema, whoever sends them.
    SCHEMA_NOT_SUPPORTED = "SCHEMA_NOT_SUPPORTED"
    # PERMISSION_DENIED: an admin method (one that changes what the node does, e.g. SyncWith)
    # called from another machine while the node takes them from loopback only.
    ADMIN_ONLY = "ADMIN_ONLY"
    # RESOURCE_EXHAUSTED: one client address holds as many calls (or streams) at once as the
    # node allows one client; retry once one ended.
    TOO_MANY_CALLS = "TOO_MANY_CALLS"


METADATA_VALUE_LIMIT: Final = 256
"""Most characters of one metadata value; a longer value is cut and ends in ``…``."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One malformed field of a request (a ``google.rpc.BadRequest.FieldViolation``).

    Attributes:
        field: The field's path in the request message, e.g. ``filters[0].value`` or
            ``page_token``; empty when the request as a whole is at fault.
        description: What is wrong with it, for a person.
    """

    field: str
    description: str


def _metadata_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > METADATA_VALUE_LIMIT:
        return text[: METADATA_VALUE_LIMIT - 1] + "…"
    return text


class PandanodeError(Exception):
    """Base of every error pandanode raises on purpose.

    Args:
        message: What went wrong, for a person.
        reason: The machine-readable code (default: the class's ``default_reason``).
        metadata: What the error is about, by key (see :meth:`about`).
        violations: The request fields at fault (see :class:`FieldViolation`).
        retry_delay: Seconds to wait before retrying, when the node knows better than its
            default for the status code.

    Attributes:
        reason: A stable machine-readable code.
        message: What went wrong, for a person.
        metadata: What the error is about, by key: ``field``, ``schema_id``, ``document_id``,
            ``document_view_id``, ``operation_id``, ``public_key``, ``log_id``, ``seq_num``,
            ``page_size``, ``limit`` (``google.rpc.ErrorInfo.metadata`` on the wire). Values
            are cut to :data:`METADATA_VALUE_LIMIT` characters.
        field_violations: The request fields at fault (``google.rpc.BadRequest``).
        retry_delay: Seconds to wait before retrying (``google.rpc.RetryInfo``), or None.
    """

    default_reason: Reason = Reason.INVALID_OPERATION

    def __init__(
        self,
        message: str,
        reason: Reason | None = None,
        *,
        metadata: Mapping[str, object] | None = None,
        violations: Iterable[FieldViolation] = (),
        retry_delay: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: Reason = reason if reason is not None else self.default_reason
        self.metadata: dict[str, str] = {}
        self.field_violations: tuple[FieldViolation, ...] = tuple(violations)
        self.retry_delay = retry_delay
        if metadata:
            self.about(**metadata)

    def about(self, **metadata: object) -> Self:
        """Record what the error is about (keys already set are kept); returns the error.

        ``raise SchemaNotFoundError(...).about(schema_id=schema_id)``. A None value is left out.
        """
        for key, value in metadata.items():
            if value is not None and key not in self.metadata:
                self.metadata[key] = _metadata_value(value)
        return self

    def violation(self, field: str) -> Self:
        """Record ``field`` as the request field at fault (with the error's message); returns it.

        Also sets the ``field`` metadata (unless ``field`` is empty: the request as a whole).
        """
        self.field_violations = (*self.field_violations, FieldViolation(field, self.message))
        return self.about(field=field or None)

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


class SchemaNotSupportedError(PandanodeError):
    """An operation of a schema the node's allow list does not take: PERMISSION_DENIED.

    A policy of the node (``supported_schema_ids``), the same for every caller: neither a retry
    nor another request fixes it, only the node's operator (AIP-193's PERMISSION_DENIED; not
    FAILED_PRECONDITION, which a client can fix by changing the node's state, e.g. by publishing
    a schema's definition first).
    """

    default_reason = Reason.SCHEMA_NOT_SUPPORTED


class AdminOnlyError(PandanodeError):
    """An admin method called from another machine: PERMISSION_DENIED (``ADMIN_ONLY``).

    The node takes admin methods (``ReplicationService.SyncWith``) from loopback only, unless
    its operator sets ``admin_allow_remote``: run the command on the node's machine.
    """

    default_reason = Reason.ADMIN_ONLY


class KeyFileError(PandanodeError):
    """A key file that is missing, unreadable, or does not hold a private key."""

    default_reason = Reason.INVALID_PRIVATE_KEY


# -- the one table between errors and gRPC statuses ---------------------------------------------

STATUS_CODES: Final[Mapping[type[PandanodeError], str]] = MappingProxyType(
    {
        DecodeError: "INVALID_ARGUMENT",
        InvalidRequestError: "INVALID_ARGUMENT",
        LimitExceededError: "RESOURCE_EXHAUSTED",
        UnavailableError: "UNAVAILABLE",
        ResourceNotFoundError: "NOT_FOUND",
        SchemaNotSupportedError: "PERMISSION_DENIED",
        AdminOnlyError: "PERMISSION_DENIED",
        ValidationError: "FAILED_PRECONDITION",
    }
)
"""The gRPC status code (by name) of each family of errors; any other error is ``INTERNAL``."""

_ByReason = Mapping[Reason, type[PandanodeError]]

_INVALID_ARGUMENT: Final[_ByReason] = {
    **dict.fromkeys(
        (
            Reason.INVALID_VARU64,
            Reason.NON_CANONICAL_VARU64,
            Reason.ENTRY_TOO_SHORT,
            Reason.INVALID_PUBLIC_KEY,
            Reason.INVALID_SEQ_NUM,
            Reason.INVALID_LOG_ID,
            Reason.INVALID_LINKS,
        ),
        EntryDecodeError,
    ),
    Reason.INVALID_SIGNATURE: SignatureError,
    Reason.INVALID_HASH: HashDecodeError,
    Reason.INVALID_HEX: HashDecodeError,
    Reason.INVALID_DOCUMENT_VIEW_ID: HashDecodeError,
    Reason.INVALID_SCHEMA_ID: SchemaIdError,
    Reason.UNSUPPORTED_SYSTEM_SCHEMA: SchemaIdError,
    **dict.fromkeys(
        (
            Reason.INVALID_CBOR,
            Reason.INVALID_OPERATION,
            Reason.UNSUPPORTED_VERSION,
            Reason.UNKNOWN_ACTION,
            Reason.UNSORTED_FIELDS,
            Reason.DUPLICATE_FIELD,
            Reason.INVALID_FIELD_VALUE,
        ),
        OperationDecodeError,
    ),
    Reason.INVALID_ARGUMENT: InvalidRequestError,
    Reason.INVALID_PAGE_TOKEN: InvalidRequestError,
    Reason.MALFORMED_REQUEST: InvalidRequestError,
    Reason.LIMIT_EXCEEDED: InvalidRequestError,
}
_FAILED_PRECONDITION: Final[_ByReason] = {
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

ERROR_CLASSES: Final[Mapping[str, tuple[type[PandanodeError], _ByReason]]] = MappingProxyType(
    {
        "INVALID_ARGUMENT": (DecodeError, _INVALID_ARGUMENT),
        "FAILED_PRECONDITION": (ValidationError, _FAILED_PRECONDITION),
        # A lookup that finds no schema answers NOT_FOUND; it is still a SchemaNotFoundError.
        "NOT_FOUND": (ResourceNotFoundError, {Reason.SCHEMA_NOT_FOUND: SchemaNotFoundError}),
        "PERMISSION_DENIED": (
            SchemaNotSupportedError,
            {
                Reason.SCHEMA_NOT_SUPPORTED: SchemaNotSupportedError,
                Reason.ADMIN_ONLY: AdminOnlyError,
            },
        ),
        "RESOURCE_EXHAUSTED": (LimitExceededError, {Reason.TOO_MANY_CALLS: LimitExceededError}),
        "UNAVAILABLE": (UnavailableError, {}),
    }
)
"""Status code name → (the class of a status without a known reason, reason → class).

A reason is only meaningful with its code: ``INVALID_FIELD_VALUE`` is an
:class:`OperationDecodeError` under ``INVALID_ARGUMENT`` but a :class:`SchemaError` under
``FAILED_PRECONDITION``, exactly as the core raises them.
"""


def status_code_name(error: BaseException) -> str:
    """The name of the gRPC status code ``error`` is reported with (``INTERNAL`` if unlisted)."""
    for cls in type(error).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return "INTERNAL"


def error_class(code_name: str, reason: Reason | None) -> type[PandanodeError] | None:
    """The class of an error reported with status ``code_name`` and ``reason``.

    Returns:
        The class, or None for a status code no pandanode error is reported with.
    """
    entry = ERROR_CLASSES.get(code_name)
    if entry is None:
        return None
    fallback, by_reason = entry
    return by_reason.get(reason, fallback) if reason is not None else fallback
