"""Page tokens: the position of a keyset page, bound to its query and authenticated.

A token is opaque to clients. It is the URL-safe base64 (unpadded) of ``mac ‖ payload``: the
payload is a JSON array ``[version, fingerprint, rank, value, document id]`` (the query's
fingerprint and the sort key of the page's last document, floats and bytes as hex) and the mac
its HMAC-SHA256 under the node's secret. A token is checked in this order, so that nothing a
client made up reaches a parser: its length (at most :data:`MAX_PAGE_TOKEN_LENGTH` characters),
base64, the mac, and only then the JSON and the query it belongs to. Every rejection is an
:class:`InvalidRequestError` with the reason ``INVALID_PAGE_TOKEN``.

A sort key too long for a token (a str or bytes value of more than about 1.5 KB) is recorded
as a prefix and a digest of the whole value: :class:`Truncated`. The index turns it back into
the exact position from the page's last document when that document still has the value; if
the document has since changed its sort key, the next page starts at the prefix, so documents
sharing that long prefix may be returned again (none is skipped).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from pandanode.core.errors import Reason
from pandanode.services.runtime.errors import InvalidRequestError
from pandanode.services.runtime.paging import SealedTokens, rejected_page_token

from .targets import ABSENT, NAN, PRESENT, Entry, Target

__all__ = [
    "MAX_PAGE_TOKEN_LENGTH",
    "Cursor",
    "PageTokens",
    "Truncated",
    "query_fingerprint",
    "value_digest",
]

MAX_PAGE_TOKEN_LENGTH: Final = 4096
"""Longest page token accepted (characters); longer ones are rejected before decoding."""

_TOKEN_VERSION: Final = 2
_MAC_CONTEXT: Final = b"pandanode page token\x00"
# Sort keys whose JSON form is longer than this many bytes are truncated to a prefix.
_MAX_INLINE_BYTES: Final = 1536
_PREFIX_CHARS: Final = 256
_PREFIX_BYTES: Final = 256
_STR_KINDS: Final = frozenset({"str", "relation", "pinned_relation", "id"})


@dataclass(frozen=True, slots=True)
class Truncated:
    """A position whose sort key was too long for a token: a prefix and a digest of it.

    Attributes:
        rank: The entry's rank (always a present value).
        prefix: The first characters (str) or bytes of the sort key.
        digest: :func:`value_digest` of the whole sort key.
        document_id: The document the page ended with.
    """

    rank: int
    prefix: str | bytes
    digest: str
    document_id: str

    def bound(self, current: Entry | None, descending: bool) -> Entry:
        """The exclusive bound the next page starts after.

        Args:
            current: The entry the page's last document has now, or None if it is gone.
            descending: The order's direction.

        Returns:
            ``current`` when the document still has the sort key the token was made from;
            otherwise the tightest bound that skips no document that kept its sort key.
        """
        if (
            current is not None
            and current[0] == self.rank
            and current[2] == self.document_id
            and isinstance(current[1], str | bytes)
            and value_digest(current[1]) == self.digest
        ):
            return current
        if descending:
            return (self.rank, _AfterPrefix(self.prefix))
        return (self.rank, self.prefix, self.document_id)


Cursor: TypeAlias = Entry | Truncated
"""Where a page token says the next page starts: exactly after an entry, or a :class:`Truncated`."""


class _AfterPrefix:
    """Above every value that starts with ``prefix`` and below every other value above it."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str | bytes) -> None:
        self.prefix = prefix

    def _above(self, value: Any) -> bool:
        return bool(value.startswith(self.prefix) or value < self.prefix)

    def __eq__(self, other: object) -> bool:
        return other is self

    def __hash__(self) -> int:
        return id(self)

    def __gt__(self, other: Any) -> bool:
        return self._above(other)

    def __ge__(self, other: Any) -> bool:
        return self._above(other)

    def __lt__(self, other: Any) -> bool:
        return not self._above(other)

    def __le__(self, other: Any) -> bool:
        return not self._above(other)

    def __repr__(self) -> str:
        return f"<after prefix {self.prefix[:20]!r}>"


def value_digest(value: str | bytes) -> str:
    """A digest of a str or bytes sort key (how a truncated token recognises it)."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def query_fingerprint(schema_id: str, canonical: tuple[Any, ...], order: Target, desc: bool) -> str:
    """A digest of a query: schema id, canonical predicates, order key and direction."""
    text = repr((schema_id, canonical, order.key, desc)).encode()
    return hashlib.blake2b(text, digest_size=16).hexdigest()


class PageTokens(SealedTokens):
    """Makes and reads the page tokens of one node's listings.

    Args:
        secret: The node's token secret (at least 16 bytes); None: a random secret of this
            process, so that tokens do not outlive it.
    """

    __slots__ = ()

    def __init__(self, secret: bytes | None = None) -> None:
        super().__init__(_MAC_CONTEXT, secret, MAX_PAGE_TOKEN_LENGTH)

    def encode(self, fingerprint: str, kind: str, entry: Entry) -> str:
        """The token of a position: after ``entry`` (of an order key of ``kind``) in a query."""
        rank, value, document_id = entry
        token_value: object
        if rank != PRESENT:
            token_value = None
        elif kind == "float":
            token_value = float(value).hex()
        elif kind == "bytes":
            token_value = value.hex()
            if 2 * len(value) > _MAX_INLINE_BYTES:
                token_value = ["prefix", value[:_PREFIX_BYTES].hex(), value_digest(value)]
        else:
            token_value = value
            if isinstance(value, str) and len(_json(value)) > _MAX_INLINE_BYTES:
                token_value = ["prefix", value[:_PREFIX_CHARS], value_digest(value)]
        payload = _json([_TOKEN_VERSION, fingerprint, rank, token_value, document_id])
        return self.seal(payload)

    def decode(self, token: str, fingerprint: str, kind: str) -> Cursor:
        """The position a token records, checked against the query it is used with.

        Raises:
            InvalidRequestError: reason ``INVALID_PAGE_TOKEN``: the token is too long, not
                issued by this node, altered, or belongs to another query.
        """
        payload = self.open(token)
        try:
            fields = json.loads(payload)
        except (ValueError, RecursionError):
            raise rejected_page_token("unreadable") from None
        if not isinstance(fields, list) or len(fields) != 5 or fields[0] != _TOKEN_VERSION:
            raise rejected_page_token("of another format")
        _, token_fingerprint, rank, value, document_id = fields
        if token_fingerprint != fingerprint:
            raise InvalidRequestError(
                "page token belongs to another query: it was issued for a different schema, "
                "filter or order; repeat the query of the previous page, or start again without "
                "a token",
                Reason.INVALID_PAGE_TOKEN,
            ).violation("page_token")
        cursor = _token_cursor(kind, rank, value, document_id)
        if cursor is None:
            raise rejected_page_token("its position does not fit the order")
        return cursor


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def _truncated(kind: str, value: list[Any], document_id: str) -> Truncated | None:
    if len(value) != 3 or value[0] != "prefix" or not isinstance(value[2], str):
        return None
    prefix, digest = value[1], value[2]
    if not isinstance(prefix, str):
        return None
    if kind == "bytes":
        try:
            return Truncated(PRESENT, bytes.fromhex(prefix), digest, document_id)
        except ValueError:
            return None
    return Truncated(PRESENT, prefix, digest, document_id) if kind in _STR_KINDS else None


def _token_cursor(kind: str, rank: object, value: object, document_id: object) -> Cursor | None:
    if not isinstance(document_id, str) or isinstance(rank, bool):
        return None
    if rank == ABSENT and value is None:
        return (ABSENT, None, document_id)
    if rank == NAN and value is None and kind == "float":
        return (NAN, 0.0, document_id)
    if rank != PRESENT:
        return None
    if isinstance(value, list):
        return _truncated(kind, value, document_id)
    try:
        if kind == "float" and isinstance(value, str):
            number = float.fromhex(value)
            return None if math.isnan(number) else (PRESENT, number, document_id)
        if kind == "bytes" and isinstance(value, str):
            return (PRESENT, bytes.fromhex(value), document_id)
    except ValueError:
        return None
    if kind == "bool" and isinstance(value, bool):
        return (PRESENT, value, document_id)
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return (PRESENT, value, document_id)
    if kind in _STR_KINDS and isinstance(value, str):
        return (PRESENT, value, document_id)
    return None
