"""Schemas: field types, the system schemas, operation validation (spec §5).

A schema names a set of typed fields. Four *system* schemas exist in p2panda 0.8
(``schema_definition_v1``, ``schema_field_definition_v1``, ``blob_v1``, ``blob_piece_v1``);
*application* schemas are published as documents of the first two and named by the view of
their definition: ``<name>_<document view id>``. Schema ids (:class:`SchemaId`,
:func:`parse_schema_id`) and the name and description rules live in :mod:`.schema_id`; they are
re-exported here.

Operations arrive schema-less (their field values are *plain values*, spec §3.2); only the schema
says what a value really is. :func:`validate_operation` checks an operation against its schema and
returns the typed field values, using these Python types:

========================  ===========================================================
field type                typed value
========================  ===========================================================
``bool``                  :class:`bool`
``int``                   :class:`int` (i64)
``float``                 :class:`float`
``str``                   :class:`str`
``bytes``                 :class:`bytes`
``relation``              :class:`~.operation.Relation` (a document id)
``relation_list``         :class:`~.operation.RelationList` (order and duplicates kept)
``pinned_relation``       :class:`~.operation.PinnedRelation` (a sorted document view id)
``pinned_relation_list``  :class:`~.operation.PinnedRelationList` (each view id sorted)
========================  ===========================================================

Ids inside relation values are lowercase hex. :func:`build_schema` turns a materialized
``schema_definition_v1`` view and its field definition views into an application :class:`Schema`.

Where p2panda-rs 0.8.1 has quirks that decide whether data is accepted, they are reproduced and
marked "Quirk" below, so that this node accepts exactly what aquadoggo accepts.

It stays one module: the field types, the system schemas, operation validation and
:func:`build_schema` apply one set of type rules (quirks included), which must agree everywhere.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import Final, Literal, TypeAlias, cast, get_args

from .errors import (
    HashDecodeError,
    OperationDecodeError,
    PandanodeError,
    Reason,
    SchemaError,
    SchemaIdError,
    quote,
)
from .hash import hash_from_hex
from .ids import DocumentViewId
from .operation import (
    FieldValue,
    Operation,
    PinnedRelation,
    PinnedRelationList,
    PlainValue,
    Relation,
    RelationList,
)
from .schema_id import (
    _FIELD_NAME_RULE,
    _SCHEMA_NAME_RULE,
    MAX_DESCRIPTION_LENGTH,
    SYSTEM_SCHEMA_NAMES,
    SchemaId,
    _operation_id_problem,
    is_valid_description,
    is_valid_field_name,
    is_valid_schema_name,
    parse_schema_id,
)

__all__ = [
    "BLOB_PIECE_V1",
    "BLOB_PIECE_V1_ID",
    "BLOB_V1",
    "BLOB_V1_ID",
    "MAX_BLOB_PIECE_LENGTH",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_SCHEMA_FIELDS",
    "SCHEMA_DEFINITION_V1",
    "SCHEMA_DEFINITION_V1_ID",
    "SCHEMA_FIELD_DEFINITION_V1",
    "SCHEMA_FIELD_DEFINITION_V1_ID",
    "SYSTEM_SCHEMAS",
    "SYSTEM_SCHEMA_NAMES",
    "FieldKind",
    "FieldType",
    "Schema",
    "SchemaId",
    "build_schema",
    "check_operation",
    "field_type_from_definition",
    "is_valid_description",
    "is_valid_field_name",
    "is_valid_field_type_definition",
    "is_valid_mime_type",
    "is_valid_schema_name",
    "parse_schema_id",
    "system_schema",
    "typed_fields",
    "validate_operation",
]

MAX_SCHEMA_FIELDS: Final = 1024
"""A schema has at most this many fields (and at least one)."""

MAX_BLOB_PIECE_LENGTH: Final = 256_000
"""The ``data`` of a ``blob_piece_v1`` document has at most this many bytes."""

# p2panda-rs's MIME type regex, used with `fullmatch` (Rust's `$` only matches at the very end).
_MIME_TYPE_RE: Final = re.compile(r"[a-z-]{1,12}/(?:[a-z0-9]{1,18}[.|+-]){0,6}[a-z0-9]{1,16}")
_SCHEMA_ID_CHARS: Final = frozenset(
    "_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
# The field types that accept exactly the plain values of one Python type (bool is not an int
# here: ``type(True) is bool``).
_SCALAR_TYPES: Final[Mapping[str, type]] = {
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "bytes": bytes,
}


# --------------------------------------------------------------------------------------------
# Value rules (spec §5.3; the name and description rules are in schema_id.py)


def is_valid_mime_type(mime_type: str) -> bool:
    """Whether ``mime_type`` passes p2panda's ``blob_v1`` check.

    The regex is ``^[a-z-]{1,12}/(([a-z0-9]{1,18})[.|+-]){0,6}[a-z0-9]{1,16}$``; it is loose
    (``my/made.up.mime.type`` passes) and has no upper-case letters.
    """
    return _MIME_TYPE_RE.fullmatch(mime_type) is not None


# --------------------------------------------------------------------------------------------
# Field types


FieldKind: TypeAlias = Literal[
    "bool",
    "int",
    "float",
    "str",
    "bytes",
    "relation",
    "relation_list",
    "pinned_relation",
    "pinned_relation_list",
]
"""The name of a field type, as written in a ``schema_field_definition_v1`` ``type``."""

_FIELD_KINDS: Final[frozenset[str]] = frozenset(get_args(FieldKind))
_RELATION_KINDS: Final = frozenset(
    {"relation", "relation_list", "pinned_relation", "pinned_relation_list"}
)
_SIMPLE_KINDS: Final = _FIELD_KINDS - _RELATION_KINDS
_FIELD_TYPE_RULE: Final = (
    "expected bool, int, float, str, bytes, relation(<schema id>), relation_list(<schema id>), "
    "pinned_relation(<schema id>) or pinned_relation_list(<schema id>)"
)


@dataclass(frozen=True, slots=True)
class FieldType:
    """The type of a schema field, e.g. ``str`` or ``relation(blob_v1)``.

    Attributes:
        kind: One of the nine field type names.
        schema_id: The schema the related documents have, for the four relation kinds (only
            the query layer uses it; it is not checked when publishing); None otherwise.
    """

    kind: FieldKind
    schema_id: SchemaId | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FIELD_KINDS:
            raise SchemaError(
                f"invalid field type {quote(self.kind)}: {_FIELD_TYPE_RULE}",
                Reason.INVALID_FIELD_DEFINITION,
            )
        if (self.kind in _RELATION_KINDS) != (self.schema_id is not None):
            needs = "needs" if self.kind in _RELATION_KINDS else "takes no"
            raise SchemaError(
                f"field type {quote(self.kind)} {needs} a target schema id",
                Reason.INVALID_FIELD_DEFINITION,
            )

    @classmethod
    def from_str(cls, value: str) -> FieldType:
        """Parse a canonical field type string, e.g. ``int`` or ``relation(blob_v1)``.

        This is the strict grammar. To read the ``type`` of a field definition document exactly
        as aquadoggo does (which tolerates text around ``kind(<id>)``), use
        :func:`field_type_from_definition`.

        Raises:
            SchemaError: reason ``INVALID_FIELD_DEFINITION`` when ``value`` is not a field type or
                its schema id does not parse.
        """
        if value in _SIMPLE_KINDS:
            return cls(cast(FieldKind, value))
        kind, parenthesis, rest = value.partition("(")
        if kind not in _RELATION_KINDS or not parenthesis or not rest.endswith(")"):
            raise SchemaError(
                f"invalid field type {quote(value)}: {_FIELD_TYPE_RULE}",
                Reason.INVALID_FIELD_DEFINITION,
            )
        return cls(cast(FieldKind, kind), _target_schema_id(value, rest[:-1]))

    @property
    def is_relation(self) -> bool:
        """Whether this is one of the four relation kinds."""
        return self.schema_id is not None

    def __str__(self) -> str:
        if self.schema_id is None:
            return self.kind
        return f"{self.kind}({self.schema_id})"

    def __repr__(self) -> str:
        return f"FieldType({str(self)!r})"


def _target_schema_id(field_type: str, schema_id: str) -> SchemaId:
    try:
        return parse_schema_id(schema_id)
    except SchemaIdError as err:
        raise SchemaError(
            f"invalid field type {quote(field_type)}: {err.message}",
            Reason.INVALID_FIELD_DEFINITION,
        ) from None


# Rust's `regex` crate reads `\w` as Unicode \p{Alphabetic}, \p{M}, \p{Nd}, \p{Pc} and
# \p{Join_Control}; Python's `\w` differs at the edges, so the two p2panda type regexes are
# matched by hand over this predicate. (Alphabetic = letters, Nl, and Other_Alphabetic, which is
# marks plus the circled/squared Latin letters below.)
_WORD_CATEGORIES: Final = frozenset(
    {"Lu", "Ll", "Lt", "Lm", "Lo", "Nl", "Mn", "Mc", "Me", "Nd", "Pc"}
)
_OTHER_ALPHABETIC_SYMBOLS: Final = (
    (0x24B6, 0x24E9),
    (0x1F130, 0x1F149),
    (0x1F150, 0x1F169),
    (0x1F170, 0x1F189),
)


def _is_word_char(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char == "_"
    if char in "\u200c\u200d" or unicodedata.category(char) in _WORD_CATEGORIES:
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _OTHER_ALPHABETIC_SYMBOLS)


def _word_runs(text: str) -> Iterable[tuple[int, int]]:
    """Yield ``(start, end)`` of every maximal run of word characters, left to right."""
    index = 0
    while index < len(text):
        if not _is_word_char(text[index]):
            index += 1
            continue
        start = index
        while index < len(text) and _is_word_char(text[index]):
            index += 1
        yield start, index


def field_type_from_definition(value: str) -> FieldType:
    r"""Read the ``type`` of a field definition exactly as p2panda-rs ``FieldType::from_str``.

    The five simple names must match exactly. Otherwise p2panda searches (unanchored) for the
    first ``(\w+)(\((.+)\))?``: the first run of word characters is the kind and, when a
    ``(`` follows it, everything up to the last ``)`` on that line is the schema id.

    Quirk: text around the first ``kind(<id>)`` is ignored, so ``" relation(blob_v1)xyz"``
    reads as ``relation(blob_v1)``; such strings pass the publish-time check of
    ``schema_field_definition_v1`` too, and aquadoggo builds schemas from them.

    Raises:
        SchemaError: reason ``INVALID_FIELD_DEFINITION`` for anything else, or when the schema id
            does not parse. (p2panda-rs panics on a string without any word character.)
    """
    if value in _SIMPLE_KINDS:
        return FieldType(cast(FieldKind, value))
    for start, end in _word_runs(value):
        kind = value[start:end]
        target: str | None = None
        if value[end : end + 1] == "(":
            line = value[end + 1 :].split("\n", 1)[0]
            close = line.rfind(")")
            if close >= 1:  # `.+` needs at least one character
                target = line[:close]
        if kind in _RELATION_KINDS and target is not None:
            return FieldType(cast(FieldKind, kind), _target_schema_id(value, target))
        break  # only the leftmost match counts
    raise SchemaError(
        f"invalid field type {quote(value)}: {_FIELD_TYPE_RULE}", Reason.INVALID_FIELD_DEFINITION
    )


def is_valid_field_type_definition(value: str) -> bool:
    r"""Whether ``value`` passes the publish-time check of ``schema_field_definition_v1.type``.

    A simple name passes if it matches exactly. Otherwise p2panda-rs looks for the first
    (unanchored) ``(\w+)\(([_0-9A-Za-z]*)\)`` and passes the string if the part in
    parentheses is a valid schema id.

    Quirk: the word before ``(`` is not checked, so ``foo(blob_v1)`` passes here (and is
    accepted as a document) although no schema can be built from it later.
    """
    if value in _SIMPLE_KINDS:
        return True
    for _start, end in _word_runs(value):
        if value[end : end + 1] != "(":
            continue
        close = end + 1
        while close < len(value) and value[close] in _SCHEMA_ID_CHARS:
            close += 1
        if value[close : close + 1] != ")":
            continue
        try:
            parse_schema_id(value[end + 1 : close])
        except SchemaIdError:
            return False
        return True
    return False


# --------------------------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True, slots=True)
class Schema:
    """A schema: an id, a description and typed fields.

    Attributes:
        id: The schema id.
        description: At most 256 characters.
        fields: Field name → type, 1 to 1024 fields, in byte-wise sorted name order (read-only).
    """

    id: SchemaId
    description: str
    fields: Mapping[str, FieldType]
    _scalar_types: Mapping[str, type] = field(init=False, repr=False, compare=False)
    """Field name → the one Python type of a valid plain value, for the fields whose type
    accepts exactly the values of one type (``bool``, ``int``, ``float``, ``str``, ``bytes``):
    :func:`check_operation`'s quick path."""

    def __post_init__(self) -> None:
        fields = dict(sorted(self.fields.items()))
        object.__setattr__(self, "fields", MappingProxyType(fields))
        object.__setattr__(
            self,
            "_scalar_types",
            {
                name: _SCALAR_TYPES[field_type.kind]
                for name, field_type in fields.items()
                if isinstance(field_type, FieldType) and field_type.kind in _SCALAR_TYPES
            },
        )
        if not is_valid_description(self.description):
            raise SchemaError(
                f"schema description has {len(self.description)} characters, at most "
                f"{MAX_DESCRIPTION_LENGTH} are allowed",
                Reason.INVALID_SCHEMA_DEFINITION,
            )
        if not 1 <= len(fields) <= MAX_SCHEMA_FIELDS:
            raise SchemaError(
                f"a schema has 1 to {MAX_SCHEMA_FIELDS} fields, got {len(fields)}",
                Reason.INVALID_SCHEMA_DEFINITION,
            )
        for name, field_type in fields.items():
            if not is_valid_field_name(name):
                raise SchemaError(
                    f"invalid field name {quote(name)}: expected {_FIELD_NAME_RULE}",
                    Reason.INVALID_SCHEMA_DEFINITION,
                )
            if not isinstance(field_type, FieldType):
                raise SchemaError(
                    f"field {quote(name)} has no FieldType: {quote(field_type)}",
                    Reason.INVALID_SCHEMA_DEFINITION,
                )

    @property
    def name(self) -> str:
        """The schema name (part of its id)."""
        return self.id.name

    def describe_fields(self) -> str:
        """Return the fields as ``name: type, …``, for messages."""
        return ", ".join(f"{name}: {field_type}" for name, field_type in self.fields.items())

    def __hash__(self) -> int:
        return hash((self.id, self.description, tuple(self.fields.items())))

    def __repr__(self) -> str:
        return f"Schema({str(self.id)!r}, fields={{{self.describe_fields()}}})"


SCHEMA_DEFINITION_V1_ID: Final = "schema_definition_v1"
"""The id of the system schema that defines application schemas, as text."""

SCHEMA_FIELD_DEFINITION_V1_ID: Final = "schema_field_definition_v1"
"""The id of the system schema that defines one field of an application schema, as text."""

BLOB_V1_ID: Final = "blob_v1"
"""The id of the system schema of a file (blob), as text."""

BLOB_PIECE_V1_ID: Final = "blob_piece_v1"
"""The id of the system schema of one piece of a file, as text."""


def _system_schema(name: str, description: str, fields: Mapping[str, FieldType]) -> Schema:
    return Schema(SchemaId.system(name, 1), description, fields)


_STR = FieldType("str")

SCHEMA_DEFINITION_V1: Final = _system_schema(
    "schema_definition",
    "Publish data schemas for your application.",
    {
        "description": _STR,
        "fields": FieldType("pinned_relation_list", SchemaId.system("schema_field_definition")),
        "name": _STR,
    },
)
"""``schema_definition_v1``: defines an application schema (name, description, field views)."""

SCHEMA_FIELD_DEFINITION_V1: Final = _system_schema(
    "schema_field_definition",
    "Define fields for application data schemas.",
    {"name": _STR, "type": _STR},
)
"""``schema_field_definition_v1``: one field of an application schema (name and type string)."""

BLOB_V1: Final = _system_schema(
    "blob",
    "Definition of a blob file.",
    {
        "length": FieldType("int"),
        "mime_type": _STR,
        "pieces": FieldType("pinned_relation_list", SchemaId.system("blob_piece")),
    },
)
"""``blob_v1``: a file, made of pinned ``blob_piece_v1`` views in order."""

BLOB_PIECE_V1: Final = _system_schema(
    "blob_piece",
    "Representation of the (partial) binary data of a file.",
    {"data": FieldType("bytes")},
)
"""``blob_piece_v1``: up to 256 000 bytes of a file."""

SYSTEM_SCHEMAS: Final[Mapping[SchemaId, Schema]] = MappingProxyType(
    {
        schema.id: schema
        for schema in (SCHEMA_DEFINITION_V1, SCHEMA_FIELD_DEFINITION_V1, BLOB_V1, BLOB_PIECE_V1)
    }
)
"""The four system schemas by id."""


def system_schema(schema_id: SchemaId | str) -> Schema | None:
    """Return the system schema with this id, or None (application ids, versions other than 1).

    Raises:
        SchemaIdError: when ``schema_id`` is a string that does not parse.
    """
    if isinstance(schema_id, str):
        schema_id = parse_schema_id(schema_id)
    return SYSTEM_SCHEMAS.get(schema_id)


# --------------------------------------------------------------------------------------------
# Validating operations (spec §5.4)


def validate_operation(operation: Operation, schema: Schema) -> dict[str, FieldValue]:
    """Check an operation against its schema and return its typed field values.

    Rules, as p2panda-rs ``validate_operation``: the operation's schema id must name ``schema``
    (compared parsed, so ``blob_v01`` names ``blob_v1``); a CREATE gives exactly the schema's
    fields; an UPDATE gives any subset of them, the empty one included; a DELETE gives none.
    Every given value must fit its field type (spec §3.2), and the fields of the system schemas
    pass their extra checks (spec §5.3). Relations are not checked for existence.

    Args:
        operation: A decoded operation with plain field values.
        schema: The schema it claims.

    Returns:
        Field name → typed value (see the module docstring), in byte-wise name order; empty for
        a DELETE.

    Raises:
        SchemaIdError: the operation's schema id does not parse.
        OperationDecodeError: the operation has the wrong shape for its action (fields or
            previous missing or surplus, version not 1) or a value that is not a plain value.
        SchemaError: with reason ``SCHEMA_MISMATCH``, ``MISSING_FIELD``, ``UNEXPECTED_FIELD``,
            ``FIELD_TYPE_MISMATCH``, ``INVALID_FIELD_VALUE`` or ``INVALID_SYSTEM_FIELD``.
    """
    if operation.version != 1:
        raise OperationDecodeError(
            f"unsupported operation version {operation.version}", Reason.UNSUPPORTED_VERSION
        )
    claimed = parse_schema_id(operation.schema_id)
    if claimed != schema.id:
        raise SchemaError(
            f"operation claims schema {operation.schema_id} but is validated against {schema.id}",
            Reason.SCHEMA_MISMATCH,
        )
    _check_shape(operation)
    fields: Mapping[str, PlainValue] = operation.fields or {}

    if operation.action == "create":
        missing = [name for name in schema.fields if name not in fields]
        if missing:
            listed = ", ".join(f"'{name}' ({schema.fields[name]})" for name in missing)
            raise SchemaError(
                f"missing field{'s' if len(missing) > 1 else ''} {listed}: a CREATE for schema "
                f"{schema.id} must give exactly these fields: {schema.describe_fields()}",
                Reason.MISSING_FIELD,
            ).about(field=missing[0], schema_id=schema.id)
    typed = typed_fields(fields, schema)
    if schema.id.is_system:
        _check_system_fields(schema.id, fields)
    return typed


def check_operation(operation: Operation, schema: Schema) -> None:
    """Check an operation against its schema: :func:`validate_operation` without its result.

    Accepts and rejects exactly what :func:`validate_operation` does (its errors included),
    for callers that only need the verdict, e.g. publishing. The common case, a CREATE or an
    UPDATE of an application schema whose given fields are all of the types ``bool``, ``int``,
    ``float``, ``str`` or ``bytes`` with values of exactly those Python types, is decided here
    without building the typed values; anything else is left to :func:`validate_operation`.

    Raises:
        SchemaIdError, OperationDecodeError, SchemaError: as :func:`validate_operation`.
    """
    fields = operation.fields
    action = operation.action
    previous = operation.previous
    if (
        fields is not None
        and operation.version == 1
        and ((action == "create" and previous is None) or (action == "update" and previous))
        and not schema.id.is_system
        and parse_schema_id(operation.schema_id) == schema.id
        and (action != "create" or len(fields) == len(schema.fields))
    ):
        types = schema._scalar_types
        for name, value in fields.items():
            kind = types.get(name)
            if kind is None or type(value) is not kind:
                break
            if kind is int and not _I64_MIN <= value <= _I64_MAX:  # type: ignore[operator]
                break
        else:
            # Each name is a field of the schema (a dict has no duplicates), so a CREATE giving
            # as many fields as the schema has gives exactly its fields.
            return
    validate_operation(operation, schema)


def typed_fields(fields: Mapping[str, PlainValue], schema: Schema) -> dict[str, FieldValue]:
    """Type plain field values with a schema, exactly as :func:`validate_operation` does.

    Use it for values that are known to be valid already, e.g. the fields of a materialized
    document view (every operation was validated when it was published). Only the types are
    checked: no field is required, and the extra rules of the system schemas are not applied.

    Args:
        fields: Field name → plain value (any subset of the schema's fields).
        schema: The schema the values belong to.

    Returns:
        Field name → typed value (see the module docstring), in byte-wise name order.

    Raises:
        SchemaError: ``UNEXPECTED_FIELD`` for a name the schema does not have;
            ``FIELD_TYPE_MISMATCH`` or ``INVALID_FIELD_VALUE`` for a value that does not fit.
        OperationDecodeError: a value that is not a plain value.
    """
    unexpected = sorted(name for name in fields if name not in schema.fields)
    if unexpected:
        listed = ", ".join(f"'{name}'" for name in unexpected)
        raise SchemaError(
            f"unexpected field{'s' if len(unexpected) > 1 else ''} {listed}: schema "
            f"{schema.id} has only these fields: {schema.describe_fields()}",
            Reason.UNEXPECTED_FIELD,
        ).about(field=unexpected[0], schema_id=schema.id)
    typed: dict[str, FieldValue] = {}
    for name in sorted(fields):
        try:
            typed[name] = _typed_value(name, fields[name], schema.fields[name])
        except PandanodeError as err:
            err.about(field=name, schema_id=schema.id)
            raise
    return typed


def _check_shape(operation: Operation) -> None:
    action: str = operation.action
    problem: str | None = None
    if action == "create":
        if operation.previous is not None:
            problem = "a CREATE operation has no previous"
        elif operation.fields is None:
            problem = "a CREATE operation needs fields"
    elif action == "update":
        if not operation.previous:
            problem = "an UPDATE operation needs previous"
        elif operation.fields is None:
            problem = "an UPDATE operation needs fields (an empty map is allowed)"
    elif action == "delete":
        if not operation.previous:
            problem = "a DELETE operation needs previous"
        elif operation.fields is not None:
            problem = "a DELETE operation has no fields"
    else:
        problem = f"unknown operation action {quote(action)}"
    if problem is not None:
        raise OperationDecodeError(problem, Reason.INVALID_OPERATION)


_PlainKind: TypeAlias = Literal["bool", "int", "float", "str", "bytes", "hash[]", "hash[][]"]


def _plain_kind(name: str, value: object) -> _PlainKind:
    """Name the plain-value variant of ``value`` as p2panda does (``hash[]`` = ambiguous)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    if isinstance(value, tuple | list):
        if all(isinstance(item, str) for item in value):
            return "hash[]"  # includes the empty list
        if all(
            isinstance(item, tuple | list) and all(isinstance(op_id, str) for op_id in item)
            for item in value
        ):
            return "hash[][]"
    raise OperationDecodeError(
        f"field {quote(name)} holds {type(value).__name__} {quote(value)}, "
        "which is not a plain value "
        "(bool, int, float, str, bytes, a list of hashes or a list of lists of hashes)",
        Reason.INVALID_FIELD_VALUE,
    )


def _typed_value(name: str, value: PlainValue, field_type: FieldType) -> FieldValue:
    plain = _plain_kind(name, value)
    kind = field_type.kind
    if isinstance(value, tuple | list):  # plain is "hash[]" or "hash[][]"
        typed = _typed_list(name, value, plain, kind)
    else:
        typed = _typed_scalar(name, value, plain, kind)
    if typed is None:
        raise SchemaError(
            f"field '{name}' does not match schema: invalid field type '{plain}', expected "
            f"'{field_type}'",
            Reason.FIELD_TYPE_MISMATCH,
        )
    return typed


def _typed_scalar(name: str, value: PlainValue, plain: str, kind: str) -> FieldValue | None:
    """The typed value of a plain scalar for a field of ``kind``; None when it does not fit."""
    if isinstance(value, bool):
        return value if kind == "bool" else None
    if isinstance(value, int):
        if kind != "int":
            return None
        if not _I64_MIN <= value <= _I64_MAX:
            raise SchemaError(
                f"field '{name}' does not match schema: {value} is outside the i64 range",
                Reason.INVALID_FIELD_VALUE,
            )
        return value
    if isinstance(value, float | str):
        return value if kind == plain else None
    if isinstance(value, bytes | bytearray):
        if kind == "bytes":
            return bytes(value)
        if kind == "relation":
            problem = _operation_id_problem(value.hex())
            if problem is not None:
                raise SchemaError(
                    f"field '{name}' does not match schema: a relation is a 34-byte document "
                    f"id: {problem}",
                    Reason.INVALID_FIELD_VALUE,
                )
            return Relation(value.hex())
    return None


def _typed_list(name: str, value: PlainValue, plain: str, kind: str) -> FieldValue | None:
    """The typed value of a list of hashes (or of lists) for ``kind``; None if it does not fit."""
    if plain == "hash[]":
        ids = _hashes(name, cast(Sequence[str], value))
        if kind == "relation_list":
            return RelationList(ids)
        if kind == "pinned_relation":
            return PinnedRelation(_view_id(name, ids).ids)
        if kind == "pinned_relation_list":
            # Quirk: a flat list for a pinned_relation_list becomes an empty list, whatever it
            # holds (meant for `[]`, which decodes as a flat list).
            return PinnedRelationList(())
        return None
    if kind == "pinned_relation_list":  # plain == "hash[][]"
        view_ids = cast(Sequence[Sequence[str]], value)
        return PinnedRelationList([_view_id(name, _hashes(name, ids)).ids for ids in view_ids])
    return None


def _hashes(name: str, ids: Sequence[str]) -> tuple[str, ...]:
    """Check every id is a hex hash; return them lowercase (they are bytes on the wire)."""
    for op_id in ids:
        try:
            hash_from_hex(op_id)
        except HashDecodeError as err:
            raise SchemaError(
                f"field '{name}' does not match schema: {err.message}", Reason.INVALID_FIELD_VALUE
            ) from None
    return tuple(op_id.lower() for op_id in ids)


def _view_id(name: str, ids: tuple[str, ...]) -> DocumentViewId:
    try:
        return DocumentViewId(ids)
    except HashDecodeError as err:
        raise SchemaError(
            f"field '{name}' does not match schema: non-canonic document view id, {err.message}",
            Reason.INVALID_FIELD_VALUE,
        ) from None


def _check_system_fields(schema_id: SchemaId, fields: Mapping[str, PlainValue]) -> None:
    """The extra publish-time checks of the system schemas (spec §5.3).

    As in p2panda-rs each check only looks at a field that is present with the expected plain
    variant (type errors are reported before this runs).
    """

    def fail(rule: str) -> SchemaError:
        return SchemaError(f"invalid '{schema_id}' operation: {rule}", Reason.INVALID_SYSTEM_FIELD)

    name = fields.get("name")
    if schema_id.name == "schema_definition":
        if isinstance(name, str) and not is_valid_schema_name(name):
            raise fail(f"schema 'name' {quote(name)} must be {_SCHEMA_NAME_RULE}")
        description = fields.get("description")
        if isinstance(description, str) and not is_valid_description(description):
            raise fail(
                f"'description' has {len(description)} characters, at most "
                f"{MAX_DESCRIPTION_LENGTH} are allowed"
            )
        definitions = fields.get("fields")
        if (
            isinstance(definitions, tuple | list)
            and _plain_kind("fields", definitions) == "hash[][]"
            and len(definitions) > MAX_SCHEMA_FIELDS
        ):
            raise fail(
                f"'fields' lists {len(definitions)} field definitions, at most "
                f"{MAX_SCHEMA_FIELDS} are allowed"
            )
    elif schema_id.name == "schema_field_definition":
        if isinstance(name, str) and not is_valid_field_name(name):
            raise fail(f"field 'name' {quote(name)} must be {_FIELD_NAME_RULE}")
        type_text = fields.get("type")
        if isinstance(type_text, str) and not is_valid_field_type_definition(type_text):
            raise fail(f"'type' {quote(type_text)} is not a field type: {_FIELD_TYPE_RULE}")
    elif schema_id.name == "blob":
        mime_type = fields.get("mime_type")
        if isinstance(mime_type, str) and not is_valid_mime_type(mime_type):
            raise fail(
                f"'mime_type' {quote(mime_type)} is not a MIME type like 'image/png' "
                "(lowercase type/subtype)"
            )
        # p2panda also rejects empty `pieces`, but only when they decoded as a list of lists,
        # which is never empty: `[]` decodes as a flat list and passes (quirk), becoming an empty
        # pinned_relation_list. So there is nothing left to check here.
    elif schema_id.name == "blob_piece":
        data = fields.get("data")
        if isinstance(data, bytes | bytearray) and len(data) > MAX_BLOB_PIECE_LENGTH:
            raise fail(
                f"'data' has {len(data)} bytes, a blob piece holds at most "
                f"{MAX_BLOB_PIECE_LENGTH}; split the file into more pieces"
            )


# --------------------------------------------------------------------------------------------
# Building application schemas (spec §5.5)

_Fail: TypeAlias = Callable[[str], SchemaError]


def build_schema(
    definition_view_id: DocumentViewId | str,
    definition_fields: Mapping[str, object],
    field_definitions: Mapping[str, Mapping[str, object]],
) -> Schema:
    """Build an application schema from its materialized definition, like aquadoggo.

    Args:
        definition_view_id: The view id of the ``schema_definition_v1`` document view; it
            becomes part of the schema id.
        definition_fields: That view's field values: exactly ``name`` (str), ``description``
            (str) and ``fields``, the pinned field definition views: a
            :class:`~.operation.PinnedRelationList` as :func:`validate_operation` returns it, or
            a sequence of view ids (each a :class:`~.ids.DocumentViewId`, a ``_``-joined string
            or a sequence of operation ids).
        field_definitions: The materialized ``schema_field_definition_v1`` views, keyed by their
            view id string: each exactly ``{"name": str, "type": str}``. Every view listed in
            ``fields`` must be here and nothing else. (Which document the views belong to is
            the caller's business: aquadoggo does not check their schema.)

    Returns:
        The schema ``<name>_<definition view id>`` with its fields.

    Quirk (p2panda-rs ``SchemaFields::new``): duplicate field names are only rejected when they
    are adjacent in the ``fields`` list (as when the same view is listed twice in a row); a
    name that comes back later silently replaces the earlier one's type.

    Raises:
        SchemaError: reason ``INVALID_SCHEMA_DEFINITION``, saying what is wrong.
    """

    def fail(problem: str) -> SchemaError:
        return SchemaError(f"cannot build schema: {problem}", Reason.INVALID_SCHEMA_DEFINITION)

    try:
        view_id = (
            DocumentViewId.from_str(definition_view_id)
            if isinstance(definition_view_id, str)
            else definition_view_id
        )
    except HashDecodeError as err:
        raise fail(f"invalid schema definition view id: {err.message}") from None

    _expect_keys(
        definition_fields, ("description", "fields", "name"), "the schema definition", fail
    )
    name = definition_fields["name"]
    description = definition_fields["description"]
    if not isinstance(name, str):
        raise fail(f"the schema definition's 'name' must be a str, got {type(name).__name__}")
    if not isinstance(description, str):
        raise fail(
            f"the schema definition's 'description' must be a str, got {type(description).__name__}"
        )
    listed = _listed_view_ids(definition_fields["fields"], fail)

    fields = _fields(name, description, _field_pairs(listed, field_definitions, fail), fail)
    return Schema(SchemaId(name, view_id=view_id), description, fields)


def _field_pairs(
    listed: Sequence[str], field_definitions: Mapping[str, Mapping[str, object]], fail: _Fail
) -> list[tuple[str, FieldType]]:
    """The (name, type) of each listed field definition view, in the listed order."""
    unlisted = sorted(set(field_definitions) - set(listed))
    if unlisted:
        raise fail(
            f"field definition view(s) {', '.join(unlisted)} are not listed in the schema "
            "definition's 'fields'"
        )
    pairs: list[tuple[str, FieldType]] = []
    for field_view_id in listed:
        definition = field_definitions.get(field_view_id)
        if definition is None:
            raise fail(
                f"field definition view {field_view_id} listed in 'fields' is missing "
                "(not materialized yet?)"
            )
        where = f"field definition {field_view_id}"
        _expect_keys(definition, ("name", "type"), where, fail)
        field_name, type_text = definition["name"], definition["type"]
        if not isinstance(field_name, str) or not isinstance(type_text, str):
            raise fail(f"{where}: 'name' and 'type' must be str")
        try:
            pairs.append((field_name, field_type_from_definition(type_text)))
        except SchemaError as err:
            raise fail(f"{where}: {err.message}") from None
    return pairs


def _fields(
    name: str, description: str, pairs: list[tuple[str, FieldType]], fail: _Fail
) -> dict[str, FieldType]:
    """Check the schema's name, description and fields (spec §5.3); return the fields."""
    if not is_valid_schema_name(name):
        raise fail(f"invalid schema name {quote(name)}: expected {_SCHEMA_NAME_RULE}")
    if not is_valid_description(description):
        raise fail(
            f"the description has {len(description)} characters, at most "
            f"{MAX_DESCRIPTION_LENGTH} are allowed"
        )
    for (first, _), (second, _) in pairwise(pairs):
        if first == second:
            raise fail(f"field name {quote(first)} is defined twice")
    fields = dict(pairs)  # later duplicates replace earlier ones (quirk, see above)
    for field_name in fields:
        if not is_valid_field_name(field_name):
            raise fail(f"invalid field name {quote(field_name)}: expected {_FIELD_NAME_RULE}")
    if len(fields) > MAX_SCHEMA_FIELDS:
        raise fail(f"{len(fields)} fields, a schema has at most {MAX_SCHEMA_FIELDS}")
    if not fields:
        raise fail("the schema definition lists no fields, a schema needs at least one")
    return fields


def _expect_keys(
    values: Mapping[str, object],
    expected: tuple[str, ...],
    where: str,
    fail: _Fail,
) -> None:
    if set(values) != set(expected):
        raise fail(
            f"{where} must have exactly the fields {', '.join(expected)}; it has "
            f"{', '.join(sorted(values)) or 'none'}"
        )


def _listed_view_ids(value: object, fail: _Fail) -> list[str]:
    items: Sequence[object]
    if isinstance(value, PinnedRelationList):
        items = value.view_ids
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = value
    else:
        raise fail(
            f"the schema definition's 'fields' must be a pinned relation list, got "
            f"{type(value).__name__}"
        )
    listed: list[str] = []
    for item in items:
        try:
            if isinstance(item, DocumentViewId):
                listed.append(str(item))
            elif isinstance(item, str):
                listed.append(str(DocumentViewId.from_str(item)))
            elif isinstance(item, Sequence) and all(isinstance(i, str) for i in item):
                listed.append(str(DocumentViewId(tuple(item))))
            else:
                raise fail(f"'fields' holds {quote(item)}, which is not a document view id")
        except HashDecodeError as err:
            raise fail(f"'fields' holds an invalid document view id: {err.message}") from None
    return listed
