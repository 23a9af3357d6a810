"""Blobs over HTTP (spec §10.3): whole, by range, conditional, pinned views, older views (404
unless pinned), bad ids."""

from __future__ import annotations

import os

import httpx
import pytest

from pandanode.client import Client, pinned_relation
from pandanode.core.schema import BLOB_PIECE_V1_ID
from pandanode.services.gateway.blobs import ByteRange, parse_range

# Three pieces (256 000 bytes each at most): ranges cross piece and chunk boundaries.
DATA = os.urandom(600_000)
UNKNOWN_ID = "0020" + "ab" * 32
# The bytes of a later view of the same blob: one piece.
NEWER = os.urandom(5_000)


@pytest.fixture
async def blob(client: Client) -> tuple[str, str]:
    """A blob of :data:`DATA` (``image/png``) materialized: its document and view id."""
    published = await client.put_blob(DATA, "image/png")
    await client.get_blob(published.document_id, after=published)
    return published.document_id, published.view_id


async def test_a_blob_is_served_whole_with_its_mime_type_and_its_view_id_as_etag(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, view_id = blob
    response = await http.get(f"/blobs/{document_id}")
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["etag"] == f'"{view_id}"'
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["accept-ranges"] == "bytes"


async def test_a_pinned_view_is_served_as_immutable(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, view_id = blob
    response = await http.get(f"/blobs/{document_id}/{view_id}")
    assert response.status_code == 200
    assert response.content == DATA
    assert "immutable" in response.headers["cache-control"]


async def test_if_none_match_with_the_current_view_is_304_without_a_body(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, view_id = blob
    response = await http.get(f"/blobs/{document_id}", headers={"if-none-match": f'"{view_id}"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == f'"{view_id}"'
    other = await http.get(f"/blobs/{document_id}", headers={"if-none-match": f'"{UNKNOWN_ID}"'})
    assert other.status_code == 200
    assert other.content == DATA


async def test_a_single_range_is_206_with_content_range(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, _ = blob
    response = await http.get(f"/blobs/{document_id}", headers={"range": "bytes=255990-256010"})
    assert response.status_code == 206
    assert response.content == DATA[255990:256011]
    assert response.headers["content-range"] == f"bytes 255990-256010/{len(DATA)}"
    suffix = await http.get(f"/blobs/{document_id}", headers={"range": "bytes=-100"})
    assert suffix.status_code == 206
    assert suffix.content == DATA[-100:]
    open_ended = await http.get(f"/blobs/{document_id}", headers={"range": "bytes=599000-"})
    assert open_ended.content == DATA[599000:]


async def test_an_unsatisfiable_range_is_416_naming_the_length(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, _ = blob
    response = await http.get(f"/blobs/{document_id}", headers={"range": "bytes=600000-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"


async def test_head_answers_the_headers_without_the_bytes(
    http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, _ = blob
    response = await http.head(f"/blobs/{document_id}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(DATA))
    assert response.content == b""


async def test_an_updated_blob_serves_its_new_view_with_a_new_etag(
    client: Client, http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, old_view = blob
    updated = await client.update(document_id, {"mime_type": "application/octet-stream"})
    await client.get_blob(document_id, after=updated)
    latest = await http.get(f"/blobs/{document_id}")
    assert latest.headers["etag"] == f'"{updated.view_id}"'
    assert latest.headers["content-type"] == "application/octet-stream"
    assert latest.content == DATA
    stale = await http.get(f"/blobs/{document_id}", headers={"if-none-match": f'"{old_view}"'})
    assert stale.status_code == 200


async def _replace_bytes(client: Client, document_id: str, data: bytes) -> str:
    """Point the blob at new bytes (one new piece); return its new view id, materialized."""
    piece = await client.create(BLOB_PIECE_V1_ID, {"data": data})
    updated = await client.update(document_id, {"pieces": [piece.view_id], "length": len(data)})
    await client.get_blob(document_id, after=updated)
    return updated.view_id


async def test_an_older_unpinned_view_of_a_blob_is_404_never_the_newer_bytes(
    client: Client, http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, old_view = blob
    new_view = await _replace_bytes(client, document_id, NEWER)
    latest = await http.get(f"/blobs/{document_id}")
    assert (latest.status_code, latest.content) == (200, NEWER)
    assert latest.headers["etag"] == f'"{new_view}"'
    older = await http.get(f"/blobs/{document_id}/{old_view}")
    assert older.status_code == 404
    assert NEWER not in older.content and DATA[:1000] not in older.content
    assert "etag" not in older.headers


@pytest.mark.parametrize("pinned_first", [True, False], ids=["pinned-then-updated", "pinned-later"])
async def test_an_older_view_of_a_blob_that_is_pinned_serves_its_own_bytes(
    client: Client, http: httpx.AsyncClient, blob: tuple[str, str], pinned_first: bool
) -> None:
    document_id, old_view = blob
    if not pinned_first:
        new_view = await _replace_bytes(client, document_id, NEWER)
    album = await client.create_schema("album", "Albums", {"cover": pinned_relation("blob_v1")})
    pinning = await client.create(album, {"cover": old_view})
    await client.get_document(pinning.document_id, after=pinning)
    if pinned_first:
        new_view = await _replace_bytes(client, document_id, NEWER)
    older = await http.get(f"/blobs/{document_id}/{old_view}")
    assert older.status_code == 200
    assert older.content == DATA
    assert older.headers["etag"] == f'"{old_view}"'
    assert "immutable" in older.headers["cache-control"]
    latest = await http.get(f"/blobs/{document_id}/{new_view}")
    assert (latest.status_code, latest.content) == (200, NEWER)
    ranged = await http.get(f"/blobs/{document_id}/{old_view}", headers={"range": "bytes=-10"})
    assert (ranged.status_code, ranged.content) == (206, DATA[-10:])


async def test_unknown_documents_views_of_other_documents_and_non_blobs_are_404(
    client: Client, http: httpx.AsyncClient, blob: tuple[str, str]
) -> None:
    document_id, _ = blob
    assert (await http.get(f"/blobs/{UNKNOWN_ID}")).status_code == 404
    other = await client.put_blob(b"other", "text/plain")
    await client.get_blob(other.document_id, after=other)
    assert (await http.get(f"/blobs/{document_id}/{other.view_id}")).status_code == 404
    piece = await client.create(BLOB_PIECE_V1_ID, {"data": b"x"})
    await client.get_document(piece.document_id, after=piece)
    piece_id = piece.document_id
    assert (await http.get(f"/blobs/{piece_id}")).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/blobs/nothex", "/blobs/0020abc", "/blobs/" + UNKNOWN_ID + "/xyz", "/blobs/a/b/c"],
)
async def test_malformed_ids_are_400(http: httpx.AsyncClient, path: str) -> None:
    response = await http.get(path)
    assert response.status_code == 400


async def test_other_methods_are_405(http: httpx.AsyncClient, blob: tuple[str, str]) -> None:
    assert (await http.put(f"/blobs/{blob[0]}")).status_code == 405


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=5-", ByteRange(5, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=90-1000", ByteRange(90, 99)),
        ("bytes=100-", False),
        ("bytes=-0", False),
        ("bytes=9-5", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
    ],
)
def test_parse_range_follows_rfc_9110(header: str | None, expected: object) -> None:
    assert parse_range(header, 100) == expected
