"""The GraphQL schema of aquadoggo 0.7's client API, built from the node's p2panda schemas.

Static part: ``nextArgs``, ``publish``, the scalars, ``DocumentMeta``, the filter inputs. For
every schema ``S`` (named by its id): the types ``S``, ``SFields``, ``SItem``, ``SCollection``,
``SFilter``, ``SOrderBy`` and the root fields ``S(id, viewId)`` and ``all_S(…)``.
"""

# graphql-core annotates GraphQLNamedType.__new__ as returning the base class, so pyright types
# every GraphQLObjectType(...), GraphQLScalarType(...) … as a plain GraphQLNamedType; mypy (strict)
# ignores that annotation and checks these arguments, returns and assignments.
# pyright: reportArgumentType=false, reportReturnType=false, reportAssignmentType=false

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)

from pandanode.query.v1 import query_pb2 as qpb

from . import resolvers
from .execution import plain_field
from .filters import META_ORDER
from .scalars import (
    CURSOR,
    DOCUMENT_ID,
    DOCUMENT_VIEW_ID,
    ENCODED_ENTRY,
    ENCODED_OPERATION,
    ENTRY_HASH,
    HEX_BYTES,
    INT64,
    LOG_ID,
    PUBLIC_KEY,
    SEQ_NUM,
)

__all__ = ["SchemaTypes", "SubscriptionFields", "build_schema", "field_kinds"]


def _nn(kind: Any) -> Any:
    return GraphQLNonNull(kind)


def _filter(
    name: str, operand: GraphQLInputType, operators: Sequence[str]
) -> GraphQLInputObjectType:
    fields = {
        op: GraphQLInputField(GraphQLList(_nn(operand)) if op in ("in", "notIn") else operand)
        for op in operators
    }
    return GraphQLInputObjectType(name, fields)


_EQ = ("eq", "notEq")
_SET = ("eq", "notEq", "in", "notIn")
_ORDERED = (*_SET, "gt", "gte", "lt", "lte")
_LIST = ("in", "notIn")

BOOLEAN_FILTER = _filter("BooleanFilter", GraphQLBoolean, _EQ)
INTEGER_FILTER = _filter("IntegerFilter", INT64, _ORDERED)
FLOAT_FILTER = _filter("FloatFilter", GraphQLFloat, _ORDERED)
STRING_FILTER = _filter("StringFilter", GraphQLString, (*_ORDERED, "contains", "notContains"))
HEX_BYTES_FILTER = _filter("HexBytesFilter", HEX_BYTES, _EQ)
RELATION_FILTER = _filter("RelationFilter", DOCUMENT_ID, _SET)
RELATION_LIST_FILTER = _filter("RelationListFilter", DOCUMENT_ID, _LIST)
PINNED_RELATION_FILTER = _filter("PinnedRelationFilter", DOCUMENT_VIEW_ID, _SET)
PINNED_RELATION_LIST_FILTER = _filter("PinnedRelationListFilter", DOCUMENT_VIEW_ID, _LIST)
META_FILTER = GraphQLInputObjectType(
    "MetaFilterInputObject",
    {
        "documentId": GraphQLInputField(_filter("DocumentIdFilter", DOCUMENT_ID, _SET)),
        "viewId": GraphQLInputField(_filter("DocumentViewIdFilter", DOCUMENT_VIEW_ID, _SET)),
        "owner": GraphQLInputField(_filter("OwnerFilter", PUBLIC_KEY, _SET)),
        "edited": GraphQLInputField(BOOLEAN_FILTER),
        "deleted": GraphQLInputField(BOOLEAN_FILTER),
    },
    description="Filter by the meta fields every document has.",
)
ORDER_DIRECTION = GraphQLEnumType(
    "OrderDirection", {"ASC": GraphQLEnumValue("ASC"), "DESC": GraphQLEnumValue("DESC")}
)
NEXT_ARGUMENTS = GraphQLObjectType(
    "NextArguments",
    {
        "logId": GraphQLField(_nn(LOG_ID)),
        "seqNum": GraphQLField(_nn(SEQ_NUM)),
        "backlink": GraphQLField(ENTRY_HASH),
        "skiplink": GraphQLField(ENTRY_HASH),
    },
    description="The arguments of an author's next entry.",
)
DOCUMENT_META = GraphQLObjectType(
    "DocumentMeta",
    {
        "documentId": plain_field(_nn(DOCUMENT_ID), attrgetter("document_id")),
        "viewId": plain_field(_nn(DOCUMENT_VIEW_ID), attrgetter("document_view_id")),
        "owner": plain_field(_nn(PUBLIC_KEY), attrgetter("owner")),
    },
    description="Meta fields of a document: its ids and the public key that created it.",
)

_FILTERS: Mapping[qpb.FieldKind.ValueType, GraphQLInputObjectType] = {
    qpb.FIELD_KIND_BOOL: BOOLEAN_FILTER,
    qpb.FIELD_KIND_INT: INTEGER_FILTER,
    qpb.FIELD_KIND_FLOAT: FLOAT_FILTER,
    qpb.FIELD_KIND_STR: STRING_FILTER,
    qpb.FIELD_KIND_BYTES: HEX_BYTES_FILTER,
    qpb.FIELD_KIND_RELATION: RELATION_FILTER,
    qpb.FIELD_KIND_RELATION_LIST: RELATION_LIST_FILTER,
    qpb.FIELD_KIND_PINNED_RELATION: PINNED_RELATION_FILTER,
    qpb.FIELD_KIND_PINNED_RELATION_LIST: PINNED_RELATION_LIST_FILTER,
}
_PLAIN: Mapping[qpb.FieldKind.ValueType, GraphQLOutputType] = {
    qpb.FIELD_KIND_BOOL: GraphQLBoolean,
    qpb.FIELD_KIND_INT: INT64,
    qpb.FIELD_KIND_FLOAT: GraphQLFloat,
    qpb.FIELD_KIND_STR: GraphQLString,
    qpb.FIELD_KIND_BYTES: HEX_BYTES,
}
_RELATIONS = (qpb.FIELD_KIND_RELATION, qpb.FIELD_KIND_PINNED_RELATION)
_LISTS = (qpb.FIELD_KIND_RELATION_LIST, qpb.FIELD_KIND_PINNED_RELATION_LIST)


def field_kinds(
    schemas: Sequence[qpb.Schema],
) -> dict[str, dict[str, qpb.FieldKind.ValueType]]:
    """The kind of every field, by schema id and field name."""
    return {s.schema_id: {f.name: f.kind for f in s.fields} for s in schemas}


class SchemaTypes:
    """The GraphQL types built for every p2panda schema, by schema id.

    Attributes:
        schemas: The p2panda schemas.
        documents: ``S`` (fields and meta of a document).
        collections: ``SCollection`` (a page of documents).
        filters: ``SFilter`` (the ``filter`` argument).
        orders: ``SOrderBy`` (the ``orderBy`` argument).
    """

    def __init__(self, schemas: Sequence[qpb.Schema]) -> None:
        self.schemas = {schema.schema_id: schema for schema in schemas}
        self.documents: dict[str, GraphQLObjectType] = {}
        self.collections: dict[str, GraphQLObjectType] = {}
        self.filters: dict[str, GraphQLInputObjectType] = {}
        self.orders: dict[str, GraphQLEnumType] = {}
        for schema_id in self.schemas:
            self._declare(schema_id)

    def _usable(self, field: qpb.SchemaField) -> bool:
        # A relation to a schema the node does not know cannot be typed (aquadoggo would not
        # know this schema at all); such a field is left out.
        return field.kind not in (*_RELATIONS, *_LISTS) or field.target_schema_id in self.schemas

    def _declare(self, schema_id: str) -> None:
        schema = self.schemas[schema_id]
        fields = [f for f in schema.fields if self._usable(f)]
        description = schema.description or schema.name
        self.filters[schema_id] = GraphQLInputObjectType(
            f"{schema_id}Filter",
            lambda: {f.name: GraphQLInputField(_FILTERS[f.kind]) for f in fields},
        )
        self.orders[schema_id] = GraphQLEnumType(
            f"{schema_id}OrderBy",
            {
                **{name: GraphQLEnumValue(name) for name in META_ORDER},
                **{f.name: GraphQLEnumValue(f.name) for f in fields},
            },
        )
        fields_type = GraphQLObjectType(
            f"{schema_id}Fields", lambda: {f.name: self._field(f) for f in fields}
        )
        document_fields = {
            "meta": plain_field(DOCUMENT_META, _meta),
            "fields": plain_field(fields_type, _itself),
        }
        self.documents[schema_id] = GraphQLObjectType(
            schema_id, document_fields, description=description
        )
        item = GraphQLObjectType(
            f"{schema_id}Item",
            {**document_fields, "cursor": plain_field(GraphQLString, _cursor)},
        )
        self.collections[schema_id] = GraphQLObjectType(
            f"{schema_id}Collection",
            {
                "totalCount": plain_field(_nn(INT64), attrgetter("total_count")),
                "hasNextPage": plain_field(_nn(GraphQLBoolean), attrgetter("has_next_page")),
                # `String!` as in aquadoggo, which answers null for an empty page all the same.
                "endCursor": plain_field(
                    _nn(GraphQLString), attrgetter("end_cursor"), null_despite_type=True
                ),
                "documents": plain_field(_nn(GraphQLList(_nn(item))), attrgetter("documents")),
            },
            description=f"A page of `{schema.name}` documents.",
        )

    def collection_arguments(self, schema_id: str, *, root: bool) -> dict[str, GraphQLArgument]:
        """The arguments of ``all_S`` (``root``) and of relation list fields."""
        return {
            "filter": GraphQLArgument(self.filters[schema_id]),
            "meta": GraphQLArgument(META_FILTER),
            # A relation list keeps its own order unless asked for another.
            "orderBy": GraphQLArgument(
                self.orders[schema_id], default_value="DOCUMENT_ID" if root else None
            ),
            "orderDirection": GraphQLArgument(ORDER_DIRECTION, default_value="ASC"),
            "first": GraphQLArgument(INT64, default_value=25),
            "after": GraphQLArgument(CURSOR),
        }

    def _field(self, field: qpb.SchemaField) -> GraphQLField:
        if field.kind in _PLAIN:
            return plain_field(
                _PLAIN[field.kind],
                resolvers.plain_value(field.name),
                resolve=resolvers.resolve_field,
            )
        target = field.target_schema_id
        if field.kind in _RELATIONS:
            return GraphQLField(self.documents[target], resolve=resolvers.resolve_field)
        return GraphQLField(
            self.collections[target],
            args=self.collection_arguments(target, root=False),
            resolve=resolvers.resolve_field,
        )


SubscriptionFields = Callable[[SchemaTypes], Mapping[str, GraphQLField]]
"""Makes the fields of the ``SubscriptionRoot`` from the types built for the schemas."""


def build_schema(
    schemas: Sequence[qpb.Schema], subscriptions: SubscriptionFields | None = None
) -> GraphQLSchema:
    """The GraphQL schema for the node's p2panda ``schemas`` (with ``subscriptions``, if any)."""
    builder = SchemaTypes(schemas)
    query: dict[str, GraphQLField] = {
        "nextArgs": GraphQLField(
            NEXT_ARGUMENTS,
            args={
                "publicKey": GraphQLArgument(_nn(PUBLIC_KEY)),
                "viewId": GraphQLArgument(DOCUMENT_VIEW_ID),
            },
            resolve=resolvers.resolve_next_args,
            description="The arguments of the next entry of a public key (in a document).",
        ),
    }
    for schema_id in sorted(builder.schemas):
        query[schema_id] = GraphQLField(
            builder.documents[schema_id],
            args={"id": GraphQLArgument(DOCUMENT_ID), "viewId": GraphQLArgument(DOCUMENT_VIEW_ID)},
            resolve=resolvers.resolve_document,
            description="A document by id (its current view) or by view id.",
        )
        query[f"all_{schema_id}"] = GraphQLField(
            _nn(builder.collections[schema_id]),
            args=builder.collection_arguments(schema_id, root=True),
            resolve=resolvers.resolve_collection,
            description="A page of documents, filtered and ordered.",
        )
    mutation = GraphQLObjectType(
        "MutationRoot",
        {
            "publish": GraphQLField(
                _nn(NEXT_ARGUMENTS),
                args={
                    "entry": GraphQLArgument(_nn(ENCODED_ENTRY)),
                    "operation": GraphQLArgument(_nn(ENCODED_OPERATION)),
                },
                resolve=resolvers.resolve_publish,
                description="Publish a signed entry and its operation.",
            )
        },
    )
    subscription_fields = subscriptions(builder) if subscriptions is not None else {}
    return GraphQLSchema(
        query=GraphQLObjectType("QueryRoot", query),
        mutation=mutation,
        subscription=(
            GraphQLObjectType("SubscriptionRoot", dict(subscription_fields))
            if subscription_fields
            else None
        ),
        types=[INT64, *builder.documents.values()],
    )


def _meta(source: resolvers.Doc) -> qpb.Document:
    return source.document


def _itself(source: resolvers.Doc) -> resolvers.Doc:
    return source


def _cursor(source: resolvers.Doc) -> str | None:
    return source.cursor
