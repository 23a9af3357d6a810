"""Schema ids and the name rules of schemas (spec §5.2, §5.3).

A schema id names a schema. A *system* schema is named ``<name>_v<version>`` (p2panda 0.8 has
``schema_definition_v1``, ``schema_field_definition_v1``, ``blob_v1`` and ``blob_piece_v1``); an
*application* schema ``<name>_<document view id>``, the view of its ``schema_definition_v1``
document. :func:`parse_schema_id` reads the text form exactly as p2panda-rs 0.8.1 does, and
:func:`~.operation.decode_operation` uses it to refuse operations with a malformed schema id.

The rules for schema names, field names and descriptions live here too, as predicates. This
module knows nothing of operations or schemas (see :mod:`.schema` for those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Final

from .errors import Reason, SchemaIdError
from .hash import HASH_HEX_LENGTH, HASH_LENGTH
from .ids import DocumentViewId

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "SYSTEM_SCHEMA_NAMES",
    "SchemaId",
    "is_valid_description",
    "is_valid_field_name",
    "is_valid_schema_name",
    "parse_schema_id",
]

SYSTEM_SCHEMA_NAMES: Final = frozenset(
    {"schema_definition", "schema_field_definition", "blob", "blob_piece"}
)
"""The names of the system schemas of p2panda 0.8 (each exists as version 1 only)."""

MAX_DESCRIPTION_LENGTH: Final = 256
"""A schema description has at most this many characters (Unicode scalar values)."""

# The regexes of p2panda-rs, used with `fullmatch`: Rust's `$` only matches at the very end,
# Python's `$` would also match before a trailing newline.
_SCHEMA_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}[A-Za-z0-9]")
_FIELD_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_SYSTEM_VERSION_RE: Final = re.compile(r"\+?[0-9]+")  # what Rust's `u8::from_str` takes
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")

_SCHEMA_NAME_RULE: Final = (
    "2 to 64 characters from A-Z, a-z, 0-9 and '_', starting with a letter and not ending with '_'"
)
_FIELD_NAME_RULE: Final = "1 to 64 characters from A-Z, a-z, 0-9 and '_', starting with a letter"


# --------------------------------------------------------------------------------------------
# Name and description rules (spec §5.3)


def is_valid_schema_name(name: str) -> bool:
    """Whether ``name`` is a valid schema name: ``^[A-Za-z][A-Za-z0-9_]{0,62}[A-Za-z0-9]$``.

    That is 2 to 64 ASCII letters, digits and underscores, starting with a letter and not ending
    with an underscore (a one-character name is invalid).
    """
    return _SCHEMA_NAME_RE.fullmatch(name) is not None


def is_valid_field_name(name: str) -> bool:
    """Whether ``name`` is a valid field name: ``^[A-Za-z][A-Za-z0-9_]{0,63}$`` (1 to 64 chars)."""
    return _FIELD_NAME_RE.fullmatch(name) is not None


def is_valid_description(description: str) -> bool:
    """Whether ``description`` has at most 256 characters (Unicode scalar values, not bytes)."""
    return len(description) <= MAX_DESCRIPTION_LENGTH


# --------------------------------------------------------------------------------------------
# Schema ids (spec §5.2)


@dataclass(frozen=True, slots=True)
class SchemaId:
    """A parsed schema id: a system schema and its version, or an application schema.

    Build one with :meth:`from_str`, :meth:`system` or :meth:`application`. Two ids are equal
    when they name the same schema (``blob_v01`` and ``blob_v1`` are equal, as in p2panda).

    Attributes:
        name: The schema name, e.g. ``blob_piece`` or ``post``.
        version: The version of a system schema (0 to 255); None for an application schema.
        view_id: The view id of the defining ``schema_definition_v1`` document (application
            schemas); None for a system schema.
    """

    name: str
    version: int | None = None
    view_id: DocumentViewId | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.view_id is None):
            raise SchemaIdError(
                "a schema id has either a version (system schema) or a view id (application "
                "schema), not both or neither",
                Reason.INVALID_SCHEMA_ID,
            )
        if self.view_id is None:
            if self.name not in SYSTEM_SCHEMA_NAMES:
                raise SchemaIdError(
                    f"unsupported system schema: {self.name}", Reason.UNSUPPORTED_SYSTEM_SCHEMA
                )
            version = self.version
            if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= 255:
                raise SchemaIdError(
                    f"system schema version must be an integer from 0 to 255, got {self.version!r}",
                    Reason.INVALID_SCHEMA_ID,
                )
        elif not is_valid_schema_name(self.name):
            raise SchemaIdError(
                f"invalid application schema name {self.name!r}: expected {_SCHEMA_NAME_RULE}",
                Reason.INVALID_SCHEMA_ID,
            )

    @classmethod
    def from_str(cls, value: str) -> SchemaId:
        """Parse a schema id string; see :func:`parse_schema_id`."""
        return parse_schema_id(value)

    @classmethod
    def system(cls, name: str, version: int = 1) -> SchemaId:
        """Return the id of system schema ``name`` (e.g. ``blob``) at ``version``."""
        return cls(name, version=version)

    @classmethod
    def application(cls, name: str, view_id: DocumentViewId | str) -> SchemaId:
        """Return the id of application schema ``name`` defined by the view ``view_id``."""
        if isinstance(view_id, str):
            view_id = DocumentViewId.from_str(view_id)
        return cls(name, view_id=view_id)

    @property
    def is_system(self) -> bool:
        """Whether this is one of the system schemas (``<name>_v<version>``)."""
        return self.view_id is None

    def hash_id(self) -> str:
        """Return the schema hash id of spec §3.4.

        ``<name>__<view hash>`` for an application schema, ``<name>__<version>`` for a system one.
        """
        if self.view_id is None:
            return f"{self.name}__{self.version}"
        return f"{self.name}__{self.view_id.view_hash()}"

    def __str__(self) -> str:
        if self.view_id is None:
            return f"{self.name}_v{self.version}"
        return f"{self.name}_{self.view_id}"

    def __repr__(self) -> str:
        return f"SchemaId({str(self)!r})"


# Every operation names its schema, and a node sees few distinct ids: parsing each once matters
# on the ingest path (profiling showed ~10% of the GIL's time here). Failures are not cached.
@lru_cache(maxsize=4096)
def parse_schema_id(value: str) -> SchemaId:
    """Parse a schema id string exactly as p2panda-rs ``SchemaId::new`` does.

    If the part after the last ``_`` starts with ``v`` and is shorter than 68 characters, the id
    is a system schema ``<name>_v<version>`` (the version as Rust reads a ``u8``: ``v01`` and
    ``v+1`` both mean 1). Otherwise ``_``-separated operation ids are split off the end until the
    remaining prefix is shorter than 68 characters; that prefix is the name and the ids (as
    written, not re-sorted) must form a valid document view id.

    Args:
        value: For example ``blob_v1`` or ``post_0020…f606``.

    Returns:
        The parsed id; ``str()`` of it gives the canonical string back.

    Raises:
        SchemaIdError: with reason ``UNSUPPORTED_SYSTEM_SCHEMA`` for an unknown system schema
            name, ``INVALID_SCHEMA_ID`` for anything else malformed. Messages are p2panda's.
    """
    prefix, separator, rightmost = value.rpartition("_")
    if not separator:
        raise SchemaIdError(
            f"malformed schema id `{value}`: doesn't contain an underscore",
            Reason.INVALID_SCHEMA_ID,
        )
    if rightmost.startswith("v") and _utf8_length(rightmost) < HASH_HEX_LENGTH:
        return _parse_system_schema_id(value, prefix, rightmost[1:])
    return _parse_application_schema_id(value)


def _parse_system_schema_id(value: str, name: str, version_text: str) -> SchemaId:
    if _SYSTEM_VERSION_RE.fullmatch(version_text) is None or int(version_text) > 255:
        raise SchemaIdError(
            f"malformed schema id `{value}`: couldn't parse system schema version",
            Reason.INVALID_SCHEMA_ID,
        )
    if name not in SYSTEM_SCHEMA_NAMES:
        raise SchemaIdError(f"unsupported system schema: {name}", Reason.UNSUPPORTED_SYSTEM_SCHEMA)
    return SchemaId(name, version=int(version_text))


def _parse_application_schema_id(value: str) -> SchemaId:
    operation_ids: list[str] = []
    remainder = value
    while True:
        left, separator, right = remainder.rpartition("_")
        if not separator:
            break
        problem = _operation_id_problem(right)
        if problem is not None:
            raise SchemaIdError(
                f"encountered invalid hash while parsing application schema id: {problem}",
                Reason.INVALID_SCHEMA_ID,
            )
        operation_ids.append(right)
        remainder = left
        if _utf8_length(remainder) < HASH_HEX_LENGTH:
            break
    operation_ids.reverse()
    if not remainder:
        raise SchemaIdError(
            f"application schema id is missing a name: {value}", Reason.INVALID_SCHEMA_ID
        )
    if not is_valid_schema_name(remainder):
        raise SchemaIdError(
            f"malformed schema id `{value}`: name contains too many or invalid characters",
            Reason.INVALID_SCHEMA_ID,
        )
    if any(a >= b for a, b in pairwise(operation_ids)):
        raise SchemaIdError(
            "encountered invalid document view id while parsing application schema id: "
            "expected sorted operation ids in document view id",
            Reason.INVALID_SCHEMA_ID,
        )
    return SchemaId(remainder, view_id=DocumentViewId(tuple(operation_ids)))


def _operation_id_problem(text: str) -> str | None:
    """Why ``text`` is not a hex YASMF hash, in p2panda's words; None when it is one."""
    if len(text) % 2 or not _HEX_DIGITS.issuperset(text):
        return "invalid hex encoding in hash string"
    if len(text) != HASH_HEX_LENGTH:
        return f"invalid hash length {len(text) // 2} bytes, expected {HASH_LENGTH} bytes"
    if not text.startswith("00"):
        return "can not decode YASMF BLAKE3 hash"
    return None


def _utf8_length(text: str) -> int:
    # p2panda-rs compares `str::len`, a length in UTF-8 bytes.
    return len(text.encode("utf-8", "surrogatepass"))
