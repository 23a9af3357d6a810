"""Canonical VarU64, the variable-length integer of Bamboo entries (spec §1.4)."""

from __future__ import annotations

from .errors import EntryDecodeError, Reason

__all__ = ["MAX_U64", "decode_varu64", "encode_varu64"]

MAX_U64 = 2**64 - 1


def encode_varu64(value: int) -> bytes:
    """Encode ``value`` (0 … 2^64−1) in its one canonical form.

    Raises:
        ValueError: if ``value`` is outside the u64 range (a programming error, not bad input).
    """
    if value < 0 or value > MAX_U64:
        raise ValueError(f"varu64 value out of range: {value}")
    if value < 248:
        return bytes((value,))
    length = (value.bit_length() + 7) // 8
    return bytes((247 + length,)) + value.to_bytes(length, "big")


def decode_varu64(data: bytes, offset: int = 0, *, name: str = "varu64") -> tuple[int, int]:
    """Read one canonical varu64 at ``offset``.

    Args:
        data: The buffer.
        offset: Where the varu64 starts.
        name: What is being read, for the error message.

    Returns:
        The value and the offset just past it.

    Raises:
        EntryDecodeError: when the buffer ends early or the encoding is not the shortest one.
    """
    if offset >= len(data):
        raise EntryDecodeError(f"could not decode {name}: buffer ends", Reason.INVALID_VARU64)
    first = data[offset]
    if first < 248:
        return first, offset + 1
    length = first - 247
    end = offset + 1 + length
    if end > len(data):
        raise EntryDecodeError(f"could not decode {name}: buffer ends", Reason.INVALID_VARU64)
    value = int.from_bytes(data[offset + 1 : end], "big")
    if value < 248 or (value.bit_length() + 7) // 8 != length:
        raise EntryDecodeError(
            f"could not decode {name}: non-canonical varu64 encoding of {value}",
            Reason.NON_CANONICAL_VARU64,
        )
    return value, end
