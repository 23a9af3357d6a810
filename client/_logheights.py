"""Every log height a node holds, read page by page (``GetLogHeights`` is paged)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from pandanode.ingest.v1 import ingest_pb2 as pb

__all__ = ["all_log_heights"]


async def all_log_heights(
    get_page: Callable[[pb.GetLogHeightsRequest], Awaitable[pb.GetLogHeightsResponse]],
    schema_ids: Iterable[str] = (),
) -> list[pb.LogHeight]:
    """Every log height (of documents of ``schema_ids``; all when empty), following the pages.

    Args:
        get_page: Calls ``GetLogHeights`` with a request (the caller adds deadline and retry).
        schema_ids: Only logs of documents of these schemas.
    """
    schemas = list(schema_ids)
    request = pb.GetLogHeightsRequest(schema_ids=schemas)
    heights: list[pb.LogHeight] = []
    while True:
        response = await get_page(request)
        heights.extend(response.log_heights)
        if not response.next_page_token:
            return heights
        request = pb.GetLogHeightsRequest(schema_ids=schemas, page_token=response.next_page_token)
