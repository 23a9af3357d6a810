"""Pure helpers of replication shared by the ingest and replication services.

:func:`log_heights_digest` condenses the log heights of a target set into one BLAKE3 digest, so
two nodes holding the same logs at the same heights learn it from 32 bytes (issue 12's
``HaveDigest``) instead of exchanging every height.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

import blake3

from .errors import InvalidRequestError, Reason
from .varu64 import MAX_U64

__all__ = ["LOG_HEIGHT_ENCODING_SIZE", "encode_log_height", "log_heights_digest"]

LOG_HEIGHT_ENCODING_SIZE: Final = 48
"""Bytes of one encoded (public key, log id, seq num) triple."""

_U64_PAIR: Final = struct.Struct(">QQ")


def encode_log_height(public_key: str, log_id: int, seq_num: int) -> bytes:
    """The digest's encoding of one log height: raw public key (32) ‖ log id ‖ seq num (u64 BE).

    Raises:
        InvalidRequestError: the public key is not 64 hex characters, or an integer is not a
            u64.
    """
    try:
        key = bytes.fromhex(public_key)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidRequestError("a public key is 64 hex characters", Reason.INVALID_PUBLIC_KEY)
    if not (0 <= log_id <= MAX_U64 and 0 <= seq_num <= MAX_U64):
        raise InvalidRequestError("log id and seq num are u64 integers", Reason.INVALID_ARGUMENT)
    return key + _U64_PAIR.pack(log_id, seq_num)


def log_heights_digest(heights: Iterable[tuple[str, int, int]]) -> bytes:
    """BLAKE3 (32 bytes) over the sorted log heights of a target set.

    Each (public key hex, log id, seq num) is encoded by :func:`encode_log_height`; the
    encodings are sorted bytewise (which is (public key, log id, seq num) order) and hashed
    concatenated. The empty set hashes the empty string. The order the heights come in does
    not matter; a triple given twice counts twice.

    Raises:
        InvalidRequestError: see :func:`encode_log_height`.
    """
    encoded = sorted(encode_log_height(key.lower(), log_id, seq) for key, log_id, seq in heights)
    hasher = blake3.blake3()
    for item in encoded:
        hasher.update(item)
    return hasher.digest()
