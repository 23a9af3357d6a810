"""GraphQL reads through the gateway, written as apps write them, against a real node."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pandanode.client import Client
from tests.services.gateway.helpers import BIG, Catalog, data, graphql
from tests.services.support import eventually


async def titles(
    http: httpx.AsyncClient, catalog: Catalog, arguments: str, variables: Any = None
) -> list[str]:
    query = f"""query Items{_declared(variables)} {{
        all_{catalog.item}{arguments} {{ documents {{ fields {{ title }} }} }}
    }}"""
    result = await data(http, query, variables)
    return [d["fields"]["title"] for d in result[f"all_{catalog.item}"]["documents"]]


def _declared(variables: Any) -> str:
    if not variables:
        return ""
    return "(" + ", ".join(f"${name}: {kind}" for name, (kind, _) in variables.items()) + ")"


async def check_filters(
    http: httpx.AsyncClient, catalog: Catalog, cases: list[tuple[str, set[str]]]
) -> None:
    for arguments, expected in cases:
        found = await titles(http, catalog, f"(filter: {{{arguments}}}, first: 100)")
        assert set(found) == expected, f"filter {{{arguments}}}"


async def test_string_filters_cover_every_operator(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    await check_filters(
        http,
        catalog,
        [
            ('title: {eq: "b"}', {"b"}),
            ('title: {notEq: "b"}', {"a", "c", "d", "e"}),
            ('title: {in: ["a", "e"]}', {"a", "e"}),
            ('title: {notIn: ["a", "e"]}', {"b", "c", "d"}),
            ('title: {gt: "c"}', {"d", "e"}),
            ('title: {gte: "c"}', {"c", "d", "e"}),
            ('title: {lt: "c"}', {"a", "b"}),
            ('title: {lte: "c"}', {"a", "b", "c"}),
            ('title: {contains: "d"}', {"d"}),
            ('title: {notContains: "d"}', {"a", "b", "c", "e"}),
            ('title: {gt: "a", lt: "e"}', {"b", "c", "d"}),
        ],
    )


async def test_integer_filters_cover_every_operator_beyond_32_bits(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    await check_filters(
        http,
        catalog,
        [
            ("count: {eq: 2}", {"b"}),
            (f"count: {{eq: {BIG}}}", {"c"}),
            ("count: {notEq: 2}", {"a", "c", "d", "e"}),
            (f"count: {{in: [1, {BIG}]}}", {"a", "c"}),
            ("count: {notIn: [1, 2]}", {"c", "d", "e"}),
            ("count: {gt: 2}", {"c", "e"}),
            (f"count: {{gte: {BIG}}}", {"c"}),
            ("count: {lt: 1}", {"d"}),
            ("count: {lte: 2}", {"a", "b", "d"}),
            (f"count: {{gt: {2**32}}}", {"c"}),
        ],
    )


async def test_float_filters_cover_every_operator(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    await check_filters(
        http,
        catalog,
        [
            ("rating: {eq: 1.5}", {"b", "e"}),
            ("rating: {notEq: 1.5}", {"a", "c", "d"}),
            ("rating: {in: [0.5, 2.5]}", {"a", "c"}),
            ("rating: {notIn: [0.5, 2.5]}", {"b", "d", "e"}),
            ("rating: {gt: 1.5}", {"c"}),
            ("rating: {gte: 1.5}", {"b", "c", "e"}),
            ("rating: {lt: 0.5}", {"d"}),
            ("rating: {lte: 0.5}", {"a", "d"}),
        ],
    )


async def test_boolean_and_bytes_filters_cover_every_operator(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    await check_filters(
        http,
        catalog,
        [
            ("flag: {eq: true}", {"a", "c", "e"}),
            ("flag: {notEq: true}", {"b", "d"}),
            ('blob: {eq: "03"}', {"c"}),
            ('blob: {notEq: "03"}', {"a", "b", "d", "e"}),
        ],
    )


async def test_relation_filters_cover_every_operator(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    x, y, z = (catalog.tags[name] for name in ("x", "y", "z"))
    await check_filters(
        http,
        catalog,
        [
            (f'main: {{eq: "{x.document_id}"}}', {"a", "d"}),
            (f'main: {{notEq: "{x.document_id}"}}', {"b", "c", "e"}),
            (f'main: {{in: ["{y.document_id}", "{z.document_id}"]}}', {"b", "c", "e"}),
            (f'main: {{notIn: ["{y.document_id}", "{z.document_id}"]}}', {"a", "d"}),
            (f'pin: {{eq: "{z.view_id}"}}', {"c"}),
            (f'pin: {{notEq: "{z.view_id}"}}', {"a", "b", "d", "e"}),
            (f'pin: {{in: ["{y.view_id}"]}}', {"b", "e"}),
            (f'pin: {{notIn: ["{y.view_id}"]}}', {"a", "c", "d"}),
            (f'tags: {{in: ["{z.document_id}"]}}', {"c"}),
            (f'tags: {{in: ["{y.document_id}", "{z.document_id}"]}}', {"a", "b", "c"}),
            (f'tags: {{notIn: ["{x.document_id}"]}}', {"b", "d"}),
            (f'pins: {{in: ["{y.view_id}"]}}', {"a", "b"}),
            (f'pins: {{notIn: ["{x.view_id}"]}}', {"b", "d"}),
        ],
    )


async def test_meta_filters_on_ids_and_owner(
    http: httpx.AsyncClient, catalog: Catalog, client: Client
) -> None:
    a, b = catalog.items["a"], catalog.items["b"]
    owner = a.public_key
    cases = [
        (f'documentId: {{eq: "{a.document_id}"}}', {"a"}),
        (f'documentId: {{in: ["{a.document_id}", "{b.document_id}"]}}', {"a", "b"}),
        (f'documentId: {{notIn: ["{a.document_id}"]}}', {"b", "c", "d", "e"}),
        (f'viewId: {{eq: "{b.view_id}"}}', {"b"}),
        (f'viewId: {{notEq: "{b.view_id}"}}', {"a", "c", "d", "e"}),
        (f'owner: {{eq: "{owner}"}}', {"a", "b", "c", "d", "e"}),
        (f'owner: {{notEq: "{owner}"}}', set()),
        ("edited: {eq: false}", {"a", "b", "c", "d", "e"}),
    ]
    for arguments, expected in cases:
        found = await titles(http, catalog, f"(meta: {{{arguments}}})")
        assert set(found) == expected, f"meta {{{arguments}}}"
    await client.update(catalog.items["e"], {"title": "e2"})
    assert await eventually(
        lambda: _equal(titles(http, catalog, "(meta: {edited: {eq: true}})"), ["e2"]),
        what="the edited document",
    )


async def _equal(found: Any, expected: list[str]) -> bool:
    return bool(await found == expected)


@pytest.mark.parametrize(
    ("order", "direction", "expected"),
    [
        ("count", "ASC", ["d", "a", "b", "e", "c"]),
        ("count", "DESC", ["c", "e", "b", "a", "d"]),
        ("title", "DESC", ["e", "d", "c", "b", "a"]),
        ("rating", "ASC", ["d", "a", "b", "e", "c"]),
    ],
)
async def test_pages_through_first_and_after_concatenate_to_the_full_ordered_list(
    http: httpx.AsyncClient, catalog: Catalog, order: str, direction: str, expected: list[str]
) -> None:
    query = f"""query Page($after: Cursor) {{
        all_{catalog.item}(orderBy: {order}, orderDirection: {direction}, first: 2,
                           after: $after) {{
            totalCount hasNextPage endCursor
            documents {{ cursor fields {{ title }} }}
        }}
    }}"""
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (await data(http, query, {"after": after}))[f"all_{catalog.item}"]
        assert page["totalCount"] == 5
        seen.extend(d["fields"]["title"] for d in page["documents"])
        pages += 1
        if not page["hasNextPage"]:
            break
        assert page["endCursor"] == page["documents"][-1]["cursor"]
        after = page["endCursor"]
    assert seen[: len(expected)] == expected if order != "rating" else True
    if order == "rating":  # b and e tie on 1.5: ties are broken by document id
        assert seen[0:2] == ["d", "a"] and seen[4] == "c" and set(seen[2:4]) == {"b", "e"}
    assert pages == 3


async def test_a_documents_cursor_continues_after_that_document(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    query = f"""query Page($after: Cursor, $first: Int) {{
        all_{catalog.item}(orderBy: count, first: $first, after: $after) {{
            hasNextPage endCursor documents {{ cursor fields {{ title }} }}
        }}
    }}"""
    documents: list[dict[str, Any]] = []
    after = None
    while True:  # pages of 2: cursors from the first page and from later ones
        page = (await data(http, query, {"first": 2, "after": after}))[f"all_{catalog.item}"]
        documents.extend(page["documents"])
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    titles_in_order = [d["fields"]["title"] for d in documents]
    assert titles_in_order == ["d", "a", "b", "e", "c"]
    for index, document in enumerate(documents):
        rest = await data(http, query, {"first": 3, "after": document["cursor"]})
        found = [d["fields"]["title"] for d in rest[f"all_{catalog.item}"]["documents"]]
        assert found == titles_in_order[index + 1 : index + 4], index


async def test_end_cursor_is_declared_non_null_yet_null_for_an_empty_page_as_in_aquadoggo(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    # aquadoggo 0.7 declares `endCursor: String!` and answers null, without an error, for a
    # page without documents (its collection_query test expects exactly that).
    introspection = await data(
        http,
        f"""{{ __type(name: "{catalog.item}Collection") {{
            fields {{ name type {{ kind ofType {{ name }} }} }}
        }} }}""",
    )
    kinds = {f["name"]: f["type"] for f in introspection["__type"]["fields"]}
    assert kinds["endCursor"] == {"kind": "NON_NULL", "ofType": {"name": "String"}}
    query = f"""{{
        none: all_{catalog.item}(filter: {{title: {{eq: "no such title"}}}}) {{
            totalCount hasNextPage endCursor documents {{ cursor }}
        }}
        past: all_{catalog.item}(first: 5) {{ endCursor }}
        {catalog.item}(id: "{catalog.items["d"].document_id}") {{ fields {{
            tags {{ totalCount hasNextPage endCursor }}
            pins {{ endCursor }}
        }} }}
    }}"""
    result = await graphql(http, query)
    assert "errors" not in result, result["errors"]
    empty: dict[str, Any] = {
        "totalCount": 0,
        "hasNextPage": False,
        "endCursor": None,
        "documents": [],
    }
    assert result["data"]["none"] == empty
    last = result["data"]["past"]["endCursor"]
    assert isinstance(last, str) and last
    after = await graphql(
        http, f'{{ all_{catalog.item}(after: "{last}") {{ endCursor documents {{ cursor }} }} }}'
    )
    assert after == {"data": {f"all_{catalog.item}": {"endCursor": None, "documents": []}}}
    fields = result["data"][catalog.item]["fields"]  # d's relation lists are empty
    assert fields == {
        "tags": {"totalCount": 0, "hasNextPage": False, "endCursor": None},
        "pins": {"endCursor": None},
    }


async def test_default_order_is_by_document_id(http: httpx.AsyncClient, catalog: Catalog) -> None:
    query = f"{{ all_{catalog.item} {{ documents {{ meta {{ documentId }} }} }} }}"
    documents = (await data(http, query))[f"all_{catalog.item}"]["documents"]
    ids = [d["meta"]["documentId"] for d in documents]
    assert ids == sorted(item.document_id for item in catalog.items.values())


async def test_fields_of_every_type_and_64_bit_ints_round_trip(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    c = catalog.items["c"]
    query = f"""query One($id: DocumentId!) {{
        {catalog.item}(id: $id) {{
            meta {{ documentId viewId owner }}
            fields {{ title count rating flag blob main {{ fields {{ name }} }}
                      pin {{ meta {{ viewId }} fields {{ name }} }} }}
        }}
    }}"""
    document = (await data(http, query, {"id": c.document_id}))[catalog.item]
    assert document["meta"] == {
        "documentId": c.document_id,
        "viewId": c.view_id,
        "owner": c.public_key,
    }
    assert document["fields"] == {
        "title": "c",
        "count": BIG,
        "rating": 2.5,
        "flag": True,
        "blob": "03",
        "main": {"fields": {"name": "z"}},
        "pin": {"meta": {"viewId": catalog.tags["z"].view_id}, "fields": {"name": "z"}},
    }


async def test_relation_lists_are_collections_in_list_order_with_paging(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    query = f"""query Lists($id: DocumentId!, $after: Cursor) {{
        {catalog.item}(id: $id) {{ fields {{
            tags(first: 2, after: $after) {{
                totalCount hasNextPage endCursor documents {{ fields {{ name }} }}
            }}
            pins {{ totalCount documents {{ meta {{ viewId }} fields {{ name }} }} }}
            sorted: tags(orderBy: name, orderDirection: DESC) {{
                documents {{ fields {{ name }} }}
            }}
            filtered: tags(filter: {{name: {{eq: "z"}}}}) {{
                totalCount documents {{ fields {{ name }} }}
            }}
        }} }}
    }}"""
    variables: dict[str, Any] = {"id": catalog.items["c"].document_id}
    fields = (await data(http, query, variables))[catalog.item]["fields"]
    first = fields["tags"]
    assert first["totalCount"] == 3 and first["hasNextPage"]
    assert [d["fields"]["name"] for d in first["documents"]] == ["z", "x"]
    rest = (await data(http, query, {**variables, "after": first["endCursor"]}))[catalog.item]
    second = rest["fields"]["tags"]
    assert [d["fields"]["name"] for d in second["documents"]] == ["z"]
    assert not second["hasNextPage"]
    assert [d["fields"]["name"] for d in fields["pins"]["documents"]] == ["z", "x", "z"]
    assert [d["fields"]["name"] for d in fields["sorted"]["documents"]] == ["z", "x"]
    assert fields["filtered"]["totalCount"] == 2
    assert [d["fields"]["name"] for d in fields["filtered"]["documents"]] == ["z", "z"]


async def test_an_old_view_is_read_by_view_id_and_the_id_gives_the_current_one(
    http: httpx.AsyncClient, catalog: Catalog, client: Client
) -> None:
    a = catalog.items["a"]
    updated = await client.update(a, {"title": "a2", "count": -(2**50)})
    await client.get_document(a.document_id, after=updated)
    query = f"""query Views($id: DocumentId, $viewId: DocumentViewId) {{
        {catalog.item}(id: $id, viewId: $viewId) {{ meta {{ viewId }} fields {{ title count }} }}
    }}"""
    current = (await data(http, query, {"id": a.document_id}))[catalog.item]
    assert current == {
        "meta": {"viewId": updated.view_id},
        "fields": {"title": "a2", "count": -(2**50)},
    }
    old = (await data(http, query, {"viewId": a.view_id}))[catalog.item]
    assert old == {"meta": {"viewId": a.view_id}, "fields": {"title": "a", "count": 1}}


async def test_deleted_documents_are_hidden_unless_meta_deleted_asks(
    http: httpx.AsyncClient, catalog: Catalog, client: Client
) -> None:
    b = catalog.items["b"]
    deleted = await client.delete(b)
    await client.get_document(b.document_id, after=deleted)
    assert "b" not in await titles(http, catalog, "")
    # A deleted document has no fields any more.
    assert await titles(http, catalog, "(meta: {deleted: {eq: true}})") == [None]
    query = f"""query Deleted {{
        all_{catalog.item}(meta: {{deleted: {{eq: true}}}}) {{
            totalCount documents {{ meta {{ documentId }} }}
        }}
        {catalog.item}(id: "{b.document_id}") {{ meta {{ documentId }} }}
    }}"""
    result = await data(http, query)
    collection = result[f"all_{catalog.item}"]
    assert collection["totalCount"] == 1
    assert collection["documents"] == [{"meta": {"documentId": b.document_id}}]
    assert result[catalog.item] is None


async def test_an_unknown_document_is_null(http: httpx.AsyncClient, catalog: Catalog) -> None:
    unknown = "0020" + "ab" * 32
    result = await data(http, f'{{ {catalog.item}(id: "{unknown}") {{ meta {{ documentId }} }} }}')
    assert result == {catalog.item: None}


async def test_a_document_query_needs_exactly_one_of_id_and_view_id(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    a = catalog.items["a"]
    neither = await graphql(http, f"{{ {catalog.item} {{ meta {{ documentId }} }} }}")
    assert "Must provide either `id` or `viewId`" in neither["errors"][0]["message"]
    arguments = f'id: "{a.document_id}", viewId: "{a.view_id}"'
    both = await graphql(http, f"{{ {catalog.item}({arguments}) {{ meta {{ viewId }} }} }}")
    assert "Must only provide `id` or `viewId`" in both["errors"][0]["message"]


async def test_variables_declared_as_strings_are_accepted_for_custom_scalars(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    a = catalog.items["a"]
    query = f"""query Strings($id: String!, $view: String, $after: String, $owner: String!) {{
        byId: {catalog.item}(id: $id) {{ fields {{ title }} }}
        byView: {catalog.item}(viewId: $view) {{ fields {{ title }} }}
        all_{catalog.item}(after: $after, meta: {{owner: {{eq: $owner}}}}) {{ totalCount }}
    }}"""
    variables = {"id": a.document_id, "view": a.view_id, "after": None, "owner": a.public_key}
    result = await data(http, query, variables)
    assert result["byId"] == result["byView"] == {"fields": {"title": "a"}}
    assert result[f"all_{catalog.item}"]["totalCount"] == 5


async def test_int_variables_beyond_32_bits_filter(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    query = f"""query Q($min: Int!) {{
        all_{catalog.item}(filter: {{count: {{gte: $min}}}}) {{
            totalCount documents {{ fields {{ title count }} }}
        }}
    }}"""
    result = (await data(http, query, {"min": BIG}))[f"all_{catalog.item}"]
    assert result == {"totalCount": 1, "documents": [{"fields": {"title": "c", "count": BIG}}]}


async def test_bad_arguments_are_graphql_errors_naming_the_problem(
    http: httpx.AsyncClient, catalog: Catalog
) -> None:
    item, every = catalog.item, f"all_{catalog.item}"
    cases = {
        f'{{ {item}(id: "nothex") {{ meta {{ viewId }} }} }}': "invalid document id",
        f"query Q($id: String!) {{ {item}(id: $id) {{ meta {{ viewId }} }} }}": "invalid document",
        f"{{ {every}(first: 0) {{ totalCount }} }}": "`first` must be at least 1",
        f'{{ {every}(after: "garbage") {{ totalCount }} }}': "invalid cursor",
        f'{{ {every}(filter: {{blob: {{eq: "xyz"}}}}) {{ totalCount }} }}': "invalid bytes",
        f"{{ {every}(filter: {{count: {{eq: {2**64}}}}}) {{ totalCount }} }}": "64 bits",
        f"{{ {every} {{ nope }} }}": "Cannot query field 'nope'",
    }
    for query, problem in cases.items():
        result = await graphql(http, query, {"id": "nothex"} if "$id" in query else None)
        assert problem in result["errors"][0]["message"], (query, result)


async def test_a_schema_published_after_start_is_queryable_without_restart(
    http: httpx.AsyncClient, client: Client
) -> None:
    before = await graphql(http, "{ __schema { queryType { fields { name } } } }")
    names = {f["name"] for f in before["data"]["__schema"]["queryType"]["fields"]}
    assert "all_schema_definition_v1" in names and "nextArgs" in names
    late = await client.create_schema("late", "Added later", {"n": "int"})
    created = await client.create(late, {"n": 7})
    await client.get_document(created.document_id, after=created)
    result = await data(http, f"{{ all_{late} {{ documents {{ fields {{ n }} }} }} }}")
    assert result[f"all_{late}"]["documents"] == [{"fields": {"n": 7}}]


async def test_pinned_relations_keep_their_view_after_the_target_is_updated(
    http: httpx.AsyncClient, catalog: Catalog, client: Client
) -> None:
    x = catalog.tags["x"]
    renamed = await client.update(x, {"name": "x2"})
    await client.get_document(x.document_id, after=renamed)
    query = f"""query Pins($id: DocumentId!) {{
        {catalog.item}(id: $id) {{ fields {{
            main {{ fields {{ name }} }}
            pin {{ meta {{ viewId }} fields {{ name }} }}
            pins {{ totalCount documents {{ meta {{ viewId }} fields {{ name }} }} }}
        }} }}
    }}"""
    fields = (await data(http, query, {"id": catalog.items["a"].document_id}))[catalog.item][
        "fields"
    ]
    assert fields["main"] == {"fields": {"name": "x2"}}  # a relation follows the document
    assert fields["pin"] == {"meta": {"viewId": x.view_id}, "fields": {"name": "x"}}
    assert fields["pins"]["totalCount"] == 2
    assert [(d["meta"]["viewId"], d["fields"]["name"]) for d in fields["pins"]["documents"]] == [
        (x.view_id, "x"),
        (catalog.tags["y"].view_id, "y"),
    ]
