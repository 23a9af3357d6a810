"""Blobs over HTTP (spec §10.3): ``GET /blobs/<document id>[/<view id>]``.

The bytes come from the query service's ``GetBlob`` stream and are streamed on as they arrive.
The view id is the ETag: a pinned view never changes (cached for good), the current view of a
document is revalidated (``If-None-Match`` → 304). A single ``bytes=`` range is answered with
206; several ranges with the whole file (allowed by RFC 9110); an unsatisfiable one with 416.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.services.runtime.clients import client_metadata

from .app import AsgiHandler, Receive, Scope, Send

if TYPE_CHECKING:
    from pandanode.query.v1.query_pb2_grpc import QueryServiceAsyncStub

    from .service import Gateway

__all__ = ["BlobsHandler", "ByteRange", "blobs_handler", "parse_range"]

# Seconds the query service may take to answer with a blob's header (the bytes may take longer).
HEADER_TIMEOUT = 30.0
_ID = re.compile(r"0020[0-9a-f]{64}")
_VIEW_ID = re.compile(r"0020[0-9a-f]{64}(_0020[0-9a-f]{64})*")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_PINNED_CACHE = b"public, max-age=31536000, immutable"
_LATEST_CACHE = b"no-cache"
_EOF: Final[object] = grpc.aio.EOF  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes ``start`` to ``end`` (inclusive) of a file."""

    start: int
    end: int


def parse_range(header: str | None, length: int) -> ByteRange | bool | None:
    """The range a ``Range`` header asks of a file of ``length`` bytes.

    Returns:
        The range; ``None`` for the whole file (no header, not a single ``bytes=`` range:
        ignored as RFC 9110 allows); ``False`` when it cannot be satisfied (416).
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # the last n bytes
        suffix = int(last)
        if suffix == 0 or length == 0:
            return False
        return ByteRange(max(0, length - suffix), length - 1)
    start = int(first)
    end = int(last) if last else length - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= length:
        return False
    return ByteRange(start, min(end, length - 1))


def blobs_handler(gateway: Gateway) -> AsgiHandler:
    """The ``/blobs/…`` handler of a gateway (``GATEWAY_BLOBS`` in :mod:`..parts`)."""
    return BlobsHandler(gateway.upstreams.query)


class BlobsHandler:
    """Serves blobs over HTTP from the query service.

    Args:
        query: The QueryService stub.
    """

    def __init__(self, query: QueryServiceAsyncStub) -> None:
        self._query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request under ``/blobs/``."""
        method: str = scope["method"]
        if method not in ("GET", "HEAD"):
            await _plain(send, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
            return
        parts = scope["path"][len("/blobs/") :].rstrip("/").split("/")
        if len(parts) > 2 or not _ID.fullmatch(parts[0]):
            await _plain(send, 400, "expected /blobs/<document id>[/<view id>] with hex ids")
            return
        document_id = parts[0]
        view_id = parts[1] if len(parts) == 2 else ""
        if view_id and not _VIEW_ID.fullmatch(view_id):
            await _plain(send, 400, "malformed document view id")
            return
        headers = _headers(scope)
        if view_id:
            status = await self._view_of(document_id, view_id)
            if status:
                await _plain(send, status, _REASONS[status])
                return
        request = (
            qpb.GetBlobRequest(document_view_id=view_id)
            if view_id
            else qpb.GetBlobRequest(document_id=document_id)
        )
        client = scope.get("client")
        call = self._query.GetBlob(request, metadata=client_metadata(client[0] if client else None))
        try:
            await self._serve(call, send, headers, method, pinned=bool(view_id))
        finally:
            call.cancel()

    async def _view_of(self, document_id: str, view_id: str) -> int:
        """0 if ``view_id`` is a view of ``document_id``; else the HTTP status to answer."""
        try:
            response = await self._query.GetDocument(
                qpb.GetDocumentRequest(document_view_id=view_id), timeout=HEADER_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            return _status(err)
        return 0 if response.document.document_id == document_id else 404

    async def _serve(
        self, call: Any, send: Send, headers: dict[str, str], method: str, *, pinned: bool
    ) -> None:
        try:
            first = await asyncio.wait_for(call.read(), HEADER_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            await _plain(send, _status(err), _REASONS[_status(err)])
            return
        except TimeoutError:
            await _plain(send, 504, _REASONS[504])
            return
        if first is _EOF or not first.HasField("header"):
            await _plain(send, 502, _REASONS[502])
            return
        header: qpb.BlobHeader = first.header
        view_id = header.document_view_id
        if _matches(headers.get("if-none-match"), view_id):
            await _not_modified(send, view_id, pinned=pinned)
            return
        length = header.length
        wanted = parse_range(headers.get("range"), length)
        if headers.get("if-range") is not None and not _matches(headers["if-range"], view_id):
            wanted = None  # the file changed since the client's partial copy: all of it
        common = [*_cache_headers(view_id, pinned=pinned), (b"accept-ranges", b"bytes")]
        if wanted is False:
            await _plain(
                send, 416, _REASONS[416], [(b"content-range", f"bytes */{length}".encode())]
            )
            return
        if isinstance(wanted, ByteRange):
            start, end = wanted.start, wanted.end
            status = 206
            common.append((b"content-range", f"bytes {start}-{end}/{length}".encode()))
        else:
            start, end = 0, length - 1
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", header.mime_type.encode("latin-1", "replace")),
                    (b"content-length", str(end - start + 1).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    *common,
                ],
            }
        )
        if method == "HEAD" or end < start:
            await send({"type": "http.response.body", "body": b""})
            return
        await _stream(call, send, start, end)


async def _stream(call: Any, send: Send, start: int, end: int) -> None:
    """Send the bytes ``start``..``end`` of the chunks that follow the header."""
    position = 0  # offset of the next chunk in the file
    while position <= end:
        message = await call.read()  # an error here breaks the response off: it is truncated
        if message is _EOF:
            raise ConnectionError("the blob ended before its length")
        chunk: bytes = message.data
        following = position + len(chunk)
        if following > start:
            piece = chunk[max(0, start - position) : end - position + 1]
            last = following > end
            await send({"type": "http.response.body", "body": piece, "more_body": not last})
        position = following


_REASONS = {
    400: "malformed blob id",
    404: "no such blob (unknown document or view, not a blob, or its pieces are missing)",
    416: "range not satisfiable",
    502: "the query service answered unexpectedly",
    503: "the query service is unavailable",
    504: "the query service did not answer in time",
}


def _status(err: grpc.aio.AioRpcError) -> int:
    code = err.code()
    if code == grpc.StatusCode.NOT_FOUND:
        return 404
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return 400
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return 504
    if code == grpc.StatusCode.UNAVAILABLE:
        return 503
    return 502


def _headers(scope: Scope) -> dict[str, str]:
    return {
        bytes(key).decode("latin-1").lower(): bytes(value).decode("latin-1")
        for key, value in scope.get("headers", [])
    }


def _matches(if_none_match: str | None, view_id: str) -> bool:
    """Whether an ``If-None-Match`` (or ``If-Range``) names the ETag of ``view_id``."""
    if if_none_match is None:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip().removeprefix("W/")
        if tag == "*" or tag.strip('"') == view_id:
            return True
    return False


def _cache_headers(view_id: str, *, pinned: bool) -> list[tuple[bytes, bytes]]:
    return [
        (b"etag", f'"{view_id}"'.encode()),
        (b"cache-control", _PINNED_CACHE if pinned else _LATEST_CACHE),
    ]


async def _not_modified(send: Send, view_id: str, *, pinned: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 304,
            "headers": _cache_headers(view_id, pinned=pinned),
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
