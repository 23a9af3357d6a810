"""A cheaper execution of the fields that only read their source.

graphql-core executes every field the same way: it builds a ``GraphQLResolveInfo``, coerces
the field's arguments, calls the resolver and completes the value through the general
non-null / list / leaf / object dispatch. A page of 25 documents has some 250 such fields, each
of which only reads an attribute of its source (a document's id, a field's value, a cursor):
that general machinery was most of a request's cost.

A field built with :func:`plain_field` carries a :class:`Plain` (its getter, source → value,
and its type worked out) in its extensions besides its ordinary resolver.
:class:`PlainFieldsExecutionContext` calls the getter directly for such fields, serializes a
scalar or executes the sub-selection of an object (or of each object of a list), and leaves
every other case (an error, a null for a non-null type, a field without a getter, middleware)
to graphql-core's own code before anything of it ran, so results and errors are those of the
ordinary execution. One difference is on purpose: a field flagged ``null_despite_type`` may
answer null though its type is non-null, as in aquadoggo; so every execution of the gateway's
schemas (queries, mutations, subscription events) goes through this class.
"""

from __future__ import annotations

from asyncio import gather
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from graphql import (
    ExecutionContext,
    GraphQLField,
    GraphQLFieldResolver,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    Undefined,
    located_error,
)
from graphql.language import FieldNode
from graphql.pyutils import AwaitableOrValue, Path

__all__ = ["PLAIN", "Getter", "Plain", "PlainFieldsExecutionContext", "plain_field"]

Getter = Callable[[Any], Any]
"""Reads a field's value from its source alone (no arguments, no ``info``)."""

PLAIN = "pandanode_plain"
"""The key of a field's :class:`Plain` in its ``extensions``."""


@dataclass(frozen=True, slots=True)
class Plain:
    """How to execute a plain field, worked out once when the field is made.

    Attributes:
        getter: Reads the value from the source.
        non_null: Whether the field's type is non-null.
        leaf: The scalar type of a scalar field.
        object: The object type of an object field, or of the items of a list of non-null
            objects.
        is_list: Whether the field is such a list.
        null_despite_type: A null value of a non-null scalar field is answered as null, without
            an error. aquadoggo 0.7 declares ``endCursor: String!`` and answers null for an
            empty page (async-graphql's dynamic schemas do not check it); apps and generated
            types see both, so the gateway does the same.
    """

    getter: Getter
    non_null: bool
    leaf: GraphQLScalarType | None
    object: GraphQLObjectType | None
    is_list: bool
    null_despite_type: bool


def _plan(type_: GraphQLOutputType, getter: Getter, null_despite_type: bool) -> Plain:
    non_null = isinstance(type_, GraphQLNonNull)
    named: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    is_list = False
    if isinstance(named, GraphQLList) and isinstance(named.of_type, GraphQLNonNull):
        is_list = True
        named = named.of_type.of_type
    leaf = named if isinstance(named, GraphQLScalarType) and not is_list else None
    obj = named if type(named) is GraphQLObjectType and named.is_type_of is None else None
    if null_despite_type and (leaf is None or not non_null):
        raise ValueError("only a non-null scalar field may answer null despite its type")
    return Plain(getter, non_null, leaf, obj, is_list, null_despite_type)


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
    and reports the error as usual. ``null_despite_type``: see :class:`Plain`.
    """

    def resolve_by_getter(source: Any, _info: Any) -> Any:
        return getter(source)

    return GraphQLField(
        type_,
        resolve=resolve or resolve_by_getter,
        description=description,
        extensions={PLAIN: _plan(type_, getter, null_despite_type)},
    )


class _OrdinaryError(Exception):
    """This value is left to graphql-core's own execution (before anything of it ran)."""


class PlainFieldsExecutionContext(ExecutionContext):
    """graphql-core's execution, with plain fields (:func:`plain_field`) read directly."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        fields: dict[str, list[FieldNode]],
    ) -> AwaitableOrValue[dict[str, Any]]:
        """Execute the fields of an object: plain scalars inline, the others one by one.

        graphql-core's ``execute_fields`` with plain scalar fields serialized right here (no
        path, no call); whatever is not that simple goes to :meth:`execute_field`.
        """
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        definitions = parent_type.fields
        ordinary_only = self.middleware_manager is not None
        for response_name, field_nodes in fields.items():
            field_def = definitions.get(field_nodes[0].name.value)
            plain = field_def.extensions.get(PLAIN) if field_def is not None else None
            if plain is not None and plain.leaf is not None and not ordinary_only:
                try:
                    value = plain.getter(source_value)
                    if value is None:
                        if not plain.non_null or plain.null_despite_type:
                            results[response_name] = None
                            continue
                    else:
                        serialized = plain.leaf.serialize(value)
                        if serialized is not None and serialized is not Undefined:
                            results[response_name] = serialized
                            continue
                except Exception:  # the ordinary execution below reports it
                    pass
            result = self.execute_field(
                parent_type, source_value, field_nodes, Path(path, response_name, parent_type.name)
            )
            if result is not Undefined:
                results[response_name] = result
                if is_awaitable(result):
                    awaitable_fields.append(response_name)
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            awaited = await gather(*(results[field] for field in awaitable_fields))
            results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_nodes: list[FieldNode],
        path: Path,
    ) -> AwaitableOrValue[Any]:
        """Resolve a field: a plain object (or list of them) directly, others as graphql-core."""
        field_def = parent_type.fields.get(field_nodes[0].name.value)
        plain = field_def.extensions.get(PLAIN) if field_def is not None else None
        if (
            field_def is None
            or plain is None
            or plain.object is None
            or self.middleware_manager is not None
        ):
            return super().execute_field(parent_type, source, field_nodes, path)
        try:
            value = plain.getter(source)
            if value is None:
                if plain.non_null:
                    raise _OrdinaryError
                return None
            if plain.is_list and not self._plain_items(value):
                raise _OrdinaryError
        except Exception:
            return super().execute_field(parent_type, source, field_nodes, path)
        return_type = field_def.type
        # What graphql-core's execute_field does around completing a value.
        completed: Any
        try:
            if plain.is_list:
                completed = self._complete_items(plain.object, field_nodes, path, value)
            else:
                completed = self.execute_fields(
                    plain.object, value, path, self.collect_subfields(plain.object, field_nodes)
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

    def _plain_items(self, value: Any) -> bool:
        """Whether every item can be completed here: a list of objects, none null or pending."""
        return isinstance(value, list) and not any(
            item is None or isinstance(item, Exception) or self.is_awaitable(item) for item in value
        )

    def _complete_items(
        self,
        item_type: GraphQLObjectType,
        field_nodes: list[FieldNode],
        path: Path,
        items: list[Any],
    ) -> AwaitableOrValue[list[Any]]:
        """graphql-core's ``complete_list_value`` for items of a non-null object type."""
        subfields = self.collect_subfields(item_type, field_nodes)
        non_null_item = GraphQLNonNull(item_type)
        is_awaitable = self.is_awaitable
        completed_results: list[Any] = []
        awaitable_indices: list[int] = []
        for index, item in enumerate(items):
            item_path = path.add_key(index, None)
            completed: Any
            try:
                completed = self.execute_fields(item_type, item, item_path, subfields)
                if is_awaitable(completed):
                    completed = self._await_item(completed, field_nodes, non_null_item, item_path)
            except Exception as raw_error:
                error = located_error(raw_error, field_nodes, item_path.as_list())
                self.handle_field_error(error, non_null_item, item_path)  # raises: non-null
                completed = None
            if is_awaitable(completed):
                awaitable_indices.append(index)
            completed_results.append(completed)
        if not awaitable_indices:
            return completed_results

        async def get_completed_results() -> list[Any]:
            awaited = await gather(*(completed_results[index] for index in awaitable_indices))
            for index, result in zip(awaitable_indices, awaited, strict=True):
                completed_results[index] = result
            return completed_results

        return get_completed_results()

    async def _await_item(
        self, pending: Any, field_nodes: list[FieldNode], item_type: GraphQLNonNull[Any], path: Path
    ) -> Any:
        try:
            return await pending
        except Exception as raw_error:
            error = located_error(raw_error, field_nodes, path.as_list())
            self.handle_field_error(error, item_type, path)
            return None
