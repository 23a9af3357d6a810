"""Operations: the CBOR payload of an entry (spec §3).

An operation is one CBOR array::

    CREATE  [1, 0, schema_id, fields]
    UPDATE  [1, 1, schema_id, previous, fields]
    DELETE  [1, 2, schema_id, previous]

:func:`encode_operation` writes exactly what p2panda 0.8 writes: definite lengths, minimal heads,
floats in their shortest exact width, field names in byte-wise order, hashes as 34-byte byte
strings. :func:`decode_operation` enforces what p2panda-js 0.8.1 enforces (a well-formed schema
id, field names strictly ascending byte-wise, no duplicates, sorted ``previous``) and is as lenient
as it is elsewhere (non-minimal heads, indefinite lengths, any float width, ``previous`` as text,
trailing bytes).
Decoded field values are schema-less *plain values* (spec §3.2); only a schema gives them a type.

Ids and hashes are lowercase hex at this API (68 characters, ``0020…``); a ``previous`` given as
text on the wire is reported exactly as written.

Behaviour checked against p2panda-js 0.8.1 ``decodeOperation``/``encodeOperation``:

* The schema id is parsed (:func:`~.schema_id.parse_schema_id`) as soon as it is read, before
  ``previous`` and the fields, so a malformed one is what gets reported; it is kept as written
  (``blob_v01`` stays ``blob_v01``). The encoder refuses malformed schema ids the same way.
* Tags are skipped around the top-level array, the version, the action, the fields map, field
  names and the items of ``previous``; they are rejected around the schema id, the ``previous``
  array and any field value. A tag 2/3 bignum is an integer wherever one is expected (as a field
  value only over a definite byte string of at most 16 bytes that fits i64).
* With an indefinite-length top-level array, p2panda reads just the items the action needs and
  ignores the rest, even a missing break code or malformed items; a definite array must hold
  exactly the items the action needs.
* ``f8 14`` / ``f8 15`` (two-byte false/true) are booleans.
* An empty fields map decodes (and encodes) fine; the schema rejects it later.
* Inner lists of a list of view ids are not checked for order at decode time; ``[[]]`` decodes.
* The encoder sorts and deduplicates the ids of a pinned relation (and of each view id in a
  pinned relation list), keeps relation lists as given, and rejects an unsorted ``previous``.

It stays one module: the encoder, the general decoder and the decoder's fast path for canonical
bytes share the value rules above, and must agree with one another on every input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, TypeAlias, TypeGuard

from cbor2 import CBOREncoder
from cbor2 import dumps as _cbor2_dumps
from cbor2 import loads as _cbor2_loads

from .cbor import (
    MAX_DEPTH,
    CborMap,
    CborValue,
    Tag,
    bignum_value,
    decode_head,
    decode_item,
    dumps,
    encode_float,
)
from .construct import slot_constructor
from .errors import HashDecodeError, OperationDecodeError, Reason, SchemaIdError, quote
from .hash import HASH_LENGTH, hash_from_hex
from .schema_id import parse_schema_id

__all__ = [
    "Action",
    "FieldValue",
    "Operation",
    "PinnedRelation",
    "PinnedRelationList",
    "PlainValue",
    "Relation",
    "RelationList",
    "decode_operation",
    "decode_trusted_operation",
    "encode_operation",
]

Action: TypeAlias = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Relation:
    """A ``relation`` field value: the id of another document (68 hex chars)."""

    document_id: str


@dataclass(frozen=True, slots=True)
class RelationList:
    """A ``relation_list`` field value: document ids, order kept, duplicates allowed."""

    document_ids: tuple[str, ...]

    def __init__(self, document_ids: Sequence[str]) -> None:
        object.__setattr__(self, "document_ids", tuple(document_ids))


@dataclass(frozen=True, slots=True)
class PinnedRelation:
    """A ``pinned_relation`` field value: one document view id (sorted when encoded)."""

    view_id: tuple[str, ...]

    def __init__(self, view_id: Sequence[str] | str) -> None:
        ids = view_id.split("_") if isinstance(view_id, str) else view_id
        object.__setattr__(self, "view_id", tuple(ids))


@dataclass(frozen=True, slots=True)
class PinnedRelationList:
    """A ``pinned_relation_list`` field value: document view ids, outer order kept."""

    view_ids: tuple[tuple[str, ...], ...]

    def __init__(self, view_ids: Sequence[Sequence[str] | str]) -> None:
        object.__setattr__(
            self,
            "view_ids",
            tuple(tuple(v.split("_") if isinstance(v, str) else v) for v in view_ids),
        )


FieldValue: TypeAlias = (
    bool | int | float | str | bytes | Relation | RelationList | PinnedRelation | PinnedRelationList
)
"""What :func:`encode_operation` accepts as a field value."""

PlainValue: TypeAlias = (
    bool | int | float | str | bytes | tuple[str, ...] | tuple[tuple[str, ...], ...]
)
"""A decoded, schema-less field value (spec §3.2).

``bytes`` may be a ``bytes`` field or a ``relation`` (34 bytes); a tuple of hex ids may be a
``relation_list``, a ``pinned_relation`` or an (empty) ``pinned_relation_list``; a tuple of tuples
is a ``pinned_relation_list``. Only the schema decides (spec §5.4).
"""

_ACTION_NAMES: dict[int, Action] = {0: "create", 1: "update", 2: "delete"}
_ACTION_CODES: dict[str, int] = {"create": 0, "update": 1, "delete": 2}
_VERSION = 1
_Converter: TypeAlias = Callable[[object, str], CborValue]
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_MAJOR_NAMES = (
    "an unsigned integer",
    "a negative integer",
    "a byte string",
    "a text string",
    "an array",
    "a map",
    "a tag",
    "a simple value or float",
)


@dataclass(frozen=True, slots=True)
class Operation:
    """A decoded operation.

    Attributes:
        version: Always 1.
        action: ``"create"``, ``"update"`` or ``"delete"``.
        schema_id: The schema id string, as written (:func:`decode_operation` has checked that
            it parses; ``parse_schema_id`` gives the :class:`~.schema_id.SchemaId`).
        previous: Operation ids (hex) this operation builds on; None for CREATE.
        fields: Field name → plain value, in byte-wise key order; None for DELETE.
    """

    version: int
    action: Action
    schema_id: str
    previous: tuple[str, ...] | None
    fields: Mapping[str, PlainValue] | None

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Operation:
        """Decode an operation; see :func:`decode_operation`."""
        return decode_operation(data)

    def to_bytes(self) -> bytes:
        """Encode this operation canonically, as p2panda would encode the same plain values.

        Plain values carry no schema, so ``bytes`` become a byte string, a tuple of hex ids an
        array of 34-byte byte strings and a tuple of tuples an array of such arrays, all in the
        order given. This reproduces the input of :func:`decode_operation` whenever that input
        was itself canonical; received operations must still be stored and forwarded as the
        bytes they arrived as, never re-encoded.

        Raises:
            SchemaIdError: when the schema id does not parse.
            OperationDecodeError: when the operation breaks another rule :func:`encode_operation`
                enforces (version other than 1, ``previous``/``fields`` not matching the action,
                malformed ids, integers outside i64).
        """
        if self.version != _VERSION:
            raise OperationDecodeError(
                f"unsupported operation version {self.version}", Reason.UNSUPPORTED_VERSION
            )
        return _encode(self.action, self.schema_id, self.previous, self.fields, _plain_to_cbor)


# ---------------------------------------------------------------------------------------------
# Encoding


def encode_operation(
    *,
    action: Action = "create",
    schema_id: str,
    previous: Sequence[str] | str | None = None,
    fields: Mapping[str, FieldValue] | None = None,
) -> bytes:
    """Encode an operation exactly as p2panda emits it (spec §3).

    Args:
        action: ``"create"``, ``"update"`` or ``"delete"``.
        schema_id: The schema id, e.g. ``blob_v1`` or ``<name>_<view id>``; it must parse
            (:func:`~.schema_id.parse_schema_id`) and is written as given.
        previous: For UPDATE and DELETE: the operation ids the operation builds on, as hex ids
            or one ``"<id>_<id>…"`` string; they must be strictly ascending, like p2panda-js.
        fields: For CREATE and UPDATE: field name → value. Use :class:`Relation`,
            :class:`RelationList`, :class:`PinnedRelation` and :class:`PinnedRelationList` for
            relations; plain ``bool``, ``int`` (i64), ``float``, ``str`` and ``bytes`` otherwise.

    Returns:
        The CBOR bytes of the operation.

    Raises:
        SchemaIdError: for a malformed schema id (``INVALID_SCHEMA_ID``,
            ``UNSUPPORTED_SYSTEM_SCHEMA``), as :func:`decode_operation` raises.
        OperationDecodeError: for an unknown action, a schema id that is not a string,
            ``previous`` or ``fields`` present or missing against the action, malformed or
            unsorted ids (``INVALID_HASH``, ``INVALID_DOCUMENT_VIEW_ID``) or an unsupported field
            value (``INVALID_FIELD_VALUE``).
    """
    return _encode(action, schema_id, previous, fields, _field_value_to_cbor)


def _encode(
    action: str,
    schema_id: str,
    previous: Sequence[str] | str | None,
    fields: Mapping[str, FieldValue] | Mapping[str, PlainValue] | None,
    convert: _Converter,
) -> bytes:
    code = _ACTION_CODES.get(action) if isinstance(action, str) else None
    if code is None:
        raise OperationDecodeError(
            f"unknown operation action {quote(action)}", Reason.UNKNOWN_ACTION
        )
    if not isinstance(schema_id, str):
        raise OperationDecodeError(
            f"schema id must be a string, got {type(schema_id).__name__}", Reason.INVALID_SCHEMA_ID
        )
    parse_schema_id(schema_id)  # a parsed id is pure ASCII, so valid UTF-8 too
    items: list[CborValue] = [_VERSION, code, schema_id]
    if action == "create":
        if previous is not None:
            raise OperationDecodeError(
                "unexpected 'previous' in CREATE operation", Reason.INVALID_OPERATION
            )
    else:
        if previous is None:
            raise OperationDecodeError(
                f"expected 'previous' in {action.upper()} operation", Reason.INVALID_OPERATION
            )
        items.append(_previous_to_cbor(previous))
    if action == "delete":
        if fields is not None:
            raise OperationDecodeError(
                "unexpected 'fields' in DELETE operation", Reason.INVALID_OPERATION
            )
    else:
        if fields is None:
            raise OperationDecodeError(
                f"expected 'fields' in {action.upper()} operation", Reason.INVALID_OPERATION
            )
        items.append(_fields_map(fields, convert))
    return dumps(items)


def _check_text(value: str, what: str, reason: Reason) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise OperationDecodeError(
            f"{what} {quote(value)} is not valid UTF-8 (lone surrogate)", reason
        ) from None


def _id_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise OperationDecodeError(
            f"{what} must be a hex string, got {type(value).__name__}", Reason.INVALID_HASH
        )
    try:
        return hash_from_hex(value, name=what)
    except HashDecodeError as err:
        raise OperationDecodeError(err.message, Reason.INVALID_HASH) from None


def _previous_to_cbor(previous: Sequence[str] | str) -> list[CborValue]:
    ids: Sequence[str] = previous.split("_") if isinstance(previous, str) else previous
    if isinstance(ids, (bytes, bytearray, memoryview)) or not isinstance(ids, Sequence):
        raise OperationDecodeError(
            "previous must be a list of operation ids or one '<id>_<id>…' string",
            Reason.INVALID_DOCUMENT_VIEW_ID,
        )
    if len(ids) == 0:
        raise OperationDecodeError(
            "expected one or more operation ids in previous", Reason.INVALID_DOCUMENT_VIEW_ID
        )
    raw = [_id_bytes(op_id, f"previous[{i}]") for i, op_id in enumerate(ids)]
    for i in range(1, len(raw)):
        if raw[i - 1] >= raw[i]:
            raise OperationDecodeError(
                "expected sorted operation ids in previous (strictly ascending, no duplicates): "
                f"{quote(ids[i])} comes after {quote(ids[i - 1])}",
                Reason.INVALID_DOCUMENT_VIEW_ID,
            )
    return list(raw)


def _fields_map(
    fields: Mapping[str, FieldValue] | Mapping[str, PlainValue],
    convert: _Converter,
) -> CborMap:
    if not isinstance(fields, Mapping):
        raise OperationDecodeError(
            f"fields must be a mapping of field names to values, got {type(fields).__name__}",
            Reason.INVALID_OPERATION,
        )
    for name in fields:
        if not isinstance(name, str):
            raise OperationDecodeError(
                f"field name must be a string, got {quote(name)}", Reason.INVALID_OPERATION
            )
        _check_text(name, "field name", Reason.INVALID_OPERATION)
    # Python orders str by code point, which is exactly UTF-8 byte order (spec §3.3).
    return CborMap(tuple((name, convert(fields[name], name)) for name in sorted(fields)))


def _scalar_to_cbor(value: object, name: str) -> CborValue | None:
    """Convert a bool/int/float/str/bytes value; None if ``value`` is none of these."""
    if value is True or value is False:
        return value
    if isinstance(value, int):
        if not _I64_MIN <= value <= _I64_MAX:
            raise OperationDecodeError(
                f"field {quote(name)}: integer {value} is outside the i64 range",
                Reason.INVALID_FIELD_VALUE,
            )
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        _check_text(value, f"field {quote(name)}: text", Reason.INVALID_FIELD_VALUE)
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return None


def _view_id_to_cbor(view_id: Sequence[str], what: str) -> list[CborValue]:
    """A view id as p2panda-js writes it: ids sorted ascending and deduplicated."""
    if isinstance(view_id, (str, bytes)):
        raise OperationDecodeError(
            f"{what} must be a sequence of operation ids", Reason.INVALID_FIELD_VALUE
        )
    raw = {_id_bytes(op_id, f"{what}[{i}]") for i, op_id in enumerate(view_id)}
    return list(sorted(raw))


def _field_value_to_cbor(value: object, name: str) -> CborValue:
    scalar = _scalar_to_cbor(value, name)
    if scalar is not None:
        return scalar
    if isinstance(value, Relation):
        return _id_bytes(value.document_id, f"field {quote(name)}: relation")
    if isinstance(value, RelationList):
        return [
            _id_bytes(doc_id, f"field {quote(name)}: relation_list[{i}]")
            for i, doc_id in enumerate(value.document_ids)
        ]
    if isinstance(value, PinnedRelation):
        return _view_id_to_cbor(value.view_id, f"field {quote(name)}: pinned_relation")
    if isinstance(value, PinnedRelationList):
        return [
            _view_id_to_cbor(view_id, f"field {quote(name)}: pinned_relation_list[{i}]")
            for i, view_id in enumerate(value.view_ids)
        ]
    hint = ""
    if isinstance(value, (list, tuple)):
        hint = " (wrap ids in RelationList, PinnedRelation or PinnedRelationList)"
    raise OperationDecodeError(
        f"field {quote(name)}: unsupported value of type {type(value).__name__}{hint}",
        Reason.INVALID_FIELD_VALUE,
    )


def _plain_to_cbor(value: object, name: str) -> CborValue:
    scalar = _scalar_to_cbor(value, name)
    if scalar is not None:
        return scalar
    if isinstance(value, tuple):
        if all(isinstance(item, str) for item in value):
            return [_id_bytes(item, f"field {quote(name)}[{i}]") for i, item in enumerate(value)]
        if all(isinstance(item, tuple) for item in value):
            return [
                [
                    _id_bytes(op_id, f"field {quote(name)}[{i}][{j}]")
                    for j, op_id in enumerate(inner)
                ]
                for i, inner in enumerate(value)
            ]
    raise OperationDecodeError(
        f"field {quote(name)}: {type(value).__name__} is not a plain value",
        Reason.INVALID_FIELD_VALUE,
    )


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_operation(data: bytes | bytearray | memoryview) -> Operation:
    """Decode an operation, enforcing p2panda's rules (spec §3.1-§3.3).

    Args:
        data: The operation bytes (an entry's payload). Bytes after the operation's top-level
            array are ignored, as p2panda does.

    Returns:
        The operation with schema-less plain field values.

    Raises:
        SchemaIdError: the schema id is text but malformed, as p2panda-js reports it
            (``INVALID_SCHEMA_ID``, or ``UNSUPPORTED_SYSTEM_SCHEMA`` for ``<unknown>_v<n>``).
        OperationDecodeError: malformed CBOR (``INVALID_CBOR``), a version other than 1
            (``UNSUPPORTED_VERSION``), an unknown action (``UNKNOWN_ACTION``), unsorted or
            duplicate field names (``UNSORTED_FIELDS``, ``DUPLICATE_FIELD``), a field value that
            is no plain value (``INVALID_FIELD_VALUE``), a malformed or unsorted ``previous``
            (``INVALID_HASH``, ``INVALID_DOCUMENT_VIEW_ID``), or items missing, superfluous or of
            the wrong type (``INVALID_OPERATION``, ``INVALID_SCHEMA_ID`` for a schema id that
            is not text).
    """
    raw = data if type(data) is bytes else bytes(data)
    operation = _decode_canonical(raw)
    return operation if operation is not None else _decode_general(raw)


# The fast path. Nearly every operation arrives exactly as p2panda encodes it, and for those
# bytes a generic decoder reads the same values as our reader. So cbor2's C decoder reads the
# operation, the values are checked against p2panda's rules, and the values are written back
# with cbor2's C encoder the way `dumps` writes them (definite lengths, minimal heads, map
# entries in the order read, floats in their shortest exact width). Only when that gives back
# the very same bytes is the result used: then the input has no tags, no indefinite lengths, no
# non-minimal heads, no duplicate keys, no trailing bytes and no values cbor2 reads differently
# from us. Anything else, valid or not, goes to the general reader, which alone decides how
# the lenient cases read and which error a bad operation gets.

_CANONICAL_MAX_DEPTH = 4
"""Array > fields map > pinned relation list > view id: nothing valid nests deeper."""


class _Float:
    """A float for cbor2's encoder to write through :func:`_write_float` (shortest width)."""

    __slots__ = ("value",)

    def __init__(self, value: float) -> None:
        self.value = value


def _write_float(encoder: CBOREncoder, value: object) -> None:
    if type(value) is not _Float:
        raise TypeError(f"not a plain value: {type(value).__name__}")
    encoder.write(encode_float(value.value))


def decode_trusted_operation(data: bytes | bytearray | memoryview) -> Operation:
    """Decode an operation that this node has already accepted (:func:`decode_operation` passed).

    For bytes that :func:`decode_operation` accepts, the result is equal to what it returns;
    only the proof that the bytes are p2panda's canonical encoding (writing the values back and
    comparing) is skipped, which is most of the cost of the fast path. Use it only for bytes a
    trusted component already checked, e.g. the operations of ``operations.ingested`` events,
    which ingest publishes only after ``decode_operation`` accepted them. Anything the quick
    read does not recognise goes through :func:`decode_operation`, so untrusted or invalid
    input still gets the full checks and the same errors.

    Args:
        data: The operation bytes, as ingest accepted them.

    Returns:
        The operation, equal to ``decode_operation(data)``.

    Raises:
        SchemaIdError: as :func:`decode_operation`, for bytes it would reject.
        OperationDecodeError: as :func:`decode_operation`, for bytes it would reject.
    """
    raw = data if type(data) is bytes else bytes(data)
    operation = _decode_canonical(raw, verify=False)
    return operation if operation is not None else _decode_general(raw)


def _decode_canonical(data: bytes, *, verify: bool = True) -> Operation | None:
    """Decode an operation encoded exactly as p2panda encodes it; None for anything else.

    With ``verify`` false the canonical re-encode check is skipped: only for bytes that passed
    :func:`decode_operation` before (see :func:`decode_trusted_operation`).
    """
    try:
        items = _cbor2_loads(data, max_depth=_CANONICAL_MAX_DEPTH)
    except Exception:  # any way cbor2 can fail: the general reader gives the precise error
        return None
    if type(items) is not list or not 4 <= len(items) <= 5:
        return None
    version, code, schema_id = items[0], items[1], items[2]
    if type(version) is not int or version != _VERSION or type(code) is not int:
        return None
    action = _ACTION_NAMES.get(code)
    if action is None or len(items) != (5 if code == 1 else 4) or type(schema_id) is not str:
        return None
    try:
        parse_schema_id(schema_id)
    except SchemaIdError:
        return None
    previous = None
    if action != "create":
        previous = _canonical_previous(items[3])
        if previous is None:
            return None
    fields = None
    check = items
    if action != "delete":
        read = _canonical_fields(items[-1])
        if read is None:
            return None
        fields, has_floats = read
        # cbor2 reads NaN payloads differently from the general reader: those are re-checked.
        if not verify and not (has_floats and any(v != v for v in fields.values())):
            return _new_operation(_VERSION, action, schema_id, previous, fields)
        if has_floats:
            wrapped = {k: _Float(v) if type(v) is float else v for k, v in items[-1].items()}
            check = [*items[:-1], wrapped]
    if not verify and action == "delete":
        return _new_operation(_VERSION, action, schema_id, previous, fields)
    try:
        if _cbor2_dumps(check, default=_write_float) != data:
            return None
    except Exception:
        return None
    return _new_operation(_VERSION, action, schema_id, previous, fields)


_new_operation = slot_constructor(Operation)


def _canonical_previous(value: object) -> tuple[str, ...] | None:
    if type(value) is not list or not value:
        return None
    last = b""
    for item in value:
        if type(item) is not bytes or len(item) != HASH_LENGTH or item[0] != 0 or item <= last:
            return None
        last = item
    return tuple([item.hex() for item in value])


def _canonical_fields(value: object) -> tuple[dict[str, PlainValue], bool] | None:
    """The plain values of a fields map read by cbor2, and whether any is a float."""
    if type(value) is not dict:
        return None
    fields: dict[str, PlainValue] = {}
    has_floats = False
    last: str | None = None
    for name, item in value.items():
        if type(name) is not str or (last is not None and name <= last):
            return None
        last = name
        kind = type(item)
        if kind is str or kind is bytes or kind is bool:
            fields[name] = item
        elif kind is int:
            if not _I64_MIN <= item <= _I64_MAX:
                return None
            fields[name] = item
        elif kind is float:
            fields[name] = item
            has_floats = True
        elif kind is list:
            converted = _id_lists(item)
            if converted is None:
                return None
            fields[name] = converted
        else:
            return None
    return fields, has_floats


def _decode_general(raw: bytes) -> Operation:
    """Decode any operation p2panda-js reads, with its errors (see :func:`decode_operation`)."""
    items = _TopLevelItems(raw)
    version = _unsigned(items.next("version"), "version")
    if version != _VERSION:
        raise OperationDecodeError(
            f"unsupported operation version {version}", Reason.UNSUPPORTED_VERSION
        )
    code = _unsigned(items.next("action"), "action")
    action = _ACTION_NAMES.get(code)
    if action is None:
        raise OperationDecodeError(f"unknown operation action {code}", Reason.UNKNOWN_ACTION)
    schema_id = items.next("schema id")
    if not isinstance(schema_id, str):
        raise OperationDecodeError(
            f"expected the schema id as a text string, found {_describe(schema_id)}",
            Reason.INVALID_SCHEMA_ID,
        )
    # p2panda reads the schema id into a `SchemaId` right here, before `previous` and the fields.
    parse_schema_id(schema_id)
    previous = None
    if action != "create":
        previous = _decode_previous(items.next("previous"))
    fields = None
    if action != "delete":
        fields = _decode_fields(items.next("fields"))
    items.finish()
    return Operation(_VERSION, action, schema_id, previous, fields)


class _TopLevelItems:
    """Reads the items of the top-level array one by one, as p2panda's sequence visitor does."""

    __slots__ = ("_count", "_data", "_pos", "_read")

    def __init__(self, data: bytes) -> None:
        pos = 0
        while True:  # tags around the whole operation are skipped
            head = decode_head(data, pos)
            if head.major != 6:
                break
            pos = head.end
        if head.major != 4:
            raise OperationDecodeError(
                f"expected the operation to be an array, found {_MAJOR_NAMES[head.major]}",
                Reason.INVALID_OPERATION,
            )
        self._data = data
        self._pos = head.end
        self._count = head.argument  # None: indefinite length
        self._read = 0

    def next(self, what: str) -> CborValue:
        if self._count is None:
            if self._pos < len(self._data) and self._data[self._pos] == 0xFF:
                raise self._missing(what)
        elif self._read >= self._count:
            raise self._missing(what)
        value, self._pos = decode_item(self._data, self._pos, max_depth=MAX_DEPTH - 1)
        self._read += 1
        return value

    def _missing(self, what: str) -> OperationDecodeError:
        return OperationDecodeError(
            f"missing {what} for this operation action (the array ends after {self._read} item(s))",
            Reason.INVALID_OPERATION,
        )

    def finish(self) -> None:
        # Only a definite length can say there is more; after an indefinite array p2panda stops
        # reading, so extra items (even malformed ones) and a missing break are ignored.
        if self._count is not None and self._count > self._read:
            raise OperationDecodeError(
                f"too many items for this operation action: {self._count} instead of {self._read}",
                Reason.INVALID_OPERATION,
            )


def _describe(value: CborValue) -> str:
    if value is True or value is False:
        return f"boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return "a text string"
    if isinstance(value, bytes):
        return f"a byte string of {len(value)} bytes"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} items"
    if isinstance(value, CborMap):
        return "a map"
    if isinstance(value, Tag):
        return f"tag {value.tag}"
    return "undefined" if value.value == 23 else f"simple value {value.value}"


def _unsigned(value: CborValue, what: str) -> int:
    """Read an unsigned integer the way ciborium's ``u64`` does: tags skipped, bignums read."""
    while isinstance(value, Tag):
        if value.tag in (2, 3):
            number = bignum_value(value)
            if number is None:
                raise OperationDecodeError(
                    f"expected {what} as an integer, found a bignum tag over "
                    f"{_describe(value.value)}",
                    Reason.INVALID_OPERATION,
                )
            value = number
            break
        value = value.value
    if not isinstance(value, int) or isinstance(value, bool):
        raise OperationDecodeError(
            f"expected {what} as an unsigned integer, found {_describe(value)}",
            Reason.INVALID_OPERATION,
        )
    if value < 0:
        raise OperationDecodeError(
            f"expected {what} as an unsigned integer, found {value}", Reason.INVALID_OPERATION
        )
    return value


def _untag(value: CborValue) -> CborValue:
    while isinstance(value, Tag):
        value = value.value
    return value


def _is_hash(value: CborValue) -> TypeGuard[bytes]:
    return type(value) is bytes and len(value) == HASH_LENGTH and value[0] == 0


def _hash_list(value: list[Any]) -> tuple[str, ...] | None:
    """The hex ids of an array of 34-byte hash byte strings; None if it is anything else."""
    ids: list[str] = []
    for item in value:
        if not _is_hash(item):
            return None
        ids.append(item.hex())
    return tuple(ids)


def _id_lists(value: list[Any]) -> tuple[str, ...] | tuple[tuple[str, ...], ...] | None:
    """An array of hashes as hex ids, or an array of such arrays; None if it is neither."""
    flat = _hash_list(value)
    if flat is not None:
        return flat
    nested: list[tuple[str, ...]] = []
    for item in value:
        inner = _hash_list(item) if isinstance(item, list) else None
        if inner is None:
            return None
        nested.append(inner)
    return tuple(nested)


def _decode_previous(value: CborValue) -> tuple[str, ...]:
    if isinstance(value, str):
        return _decode_previous_text(value)
    if not isinstance(value, list):
        raise OperationDecodeError(
            "expected previous as an array of operation ids or in string representation, "
            f"found {_describe(value)}",
            Reason.INVALID_DOCUMENT_VIEW_ID,
        )
    if not value:
        raise OperationDecodeError(
            "expected one or more operation ids in previous", Reason.INVALID_DOCUMENT_VIEW_ID
        )
    raw: list[bytes] = []
    for i, item in enumerate(value):
        item = _untag(item)
        if not isinstance(item, bytes):
            raise OperationDecodeError(
                f"previous[{i}]: expected an operation id as a byte string, found "
                f"{_describe(item)}",
                Reason.INVALID_DOCUMENT_VIEW_ID,
            )
        if len(item) != HASH_LENGTH:
            raise OperationDecodeError(
                f"previous[{i}]: invalid hash length {len(item)} bytes, expected {HASH_LENGTH}",
                Reason.INVALID_HASH,
            )
        if item[0] != 0:
            raise OperationDecodeError(
                f"previous[{i}]: unknown hash type {item[0]} (only 0, BLAKE3, exists)",
                Reason.INVALID_HASH,
            )
        if raw and raw[-1] >= item:
            raise OperationDecodeError(
                "expected sorted operation ids in previous (strictly ascending, no duplicates)",
                Reason.INVALID_DOCUMENT_VIEW_ID,
            )
        raw.append(item)
    return tuple(op_id.hex() for op_id in raw)


def _decode_previous_text(value: str) -> tuple[str, ...]:
    ids = value.split("_")
    for i, op_id in enumerate(ids):
        try:
            hash_from_hex(op_id, name=f"previous[{i}]")
        except HashDecodeError as err:
            raise OperationDecodeError(err.message, Reason.INVALID_HASH) from None
    # p2panda compares the ids as the strings they were written as (case included).
    if any(a >= b for a, b in pairwise(ids)):
        raise OperationDecodeError(
            "expected sorted operation ids in previous (strictly ascending, no duplicates)",
            Reason.INVALID_DOCUMENT_VIEW_ID,
        )
    return tuple(ids)


def _decode_fields(value: CborValue) -> dict[str, PlainValue]:
    value = _untag(value)
    if not isinstance(value, CborMap):
        raise OperationDecodeError(
            f"expected fields as a map, found {_describe(value)}", Reason.INVALID_OPERATION
        )
    fields: dict[str, PlainValue] = {}
    last: str | None = None
    for key, item in value.items:
        name = _untag(key)
        if not isinstance(name, str):
            raise OperationDecodeError(
                f"expected a field name as a text string, found {_describe(name)}",
                Reason.INVALID_OPERATION,
            )
        if last is not None and name <= last:
            if name == last:
                raise OperationDecodeError(
                    f"encountered duplicate field key {quote(name)}", Reason.DUPLICATE_FIELD
                )
            raise OperationDecodeError(
                f"encountered unsorted field name: {quote(name)} should be before {quote(last)}",
                Reason.UNSORTED_FIELDS,
            )
        fields[name] = _plain_value(item, name)
        last = name
    return fields


def _plain_value(value: CborValue, name: str) -> PlainValue:
    if value is True or value is False:
        return value
    if isinstance(value, int):
        if _I64_MIN <= value <= _I64_MAX:
            return value
        raise OperationDecodeError(
            f"field {quote(name)}: integer {value} is outside the i64 range",
            Reason.INVALID_FIELD_VALUE,
        )
    if isinstance(value, (float, str, bytes)):
        return value
    if isinstance(value, list):
        ids = _id_lists(value)
        if ids is not None:
            return ids
    raise OperationDecodeError(
        f"field {quote(name)}: {_describe(value)} is not a valid field value (expected a boolean, "
        "i64 integer, float, text or byte string, an array of 34-byte hashes or an array of "
        "such arrays)",
        Reason.INVALID_FIELD_VALUE,
    )
