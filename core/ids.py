"""Identifiers: operation ids, document ids and document view ids (spec §3.4).

An operation id is the YASMF hash of the entry that carries the operation; a document id is the
operation id of its CREATE. Both are 68-character lowercase hex strings. A document view id is a
non-empty, strictly ascending set of operation ids, written joined by ``_``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import HashDecodeError, Reason
from .hash import generate_hash, hash_from_hex

__all__ = ["DocumentViewId"]


@dataclass(frozen=True, slots=True, order=True)
class DocumentViewId:
    """A set of operation ids (graph tips) that names one state of a document.

    Attributes:
        ids: The operation ids as lowercase hex, strictly ascending, at least one.
    """

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.ids:
            raise HashDecodeError(
                "expected one or more operation ids in document view id",
                Reason.INVALID_DOCUMENT_VIEW_ID,
            )
        for op_id in self.ids:
            hash_from_hex(op_id, name="operation id")
        if any(a >= b for a, b in zip(self.ids, self.ids[1:], strict=False)):
            raise HashDecodeError(
                "expected sorted operation ids in document view id (ascending, no duplicates)",
                Reason.INVALID_DOCUMENT_VIEW_ID,
            )

    @classmethod
    def from_str(cls, value: str) -> DocumentViewId:
        """Parse the text form ``<id>_<id>…``; the ids must already be sorted and unique."""
        return cls(tuple(value.split("_")))

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> DocumentViewId:
        """Build a view id from any collection of operation ids (sorted and deduplicated here)."""
        return cls(tuple(sorted(set(ids))))

    def __str__(self) -> str:
        return "_".join(self.ids)

    def to_bytes(self) -> bytes:
        """Return the concatenation of the raw 34-byte ids, in order."""
        return b"".join(bytes.fromhex(op_id) for op_id in self.ids)

    def view_hash(self) -> str:
        """Return the document view hash: YASMF of the concatenated raw ids (spec §3.4)."""
        return generate_hash(self.to_bytes())
