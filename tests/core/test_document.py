"""Documents: operation graph, ordering walk, reducer and pinned views (spec §6).

Operations are named by letters; the id of letter ``X`` is ``"0020" + hex("X")`` padded with
zeros, so ids sort exactly like the letters. Graphs are written as ``{name: previous names}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pandanode.core.document import (
    Document,
    DocumentOperation,
    OperationGraph,
    build_graph,
    extends_tip,
    materialize,
    open_tip,
    reduce_document,
    trim_graph,
    walk,
)
from pandanode.core.errors import DocumentError, HashDecodeError, NotFoundError, Reason
from pandanode.core.ids import DocumentViewId
from pandanode.core.operation import Action, Operation, PlainValue

SCHEMA = "venue_0020" + "c6" * 32
OTHER_SCHEMA = "cafe_0020" + "c7" * 32
PANDA = "2f8e50c2ede6d936ecc3144187ff1c273808185cfbc5ff3d3748d1ff7353fc96"
PENGUIN = "8d6b3e4f1a2c5d7e9f0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"


def oid(name: str) -> str:
    """Return the operation id standing for ``name``; ids order like their names."""
    return "0020" + name.encode().hex().ljust(64, "0")


def name_of(op_id: str) -> str:
    """Invert :func:`oid`."""
    return bytes.fromhex(op_id[4:]).rstrip(b"\0").decode()


def op(
    name: str,
    previous: str = "",
    *,
    action: Action | None = None,
    fields: Mapping[str, PlainValue] | None = None,
    schema: str = SCHEMA,
    author: str = PANDA,
) -> DocumentOperation:
    """One operation; CREATE without previous, else UPDATE; by default sets ``name`` = name."""
    if action is None:
        action = "update" if previous else "create"
    if fields is None and action != "delete":
        fields = {"name": name}
    prev = tuple(sorted(oid(p) for p in previous)) if previous else None
    return DocumentOperation(
        id=oid(name),
        public_key=author,
        operation=Operation(
            version=1, action=action, schema_id=schema, previous=prev, fields=fields
        ),
    )


def dag(spec: Mapping[str, str], **actions: Action) -> list[DocumentOperation]:
    """Operations for ``{name: previous names}``; ``actions`` overrides actions by name."""
    return [op(name, prev, action=actions.get(name)) for name, prev in spec.items()]


def names(ids: tuple[str, ...]) -> str:
    return "".join(name_of(i) for i in ids)


def walk_names(spec: Mapping[str, str]) -> str:
    return names(walk(build_graph(dag(spec))).order)


def view(*letters: str) -> DocumentViewId:
    return DocumentViewId.from_ids(oid(x) for x in letters)


def test_name_helper_round_trips() -> None:
    assert [name_of(oid(x)) for x in "ABZ"] == ["A", "B", "Z"]
    assert oid("A") < oid("B") < oid("M") < oid("Z")


# --- ordering walk (spec §6.2) -----------------------------------------------------------------

# p2panda-rs graph.rs `basics`, step 1: [A]<--[B]<--[C]<--[D]<--[E]<--[F]
BASICS_1 = {"A": "", "B": "A", "C": "B", "D": "C", "E": "D", "F": "E"}
# step 2 adds A->G, G->H, H->D:  D merges C and H
BASICS_2 = {**BASICS_1, "G": "A", "H": "G", "D": "CH"}
# step 3 adds C->I, I->J, J->K, K->F:  F merges E and K
BASICS_3 = {**BASICS_2, "I": "C", "J": "I", "K": "J", "F": "EK"}


def test_spec_p2panda_basics_chain_is_walked_in_link_order() -> None:
    assert walk_names(BASICS_1) == "ABCDEF"


def test_spec_p2panda_basics_merge_waits_until_its_last_parent_is_visited() -> None:
    assert walk_names(BASICS_2) == "ABCGHDEF"


def test_spec_p2panda_basics_two_merges() -> None:
    assert walk_names(BASICS_3) == "ABCIJKGHDEF"


def test_spec_p2panda_basics_tip_is_the_final_merge() -> None:
    result = walk(build_graph(dag(BASICS_3)))
    assert names(result.tips) == "F"


def test_spec_fork_follows_lowest_child_then_remaining_siblings_highest_first() -> None:
    # root A with children B < C < D, and B -> E
    assert walk_names({"A": "", "B": "A", "C": "A", "D": "A", "E": "B"}) == "ABEDC"


def test_spec_two_concurrent_branches_lower_id_first_higher_id_last() -> None:
    assert walk_names({"A": "", "C": "A", "B": "A"}) == "ABC"


def test_spec_only_the_ids_at_the_fork_decide_branch_order() -> None:
    # B's branch continues with Z (> C), still walked entirely before C's branch
    assert walk_names({"A": "", "B": "A", "C": "A", "Z": "B", "D": "C"}) == "ABZCD"


def test_spec_merge_popped_from_the_stack_can_precede_its_parent() -> None:
    # A -> {B, K, M}, K -> C, C -> M  with B < K < M
    assert walk_names({"A": "", "B": "A", "K": "A", "C": "K", "M": "AC"}) == "ABMKC"


def test_spec_merge_pushed_twice_is_visited_twice() -> None:
    # A -> {B, M}, B -> C, C -> M
    result = walk(build_graph(dag({"A": "", "B": "A", "C": "B", "M": "AC"})))
    assert names(result.order) == "ABCMM"
    assert names(result.tips) == "M"  # deduplicated


def test_walk_reports_tips_of_concurrent_heads_in_visit_order() -> None:
    result = walk(build_graph(dag({"A": "", "B": "A", "C": "A", "D": "A"})))
    assert names(result.order) == "ABDC"
    assert names(result.tips) == "BDC"


def test_walk_calls_visit_for_every_visit_including_repeats() -> None:
    seen: list[str] = []
    walk(build_graph(dag({"A": "", "B": "A", "C": "B", "M": "AC"})), lambda o: seen.append(o.id))
    assert names(tuple(seen)) == "ABCMM"


def test_cycle_guard_rejects_an_acyclic_graph_that_revisits_merges_like_the_reference() -> None:
    # A -> {B, M, N}, B -> C, C -> {M, N}: the walk goes A B C M N N and would pop M again with
    # 6 visits for 5 operations; p2panda-rs's guard reports a cycle (follows from §6.2).
    ops = dag({"A": "", "B": "A", "C": "B", "M": "AC", "N": "AC"})
    seen: list[str] = []
    with pytest.raises(DocumentError, match="cycle detected") as info:
        walk(build_graph(ops), lambda o: seen.append(o.id))
    assert info.value.reason is Reason.INVALID_GRAPH
    assert names(tuple(seen)) == "ABCMNN"
    with pytest.raises(DocumentError, match="cycle detected"):
        materialize(ops)


def test_walk_badly_formed_graph_when_a_merge_cannot_be_reached() -> None:
    # Not producible by build_graph (it rejects the cycle B -> C -> B); built by hand to show
    # the walk's own guard: B merges A and C, C follows B, nothing else is left on the stack.
    ops = {k: op(k, p) for k, p in {"A": "", "B": "AC", "C": "B"}.items()}
    graph = OperationGraph(
        operations=MappingProxyType({oid(k): v for k, v in ops.items()}),
        parents=MappingProxyType(
            {oid("A"): (), oid("B"): (oid("A"), oid("C")), oid("C"): (oid("B"),)}
        ),
        children=MappingProxyType(
            {oid("A"): (oid("B"),), oid("B"): (oid("C"),), oid("C"): (oid("B"),)}
        ),
        root=oid("A"),
    )
    with pytest.raises(DocumentError, match="badly formed graph") as info:
        walk(graph)
    assert info.value.reason is Reason.INVALID_GRAPH


def test_ids_are_compared_as_lowercase_hex_strings() -> None:
    low = "0020" + "9" * 64
    high = "0020" + "a" * 64
    create = DocumentOperation(
        "0020" + "1" * 64, PANDA, Operation(1, "create", SCHEMA, None, {"x": 0})
    )
    ops = [
        DocumentOperation(i, PANDA, Operation(1, "update", SCHEMA, (create.id,), {"x": n}))
        for n, i in ((1, high), (2, low))
    ]
    doc = materialize([*ops, create])
    assert doc.walk_order == (create.id, low, high)
    assert doc.fields == {"x": 1}


# --- graph building (spec §6.1) ----------------------------------------------------------------


def test_graph_has_sorted_parents_and_children_and_the_create_as_root() -> None:
    graph = build_graph(dag({"A": "", "C": "A", "B": "A", "M": "CB"}))
    assert graph.root == oid("A")
    assert graph.children[oid("A")] == (oid("B"), oid("C"))
    assert graph.parents[oid("M")] == (oid("B"), oid("C"))
    assert graph.tips() == (oid("M"),)
    assert len(graph) == 4
    assert oid("M") in graph


def test_graph_fails_on_multiple_creates() -> None:
    with pytest.raises(DocumentError, match="multiple CREATE operations") as info:
        build_graph([op("A"), op("B"), op("C", "A")])
    assert info.value.reason is Reason.INVALID_GRAPH


def test_graph_fails_without_create() -> None:
    # two UPDATEs naming each other: every link resolves, but there is no CREATE
    with pytest.raises(DocumentError, match="no CREATE operation"):
        build_graph([op("B", "C"), op("C", "B")])


def test_graph_fails_without_operations() -> None:
    with pytest.raises(DocumentError, match="at least one operation"):
        build_graph([])


def test_graph_fails_on_previous_not_in_the_set() -> None:
    with pytest.raises(DocumentError, match="cannot be connected to the document graph") as info:
        build_graph([op("A"), op("B", "X")])
    assert oid("B") in info.value.message
    assert oid("X") in info.value.message
    assert info.value.reason is Reason.INVALID_GRAPH


def test_graph_fails_on_self_link() -> None:
    with pytest.raises(DocumentError, match="names itself"):
        build_graph([op("A"), op("B", "AB")])


def test_graph_fails_on_previous_listed_twice() -> None:
    twice = DocumentOperation(
        oid("B"), PANDA, Operation(1, "update", SCHEMA, (oid("A"), oid("A")), {"name": "B"})
    )
    with pytest.raises(DocumentError, match="twice"):
        build_graph([op("A"), twice])


def test_graph_fails_on_cycle_reachable_from_the_root() -> None:
    with pytest.raises(DocumentError, match="cycle detected in the operation graph") as info:
        build_graph(dag({"A": "", "B": "AD", "C": "B", "D": "C"}))
    assert info.value.reason is Reason.INVALID_GRAPH


def test_graph_fails_on_cycle_detached_from_the_root() -> None:
    with pytest.raises(DocumentError, match="cycle detected"):
        build_graph(dag({"A": "", "B": "A", "X": "Y", "Y": "X"}))


def test_graph_fails_on_multiple_roots() -> None:
    stray = DocumentOperation(oid("U"), PANDA, Operation(1, "update", SCHEMA, None, {"a": 1}))
    with pytest.raises(DocumentError, match="multiple root nodes"):
        build_graph([op("A"), op("B", "A"), stray])


def test_graph_counts_an_operation_passed_twice_once() -> None:
    ops = dag({"A": "", "B": "A"})
    assert len(build_graph([*ops, *ops])) == 2


def test_graph_fails_on_two_different_operations_with_one_id() -> None:
    with pytest.raises(DocumentError, match="share the id"):
        build_graph([op("A"), op("B", "A"), op("B", "A", fields={"name": "other"})])


def test_graph_error_does_not_depend_on_input_order() -> None:
    ops = [op("A"), op("B", "X"), op("C", "Y")]
    messages = set()
    for ordering in (ops, ops[::-1]):
        with pytest.raises(DocumentError) as info:
            build_graph(ordering)
        messages.add(info.value.message)
    assert len(messages) == 1


def test_previous_id_in_uppercase_does_not_connect() -> None:
    assert oid("J") != oid("J").upper()
    upper = DocumentOperation(
        oid("K"), PANDA, Operation(1, "update", SCHEMA, (oid("J").upper(),), {"name": "K"})
    )
    with pytest.raises(DocumentError, match="cannot be connected"):
        build_graph([op("J"), upper])


@pytest.mark.parametrize("bad", ["0020" + "AB" * 32, "0020" + "ab" * 31, "0120" + "ab" * 32, "x"])
def test_document_operation_requires_a_lowercase_hash_id(bad: str) -> None:
    with pytest.raises(HashDecodeError) as info:
        DocumentOperation(bad, PANDA, Operation(1, "create", SCHEMA, None, {}))
    assert info.value.reason is Reason.INVALID_HASH


def test_document_operation_accessors() -> None:
    create, update, delete = op("A"), op("B", "A"), op("C", "B", action="delete")
    assert create.is_create and not create.is_update and not create.is_delete
    assert update.is_update and delete.is_delete
    assert create.previous == () and update.previous == (oid("A"),)
    assert delete.fields == {} and update.fields == {"name": "B"}
    assert create.action == "create" and create.schema_id == SCHEMA


# --- reduction (spec §6.3) ---------------------------------------------------------------------


def test_create_only_document() -> None:
    doc = materialize([op("A", fields={"name": "Panda Cafe", "open": True})])
    assert doc == Document(
        document_id=oid("A"),
        view_id=view("A"),
        schema_id=SCHEMA,
        owner=PANDA,
        fields={"name": "Panda Cafe", "open": True},
        field_origins={"name": oid("A"), "open": oid("A")},
        deleted=False,
        edited=False,
        walk_order=(oid("A"),),
    )


def test_fields_are_in_byte_wise_name_order() -> None:
    doc = materialize([op("A", fields={"b": 1, "B": 2, "aa": 3, "a_b": 4})])
    assert doc.fields is not None
    assert list(doc.fields) == ["B", "a_b", "aa", "b"]


def test_update_overwrites_exactly_its_fields() -> None:
    doc = materialize(
        [
            op("A", fields={"name": "Panda Cafe", "rating": 3}),
            op("B", "A", fields={"rating": 5}, author=PENGUIN),
        ]
    )
    assert doc.fields == {"name": "Panda Cafe", "rating": 5}
    assert doc.field_origins == {"name": oid("A"), "rating": oid("B")}
    assert doc.edited and not doc.deleted
    assert doc.owner == PANDA  # the CREATE's author, not the last writer
    assert doc.view_id == view("B")


def test_update_that_rewrites_the_same_value_still_counts_as_edited() -> None:
    doc = materialize([op("A", fields={"x": 1}), op("B", "A", fields={"x": 1})])
    assert doc.edited


def test_concurrent_branches_later_walked_operation_wins_per_field() -> None:
    doc = materialize(
        [
            op("A", fields={"name": "a", "colour": "a"}),
            op("C", "A", fields={"name": "c"}),
            op("B", "A", fields={"name": "b", "colour": "b"}),
        ]
    )
    assert names(doc.walk_order) == "ABC"
    assert doc.fields == {"colour": "b", "name": "c"}
    assert doc.field_origins == {"colour": oid("B"), "name": oid("C")}
    assert doc.view_id == view("B", "C")


def test_three_branches_winner_is_the_middle_id_not_the_highest() -> None:
    ops = [op("A"), op("B", "A"), op("C", "A"), op("D", "A")]
    doc = materialize(ops)
    assert names(doc.walk_order) == "ABDC"
    assert doc.fields == {"name": "C"}
    assert doc.view_id == view("B", "C", "D")


def test_merge_operation_resolves_the_branches() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "A", "M": "BC", "N": "M"}))
    assert names(doc.walk_order) == "ABCMN"
    assert doc.fields == {"name": "N"}
    assert doc.view_id == view("N")


def test_p2panda_resolve_documents_scenario() -> None:
    # panda_1 <- panda_2, panda_1 <- penguin_1, penguin_2 merges both, penguin_3 follows
    doc = materialize(dag({"A": "", "P": "A", "Q": "A", "R": "PQ", "S": "R"}))
    assert names(doc.walk_order) == "APQRS"
    assert doc.view_id == view("S")
    assert doc.fields == {"name": "S"}


def test_merge_visited_twice_reapplies_its_update() -> None:
    doc = materialize(
        [
            op("A", fields={"x": "a"}),
            op("B", "A", fields={"x": "b"}),
            op("C", "B", fields={"x": "c"}),
            op("M", "AC", fields={"y": "m"}),
        ]
    )
    assert names(doc.walk_order) == "ABCMM"
    assert doc.fields == {"x": "c", "y": "m"}
    assert doc.sorted_index()[oid("M")] == 4  # the later position is the one recorded


def test_sorted_index_gives_each_operation_its_walk_position() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "A", "D": "A", "E": "B"}))
    assert {name_of(k): v for k, v in doc.sorted_index().items()} == {
        "A": 0,
        "B": 1,
        "E": 2,
        "D": 3,
        "C": 4,
    }


def test_delete_walked_last_deletes_the_document_with_all_tips_as_view_id() -> None:
    doc = materialize(dag({"A": "", "B": "A", "D": "A"}, D="delete"))
    assert names(doc.walk_order) == "ABD"
    assert doc.deleted and doc.edited
    assert doc.fields is None and doc.field_origins is None
    assert doc.view_id == view("B", "D")
    assert doc.document_id == oid("A")


def test_delete_at_the_end_of_a_chain() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "B"}, C="delete"))
    assert doc.deleted
    assert doc.view_id == view("C")


def test_operation_walked_after_a_delete_fails_the_whole_build() -> None:
    # A -> {B (DELETE), C (UPDATE)}: walk A B C, C comes after the DELETE
    with pytest.raises(DocumentError, match="Cannot perform a commit on a deleted document") as e:
        materialize(dag({"A": "", "B": "A", "C": "A"}, B="delete"))
    assert e.value.reason is Reason.DOCUMENT_DELETED


def test_update_following_a_delete_fails() -> None:
    with pytest.raises(DocumentError, match="deleted document"):
        materialize(dag({"A": "", "B": "A", "C": "B"}, B="delete"))


def test_merge_delete_visited_twice_fails_like_the_reference() -> None:
    # A -> {B, M}, B -> C, C -> M with M a DELETE: walk A B C M M, the 2nd M follows the DELETE
    with pytest.raises(DocumentError, match="deleted document"):
        materialize(dag({"A": "", "B": "A", "C": "B", "M": "AC"}, M="delete"))


def test_operation_with_another_schema_fails() -> None:
    with pytest.raises(DocumentError, match="does not match the documents schema") as info:
        materialize([op("A"), op("B", "A", schema=OTHER_SCHEMA)])
    assert info.value.reason is Reason.INVALID_CLAIMED_SCHEMA


def test_first_visited_operation_must_be_the_create() -> None:
    # The only root is an UPDATE without previous, the CREATE hangs below it. Not producible by
    # the codec, but the reducer must still refuse it.
    root = DocumentOperation(oid("U"), PANDA, Operation(1, "update", SCHEMA, None, {"a": 1}))
    create = DocumentOperation(oid("A"), PANDA, Operation(1, "create", SCHEMA, (oid("U"),), {}))
    with pytest.raises(DocumentError, match="must be a CREATE") as info:
        materialize([root, create])
    assert info.value.reason is Reason.INVALID_REDUCTION


def test_reduce_document_on_a_prebuilt_graph() -> None:
    graph = build_graph(dag({"A": "", "B": "A"}))
    assert reduce_document(graph) == materialize(dag({"A": "", "B": "A"}))


# --- pinned views (spec §6.4) ------------------------------------------------------------------


def test_view_at_an_earlier_operation() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "B"}), view("B"))
    assert names(doc.walk_order) == "AB"
    assert doc.fields == {"name": "B"}
    assert doc.view_id == view("B")


def test_view_of_two_concurrent_heads_before_their_merge() -> None:
    ops = dag({"A": "", "B": "A", "C": "A", "M": "BC"})
    doc = materialize(ops, view("B", "C"))
    assert names(doc.walk_order) == "ABC"
    assert doc.view_id == view("B", "C")
    assert doc.fields == {"name": "C"}


def test_view_of_one_branch_ignores_the_other() -> None:
    ops = dag({"A": "", "B": "A", "C": "A", "D": "C"})
    doc = materialize(ops, view("B"))
    assert names(doc.walk_order) == "AB"


def test_view_before_a_delete_is_not_deleted() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "B"}, C="delete"), view("B"))
    assert not doc.deleted
    assert doc.fields == {"name": "B"}


def test_view_avoids_a_conflicting_operation_after_delete() -> None:
    ops = dag({"A": "", "B": "A", "C": "A"}, B="delete")
    assert materialize(ops, view("B")).deleted
    assert materialize(ops, view("C")).fields == {"name": "C"}


def test_current_view_id_reproduces_the_current_document() -> None:
    ops = dag(BASICS_3)
    doc = materialize(ops)
    assert materialize(ops, doc.view_id) == doc


def test_view_with_unknown_operation_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="not found") as info:
        materialize(dag({"A": "", "B": "A"}), view("B", "X"))
    assert info.value.reason is Reason.VIEW_NOT_FOUND


def test_view_tip_that_is_an_ancestor_of_another_requested_tip_drops_out() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "B"}), view("A", "C"))
    assert doc.view_id == view("C")


def test_view_still_checks_the_whole_operation_set() -> None:
    ops = [*dag({"A": "", "B": "A"}), op("Z", "X")]
    with pytest.raises(DocumentError, match="cannot be connected"):
        materialize(ops, view("B"))


def test_trim_graph_keeps_only_ancestors_and_their_links() -> None:
    graph = trim_graph(build_graph(dag(BASICS_3)), view("H", "C"))
    assert set(graph.operations) == {oid(x) for x in "ABCGH"}
    assert graph.children[oid("C")] == ()
    assert graph.children[oid("H")] == ()
    assert graph.tips() == (oid("C"), oid("H"))
    assert names(walk(graph).order) == "ABCGH"


# --- properties --------------------------------------------------------------------------------

FIELD_NAMES = ("a", "b", "c")


@st.composite
def random_documents(draw: st.DrawFn) -> list[DocumentOperation]:
    """A random DAG of UPDATEs below one CREATE; node i builds on nodes before it."""
    size = draw(st.integers(min_value=1, max_value=12))
    raw_ids = draw(
        st.lists(st.binary(min_size=32, max_size=32), min_size=size, max_size=size, unique=True)
    )
    ids = ["0020" + r.hex() for r in raw_ids]
    ops = [
        DocumentOperation(
            ids[0], PANDA, Operation(1, "create", SCHEMA, None, dict.fromkeys(FIELD_NAMES, 0))
        )
    ]
    for i in range(1, size):
        parents = draw(st.lists(st.integers(0, i - 1), min_size=1, max_size=min(i, 3), unique=True))
        written = draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True))
        fields = {name: i for name in sorted(written)}
        previous = tuple(sorted(ids[p] for p in parents))
        ops.append(
            DocumentOperation(ids[i], PENGUIN, Operation(1, "update", SCHEMA, previous, fields))
        )
    return ops


def outcome(fn: Callable[[], object]) -> object:
    """Return a call's result, or the type, reason and message of the error it raised."""
    try:
        return fn()
    except (DocumentError, NotFoundError) as error:
        return (type(error), error.reason, error.message)


@settings(max_examples=150, deadline=None)
@given(random_documents())
def test_property_walk_visits_every_operation_create_first_or_fails_on_the_cycle_guard(
    ops: list[DocumentOperation],
) -> None:
    graph = build_graph(ops)
    try:
        result = walk(graph)
    except DocumentError as error:
        # Only the reference's cycle guard can fire on a well-formed DAG (never "badly formed")
        assert error.message.startswith("cycle detected")
        assert error.reason is Reason.INVALID_GRAPH
        return
    all_ids = {o.id for o in ops}
    assert set(result.order) == all_ids
    assert result.order[0] == ops[0].id
    assert set(result.tips) == {k for k, c in graph.children.items() if not c}
    assert len(set(result.tips)) == len(result.tips)
    # only merge operations can be visited before one of their parents, or more than once
    first = {k: result.order.index(k) for k in all_ids}
    for op_id in all_ids:
        parents = graph.parents[op_id]
        assert result.order.count(op_id) <= max(1, len(parents))
        if len(parents) == 1:
            assert first[parents[0]] < first[op_id]


@settings(max_examples=150, deadline=None)
@given(random_documents(), st.permutations(range(12)))
def test_property_result_does_not_depend_on_the_order_operations_are_given_in(
    ops: list[DocumentOperation], permutation: list[int]
) -> None:
    shuffled = [ops[i] for i in permutation if i < len(ops)]
    assert len(shuffled) == len(ops)
    assert outcome(lambda: materialize(shuffled)) == outcome(lambda: materialize(ops))
    assert outcome(lambda: walk(build_graph(shuffled))) == outcome(lambda: walk(build_graph(ops)))


@settings(max_examples=150, deadline=None)
@given(random_documents())
def test_property_each_field_holds_the_value_of_the_last_walked_operation_setting_it(
    ops: list[DocumentOperation],
) -> None:
    try:
        doc = materialize(ops)
    except DocumentError as error:
        assert error.message.startswith("cycle detected")
        return
    by_id = {o.id: o for o in ops}
    expected_origin = {name: ops[0].id for name in FIELD_NAMES}
    for op_id in doc.walk_order:
        for name in by_id[op_id].fields:
            expected_origin[name] = op_id
    assert doc.field_origins == expected_origin
    assert doc.fields == {name: by_id[o].fields[name] for name, o in expected_origin.items()}
    assert doc.edited == any(o != ops[0].id for o in expected_origin.values())
    assert doc.document_id == ops[0].id and doc.owner == PANDA
    assert set(doc.view_id.ids) == set(build_graph(ops).tips())


@settings(max_examples=150, deadline=None)
@given(random_documents(), st.data())
def test_property_a_pinned_view_equals_the_document_of_its_ancestors(
    ops: list[DocumentOperation], data: st.DataObject
) -> None:
    by_id = {o.id: o for o in ops}
    tips = data.draw(st.lists(st.sampled_from(sorted(by_id)), min_size=1, max_size=3, unique=True))
    ancestors: set[str] = set()
    pending = list(tips)
    while pending:
        current = pending.pop()
        if current not in ancestors:
            ancestors.add(current)
            pending.extend(by_id[current].previous)
    subset = [o for o in ops if o.id in ancestors]
    pinned = outcome(lambda: materialize(ops, DocumentViewId.from_ids(tips)))
    assert pinned == outcome(lambda: materialize(subset))
    if isinstance(pinned, Document):
        assert set(pinned.walk_order) == ancestors
        assert set(pinned.view_id.ids) <= set(tips)


# --- appending to a view -----------------------------------------------------------------------


def test_open_tip_of_a_chain_is_its_last_operation() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "B"}))
    assert open_tip(doc) == oid("C")


def test_open_tip_is_none_for_concurrent_heads() -> None:
    assert open_tip(materialize(dag({"A": "", "B": "A", "C": "A"}))) is None


def test_open_tip_of_a_merge_visited_last_once() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "A", "D": "BC"}))
    assert names(doc.walk_order) == "ABCD"
    assert open_tip(doc) == oid("D")


def test_open_tip_is_none_for_a_merge_visited_twice() -> None:
    # A new operation after M would be walked between M's two visits, not simply appended.
    doc = materialize(dag({"A": "", "B": "A", "C": "B", "M": "AC"}))
    assert names(doc.walk_order) == "ABCMM"
    assert open_tip(doc) is None


def test_open_tip_is_none_when_the_only_tip_is_not_walked_last() -> None:
    doc = materialize(dag({"A": "", "B": "A", "C": "AB", "D": "B", "M": "CD"}))
    assert names(doc.walk_order) == "ABCDMC" and names(doc.view_id.ids) == "M"
    assert open_tip(doc) is None


def test_extends_tip_accepts_an_update_or_delete_naming_exactly_the_tip() -> None:
    tip = oid("B")
    assert extends_tip(tip, SCHEMA, False, op("C", "B"))
    assert extends_tip(tip, SCHEMA, False, op("C", "B", action="delete"))


@pytest.mark.parametrize(
    ("operation", "deleted"),
    [
        (op("C", "A"), False),  # builds on an older operation: a fork
        (op("C", "AB"), False),  # a merge
        (op("C", "B", schema=OTHER_SCHEMA), False),
        (op("C", "B"), True),  # after a DELETE
        (op("C"), False),  # a CREATE
    ],
)
def test_extends_tip_refuses_what_needs_a_full_walk(
    operation: DocumentOperation, deleted: bool
) -> None:
    assert not extends_tip(oid("B"), SCHEMA, deleted, operation)


@settings(max_examples=200, deadline=None)
@given(random_documents(), st.data())
def test_property_an_operation_extending_the_open_tip_is_walked_last_and_applied_on_top(
    ops: list[DocumentOperation], data: st.DataObject
) -> None:
    try:
        doc = materialize(ops)
    except DocumentError:
        return
    tip = open_tip(doc)
    if tip is None:
        only = doc.view_id.ids[0]
        assert (
            len(doc.view_id.ids) > 1
            or doc.walk_order[-1] != only
            or (doc.walk_order.count(only) > 1)
        )
        return
    delete = data.draw(st.booleans())
    written = data.draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True))
    new_id = "0020" + data.draw(st.binary(min_size=32, max_size=32)).hex()
    if new_id in {o.id for o in ops}:
        return
    new = DocumentOperation(
        new_id,
        PANDA,
        Operation(
            1,
            "delete" if delete else "update",
            SCHEMA,
            (tip,),
            None if delete else {name: -1 for name in sorted(written)},
        ),
    )
    assert extends_tip(tip, doc.schema_id, doc.deleted, new)
    grown = materialize([*ops, new])
    assert grown.walk_order == (*doc.walk_order, new_id)
    assert grown.view_id.ids == (new_id,) and open_tip(grown) == new_id
    if delete:
        assert grown.deleted and grown.fields is None
    else:
        assert grown.fields == {**(doc.fields or {}), **dict.fromkeys(written, -1)}
        assert grown.edited == (doc.edited or bool(written))
