"""YASMF hashes: BLAKE3 digests with a two-byte header, the only hash p2panda uses (spec §1.3).

At the API edge and inside this library a hash is a lowercase hex string of 68 characters
(``0020…``); inside CBOR and entries it is 34 raw bytes. Hex order equals byte order.
"""

from __future__ import annotations

import blake3

from .errors import HashDecodeError, Reason, quote
from .hexid import HASH_HEX_LENGTH, is_hash_hex, is_hex

__all__ = [
    "HASH_HEX_LENGTH",
    "HASH_LENGTH",
    "decode_hash",
    "generate_hash",
    "hash_bytes",
    "hash_from_hex",
    "is_hash_hex",
]

HASH_LENGTH = 34
_HEADER = b"\x00\x20"


def hash_bytes(data: bytes) -> bytes:
    """Return the 34-byte YASMF hash of ``data``."""
    return _HEADER + blake3.blake3(data).digest()


def generate_hash(data: bytes) -> str:
    """Return the YASMF hash of ``data`` as lowercase hex, like p2panda-js ``generateHash``."""
    return hash_bytes(data).hex()


def decode_hash(data: bytes, offset: int = 0, *, name: str = "hash") -> tuple[str, int]:
    """Read a 34-byte YASMF hash at ``offset`` (as in an entry) and return its hex and the end.

    Like p2panda the declared digest length byte is not checked and is normalised to 0x20,
    so an entry that carries ``0021…`` is read as the ``0020…`` hash it stands for.

    Raises:
        HashDecodeError: when fewer than 34 bytes remain or the hash type is not 0 (BLAKE3).
    """
    end = offset + HASH_LENGTH
    if end > len(data):
        raise HashDecodeError(f"could not decode {name}: buffer ends", Reason.INVALID_HASH)
    if data[offset] != 0:
        raise HashDecodeError(
            f"could not decode {name}: unknown hash type {data[offset]} (only 0, BLAKE3, exists)",
            Reason.INVALID_HASH,
        )
    return "0020" + data[offset + 2 : end].hex(), end


def hash_from_hex(value: str, *, name: str = "hash") -> bytes:
    """Parse a 68-character hex hash and return its 34 bytes.

    Raises:
        HashDecodeError: when ``value`` is not hex, not 34 bytes long, or not of type 0.
    """
    if not is_hex(value, HASH_HEX_LENGTH):
        raise HashDecodeError(
            f"invalid {name} {quote(value)}: expected 68 hex characters", Reason.INVALID_HASH
        )
    raw = bytes.fromhex(value)
    if raw[0] != 0:
        raise HashDecodeError(
            f"invalid {name} {quote(value)}: unknown hash type", Reason.INVALID_HASH
        )
    return raw
