"""Hex text: the one place that says whether a string is a hex id or key.

Operation ids, document ids and hashes are 68 hex characters (a 34-byte YASMF hash, starting
``00``); public keys (and node ids) 64; a document view id is operation ids joined by ``_``.
The protocol writes them lowercase; requests may use either case and are answered in lowercase.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import InvalidRequestError, quote

__all__ = [
    "HASH_HEX_LENGTH",
    "HEX_DIGITS",
    "LOWER_HEX_DIGITS",
    "PUBLIC_KEY_HEX_LENGTH",
    "is_hash_hex",
    "is_hex",
    "is_public_key_hex",
    "lower_hex",
    "lower_hex_ids",
    "require_hex",
    "require_hex_ids",
]

HASH_HEX_LENGTH: Final = 68
"""A YASMF hash (an operation id, a document id) in hex."""

PUBLIC_KEY_HEX_LENGTH: Final = 64
"""An Ed25519 public key (an author, a node id) in hex."""

HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
LOWER_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_HEX_RUN: Final = re.compile("[0-9a-fA-F]*").fullmatch
_LOWER_HEX_RUN: Final = re.compile("[0-9a-f]*").fullmatch


def is_hex(text: str, length: int | None = None, *, lowercase: bool = False) -> bool:
    """Whether ``text`` is hex digits only (lowercase ones with ``lowercase``), ``length`` long.

    Without ``length`` any length passes, also zero; unlike :meth:`bytes.fromhex` no whitespace
    is allowed.
    """
    if length is not None and len(text) != length:
        return False
    # A compiled pattern reads 68 characters in about half the time of a set's issuperset.
    return (_LOWER_HEX_RUN if lowercase else _HEX_RUN)(text) is not None


def is_hash_hex(text: str, *, lowercase: bool = False) -> bool:
    """Whether ``text`` is a well-formed 68-character hex YASMF hash (type 0, ``00…``)."""
    return is_hex(text, HASH_HEX_LENGTH, lowercase=lowercase) and text.startswith("00")


def is_public_key_hex(text: str, *, lowercase: bool = False) -> bool:
    """Whether ``text`` is a 64-character hex Ed25519 public key (or node id)."""
    return is_hex(text, PUBLIC_KEY_HEX_LENGTH, lowercase=lowercase)


def lower_hex(value: str, length: int) -> str | None:
    """``value`` in lowercase when it is ``length`` hex characters (in any case), else None."""
    text = value.lower()
    return text if is_hex(text, length, lowercase=True) else None


def lower_hex_ids(value: str) -> str | None:
    """``value`` in lowercase when it is 68-character hex ids joined by ``_``, else None."""
    text = value.lower()
    if not value or not all(
        is_hex(part, HASH_HEX_LENGTH, lowercase=True) for part in text.split("_")
    ):
        return None
    return text


def require_hex(value: str, what: str, length: int) -> str:
    """A request argument that must be ``length`` hex characters, in lowercase.

    Raises:
        InvalidRequestError: (``INVALID_ARGUMENT``) It is not; the message quotes at most 80
            characters of it.
    """
    text = lower_hex(value, length)
    if text is None:
        raise InvalidRequestError(
            f"{what} must be {length} hex characters, got {quote(value)}"
        ).violation(what)
    return text


def require_hex_ids(value: str, what: str) -> str:
    """A request argument that must be 68-hex-character ids joined by ``_``, in lowercase.

    Raises:
        InvalidRequestError: (``INVALID_ARGUMENT``) It is not; the message quotes at most 80
            characters of it.
    """
    text = lower_hex_ids(value)
    if text is None:
        raise InvalidRequestError(
            f"{what} must be 68-hex-character ids joined by '_': {quote(value)}"
        ).violation(what)
    return text
