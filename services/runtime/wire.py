"""Which field of a protobuf message makes its bytes undecodable.

grpcio only says that a request did not decode. :func:`malformed_field` walks the bytes along
the message's descriptor, field by field, and names the first one whose bytes are broken: a
truncated value, a string that is not UTF-8, an embedded message that does not decode (named
down to its own broken field, e.g. ``filters[1].value.str_value``). The malformed-request guard
reports it as the field of a ``google.rpc.BadRequest`` violation.
"""

from __future__ import annotations

from typing import Final

from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError

__all__ = ["malformed_field"]

_MAX_DEPTH: Final = 16
_STRING: Final = _descriptor.FieldDescriptor.TYPE_STRING
_MESSAGE: Final = _descriptor.FieldDescriptor.TYPE_MESSAGE
_FIXED_SIZES: Final = {1: 8, 5: 4}


class _BrokenVarintError(Exception):
    """The bytes end inside a varint, or a varint is longer than 10 bytes."""


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= len(raw):
            raise _BrokenVarintError
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _BrokenVarintError


def malformed_field(descriptor: _descriptor.Descriptor, raw: bytes, depth: int = 0) -> str:
    """The path of the first field of ``raw`` (a ``descriptor`` message) that does not decode.

    Returns:
        A path like ``items[2].entry``, a field number for a field the descriptor does not
        know, or an empty string when the bytes break between fields (in a tag).
    """
    pos = 0
    seen: dict[int, int] = {}
    while pos < len(raw):
        try:
            tag, pos = _varint(raw, pos)
        except _BrokenVarintError:
            return ""
        number, wire_type = tag >> 3, tag & 7
        field = descriptor.fields_by_number.get(number)
        name = str(number) if field is None else field.name
        if field is not None and field.is_repeated:
            index = seen.get(number, 0)
            seen[number] = index + 1
            name = f"{name}[{index}]"
        try:
            if wire_type == 0:
                _, pos = _varint(raw, pos)
                continue
            if wire_type in _FIXED_SIZES:
                pos += _FIXED_SIZES[wire_type]
                if pos > len(raw):
                    return name
                continue
            if wire_type != 2:
                return name
            length, pos = _varint(raw, pos)
        except _BrokenVarintError:
            return name
        chunk, pos = raw[pos : pos + length], pos + length
        if pos > len(raw):
            return name
        problem = _value_problem(field, chunk, depth)
        if problem is not None:
            return f"{name}.{problem}" if problem else name
    return ""


def _value_problem(
    field: _descriptor.FieldDescriptor | None, chunk: bytes, depth: int
) -> str | None:
    """None: the value decodes; else the path inside it at fault ("" for the value itself)."""
    if field is None:
        return None
    if field.type == _STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return ""
        return None
    nested = field.message_type
    if field.type != _MESSAGE or nested is None:
        return None
    try:
        message_factory.GetMessageClass(nested).FromString(chunk)
    except DecodeError:
        if depth >= _MAX_DEPTH:
            return ""
        return malformed_field(nested, chunk, depth + 1)
    return None
