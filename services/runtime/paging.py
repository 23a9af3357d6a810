"""Pages of a small list ordered by a unique key, with authenticated page tokens (AIP-158).

For the lists a node keeps whole in memory and orders by one unique string (schemas by schema
id, peers by node id). A page holds the first ``page_size`` items after the key its token
records, so an item added or removed between two pages neither repeats nor hides another.

Every page token of the node, these and the query listings', is a :class:`SealedTokens`
token: the URL-safe base64 (unpadded) of ``mac ‖ payload``, the mac an HMAC-SHA256 of the
payload (with a context naming the kind of token) under a secret: the node's page token secret
(:mod:`pandanode.services.query.token_secret`), or one random secret per process where the list
itself does not outlive the process (the peer table). Here the payload is the JSON array
``[list, last key]``. Tokens are opaque to clients; anything not issued by this node for this
list is rejected INVALID_ARGUMENT, reason ``INVALID_PAGE_TOKEN``, with a field violation on
``page_token``.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from pandanode.core.errors import InvalidRequestError, Reason

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_TOKEN_LENGTH",
    "KeysetPages",
    "SealedTokens",
    "rejected_page_token",
]

DEFAULT_PAGE_SIZE: Final = 100
"""The page size of a request that leaves ``page_size`` at 0."""

MAX_PAGE_TOKEN_LENGTH: Final = 1024
"""Longest page token accepted (characters); longer ones are rejected before decoding."""

_MAC_SIZE: Final = 32
_LIST_CONTEXT: Final = b"pandanode list page token\x00"
# One random secret per process, for tokens that need not outlive it.
_PROCESS_SECRET: Final = os.urandom(32)
_HINT: Final = (
    "pass the next_page_token of the previous response unchanged, or leave it empty for the "
    "first page"
)

T = TypeVar("T")


def rejected_page_token(problem: str) -> InvalidRequestError:
    """The error for a page token this node cannot continue from: ``problem`` says why."""
    return InvalidRequestError(
        f"malformed page token: {problem}; {_HINT}", Reason.INVALID_PAGE_TOKEN
    ).violation("page_token")


class SealedTokens:
    """Authenticated opaque tokens: payloads sealed with an HMAC, checked before they are read.

    Args:
        context: Names the kind of token; part of the mac, so that a token of one kind is
            never accepted as another.
        secret: The secret of the macs (at least 16 bytes); None: a random secret of this
            process, so that tokens do not outlive it.
        max_length: Longest token accepted (characters), checked before anything else.
    """

    __slots__ = ("_context", "_key", "max_length")

    def __init__(
        self, context: bytes, secret: bytes | None = None, max_length: int = MAX_PAGE_TOKEN_LENGTH
    ) -> None:
        if secret is not None and len(secret) < 16:
            raise ValueError("a page token secret must have at least 16 bytes")
        self._key = _PROCESS_SECRET if secret is None else bytes(secret)
        self._context = context
        self.max_length = max_length

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, self._context + payload, hashlib.sha256).digest()

    def seal(self, payload: bytes) -> str:
        """Authenticate a payload and encode it as a token."""
        raw = self._mac(payload) + payload
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def open(self, token: str) -> bytes:
        """Check a token's length, encoding and mac, in that order; return its payload.

        Raises:
            InvalidRequestError: reason ``INVALID_PAGE_TOKEN``.
        """
        if len(token) > self.max_length:
            raise rejected_page_token(
                f"{len(token)} characters, longer than any token this node issues "
                f"({self.max_length})"
            )
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        except (ValueError, binascii.Error):
            raise rejected_page_token("not URL-safe base64") from None
        mac, payload = raw[:_MAC_SIZE], raw[_MAC_SIZE:]
        if len(mac) < _MAC_SIZE or not hmac.compare_digest(mac, self._mac(payload)):
            raise rejected_page_token("not issued by this node, or altered")
        return payload


class KeysetPages:
    """Pages of one list, and the tokens that continue it.

    Args:
        list_name: Which list the tokens belong to (a token of another list is rejected).
        secret: The secret that authenticates the tokens (at least 16 bytes); None: a random
            secret of this process, so tokens do not outlive it.
        max_page_size: The largest page; a larger ``page_size`` is lowered to it.
    """

    __slots__ = ("_list", "_sealed", "max_page_size")

    def __init__(
        self, list_name: str, secret: bytes | None = None, max_page_size: int = 1000
    ) -> None:
        self._sealed = SealedTokens(_LIST_CONTEXT, secret)
        self._list = list_name
        self.max_page_size = max_page_size

    def token(self, last_key: str) -> str:
        """The token of the page that follows the item with key ``last_key``."""
        return self._sealed.seal(json.dumps([self._list, last_key], separators=(",", ":")).encode())

    def after(self, page_token: str) -> str | None:
        """The key a token continues after (None for an empty token: the first page).

        Raises:
            InvalidRequestError: reason ``INVALID_PAGE_TOKEN``.
        """
        if not page_token:
            return None
        payload = self._sealed.open(page_token)
        fields = json.loads(payload)  # authenticated: written by token()
        if not (isinstance(fields, list) and len(fields) == 2 and fields[0] == self._list):
            raise rejected_page_token(f"it belongs to another list than {self._list}")
        last = fields[1]
        if not isinstance(last, str):
            raise rejected_page_token("of another format")
        return last

    def page(
        self, items: Sequence[T], key: Callable[[T], str], page_size: int, page_token: str
    ) -> tuple[list[T], str]:
        """One page of ``items`` (sorted by ``key``, keys unique) and the next page's token.

        Args:
            items: The whole list, sorted by ``key``.
            key: The unique sort key of an item.
            page_size: Most items to return; 0 for :data:`DEFAULT_PAGE_SIZE`.
            page_token: The previous page's token; empty for the first page.

        Returns:
            The page and the token of the next one (empty when this page is the last).

        Raises:
            InvalidRequestError: a page token this node did not issue for this list.
        """
        after = self.after(page_token)
        size = min(page_size or DEFAULT_PAGE_SIZE, self.max_page_size)
        keys = [key(item) for item in items]
        start = 0 if after is None else bisect.bisect_right(keys, after)
        page = list(items[start : start + size])
        more = start + size < len(items)
        return page, self.token(keys[start + size - 1]) if more else ""
