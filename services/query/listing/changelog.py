"""The change log of an index: recent changes, to bring cached match counts up to date.

A count cached at version ``v`` is brought up to date by replaying the changes since ``v``: a
change subtracts the replaced view if it matched and adds the new one if it matches. The log
therefore holds the replaced views, which the index itself no longer does, so it is bounded by
count and by bytes: past either bound its older half is dropped, and a count older than the
log is computed afresh (from a sorted structure, a hash index or a scan).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Final, TypeAlias

from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList

from ..model import MaterializedDocument, TypedValue

__all__ = ["DEFAULT_CHANGE_LOG_BYTES", "Change", "ChangeLog", "document_bytes"]

DEFAULT_CHANGE_LOG_BYTES: Final = 16 * 1024 * 1024
"""Default byte budget of one index's change log."""

_CHANGE_LOG_LIMIT: Final = 8192
# Per document: the object, its four ids, the field dict; per field: the name and a dict slot.
_DOCUMENT_OVERHEAD: Final = 600
_FIELD_OVERHEAD: Final = 120

Change: TypeAlias = tuple[MaterializedDocument | None, MaterializedDocument | None, int]
"""A change: the replaced view (None if new), the new view (None if removed), their bytes."""


def _value_bytes(value: TypedValue) -> int:
    if isinstance(value, Relation):
        return 56 + sys.getsizeof(value.document_id)
    if isinstance(value, RelationList):
        ids = value.document_ids
        return 56 + sys.getsizeof(ids) + sum(map(sys.getsizeof, ids))
    if isinstance(value, PinnedRelation):
        ids = value.view_id
        return 56 + sys.getsizeof(ids) + sum(map(sys.getsizeof, ids))
    if isinstance(value, PinnedRelationList):
        return (
            56
            + sys.getsizeof(value.view_ids)
            + sum(sys.getsizeof(ids) + sum(map(sys.getsizeof, ids)) for ids in value.view_ids)
        )
    return sys.getsizeof(value)


def document_bytes(document: MaterializedDocument) -> int:
    """An estimate of the memory a view holds (its values exactly, the rest roughly)."""
    return (
        _DOCUMENT_OVERHEAD
        + len(document.view_id)
        + sum(_FIELD_OVERHEAD + _value_bytes(value) for value in document.fields.values())
    )


class ChangeLog:
    """The changes that took an index from version :attr:`base` to :attr:`base` + ``len``.

    Args:
        max_bytes: The budget of the views the log holds (see :func:`document_bytes`).
    """

    __slots__ = ("_base", "_bytes", "_changes", "max_bytes")

    def __init__(self, max_bytes: int = DEFAULT_CHANGE_LOG_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"a change log needs a positive byte budget, got {max_bytes}")
        self.max_bytes = max_bytes
        self._changes: list[Change] = []
        self._base = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._changes)

    @property
    def base(self) -> int:
        """The version of the index before the oldest change in the log."""
        return self._base

    @property
    def retained_bytes(self) -> int:
        """The estimated bytes of the views the log holds."""
        return self._bytes

    def restart(self, version: int) -> None:
        """Forget every change; the log starts at ``version``."""
        self._changes.clear()
        self._base = version
        self._bytes = 0

    def since(self, version: int) -> Sequence[Change] | None:
        """The changes after ``version``, or None when the log no longer reaches back to it."""
        if version < self._base:
            return None
        return self._changes[version - self._base :]

    def record(
        self, previous: MaterializedDocument | None, document: MaterializedDocument | None
    ) -> None:
        """Append the change that took the index to its next version."""
        size = (0 if previous is None else document_bytes(previous)) + (
            0 if document is None else document_bytes(document)
        )
        self._changes.append((previous, document, size))
        self._bytes += size
        if len(self._changes) > 2 * _CHANGE_LOG_LIMIT or self._bytes > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        # Down to half of each bound, so that dropping (which moves the list) stays amortized.
        changes = self._changes
        keep_bytes = self.max_bytes // 2
        dropped = max(0, len(changes) - _CHANGE_LOG_LIMIT)
        retained = self._bytes - sum(change[2] for change in changes[:dropped])
        while dropped < len(changes) and retained > keep_bytes:
            retained -= changes[dropped][2]
            dropped += 1
        del changes[:dropped]
        self._base += dropped
        self._bytes = retained
