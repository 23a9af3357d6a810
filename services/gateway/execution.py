"""A cheaper execution of the fields that only read their source.

graphql-core executes every field the same way: it builds a ``GraphQLResolveInfo``, coerces
the field's arguments, calls the resolver and completes the value through the general
non-null / list / leaf / object dispatch. A page of 25 documents has some 250 such fields, each
of which only reads an attribute of its source (a document's id, a field's value, a cursor):
that general machinery was most of a request's cost.

A field built with :func:`plain_field` carries a *getter* (source → value) in its extensions
besides its ordinary resolver. :class:`PlainFieldsExecutionContext` calls the getter directly for
such fields, serializes a leaf value or executes an object's sub-selection, and gives every
other case (an error, a null for a non-null type, a field without a getter, middleware) to
graphql-core's own code, so results and errors are those of the ordinary execution. One
difference is on purpose: a field flagged :data:`NULL_DESPITE_TYPE` may answer null though
its type is non-null, as in aquadoggo; so every execution of the gateway's schemas (queries,
mutations, subscription events) goes through this class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from graphql import (
    ExecutionContext,
    GraphQLField,
    GraphQLFieldResolver,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    Undefined,
    located_error,
)
from graphql.language import FieldNode
from graphql.pyutils import AwaitableOrValue, Path

__all__ = ["GETTER", "NULL_DESPITE_TYPE", "Getter", "PlainFieldsExecutionContext", "plain_field"]

Getter = Callable[[Any], Any]
"""Reads a field's value from its source alone (no arguments, no ``info``)."""

GETTER = "pandanode_getter"
"""The key of a field's getter in its ``extensions``."""

NULL_DESPITE_TYPE = "pandanode_null_despite_type"
"""The key of a flag in a field's ``extensions``: its type is non-null, yet null is answered.

aquadoggo 0.7 declares ``endCursor: String!`` and answers ``null`` without an error for an
empty page (async-graphql's dynamic schemas do not check it); apps and generated types see
both, so the gateway does the same for such fields.
"""


def plain_field(
    type_: GraphQLOutputType,
    getter: Getter,
    description: str | None = None,
    resolve: GraphQLFieldResolver | None = None,
    *,
    null_despite_type: bool = False,
) -> GraphQLField:
    """A field (without arguments) whose value is ``getter(source)``.

    ``resolve`` is the resolver of the ordinary execution (default: the getter). The getter
    may raise for a value it does not handle; the ordinary execution then resolves the field
    and reports the error as usual. With ``null_despite_type`` a null value of a non-null
    leaf type is answered as null (see :data:`NULL_DESPITE_TYPE`).
    """

    def resolve_by_getter(source: Any, _info: Any) -> Any:
        return getter(source)

    return GraphQLField(
        type_,
        resolve=resolve or resolve_by_getter,
        description=description,
        extensions={GETTER: getter, NULL_DESPITE_TYPE: null_despite_type},
    )


class PlainFieldsExecutionContext(ExecutionContext):
    """graphql-core's execution, with plain fields (:func:`plain_field`) read directly."""

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_nodes: list[FieldNode],
        path: Path,
    ) -> AwaitableOrValue[Any]:
        """Resolve a field: a plain one directly, any other as graphql-core does."""
        field_def = parent_type.fields.get(field_nodes[0].name.value)
        getter = field_def.extensions.get(GETTER) if field_def is not None else None
        if field_def is None or getter is None or self.middleware_manager is not None:
            return super().execute_field(parent_type, source, field_nodes, path)
        return_type = field_def.type
        non_null = type(return_type) is GraphQLNonNull
        named = return_type.of_type if non_null else return_type
        if isinstance(named, GraphQLScalarType):
            try:
                value = getter(source)
                if value is None:
                    if non_null and not field_def.extensions[NULL_DESPITE_TYPE]:
                        # the ordinary path raises the usual error
                        return super().execute_field(parent_type, source, field_nodes, path)
                    return None
                serialized = named.serialize(value)
            except Exception:
                return super().execute_field(parent_type, source, field_nodes, path)
            if serialized is None or serialized is Undefined:
                return super().execute_field(parent_type, source, field_nodes, path)
            return serialized
        if type(named) is not GraphQLObjectType or named.is_type_of is not None:
            return super().execute_field(parent_type, source, field_nodes, path)
        try:
            value = getter(source)
        except Exception:
            return super().execute_field(parent_type, source, field_nodes, path)
        if value is None:
            if non_null:
                return super().execute_field(parent_type, source, field_nodes, path)
            return None
        # What graphql-core's execute_field and complete_object_value do for an object value.
        try:
            completed = self.execute_fields(
                named, value, path, self.collect_subfields(named, field_nodes)
            )
        except Exception as raw_error:
            self.handle_field_error(
                located_error(raw_error, field_nodes, path.as_list()), return_type, path
            )
            return None
        if not self.is_awaitable(completed):
            return completed
        pending = cast(Awaitable[Any], completed)

        async def await_completed() -> Any:
            try:
                return await pending
            except Exception as raw_error:
                self.handle_field_error(
                    located_error(raw_error, field_nodes, path.as_list()), return_type, path
                )
                return None

        return await_completed()
