"""A minimal CBOR (RFC 8949) reader and writer, just enough for p2panda operations (spec §3).

The reader keeps what p2panda's rules need to see and a generic decoder would hide: map entries
come back as a :class:`CborMap` of key/value pairs **in wire order** (so unsorted and duplicate
keys can be detected), tags other than small bignums come back as :class:`Tag` (so stray tags
can be rejected), and simple values other than booleans and null come back as :class:`Simple`.
It accepts every well-formed encoding — non-minimal heads, indefinite lengths, any float width —
plus the two ill-formed ones ciborium (p2panda's CBOR library) reads: two-byte simple values
below 32 (``f8 15`` is true) and indefinite-length strings nested inside one another. Everything
else that is not well-formed raises :class:`~.errors.OperationDecodeError`
(:attr:`~.errors.Reason.INVALID_CBOR`); no other exception escapes the reader. Nesting is
bounded (:data:`MAX_DEPTH`).

The writer emits what p2panda (ciborium) emits: definite lengths, the shortest head for every
integer and length, and each float in the shortest IEEE width (half, single, double) that holds the
value exactly. Map entries are written in the order given: sorting is the caller's business.

Python values used on both sides:

=====================  ===============================================================
CBOR                   Python
=====================  ===============================================================
major 0 / 1 integer    ``int`` (-2⁶⁴ … 2⁶⁴-1)
tag 2 / 3 bignum       ``int``, when it wraps a definite byte string of at most 16 bytes
                       (as ciborium reads it); otherwise a :class:`Tag`
byte string            ``bytes`` (indefinite strings are joined)
text string            ``str`` (strict UTF-8)
array                  ``list`` (the writer also takes ``tuple``)
map                    :class:`CborMap`
any other tag          :class:`Tag` (see :func:`bignum_value` for leftover bignums)
false / true / null    ``False`` / ``True`` / ``None`` (also from the two-byte ``f8 14`` …)
other simple values    :class:`Simple`, e.g. :data:`UNDEFINED`
float (any width)      ``float``
=====================  ===============================================================

It stays one module (a little over 500 lines, a good part of them this docstring): the reader
and the writer are the two directions of the one value mapping in the table above.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from .errors import OperationDecodeError, Reason

__all__ = [
    "MAX_DEPTH",
    "UNDEFINED",
    "CborMap",
    "CborValue",
    "Head",
    "Simple",
    "Tag",
    "bignum_value",
    "decode_head",
    "decode_item",
    "dumps",
    "encode_float",
    "loads",
]

MAX_DEPTH = 32
"""Default bound on nesting (arrays, maps, tags) accepted by the reader.

A p2panda operation nests at most four deep (array, fields map, list of view ids, view id).
"""

_MAX_UINT = 2**64 - 1
_BREAK = 0xFF

_HALF = struct.Struct(">e")
_SINGLE = struct.Struct(">f")
_DOUBLE = struct.Struct(">d")


@dataclass(frozen=True, slots=True)
class CborMap:
    """A CBOR map as its entries in wire order; duplicate keys are kept, nothing is sorted.

    Attributes:
        items: The ``(key, value)`` pairs, in the order they were read or are to be written.
    """

    items: tuple[tuple[CborValue, CborValue], ...]


@dataclass(frozen=True, slots=True)
class Tag:
    """A tagged data item (major type 6).

    Attributes:
        tag: The tag number, e.g. 2 for an unsigned bignum.
        value: The item it wraps.
    """

    tag: int
    value: CborValue


@dataclass(frozen=True, slots=True)
class Simple:
    """A simple value other than false, true and null (major type 7), e.g. ``undefined`` (23).

    Attributes:
        value: Its number, 0 … 19 or 23 … 255. The reader yields 24 … 31 only from the
            ill-formed two-byte forms ``f8 18`` … ``f8 1f``; the writer refuses them.
    """

    value: int


UNDEFINED = Simple(23)
"""The CBOR ``undefined`` value (``f7``)."""

CborValue: TypeAlias = (
    int
    | float
    | str
    | bytes
    | bool
    | list["CborValue"]
    | tuple["CborValue", ...]
    | CborMap
    | Tag
    | Simple
    | None
)
"""Any value the reader returns or the writer takes (arrays are lists when read)."""


def _invalid(message: str) -> OperationDecodeError:
    return OperationDecodeError(f"invalid CBOR: {message}", Reason.INVALID_CBOR)


def _eof(pos: int) -> OperationDecodeError:
    return _invalid(f"unexpected end of input at byte {pos}")


# ---------------------------------------------------------------------------------------------
# Reader


def loads(data: bytes | bytearray | memoryview, *, max_depth: int = MAX_DEPTH) -> CborValue:
    """Decode exactly one CBOR data item that fills all of ``data``.

    Raises:
        OperationDecodeError: (``INVALID_CBOR``) when ``data`` is not one well-formed item, has
            trailing bytes, or nests deeper than ``max_depth``.
    """
    raw = bytes(data)
    value, end = decode_item(raw, 0, max_depth=max_depth)
    if end != len(raw):
        raise _invalid(f"{len(raw) - end} trailing byte(s) after the data item")
    return value


def decode_item(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_depth: int = MAX_DEPTH
) -> tuple[CborValue, int]:
    """Decode one CBOR data item starting at ``offset``; bytes after it are left alone.

    Args:
        data: The buffer.
        offset: Where the item starts.
        max_depth: How many arrays, maps and tags may enclose one another (a lone array is
            depth 1; scalars do not count; nested indefinite-length strings count too).

    Returns:
        The value and the offset just past it.

    Raises:
        OperationDecodeError: (``INVALID_CBOR``) when the item is not well-formed, the buffer
            ends early, or nesting exceeds ``max_depth``.
    """
    raw = data if isinstance(data, bytes) else bytes(data)
    if offset < 0:
        raise _invalid(f"negative offset {offset}")
    return _read(raw, offset, max_depth)


class Head(NamedTuple):
    """The head of one data item: its initial byte and the argument that follows.

    Attributes:
        major: The major type, 0 … 7.
        info: The additional information, 0 … 31 (e.g. 25 for a half float in major 7).
        argument: The head's argument: a value, a length, a count, a tag number or, for floats,
            the raw bits; None for an indefinite length (``info`` 31).
        end: The offset just past the head, where the item's content (if any) starts.
    """

    major: int
    info: int
    argument: int | None
    end: int


def decode_head(data: bytes, offset: int = 0) -> Head:
    """Read only the head of the data item at ``offset``, e.g. to walk an array item by item.

    Raises:
        OperationDecodeError: (``INVALID_CBOR``) when the buffer ends inside the head or the
            head uses a reserved encoding (additional information 28 … 30, or 31 where no
            indefinite length is possible).
    """
    if offset < 0:
        raise _invalid(f"negative offset {offset}")
    if offset >= len(data):
        raise _eof(offset)
    initial = data[offset]
    major = initial >> 5
    info = initial & 0x1F
    if info == 31 and major in (2, 3, 4, 5, 7):
        return Head(major, info, None, offset + 1)
    if info >= 28:
        raise _invalid(f"reserved or invalid head byte 0x{initial:02x} at byte {offset}")
    argument, end = _read_argument(data, offset + 1, info)
    return Head(major, info, argument, end)


def _read_argument(data: bytes, pos: int, info: int) -> tuple[int, int]:
    """Read the argument of a head whose additional information is ``info`` (< 28)."""
    if info < 24:
        return info, pos
    size = 1 << (info - 24)  # 24 → 1, 25 → 2, 26 → 4, 27 → 8
    end = pos + size
    if end > len(data):
        raise _eof(len(data))
    return int.from_bytes(data[pos:end], "big"), end


def _read(data: bytes, pos: int, depth: int) -> tuple[CborValue, int]:
    if pos >= len(data):
        raise _eof(pos)
    initial = data[pos]
    major = initial >> 5
    info = initial & 0x1F
    pos += 1
    if major == 7:
        return _read_simple_or_float(data, pos, info)
    if info >= 28:
        if info == 31 and major in (2, 3, 4, 5):
            return _read_indefinite(data, pos, major, depth)
        raise _invalid(f"reserved or invalid head byte 0x{initial:02x} at byte {pos - 1}")
    arg, pos = _read_argument(data, pos, info)
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 2 or major == 3:
        end = pos + arg
        if end > len(data):
            raise _eof(len(data))
        chunk = data[pos:end]
        return (chunk if major == 2 else _utf8(chunk, pos)), end
    if depth <= 0:
        raise _invalid("data items nest too deeply")
    if major == 4:
        if arg > len(data) - pos:  # every item takes at least one byte
            raise _eof(len(data))
        items: list[CborValue] = []
        for _ in range(arg):
            item, pos = _read(data, pos, depth - 1)
            items.append(item)
        return items, pos
    if major == 5:
        if arg > (len(data) - pos) // 2:  # every entry takes at least two bytes
            raise _eof(len(data))
        pairs: list[tuple[CborValue, CborValue]] = []
        for _ in range(arg):
            key, pos = _read(data, pos, depth - 1)
            value, pos = _read(data, pos, depth - 1)
            pairs.append((key, value))
        return CborMap(tuple(pairs)), pos
    # major == 6
    if (arg == 2 or arg == 3) and pos < len(data):
        content = data[pos]
        # Like ciborium: a bignum over a definite byte string of at most 16 bytes is an integer.
        if content >> 5 == 2 and content & 0x1F != 31:
            value, end = _read(data, pos, depth - 1)
            if isinstance(value, bytes) and len(value) <= 16:
                magnitude = int.from_bytes(value, "big")
                return (magnitude if arg == 2 else -1 - magnitude), end
            return Tag(arg, value), end
    value, pos = _read(data, pos, depth - 1)
    return Tag(arg, value), pos


def _utf8(chunk: bytes, pos: int) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"text string at byte {pos} is not valid UTF-8") from None


def _read_chunks(data: bytes, pos: int, major: int, depth: int, chunks: list[bytes]) -> int:
    """Collect the chunks of an indefinite-length string up to its break; return the end.

    RFC 8949 wants every chunk to be a definite-length string of the same major type.
    ciborium also accepts a nested indefinite-length string of the same type as a chunk (and
    flattens it), so this reader does too. Each text chunk must be valid UTF-8 on its own.
    """
    size = len(data)
    while True:
        if pos >= size:
            raise _eof(pos)
        initial = data[pos]
        if initial == _BREAK:
            return pos + 1
        info = initial & 0x1F
        if initial >> 5 != major or 28 <= info <= 30:
            raise _invalid(
                f"chunk of an indefinite-length string at byte {pos} is not a string of the "
                "same type"
            )
        if info == 31:
            if depth <= 0:
                raise _invalid("data items nest too deeply")
            pos = _read_chunks(data, pos + 1, major, depth - 1, chunks)
            continue
        length, pos = _read_argument(data, pos + 1, info)
        end = pos + length
        if end > size:
            raise _eof(size)
        chunk = data[pos:end]
        if major == 3:
            _utf8(chunk, pos)
        chunks.append(chunk)
        pos = end


def _read_indefinite(data: bytes, pos: int, major: int, depth: int) -> tuple[CborValue, int]:
    size = len(data)
    if major == 2 or major == 3:
        chunks: list[bytes] = []
        pos = _read_chunks(data, pos, major, depth, chunks)
        joined = b"".join(chunks)
        return (joined if major == 2 else joined.decode("utf-8")), pos
    if depth <= 0:
        raise _invalid("data items nest too deeply")
    if major == 4:
        items: list[CborValue] = []
        while True:
            if pos >= size:
                raise _eof(pos)
            if data[pos] == _BREAK:
                return items, pos + 1
            item, pos = _read(data, pos, depth - 1)
            items.append(item)
    pairs: list[tuple[CborValue, CborValue]] = []
    while True:
        if pos >= size:
            raise _eof(pos)
        if data[pos] == _BREAK:
            return CborMap(tuple(pairs)), pos + 1
        key, pos = _read(data, pos, depth - 1)
        value, pos = _read(data, pos, depth - 1)
        pairs.append((key, value))


def _read_simple_or_float(data: bytes, pos: int, info: int) -> tuple[CborValue, int]:
    if info < 20:
        return Simple(info), pos
    if info == 20:
        return False, pos
    if info == 21:
        return True, pos
    if info == 22:
        return None, pos
    if info == 23:
        return UNDEFINED, pos
    if info == 24:
        if pos >= len(data):
            raise _eof(pos)
        value = data[pos]
        # RFC 8949 calls ``f8 00`` … ``f8 1f`` not well-formed; ciborium reads them like the
        # one-byte forms (``f8 15`` is true), and so do we.
        if 20 <= value <= 23:
            return _read_simple_or_float(data, pos, value)[0], pos + 1
        return Simple(value), pos + 1
    if info == 25:
        fmt = _HALF
    elif info == 26:
        fmt = _SINGLE
    elif info == 27:
        fmt = _DOUBLE
    elif info == 31:
        raise _invalid(f"unexpected break code at byte {pos - 1}")
    else:
        raise _invalid(f"reserved head byte 0x{0xE0 | info:02x} at byte {pos - 1}")
    end = pos + fmt.size
    if end > len(data):
        raise _eof(len(data))
    number: float = fmt.unpack_from(data, pos)[0]
    return number, end


def bignum_value(tag: Tag) -> int | None:
    """Return the integer a tag 2 (unsigned) or tag 3 (negative) bignum stands for.

    Returns:
        The integer, or None when ``tag`` is not a bignum tag wrapping a byte string.
    """
    if tag.tag not in (2, 3) or not isinstance(tag.value, bytes):
        return None
    magnitude = int.from_bytes(tag.value, "big")
    return magnitude if tag.tag == 2 else -1 - magnitude


# ---------------------------------------------------------------------------------------------
# Writer


def dumps(value: CborValue) -> bytes:
    """Encode ``value`` the way p2panda does: definite lengths, minimal heads, shortest floats.

    Map entries are written in the order of :attr:`CborMap.items`.

    Raises:
        OperationDecodeError: (``INVALID_CBOR``) for an integer outside -2⁶⁴ … 2⁶⁴-1, a simple
            value that cannot be written, or a Python type with no CBOR counterpart.
    """
    out = bytearray()
    _write(out, value)
    return bytes(out)


def _head(out: bytearray, major: int, arg: int) -> None:
    mt = major << 5
    if arg < 24:
        out.append(mt | arg)
    elif arg < 0x100:
        out += bytes((mt | 24, arg))
    elif arg < 0x10000:
        out.append(mt | 25)
        out += arg.to_bytes(2, "big")
    elif arg < 0x100000000:
        out.append(mt | 26)
        out += arg.to_bytes(4, "big")
    else:
        out.append(mt | 27)
        out += arg.to_bytes(8, "big")


def _write(out: bytearray, value: CborValue) -> None:
    # bool is a subclass of int: test it first.
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if 0 <= value <= _MAX_UINT:
            _head(out, 0, value)
        elif -_MAX_UINT - 1 <= value < 0:
            _head(out, 1, -1 - value)
        else:
            raise _invalid(f"integer {value} does not fit a CBOR head (use a bignum tag)")
    elif isinstance(value, float):
        out += encode_float(value)
    elif isinstance(value, str):
        raw = _encode_text(value)
        _head(out, 3, len(raw))
        out += raw
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        _head(out, 2, len(raw))
        out += raw
    elif isinstance(value, (list, tuple)):
        _head(out, 4, len(value))
        for item in value:
            _write(out, item)
    elif isinstance(value, CborMap):
        _head(out, 5, len(value.items))
        for key, item in value.items:
            _write(out, key)
            _write(out, item)
    elif isinstance(value, Tag):
        if not 0 <= value.tag <= _MAX_UINT:
            raise _invalid(f"tag number {value.tag} is outside 0 … 2^64-1")
        _head(out, 6, value.tag)
        _write(out, value.value)
    elif isinstance(value, Simple):
        if 0 <= value.value < 20 or value.value == 23:
            out.append(0xE0 | value.value)
        elif 32 <= value.value <= 255:
            out += bytes((0xF8, value.value))
        else:
            raise _invalid(f"simple value {value.value} cannot be written as a Simple")
    else:
        raise _invalid(f"cannot encode a value of type {type(value).__name__}")


def _encode_text(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("text contains lone surrogates and is not valid UTF-8") from None


def encode_float(value: float) -> bytes:
    """Encode a float with its head in the shortest IEEE width that holds it exactly.

    NaN (any payload) becomes the canonical half-precision ``f9 7e 00``; infinities and ``-0.0``
    fit half precision (``f9 7c 00``, ``f9 fc 00``, ``f9 80 00``).
    """
    if math.isnan(value):
        return b"\xf9\x7e\x00"
    try:
        half = _HALF.pack(value)
    except OverflowError:
        pass
    else:
        if _HALF.unpack(half)[0] == value:
            return b"\xf9" + half
    try:
        single = _SINGLE.pack(value)
    except OverflowError:
        pass
    else:
        if _SINGLE.unpack(single)[0] == value:
            return b"\xfa" + single
    return b"\xfb" + _DOUBLE.pack(value)
