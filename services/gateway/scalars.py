"""aquadoggo's GraphQL scalars: strings in JSON (hex ids, decimal u64s), and a 64-bit ``Int``.

Every string scalar keeps its value a string after parsing: clients pass these arguments
through variables declared ``String`` too (aquadoggo accepts that, and so does
:mod:`.validation`), and such values reach the resolvers unparsed. So the resolvers check
and convert every value themselves (:func:`check_id` and friends), and a scalar only rejects
malformed literals early.
"""

# graphql-core annotates GraphQLNamedType.__new__ as returning the base class, so pyright types
# every GraphQLObjectType(...), GraphQLScalarType(...) … as a plain GraphQLNamedType; mypy (strict)
# ignores that annotation and checks these arguments, returns and assignments.
# pyright: reportReturnType=false

from __future__ import annotations

import re
from typing import Any

from graphql import GraphQLError, GraphQLNamedType, GraphQLScalarType, ValueNode
from graphql.language import IntValueNode, StringValueNode

__all__ = [
    "CURSOR",
    "DOCUMENT_ID",
    "DOCUMENT_VIEW_ID",
    "ENCODED_ENTRY",
    "ENCODED_OPERATION",
    "ENTRY_HASH",
    "HEX_BYTES",
    "INT64",
    "LOG_ID",
    "PUBLIC_KEY",
    "SEQ_NUM",
    "STRING_SCALARS",
    "check_hex",
    "check_id",
    "check_public_key",
    "check_view_id",
]

_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_ID = re.compile(r"0020[0-9a-f]{64}")
_PUBLIC_KEY = re.compile(r"[0-9a-f]{64}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UINT64_MAX = 2**64 - 1
# Longest argument value quoted back in an error message.
_QUOTE = 80


def _quote(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE else text[:_QUOTE] + "…"


def check_id(value: object, what: str = "document id") -> str:
    """``value`` if it is a hash in hex (a document id, an operation id); else a GraphQLError."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise GraphQLError(f"invalid {what} {_quote(value)}: expected 68 lowercase hex characters")
    return value


def check_view_id(value: object) -> str:
    """``value`` if it is a document view id (sorted, unique operation ids joined by ``_``)."""
    if not isinstance(value, str):
        raise GraphQLError(f"invalid document view id {_quote(value)}: expected a string")
    parts = value.split("_")
    if not all(_ID.fullmatch(part) for part in parts):
        raise GraphQLError(
            f"invalid document view id {_quote(value)}: expected operation ids (68 lowercase "
            "hex characters) joined by '_'"
        )
    if parts != sorted(set(parts)):
        raise GraphQLError(
            f"invalid document view id {_quote(value)}: its operation ids must be sorted and unique"
        )
    return value


def check_public_key(value: object) -> str:
    """``value`` if it is an ed25519 public key in hex."""
    if not isinstance(value, str) or not _PUBLIC_KEY.fullmatch(value):
        raise GraphQLError(
            f"invalid public key {_quote(value)}: expected 64 lowercase hex characters"
        )
    return value


def check_hex(value: object, what: str) -> bytes:
    """The bytes of a hex string ``value``."""
    if not isinstance(value, str) or not _HEX.fullmatch(value.lower()):
        raise GraphQLError(f"invalid {what} {_quote(value)}: expected a hex string")
    return bytes.fromhex(value)


def _string_scalar(name: str, description: str, check: Any = None) -> GraphQLScalarType:
    def parse_value(value: Any) -> str:
        if not isinstance(value, str):
            raise GraphQLError(f"{name} must be a string, got {_quote(value)}")
        if check is not None:
            check(value)
        return value

    def parse_literal(node: ValueNode, _variables: Any = None) -> str:
        if not isinstance(node, StringValueNode):
            raise GraphQLError(f"{name} must be a string")
        return parse_value(node.value)

    def serialize(value: Any) -> str:
        if isinstance(value, bytes):
            return value.hex()
        return str(value)

    return GraphQLScalarType(
        name,
        serialize=serialize,
        parse_value=parse_value,
        parse_literal=parse_literal,
        description=description,
    )


def _check_u64(value: str) -> None:
    if not value.isdigit() or int(value) > _UINT64_MAX:
        raise GraphQLError(f"expected a decimal string of an unsigned 64-bit number, got {value!r}")


PUBLIC_KEY = _string_scalar(
    "PublicKey", "An ed25519 public key, 64 hex characters.", check_public_key
)
DOCUMENT_ID = _string_scalar("DocumentId", "A document id, 68 hex characters.", check_id)
ENTRY_HASH = _string_scalar(
    "EntryHash", "The hash of an entry, 68 hex characters.", lambda v: check_id(v, "entry hash")
)
DOCUMENT_VIEW_ID = _string_scalar(
    "DocumentViewId", "Operation ids joined by '_', sorted.", check_view_id
)
LOG_ID = _string_scalar("LogId", "A log id, a decimal string (u64).", _check_u64)
SEQ_NUM = _string_scalar("SeqNum", "A sequence number, a decimal string (u64).", _check_u64)
ENCODED_ENTRY = _string_scalar(
    "EncodedEntry", "A signed bamboo entry, hex.", lambda v: check_hex(v, "entry")
)
ENCODED_OPERATION = _string_scalar(
    "EncodedOperation", "A CBOR operation, hex.", lambda v: check_hex(v, "operation")
)
HEX_BYTES = _string_scalar("HexBytes", "Bytes as a hex string.", lambda v: check_hex(v, "bytes"))
CURSOR = _string_scalar("Cursor", "An opaque pagination cursor.")

STRING_SCALARS = frozenset(
    scalar.name
    for scalar in (
        PUBLIC_KEY,
        DOCUMENT_ID,
        ENTRY_HASH,
        DOCUMENT_VIEW_ID,
        LOG_ID,
        SEQ_NUM,
        ENCODED_ENTRY,
        ENCODED_OPERATION,
        HEX_BYTES,
        CURSOR,
    )
)
"""Scalars a variable declared ``String`` may be passed to (aquadoggo accepts that)."""


def _int64(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GraphQLError(f"Int cannot represent a non-integer value: {_quote(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise GraphQLError(f"Int cannot represent a non-integer value: {_quote(value)}")
        value = int(value)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise GraphQLError(f"Int cannot represent a value outside 64 bits: {_quote(value)}")
    return int(value)


def _int64_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError("Int cannot represent a non-integer value")
    return _int64(int(node.value))


def _wide_int() -> GraphQLScalarType:
    # graphql-core reserves the name of its 32-bit Int; our schemas use this one instead (and
    # never the standard one, so the names stay unique in each schema).
    reserved = GraphQLNamedType.reserved_types
    standard = reserved.pop("Int")
    try:
        return GraphQLScalarType(
            "Int",
            serialize=_int64,
            parse_value=_int64,
            parse_literal=_int64_literal,
            description="A signed 64-bit integer (p2panda's int fields are 64-bit).",
        )
    finally:
        reserved["Int"] = standard


INT64 = _wide_int()
"""GraphQL's ``Int`` widened to 64 bits, as aquadoggo's server (async-graphql) treats it."""
