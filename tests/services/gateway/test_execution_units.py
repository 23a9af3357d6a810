"""Unit tests of the gateway's cheaper execution of plain fields, its query document cache, its
JSON encoding, its refreshing of the schema and its coalesced writes: each behaves as what it
stands in for."""

# graphql-core annotates GraphQLNamedType.__new__ as returning the base class, so pyright types
# every GraphQLObjectType(...), GraphQLScalarType(...) … as a plain GraphQLNamedType; mypy (strict)
# ignores that annotation and checks these arguments, returns and assignments.
# pyright: reportArgumentType=false

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any, cast

import pytest
from graphql import (
    ExecutionResult,
    GraphQLField,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    execute,
    parse,
)

from pandanode.query.v1 import query_pb2 as qpb
from pandanode.services.gateway import api as api_module
from pandanode.services.gateway.api import DocumentCache, GraphQLApi, Snapshot
from pandanode.services.gateway.app import encode_json
from pandanode.services.gateway.execution import PlainFieldsExecutionContext, plain_field
from pandanode.services.gateway.http import _CoalescingTransport
from pandanode.services.gateway.upstream import Upstreams
from tests.services.support import eventually

# graphql-core's types, typed as what they are (pyright reads them as GraphQLNamedType, the
# return type of GraphQLNamedType.__new__).
STRING = cast(GraphQLScalarType, GraphQLString)  # type: ignore[redundant-cast]
INT = cast(GraphQLScalarType, GraphQLInt)  # type: ignore[redundant-cast]


def _fail(_source: Any) -> Any:
    raise ValueError("the getter refuses")


async def _slow_name(source: dict[str, Any], _info: Any) -> Any:
    return source["name"]


async def _slow_null(_source: Any, _info: Any) -> Any:
    return None


CHILD = cast(  # type: ignore[redundant-cast]
    GraphQLObjectType,
    GraphQLObjectType(
        "Child",
        {
            "name": plain_field(STRING, lambda source: source["name"]),
            "strict": plain_field(GraphQLNonNull(STRING), lambda source: source.get("strict")),
            "number": plain_field(INT, lambda source: source["number"]),
            "failing": plain_field(STRING, _fail),
            "later": GraphQLField(STRING, resolve=_slow_name),
            "laterStrict": GraphQLField(GraphQLNonNull(STRING), resolve=_slow_null),
            "lenient": plain_field(
                GraphQLNonNull(STRING),
                lambda source: source.get("strict"),
                null_despite_type=True,
            ),
        },
    ),
)
ROOT = cast(  # type: ignore[redundant-cast]
    GraphQLObjectType,
    GraphQLObjectType(
        "Query",
        {
            "child": plain_field(CHILD, lambda source: source["child"]),
            "strictChild": plain_field(GraphQLNonNull(CHILD), lambda source: source["child"]),
            "missing": plain_field(GraphQLNonNull(CHILD), lambda source: None),
            "children": plain_field(GraphQLList(CHILD), lambda source: source["children"]),
            "strictChildren": plain_field(
                GraphQLList(GraphQLNonNull(CHILD)), lambda source: source["children"]
            ),
            "allChildren": plain_field(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(CHILD))),
                lambda source: source["children"],
            ),
            "holes": plain_field(
                GraphQLList(GraphQLNonNull(CHILD)), lambda source: source["holes"]
            ),
            "tuple": plain_field(
                GraphQLList(GraphQLNonNull(CHILD)), lambda source: tuple(source["children"])
            ),
        },
    ),
)
SCHEMA = GraphQLSchema(ROOT)
SOURCE = {
    "child": {"name": "a", "strict": None, "number": 2**40},
    "children": [{"name": "b", "strict": "s", "number": 1}, {"name": "c", "number": 2}],
    "holes": [{"name": "d"}, None],
}


async def run(query: str, fast: bool) -> dict[str, Any]:
    result = execute(
        SCHEMA,
        parse(query),
        root_value=SOURCE,
        execution_context_class=PlainFieldsExecutionContext if fast else None,
    )
    if not isinstance(result, ExecutionResult):
        result = await result
    return dict(result.formatted)


@pytest.mark.parametrize(
    "query",
    [
        "{ child { name number failing } }",  # a serialization error and a getter's error
        "{ child { name strict } }",  # null for a non-null field: the parent becomes null
        "{ strictChild { name strict } }",  # ... and propagates through a non-null parent
        "{ missing { name } }",  # a null object for a non-null field
        "{ children { name later } }",  # lists, an awaited field beside plain ones
        "{ children { strict name later } }",  # an error in some items of a list
        "{ child { later laterStrict } }",  # an error in an object whose completion is awaited
        "{ child { __typename alias: name } other: child { name } }",  # meta fields, aliases
        "{ strictChildren { name later } allChildren { number } }",  # lists of non-null items
        "{ strictChildren { name strict } }",  # an item's error nulls the (nullable) list
        "{ allChildren { name strict } }",  # ... or propagates past a non-null list
        "{ allChildren { later laterStrict } }",  # ... also when the items are awaited
        "{ holes { name } tuple { name } }",  # a null item; a sequence that is not a list
        "{ children { ...F name @skip(if: true) } } fragment F on Child { later n: number }",
    ],
)
async def test_plain_fields_give_the_ordinary_executions_data_and_errors(query: str) -> None:
    ordinary = await run(query, fast=False)
    assert await run(query, fast=True) == ordinary
    assert "data" in ordinary


async def test_a_field_flagged_null_despite_type_answers_null_without_an_error() -> None:
    assert await run("{ child { lenient } children { lenient } }", fast=True) == {
        "data": {"child": {"lenient": None}, "children": [{"lenient": "s"}, {"lenient": None}]}
    }


def test_the_document_cache_evicts_the_least_recently_used_past_its_byte_budget() -> None:
    documents = {name: parse(f"{{ {name} }}") for name in ("aa", "bb", "cc")}
    probe = DocumentCache(10**9)
    probe.put((), "{ aa }", documents["aa"])
    cost = probe.bytes  # what one of these (equally long) queries counts
    assert cost > 0
    cache = DocumentCache(2 * cost)
    cache.put((), "{ aa }", documents["aa"])
    cache.put((), "{ bb }", documents["bb"])
    assert cache.get((), "{ aa }") is documents["aa"]  # aa is now the most recently used
    cache.put((), "{ cc }", documents["cc"])
    assert cache.get((), "{ bb }") is None
    assert cache.get((), "{ aa }") is documents["aa"]
    assert cache.get((), "{ cc }") is documents["cc"]
    assert cache.get(("another schema",), "{ aa }") is None
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes


def test_a_document_larger_than_the_whole_budget_is_not_kept() -> None:
    cache = DocumentCache(1000)
    query = "{ " + "a " * 1000 + "}"
    cache.put((), query, parse(query))
    assert cache.get((), query) is None
    assert len(cache) == 0 and cache.bytes == 0


def test_json_responses_are_utf8_and_survive_lone_surrogates() -> None:
    assert encode_json({"name": "Käse 🧀"}) == '{"name":"Käse 🧀"}'.encode()
    odd = {"message": "invalid id '\ud800'"}
    assert json.loads(encode_json(odd)) == odd


TAG = qpb.Schema(
    schema_id="tag_0020" + "ab" * 32,
    name="tag",
    fields=[qpb.SchemaField(name="name", kind=qpb.FIELD_KIND_STR)],
)
NOTE = qpb.Schema(
    schema_id="note_0020" + "cd" * 32,
    name="note",
    fields=[qpb.SchemaField(name="title", kind=qpb.FIELD_KIND_STR)],
)


class _SchemaList:
    """A query service stub answering ListSchemas with ``schemas``, held while ``gate`` is clear."""

    def __init__(self) -> None:
        self.schemas = [TAG]
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0

    async def ListSchemas(self, _request: Any, timeout: float) -> qpb.ListSchemasResponse:  # noqa: N802
        self.calls += 1
        await self.gate.wait()
        return qpb.ListSchemasResponse(schemas=self.schemas)


async def test_a_stale_schema_list_is_refreshed_in_the_background_without_holding_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query = _SchemaList()
    api = GraphQLApi(cast(Upstreams, SimpleNamespace(query=query)))
    first = await api.schema()
    assert query.calls == 1 and first.key == (TAG.schema_id,)
    monkeypatch.setattr(api_module, "SCHEMA_TTL", 0.0)  # every snapshot is stale from now on
    query.gate.clear()  # the query service is slow to answer
    query.schemas = [TAG, NOTE]
    same = await asyncio.wait_for(api.schema(), timeout=5)  # not held by the slow answer
    assert same is first and query.calls == 2
    query.gate.set()

    async def rebuilt() -> Snapshot | None:
        snapshot = await api.schema()
        return snapshot if snapshot.key == tuple(sorted((TAG.schema_id, NOTE.schema_id))) else None

    await eventually(rebuilt, what="the schema rebuilt with the new p2panda schema")
    fresh = await api.schema(fresh=True)  # asked for now: waits for the node's answer
    assert fresh.key == tuple(sorted((TAG.schema_id, NOTE.schema_id)))


class _Transport:
    """What a socket transport is asked to do."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_writes_of_one_turn_of_the_event_loop_leave_as_one() -> None:
    raw = _Transport()
    transport = _CoalescingTransport(cast(asyncio.Transport, raw))
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b'{"data":{}}')
    assert raw.writes == []
    await asyncio.sleep(0)  # one turn of the loop
    assert raw.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"data":{}}']
    transport.write(b"more")
    transport.close()  # what was written goes out before the close
    assert raw.writes[-1] == b"more" and raw.closed
    assert transport.get_extra_info("peername") == "info peername"
    other = _Transport()
    dropped = _CoalescingTransport(cast(asyncio.Transport, other))
    dropped.write(b"never sent")
    dropped.abort()
    await asyncio.sleep(0)
    assert other.writes == [] and other.aborted
