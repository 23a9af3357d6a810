"""The sorted structure: a list of order entries kept sorted in chunks.

An insert or a removal moves at most one chunk (:data:`_CHUNK_SIZE` to twice that entries);
walking a range and counting one bisect the chunks' maxima first.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from .targets import Entry

__all__ = ["SortedEntries"]

_CHUNK_SIZE: Final = 512


# --------------------------------------------------------------------------------------------
# A sorted list of order entries, in chunks so that an insert moves at most a chunk


class SortedEntries:
    """Order entries in ascending order.

    Args:
        entries: The initial entries, in any order.
    """

    __slots__ = ("_chunks", "_maxes", "_size")

    def __init__(self, entries: Iterable[Entry]) -> None:
        ordered = sorted(entries)
        self._chunks = [
            ordered[start : start + _CHUNK_SIZE] for start in range(0, len(ordered), _CHUNK_SIZE)
        ]
        self._maxes = [chunk[-1] for chunk in self._chunks]
        self._size = len(ordered)

    def __len__(self) -> int:
        return self._size

    def add(self, entry: Entry) -> None:
        """Insert an entry."""
        chunks, maxes = self._chunks, self._maxes
        self._size += 1
        if not chunks:
            chunks.append([entry])
            maxes.append(entry)
            return
        index = bisect_left(maxes, entry)
        if index == len(maxes):
            index -= 1
            chunk = chunks[index]
            chunk.append(entry)
            maxes[index] = entry
        else:
            chunk = chunks[index]
            insort(chunk, entry)
        if len(chunk) > 2 * _CHUNK_SIZE:
            half = len(chunk) // 2
            chunks[index : index + 1] = [chunk[:half], chunk[half:]]
            maxes[index : index + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, entry: Entry) -> None:
        """Remove an entry.

        Raises:
            KeyError: The entry is not there.
        """
        chunks, maxes = self._chunks, self._maxes
        index = bisect_left(maxes, entry)
        chunk = chunks[index] if index < len(chunks) else []
        position = bisect_left(chunk, entry)
        if position == len(chunk) or chunk[position] != entry:
            raise KeyError(entry)
        del chunk[position]
        self._size -= 1
        if not chunk:
            del chunks[index]
            del maxes[index]
            return
        maxes[index] = chunk[-1]
        following = index + 1
        if following < len(chunks) and len(chunk) + len(chunks[following]) <= _CHUNK_SIZE:
            chunk.extend(chunks[following])
            maxes[index] = chunk[-1]
            del chunks[following]
            del maxes[following]

    def count_between(self, low: Entry | None, high: Entry | None) -> int:
        """How many entries lie strictly between ``low`` and ``high`` (None: unbounded)."""
        below_high = self._size if high is None else self._rank(high, bisect_left)
        upto_low = 0 if low is None else self._rank(low, bisect_right)
        return max(0, below_high - upto_low)

    def _rank(self, entry: Entry, bisect: Callable[[Any, Any], int]) -> int:
        # Entries before ``entry`` (bisect_left) or up to it (bisect_right); O(chunks + log n).
        index = bisect(self._maxes, entry)
        rank = sum(len(chunk) for chunk in self._chunks[:index])
        if index < len(self._chunks):
            rank += bisect(self._chunks[index], entry)
        return rank

    def between(self, low: Entry | None, high: Entry | None, reverse: bool) -> Iterator[Entry]:
        """Yield the entries strictly between ``low`` and ``high`` (None: unbounded)."""
        chunks, maxes = self._chunks, self._maxes
        if not chunks:
            return
        if not reverse:
            index = 0 if low is None else bisect_right(maxes, low)
            start = 0 if low is None or index == len(chunks) else bisect_right(chunks[index], low)
            while index < len(chunks):
                chunk = chunks[index]
                for position in range(start, len(chunk)):
                    entry = chunk[position]
                    if high is not None and not entry < high:
                        return
                    yield entry
                index += 1
                start = 0
            return
        index = len(chunks) - 1 if high is None else bisect_left(maxes, high)
        if index == len(chunks):
            index -= 1
            end = len(chunks[index])
        else:
            end = len(chunks[index]) if high is None else bisect_left(chunks[index], high)
        while index >= 0:
            chunk = chunks[index]
            for position in range(end - 1, -1, -1):
                entry = chunk[position]
                if low is not None and not low < entry:
                    return
                yield entry
            index -= 1
            end = len(chunks[index]) if index >= 0 else 0
