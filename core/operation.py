"""Operations: the CBOR payload of an entry (spec §3).

SKELETON — types are final, the codec functions are being implemented.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

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
    bool
    | int
    | float
    | str
    | bytes
    | Relation
    | RelationList
    | PinnedRelation
    | PinnedRelationList
)
"""What :func:`encode_operation` accepts as a field value."""

PlainValue: TypeAlias = bool | int | float | str | bytes | tuple[str, ...] | tuple[tuple[str, ...], ...]
"""A decoded, schema-less field value (spec §3.2).

``bytes`` may be a ``bytes`` field or a ``relation`` (34 bytes); a tuple of hex ids may be a
``relation_list``, a ``pinned_relation`` or an (empty) ``pinned_relation_list``; a tuple of tuples is
a ``pinned_relation_list``. Only the schema decides (spec §5.4).
"""


@dataclass(frozen=True, slots=True)
class Operation:
    """A decoded operation.

    Attributes:
        version: Always 1.
        action: ``"create"``, ``"update"`` or ``"delete"``.
        schema_id: The schema id string, as written.
        previous: Operation ids (hex) this operation builds on; None for CREATE.
        fields: Field name → plain value, in byte-wise key order; None for DELETE.
    """

    version: int
    action: Action
    schema_id: str
    previous: tuple[str, ...] | None
    fields: Mapping[str, PlainValue] | None


def encode_operation(
    *,
    action: Action = "create",
    schema_id: str,
    previous: Sequence[str] | str | None = None,
    fields: Mapping[str, FieldValue] | None = None,
) -> bytes:
    """Encode an operation exactly as p2panda emits it (spec §3)."""
    raise NotImplementedError


def decode_operation(data: bytes) -> Operation:
    """Decode an operation, enforcing p2panda's rules (spec §3.1–§3.3)."""
    raise NotImplementedError
