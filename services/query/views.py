"""The pure view rules of the materializer: how a document's views are built, folded and told.

A document's current view is either *folded*: new operations that form a line from the stored
view's open tip (each an UPDATE or DELETE naming exactly the one before,
:func:`pandanode.core.document.extends_tip` — a document edited in a line, the common case)
are applied on top of it (:func:`linear_extension`, :func:`fold_into_view`) at a cost that does
not grow with the document; or *rebuilt* from all its operations (:func:`build_view`). Either
way the fields are typed with the schema (:func:`pandanode.core.schema.typed_fields`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pandanode.core.document import DocumentOperation, extends_tip, materialize, open_tip
from pandanode.core.errors import PandanodeError
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import PinnedRelation, PinnedRelationList
from pandanode.core.schema import Schema, typed_fields

from .ingested import IngestedEvent
from .model import ChangeKind, MaterializedDocument, TypedValue

__all__ = [
    "affected_documents",
    "build_view",
    "change_kind",
    "claimed_schema_id",
    "create_view",
    "fold_into_view",
    "linear_extension",
    "operation_pins",
    "pinned_view_ids",
]


def affected_documents(events: Iterable[IngestedEvent]) -> dict[str, int]:
    """The documents a run of events touches → the sequence of the last event touching each.

    Documents come in the order of their first event.
    """
    affected: dict[str, int] = {}
    for event in events:
        affected[event.operation.document_id] = event.sequence
    return affected


def pinned_view_ids(fields: Mapping[str, TypedValue]) -> list[str]:
    """The view ids named by pinned relation (list) values, in field order, each once."""
    views: dict[str, None] = {}
    for value in fields.values():
        if isinstance(value, PinnedRelation):
            views.setdefault("_".join(value.view_id))
        elif isinstance(value, PinnedRelationList):
            for view_id in value.view_ids:
                views.setdefault("_".join(view_id))
    return list(views)


def change_kind(
    previous: MaterializedDocument | None, current: MaterializedDocument
) -> ChangeKind | None:
    """How a document's current view changed; None when it did not."""
    if previous is not None and previous.view_id == current.view_id:
        return None
    if current.deleted:
        return ChangeKind.DELETED
    return ChangeKind.CREATED if previous is None else ChangeKind.UPDATED


def build_view(
    operations: Iterable[DocumentOperation], schema: Schema, view_id: str | None = None
) -> MaterializedDocument:
    """Materialize a document (its current view, or ``view_id``) and type its fields.

    Raises:
        PandanodeError: the operations do not build that view (see
            :func:`pandanode.core.document.materialize`), or a value does not fit the schema.
    """
    document = materialize(
        operations, None if view_id is None else DocumentViewId.from_str(view_id)
    )
    fields = {} if document.fields is None else typed_fields(document.fields, schema)
    return MaterializedDocument(
        document_id=document.document_id,
        view_id=str(document.view_id),
        schema_id=str(schema.id),
        owner=document.owner,
        edited=document.edited,
        deleted=document.deleted,
        fields=fields,
        appendable=view_id is None and open_tip(document) is not None,
    )


def create_view(create: DocumentOperation, schema: Schema) -> MaterializedDocument:
    """The current view of a document whose only operation is its CREATE.

    Equal to ``build_view([create], schema)`` without building and walking a graph: the view
    id is the CREATE's id, the fields are its fields typed, and the view can be appended to.

    Raises:
        ValueError: ``create`` is not a CREATE.
        PandanodeError: a value does not fit the schema.
    """
    if not create.is_create:
        raise ValueError(f"{create.id} is not a CREATE")
    return MaterializedDocument(
        document_id=create.id,
        view_id=create.id,
        schema_id=str(schema.id),
        owner=create.public_key,
        edited=False,
        deleted=False,
        fields=dict(sorted(typed_fields(create.fields, schema).items())),
        appendable=True,
    )


def linear_extension(
    view: MaterializedDocument, operations: Iterable[DocumentOperation]
) -> list[DocumentOperation] | None:
    """Order new operations into a line starting at the view's open tip, if they form one.

    Args:
        view: A stored current view.
        operations: Operations of the document that are not folded into ``view``.

    Returns:
        The operations in line order when each extends the tip left by the one before
        (:func:`pandanode.core.document.extends_tip`), else None (a full rebuild is needed).
    """
    if not view.appendable:
        return None
    by_previous: dict[tuple[str, ...], list[DocumentOperation]] = {}
    count = 0
    for op in operations:
        by_previous.setdefault(op.previous, []).append(op)
        count += 1
    line: list[DocumentOperation] = []
    tip, deleted = view.view_id, view.deleted
    while len(line) < count:
        following = by_previous.get((tip,), [])
        if len(following) != 1 or not extends_tip(tip, view.schema_id, deleted, following[0]):
            return None
        op = following[0]
        line.append(op)
        tip, deleted = op.id, op.is_delete
    return line


def fold_into_view(
    view: MaterializedDocument, line: Sequence[DocumentOperation], schema: Schema
) -> MaterializedDocument:
    """The view with a line of operations from :func:`linear_extension` applied on top.

    Equal to :func:`build_view` of all the document's operations (see
    :func:`pandanode.core.document.open_tip` for why).

    Raises:
        PandanodeError: a value does not fit the schema.
    """
    fields = dict(view.fields)
    edited, deleted = view.edited, view.deleted
    for op in line:
        if op.is_delete:
            fields, edited, deleted = {}, True, True
        else:
            fields.update(typed_fields(op.fields, schema))
            edited = edited or bool(op.fields)
    return MaterializedDocument(
        document_id=view.document_id,
        view_id=line[-1].id if line else view.view_id,
        schema_id=view.schema_id,
        owner=view.owner,
        edited=edited,
        deleted=deleted,
        fields=dict(sorted(fields.items())),
        appendable=view.appendable,
    )


def claimed_schema_id(document_id: str, operations: Sequence[DocumentOperation]) -> str:
    """The schema id the document's CREATE names (the first operation's when it is missing)."""
    for op in operations:
        if op.id == document_id:
            return op.schema_id
    return operations[0].schema_id


def operation_pins(operations: Iterable[DocumentOperation], schema: Schema) -> list[str]:
    """The view ids pinned by any of these operations (typed with their document's schema)."""
    pinned_fields = {
        name
        for name, field_type in schema.fields.items()
        if field_type.kind in ("pinned_relation", "pinned_relation_list")
    }
    views: dict[str, None] = {}
    if not pinned_fields:
        return []
    for op in operations:
        plain = {name: value for name, value in op.fields.items() if name in pinned_fields}
        try:
            views.update(dict.fromkeys(pinned_view_ids(typed_fields(plain, schema))))
        except PandanodeError:
            continue
    return list(views)
