"""Helpers of the gateway tests: GraphQL over HTTP as apps send it, and a catalog of documents
of every field type published over gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from pandanode.client import (
    Client,
    Published,
    pinned_relation,
    pinned_relation_list,
    relation,
    relation_list,
)


async def graphql(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST a GraphQL request as apps do; the JSON body (HTTP 200 is asserted)."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = await http.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def data(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``data`` of a request that must succeed."""
    result = await graphql(http, query, variables)
    assert "errors" not in result, result["errors"]
    answer: dict[str, Any] = result["data"]
    return answer


BIG = 2**40 + 7  # beyond 32 bits


@dataclass(frozen=True)
class Catalog:
    """Tags and items: every field type, values chosen so each filter picks a known set.

    Items (title, count, rating, flag, blob): a (1, 0.5, True, 01), b (2, 1.5, False, 02),
    c (BIG, 2.5, True, 03), d (-5, -1.0, False, 04), e (3, 1.5, True, 05).
    """

    tag: str
    item: str
    tags: dict[str, Published]
    items: dict[str, Published]


async def make_catalog(client: Client) -> Catalog:
    """Publish the catalog's schemas and documents over gRPC; wait until materialized."""
    tag = await client.create_schema("tag", "A tag", {"name": "str"})
    item = await client.create_schema(
        "item",
        "An item of every field type",
        {
            "title": "str",
            "count": "int",
            "rating": "float",
            "flag": "bool",
            "blob": "bytes",
            "main": relation(tag),
            "tags": relation_list(tag),
            "pin": pinned_relation(tag),
            "pins": pinned_relation_list(tag),
        },
    )
    tags = {name: await client.create(tag, {"name": name}) for name in ("x", "y", "z")}
    rows = {
        "a": (1, 0.5, True, b"\x01", "x", ["x", "y"]),
        "b": (2, 1.5, False, b"\x02", "y", ["y"]),
        "c": (BIG, 2.5, True, b"\x03", "z", ["z", "x", "z"]),
        "d": (-5, -1.0, False, b"\x04", "x", []),
        "e": (3, 1.5, True, b"\x05", "y", ["x"]),
    }
    items = {}
    for title, (count, rating, flag, blob, main, listed) in rows.items():
        items[title] = await client.create(
            item,
            {
                "title": title,
                "count": count,
                "rating": rating,
                "flag": flag,
                "blob": blob,
                "main": tags[main].document_id,
                "tags": [tags[name].document_id for name in listed],
                "pin": tags[main].view_id,
                "pins": [tags[name].view_id for name in listed],
            },
        )
    for published in items.values():  # reads wait until each is materialized
        await client.get_document(published.document_id, after=published)
    return Catalog(tag, item, tags, items)
