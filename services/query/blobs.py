"""Blobs (spec §10): a ``blob_v1`` view and its pinned ``blob_piece_v1`` views make a file.

Pure functions; the materializer finds the views and stores what :func:`assemble_blob` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pandanode.core.operation import PinnedRelationList
from pandanode.core.schema import BLOB_PIECE_V1, BLOB_V1

from .model import MaterializedDocument

__all__ = ["AssembledBlob", "InvalidBlobError", "assemble_blob", "blob_piece_views", "is_blob"]


class InvalidBlobError(ValueError):
    """The pieces of a blob do not make the file its ``blob_v1`` view describes."""


@dataclass(frozen=True, slots=True)
class AssembledBlob:
    """A blob's bytes, checked against its ``blob_v1`` view.

    Attributes:
        mime_type: The MIME type.
        length: The length in bytes.
        chunks: The ``data`` of every piece, in list order.
    """

    mime_type: str
    length: int
    chunks: list[bytes]


def is_blob(document: MaterializedDocument) -> bool:
    """Whether a view is a (not deleted) ``blob_v1`` view."""
    return document.schema_id == str(BLOB_V1.id) and not document.deleted


def blob_piece_views(blob: MaterializedDocument) -> list[str]:
    """The piece view ids of a ``blob_v1`` view, in file order (duplicates kept)."""
    pieces = blob.fields.get("pieces")
    if not isinstance(pieces, PinnedRelationList):
        return []
    return ["_".join(view_id) for view_id in pieces.view_ids]


def assemble_blob(
    blob: MaterializedDocument, pieces: Sequence[MaterializedDocument]
) -> AssembledBlob:
    """Concatenate the pieces of a blob in list order and check them, like aquadoggo.

    Args:
        blob: A ``blob_v1`` view.
        pieces: The views :func:`blob_piece_views` names, in that order.

    Returns:
        The blob's MIME type, length and chunks.

    Raises:
        InvalidBlobError: not a blob view; the number of pieces differs from the list; a piece
            is not a ``blob_piece_v1`` view with data; the total length differs from
            ``length``.
    """
    mime_type = blob.fields.get("mime_type")
    length = blob.fields.get("length")
    if not is_blob(blob) or not isinstance(mime_type, str) or not isinstance(length, int):
        raise InvalidBlobError(f"view {blob.view_id} is not a blob_v1 view")
    listed = blob_piece_views(blob)
    if len(pieces) != len(listed):
        raise InvalidBlobError(
            f"blob {blob.view_id} lists {len(listed)} pieces, {len(pieces)} were given"
        )
    chunks = []
    for piece in pieces:
        data = piece.fields.get("data")
        if piece.schema_id != str(BLOB_PIECE_V1.id) or not isinstance(data, bytes):
            raise InvalidBlobError(
                f"blob {blob.view_id}: piece {piece.view_id} is not a blob_piece_v1 view with data"
            )
        chunks.append(data)
    total = sum(len(chunk) for chunk in chunks)
    if total != length:
        raise InvalidBlobError(
            f"blob {blob.view_id} claims {length} bytes, its pieces hold {total}"
        )
    return AssembledBlob(mime_type, length, chunks)
