"""Page tokens: the position of a keyset page and the fingerprint of its query.

A token is the URL-safe base64 of a JSON array ``[version, fingerprint, rank, value, document
id]``: the sort key of the page's last document, with floats and bytes as hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import Any, Final

from pandanode.services.runtime.errors import InvalidRequestError

from .targets import ABSENT, NAN, PRESENT, Entry, Target

__all__ = ["decode_token", "encode_token", "query_fingerprint"]

_TOKEN_VERSION: Final = 1
# A token holds the last sort key, which may be a long str or bytes value (up to an operation's
# size); gRPC's default message limit bounds it anyway.
_MAX_TOKEN_LENGTH: Final = 4 * 1024 * 1024


def query_fingerprint(schema_id: str, canonical: tuple[Any, ...], order: Target, desc: bool) -> str:
    """A short digest of a query: schema id, canonical predicates, order key and direction."""
    text = repr((schema_id, canonical, order.key, desc)).encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def encode_token(fingerprint: str, kind: str, entry: Entry) -> str:
    """The token of a position: after ``entry`` (of an order key of ``kind``) in a query."""
    rank, value, document_id = entry
    if rank != PRESENT:
        value = None
    elif kind == "float":
        value = float(value).hex()
    elif kind == "bytes":
        value = value.hex()
    payload = json.dumps(
        [_TOKEN_VERSION, fingerprint, rank, value, document_id],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode("ascii")


_MALFORMED_TOKEN: Final = (
    "malformed page token: pass the next_page_token of the previous response unchanged, or "
    "leave it empty for the first page"
)


def decode_token(token: str, fingerprint: str, kind: str) -> Entry:
    """The position a token records, checked against the query it is used with.

    Raises:
        InvalidRequestError: The token is malformed or belongs to another query.
    """
    try:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise ValueError("too long")
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except (ValueError, binascii.Error):
        raise InvalidRequestError(_MALFORMED_TOKEN) from None
    if not isinstance(payload, list) or len(payload) != 5 or payload[0] != _TOKEN_VERSION:
        raise InvalidRequestError(_MALFORMED_TOKEN)
    _, token_fingerprint, rank, value, document_id = payload
    if token_fingerprint != fingerprint:
        raise InvalidRequestError(
            "page token belongs to another query: it was issued for a different schema, filter "
            "or order; repeat the query of the previous page, or start again without a token"
        )
    entry = _token_entry(kind, rank, value, document_id)
    if entry is None:
        raise InvalidRequestError(_MALFORMED_TOKEN)
    return entry


def _token_entry(kind: str, rank: object, value: object, document_id: object) -> Entry | None:
    if not isinstance(document_id, str) or isinstance(rank, bool):
        return None
    if rank == ABSENT and value is None:
        return (ABSENT, None, document_id)
    if rank == NAN and value is None and kind == "float":
        return (NAN, 0.0, document_id)
    if rank != PRESENT:
        return None
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
    if kind in ("str", "relation", "pinned_relation", "id") and isinstance(value, str):
        return (PRESENT, value, document_id)
    return None
