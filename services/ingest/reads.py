"""The log reads replication needs: paged log heights and the entries a peer lacks.

Both are blocking RocksDB work; the servicer runs them on a worker thread.

**Page tokens** of ``GetLogHeights`` carry the last log of a page in the clear: the URL-safe
base64 (unpadded) of ``version ‖ filter fingerprint(8) ‖ public key(32) ‖ log id(u64) ‖
check(16)``. Log heights are what any client may read, so a token needs no secret: the
fingerprint binds it to the schema filter it was issued for and the check (a BLAKE2b digest of
the rest) catches a token that was altered or cut, both rejected as ``INVALID_PAGE_TOKEN``.

**Missing entries** follow spec §8.3: for every target log, a peer that does not name it
lacks it from seq num 1, a peer at a lower height lacks it from that height + 1. They are read
from the store-order index (one record per commit) from the smallest store sequence of any
lacking entry on, so a peer lacking only recent entries costs a scan of the recent part of
the store, and only the lacking ranges are held in memory, never the entries beyond a batch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pandanode.core.errors import InvalidRequestError, Reason
from pandanode.core.hexid import PUBLIC_KEY_HEX_LENGTH, require_hex

from .store import LogStore, StoredEntry, StoredLog

__all__ = [
    "HaveSet",
    "LogHeightsPage",
    "decode_page_token",
    "encode_page_token",
    "missing_entry_batches",
    "missing_ranges",
    "read_log_heights_page",
]

_VERSION: Final = 1
_U64: Final = struct.Struct(">Q")
_FINGERPRINT: Final = 8
_CHECK: Final = 16
_TOKEN_BYTES: Final = 1 + _FINGERPRINT + 32 + 8 + _CHECK
_MAX_TOKEN_CHARS: Final = 128
_CONTEXT: Final = b"pandanode log heights page token\x00"
# Bytes of one LogHeight in a response beyond its schema id, roughly (ids as hex, framing).
_LOG_HEIGHT_OVERHEAD: Final = 180
_AGAIN: Final = (
    "pass the next_page_token of the previous response unchanged, with the same schema_ids, "
    "or leave it empty for the first page"
)


@dataclass(frozen=True, slots=True)
class LogHeightsPage:
    """One page of log heights and the token of the next (empty: this is the last)."""

    logs: list[StoredLog]
    next_page_token: str


def _fingerprint(schema_ids: Iterable[str]) -> bytes:
    text = "\n".join(sorted(set(schema_ids))).encode()
    return hashlib.blake2b(text, digest_size=_FINGERPRINT).digest()


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(_CONTEXT + body, digest_size=_CHECK).digest()


def encode_page_token(schema_ids: Iterable[str], public_key: bytes, log_id: int) -> str:
    """The token of the page after log (raw public key, log id) under a schema filter."""
    body = bytes([_VERSION]) + _fingerprint(schema_ids) + public_key + _U64.pack(log_id)
    return base64.urlsafe_b64encode(body + _check(body)).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, schema_ids: Iterable[str]) -> bytes:
    """The raw public key ‖ log id (u64) a token's page starts after.

    Raises:
        InvalidRequestError: reason ``INVALID_PAGE_TOKEN``: too long, not URL-safe base64,
            altered, of another version, or issued for other schema ids.
    """

    def rejected(problem: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"malformed page token: {problem}; {_AGAIN}", Reason.INVALID_PAGE_TOKEN
        )

    if len(token) > _MAX_TOKEN_CHARS:
        raise rejected(f"{len(token)} characters, more than any token this node issues")
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        raise rejected("not URL-safe base64") from None
    body, check = raw[:-_CHECK], raw[-_CHECK:]
    if len(raw) != _TOKEN_BYTES or check != _check(body):
        raise rejected("not issued by this node, or altered")
    if body[0] != _VERSION:
        raise rejected("of another version")
    if body[1 : 1 + _FINGERPRINT] != _fingerprint(schema_ids):
        raise rejected("issued for other schema_ids")
    return body[1 + _FINGERPRINT :]


def read_log_heights_page(
    store: LogStore,
    schema_ids: Sequence[str],
    page_size: int,
    page_token: str,
    max_bytes: int,
) -> LogHeightsPage:
    """A page of log heights in (public key, log id) order, optionally of some schemas only.

    Args:
        store: The log store.
        schema_ids: Only logs of documents of these schemas; every log when empty.
        page_size: Most logs in the page (≥ 1).
        page_token: Where the page starts (a previous page's token); empty: at the start.
        max_bytes: The page ends before its logs would take about this many bytes.

    Raises:
        InvalidRequestError: a malformed ``page_token`` (``INVALID_PAGE_TOKEN``).
    """
    after = decode_page_token(page_token, schema_ids) if page_token else b""
    wanted = set(schema_ids)
    logs: list[StoredLog] = []
    size = 0
    more = False
    for stored in store.logs(after):
        if wanted and stored.schema_id not in wanted:
            continue
        item = _LOG_HEIGHT_OVERHEAD + len(stored.schema_id)
        if len(logs) >= page_size or (logs and size + item > max_bytes):
            more = True
            break
        logs.append(stored)
        size += item
    token = ""
    if more:
        last = logs[-1]
        token = encode_page_token(schema_ids, bytes.fromhex(last.public_key), last.log_id)
    return LogHeightsPage(logs, token)


class HaveSet:
    """The log heights a peer holds, gathered chunk by chunk, bounded in size.

    Args:
        max_logs: Most distinct logs it may name.
    """

    __slots__ = ("_heights", "_max_logs")

    def __init__(self, max_logs: int) -> None:
        self._max_logs = max_logs
        self._heights: dict[bytes, int] = {}

    @property
    def heights(self) -> Mapping[bytes, int]:
        """Raw public key ‖ log id (u64) → the highest seq num the peer named for it."""
        return self._heights

    def add(self, public_key: str, log_id: int, seq_num: int) -> None:
        """Add one log height; a log named again keeps its highest seq num.

        Raises:
            InvalidRequestError: a malformed public key (``INVALID_PUBLIC_KEY``), or more than
                ``max_logs`` logs (``LIMIT_EXCEEDED``).
        """
        try:
            key = bytes.fromhex(require_hex(public_key, "public_key", PUBLIC_KEY_HEX_LENGTH))
        except InvalidRequestError as err:
            raise InvalidRequestError(str(err), Reason.INVALID_PUBLIC_KEY) from None
        position = key + _U64.pack(log_id)
        known = self._heights.get(position)
        if known is None:
            if len(self._heights) >= self._max_logs:
                raise InvalidRequestError(
                    f"the have-set names more than {self._max_logs} logs (max_have_logs); "
                    "sync a narrower set of schemas",
                    Reason.LIMIT_EXCEEDED,
                )
            self._heights[position] = seq_num
        elif seq_num > known:
            self._heights[position] = seq_num


def missing_ranges(
    store: LogStore, schema_ids: Sequence[str], have: Mapping[bytes, int]
) -> tuple[dict[bytes, tuple[int, int]], int]:
    """The seq num ranges of the target logs a peer lacks (spec §8.3), and where they start.

    Returns:
        (raw public key ‖ log id → (first, last) seq num lacking; the smallest store sequence
        of a lacking entry, 0 when nothing lacks).
    """
    wanted = set(schema_ids)
    ranges: dict[bytes, tuple[int, int]] = {}
    start = 0
    for stored in store.logs():
        if wanted and stored.schema_id not in wanted:
            continue
        position = bytes.fromhex(stored.public_key) + _U64.pack(stored.log_id)
        first = have.get(position, 0) + 1
        if first > stored.seq_num:
            continue
        ranges[position] = (first, stored.seq_num)
        sequence = store.entry_sequence(position[:32], stored.log_id, first) or 1
        start = sequence if start == 0 else min(start, sequence)
    return ranges, start


def missing_entry_batches(
    store: LogStore,
    schema_ids: Sequence[str],
    have: Mapping[bytes, int],
    max_items: int,
    max_bytes: int,
) -> Iterator[list[StoredEntry]]:
    """Batches of the entries a peer lacks: per log in seq order, logs merged in store order.

    A batch holds at most ``max_items`` entries and, unless it holds one, at most
    ``max_bytes`` bytes of entries and operations. The ranges are fixed when the first batch
    is asked for: entries stored later are not included.
    """
    ranges, start = missing_ranges(store, schema_ids, have)
    batch: list[StoredEntry] = []
    size = 0
    for stored in store.entries_in_store_order(ranges, start):
        item = len(stored.entry) + len(stored.operation)
        if batch and (len(batch) >= max_items or size + item > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(stored)
        size += item
    if batch:
        yield batch
