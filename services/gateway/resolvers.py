"""Resolvers: each GraphQL field as calls of the ingest and query services.

A request's resolvers share one :class:`RequestContext` (the upstream stubs, the known schemas
and the documents already fetched for this request). gRPC errors become GraphQL errors whose
message is the service's own (it names the problem).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from graphql import GraphQLError, GraphQLResolveInfo, get_named_type

from pandanode.ingest.v1 import ingest_pb2 as ipb
from pandanode.query.v1 import query_pb2 as qpb

from .filters import field_filters, meta_filters, order_by
from .scalars import check_hex, check_id, check_public_key, check_view_id
from .upstream import Upstreams

__all__ = [
    "Doc",
    "Page",
    "RequestContext",
    "plain_value",
    "resolve_collection",
    "resolve_document",
    "resolve_field",
    "resolve_next_args",
    "resolve_publish",
]

_T = TypeVar("_T")

# Largest page asked of the query service (its default max_page_size).
UPSTREAM_PAGE = 1000
# Most documents one collection page may ask for.
MAX_FIRST = 10_000
# Seconds a call to an upstream service may take.
CALL_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Doc:
    """A document as the source of ``S`` and ``SItem`` objects (``cursor`` for the latter)."""

    document: qpb.Document
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a collection: the source of ``SCollection``."""

    total_count: int
    has_next_page: bool
    end_cursor: str | None
    documents: list[Doc]


@dataclass(eq=False)
class RequestContext:
    """What the resolvers of one request share.

    Attributes:
        upstreams: The ingest and query stubs.
        kinds: Field kinds of every known schema, by schema id and field name.
        fetched: Documents fetched by id or view id during this request.
        metadata: Call metadata naming the HTTP client (``x-pandanode-client-address``) for
            the streams held for it (subscriptions), so per-client limits count the client.
    """

    upstreams: Upstreams
    kinds: Mapping[str, Mapping[str, qpb.FieldKind.ValueType]]
    fetched: dict[str, asyncio.Task[qpb.Document | None]] = field(default_factory=dict)
    metadata: tuple[tuple[str, str], ...] | None = None


def _context(info: GraphQLResolveInfo) -> RequestContext:
    context: RequestContext = info.context
    return context


async def _call(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except grpc.aio.AioRpcError as err:
        raise GraphQLError(err.details() or str(err.code())) from None


# -- ingest -------------------------------------------------------------------------------------


def _next_args(args: ipb.NextArguments) -> dict[str, Any]:
    return {
        "logId": str(args.log_id),
        "seqNum": str(args.seq_num),
        "backlink": args.backlink or None,
        "skiplink": args.skiplink or None,
    }


async def resolve_next_args(
    _root: Any,
    info: GraphQLResolveInfo,
    publicKey: Any,  # noqa: N803 - the argument's GraphQL name
    viewId: Any = None,  # noqa: N803
) -> dict[str, Any]:
    """``nextArgs(publicKey, viewId)``: the arguments of the author's next entry."""
    request = ipb.NextArgsRequest(
        public_key=check_public_key(publicKey),
        document_view_id=check_view_id(viewId) if viewId is not None else "",
    )
    ingest = _context(info).upstreams.ingest
    response = await _call(ingest.NextArgs(request, timeout=CALL_TIMEOUT))
    return _next_args(response.next_args)


async def resolve_publish(
    _root: Any, info: GraphQLResolveInfo, entry: Any, operation: Any
) -> dict[str, Any]:
    """``publish(entry, operation)``: publish through ingest; the next entry's arguments."""
    request = ipb.PublishRequest(
        entry=check_hex(entry, "entry"), operation=check_hex(operation, "operation")
    )
    ingest = _context(info).upstreams.ingest
    response = await _call(ingest.Publish(request, timeout=CALL_TIMEOUT))
    return _next_args(response.next_args)


# -- documents ----------------------------------------------------------------------------------


async def _get(context: RequestContext, *, document_id: str = "", view_id: str = "") -> Any:
    request = (
        qpb.GetDocumentRequest(document_id=document_id)
        if document_id
        else qpb.GetDocumentRequest(document_view_id=view_id)
    )
    try:
        response = await context.upstreams.query.GetDocument(request, timeout=CALL_TIMEOUT)
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise GraphQLError(err.details() or str(err.code())) from None
    document: qpb.Document = response.document
    return None if document.deleted else document


async def fetch(
    context: RequestContext, *, document_id: str = "", view_id: str = ""
) -> qpb.Document | None:
    """A live document by id (its current view) or by view id, once per request."""
    # A document's first view id is its id: the two kinds of lookup are kept apart.
    key = f"id:{document_id}" if document_id else f"view:{view_id}"
    task = context.fetched.get(key)
    if task is None:
        task = asyncio.ensure_future(_get(context, document_id=document_id, view_id=view_id))
        context.fetched[key] = task
    return await asyncio.shield(task)


async def resolve_document(
    _root: Any,
    info: GraphQLResolveInfo,
    id: Any = None,
    viewId: Any = None,  # noqa: N803
) -> Doc | None:
    """``S(id | viewId)``: the document, or null if unknown or deleted."""
    if id is None and viewId is None:
        raise GraphQLError("Must provide either `id` or `viewId` argument")
    if id is not None and viewId is not None:
        raise GraphQLError("Must only provide `id` or `viewId` argument")
    context = _context(info)
    if id is not None:
        document = await fetch(context, document_id=check_id(id))
    else:
        document = await fetch(context, view_id=check_view_id(viewId))
    if document is None or document.schema_id != get_named_type(info.return_type).name:
        return None
    return Doc(document)


_RELATION_KINDS = frozenset(
    ("relation", "pinned_relation", "relation_list", "pinned_relation_list")
)


def plain_value(name: str) -> Callable[[Doc], Any]:
    """The getter of a field of ``SFields`` that is not a relation: ``name``'s value.

    It raises ValueError on a relation value (the schema says otherwise): the ordinary
    resolver, :func:`resolve_field`, handles that.
    """

    def get(source: Doc) -> Any:
        value = source.document.fields.get(name)
        if value is None:
            return None
        kind = value.WhichOneof("value")
        if kind == "bytes_value":
            return value.bytes_value.hex()
        if kind in _RELATION_KINDS:
            raise ValueError(f"field {name!r} holds a relation")
        return getattr(value, kind) if kind else None

    return get


def resolve_field(source: Doc, info: GraphQLResolveInfo, **args: Any) -> Any:
    """One field of ``SFields``: a plain value, or a relation resolved to its document(s)."""
    value = source.document.fields.get(info.field_name)
    if value is None:
        return None
    kind = value.WhichOneof("value")
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "relation":
        return _related(_context(info), document_id=value.relation.document_id)
    if kind == "pinned_relation":
        return _related(_context(info), view_id=value.pinned_relation.document_view_id)
    if kind == "relation_list":
        ids = [item.document_id for item in value.relation_list.items]
        return _relation_list(info, ids, pinned=False, args=args)
    if kind == "pinned_relation_list":
        ids = [item.document_view_id for item in value.pinned_relation_list.items]
        return _relation_list(info, ids, pinned=True, args=args)
    return getattr(value, kind) if kind else None


async def _related(context: RequestContext, **key: str) -> Doc | None:
    document = await fetch(context, **key)
    return Doc(document) if document is not None else None


# -- collections --------------------------------------------------------------------------------


def _encode(kind: str, position: int, token: str = "") -> str:
    return base64.urlsafe_b64encode(f"{kind}{position}.{token}".encode()).decode().rstrip("=")


def _decode(cursor: Any, kind: str) -> tuple[int, str]:
    if not isinstance(cursor, str):
        raise GraphQLError("invalid cursor: expected a string")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position, _, token = text[len(kind) :].partition(".")
        if not text.startswith(kind) or not position.isdigit():
            raise ValueError(cursor)
    except (ValueError, UnicodeDecodeError):
        raise GraphQLError(f"invalid cursor {cursor[:80]!r}: not from this query") from None
    return int(position), token


def _first(first: Any) -> int:
    if not isinstance(first, int) or first < 1:
        raise GraphQLError("`first` must be at least 1")
    return min(first, MAX_FIRST)


def _list_request(
    info: GraphQLResolveInfo, schema_id: str, args: Mapping[str, Any], extra: list[qpb.Filter]
) -> qpb.ListDocumentsRequest:
    kinds = _context(info).kinds.get(schema_id, {})
    request = qpb.ListDocumentsRequest(schema_id=schema_id)
    request.filters.extend(field_filters(kinds, args.get("filter")))
    request.filters.extend(meta_filters(args.get("meta")))
    request.filters.extend(extra)
    order = order_by(args.get("orderBy"))
    if order is not None:
        request.order_by.CopyFrom(order)
    request.descending = args.get("orderDirection") == "DESC"
    return request


async def resolve_collection(_root: Any, info: GraphQLResolveInfo, **args: Any) -> Page:
    """``all_S(filter, meta, orderBy, orderDirection, first, after)``: one page."""
    schema_id = _collection_schema(info)
    request = _list_request(info, schema_id, args, [])
    return await _page(info, request, _first(args.get("first", 25)), args.get("after"))


def _collection_schema(info: GraphQLResolveInfo) -> str:
    name: str = get_named_type(info.return_type).name
    return name.removesuffix("Collection")


async def _page(
    info: GraphQLResolveInfo, request: qpb.ListDocumentsRequest, first: int, after: Any
) -> Page:
    """Documents ``first`` many after the cursor ``after``, asking the query service's pages.

    A cursor is the query service's page token plus how many documents of that page to skip.
    """
    skip, token = _decode(after, "P") if after is not None else (0, "")
    query = _context(info).upstreams.query
    collected: list[Doc] = []
    total = 0
    has_next = False
    while True:
        request.page_token = token
        request.page_size = min(UPSTREAM_PAGE, skip + first - len(collected))
        response = await _call(query.ListDocuments(request, timeout=CALL_TIMEOUT))
        total = response.total_size
        documents = response.documents
        following = response.next_page_token
        for index, document in enumerate(documents):
            if index < skip:
                continue
            if len(collected) == first:
                has_next = True
                break
            last = index == len(documents) - 1 and following
            cursor = _encode("P", 0, following) if last else _encode("P", index + 1, token)
            collected.append(Doc(document, cursor))
        skip = max(0, skip - len(documents))
        if has_next or not following:
            break
        if len(collected) == first:
            has_next = True
            break
        token = following
    end = collected[-1].cursor if collected else None
    return Page(total, has_next, end, collected)


async def _relation_list(
    info: GraphQLResolveInfo, ids: list[str], *, pinned: bool, args: Mapping[str, Any]
) -> Page:
    """A relation list field as a collection, with the arguments of ``all_T``.

    Without ``orderBy`` the list's own order is kept (duplicates included), as in aquadoggo;
    the query service tells which items are live and match the filters.
    """
    target = _collection_schema(info)
    meta = qpb.META_FIELD_DOCUMENT_VIEW_ID if pinned else qpb.META_FIELD_DOCUMENT_ID
    unique = list(dict.fromkeys(ids))
    if not unique:
        return Page(0, False, None, [])
    membership = qpb.Filter(
        meta=meta,
        operator=qpb.FILTER_OPERATOR_IN,
        values=[qpb.FilterValue(str_value=item) for item in unique],
    )
    request = _list_request(info, target, args, [membership])
    first = _first(args.get("first", 25))
    if args.get("orderBy") is not None:
        return await _page(info, request, first, args.get("after"))
    matching = await _all(info, request, pinned)
    if pinned and not args.get("filter") and not args.get("meta"):
        await _add_old_views(info, unique, matching)
    items = [item for item in ids if item in matching]
    start = _decode(args["after"], "L")[0] if args.get("after") is not None else 0
    chosen = items[start : start + first]
    documents = [
        Doc(matching[item], _encode("L", start + offset + 1)) for offset, item in enumerate(chosen)
    ]
    end = documents[-1].cursor if documents else None
    return Page(len(items), start + first < len(items), end, documents)


async def _all(
    info: GraphQLResolveInfo, request: qpb.ListDocumentsRequest, pinned: bool
) -> dict[str, qpb.Document]:
    query = _context(info).upstreams.query
    found: dict[str, qpb.Document] = {}
    request.page_size = UPSTREAM_PAGE
    while True:
        response = await _call(query.ListDocuments(request, timeout=CALL_TIMEOUT))
        for document in response.documents:
            found[document.document_view_id if pinned else document.document_id] = document
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


async def _add_old_views(
    info: GraphQLResolveInfo, view_ids: list[str], found: dict[str, qpb.Document]
) -> None:
    """Pinned views that are not current any more (the query service lists current views)."""
    context = _context(info)
    missing = [view_id for view_id in view_ids if view_id not in found]
    documents = await asyncio.gather(*(fetch(context, view_id=v) for v in missing))
    for view_id, document in zip(missing, documents, strict=True):
        if document is not None:
            found[view_id] = document
