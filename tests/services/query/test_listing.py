"""The listing engine against a naive reference: filter a Python list, sort it with a key."""

from __future__ import annotations

import base64
import json
import math
import operator
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from pandanode.core.operation import PinnedRelation, PinnedRelationList, Relation, RelationList
from pandanode.core.schema import FieldType, Schema, SchemaId
from pandanode.services.query.listing import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_PAGE_TOKEN_LENGTH,
    Catalog,
    SchemaIndex,
    changelog,
    compile_filter,
    sorted_entries,
)
from pandanode.services.query.listing import index as listing_index
from pandanode.services.query.listing.tokens import PageTokens
from pandanode.services.query.model import (
    ChangeKind,
    DocumentChange,
    FilterOp,
    FilterValue,
    MaterializedDocument,
    Meta,
    Order,
    Predicate,
    TypedValue,
)
from pandanode.services.runtime.errors import InvalidRequestError, ResourceNotFoundError

# --------------------------------------------------------------------------------------------
# A schema with every field type, and generated documents

_SEED_RANDOM = random.Random(4)


def _op_id(rng: random.Random = _SEED_RANDOM) -> str:
    return "0020" + rng.randbytes(32).hex()


BLOB = SchemaId.system("blob")
SCHEMA = Schema(
    SchemaId.application("things", _op_id()),
    "Every field type",
    {
        "flag": FieldType("bool"),
        "count": FieldType("int"),
        "score": FieldType("float"),
        "title": FieldType("str"),
        "data": FieldType("bytes"),
        "author": FieldType("relation", BLOB),
        "tags": FieldType("relation_list", BLOB),
        "pin": FieldType("pinned_relation", BLOB),
        "pins": FieldType("pinned_relation_list", BLOB),
        # A field named like a meta property: a plain str target means the field.
        "owner": FieldType("str"),
    },
)
SCHEMA_ID = str(SCHEMA.id)
KINDS = {name: field_type.kind for name, field_type in SCHEMA.fields.items()}

OWNERS = [_SEED_RANDOM.randbytes(32).hex() for _ in range(4)]
RELATED = [_op_id() for _ in range(6)]
VIEWS = ["_".join(sorted(_SEED_RANDOM.sample(RELATED, k))) for k in (1, 1, 2, 2, 3)]
INTS = [0, 1, -1, 7, 42, 2**63 - 1, -(2**63)]
FLOATS = [0.0, -0.0, 1.5, -2.25, math.nan, math.inf, -math.inf, 1e-8, 7.0]
STRS = ["", "a", "A", "ab", "ba", "b", "しろくま", "🐼 panda", "é", "e\u0301", "a b", "ab\x00"]
BYTES = [b"", b"\x00", b"\xff", b"ab", b"abc"]


def _fields(rng: random.Random) -> dict[str, TypedValue]:
    return {
        "flag": rng.random() < 0.5,
        "count": rng.choice(INTS),
        "score": rng.choice(FLOATS),
        "title": rng.choice(STRS),
        "data": rng.choice(BYTES),
        "author": Relation(rng.choice(RELATED)),
        "tags": RelationList([rng.choice(RELATED) for _ in range(rng.randrange(4))]),
        "pin": PinnedRelation(rng.choice(VIEWS)),
        "pins": PinnedRelationList([rng.choice(VIEWS) for _ in range(rng.randrange(3))]),
        "owner": rng.choice(STRS[:4]),
    }


def make_document(rng: random.Random, document_id: str | None = None) -> MaterializedDocument:
    deleted = rng.random() < 0.1
    return MaterializedDocument(
        document_id=document_id or _op_id(rng),
        view_id="_".join(sorted(_op_id(rng) for _ in range(rng.choice((1, 1, 2))))),
        schema_id=SCHEMA_ID,
        owner=rng.choice(OWNERS),
        edited=deleted or rng.random() < 0.3,
        deleted=deleted,
        fields={} if deleted else _fields(rng),
    )


def make_documents(count: int, seed: int) -> list[MaterializedDocument]:
    rng = random.Random(seed)
    return [make_document(rng) for _ in range(count)]


DOCUMENTS = make_documents(2000, seed=1)


@pytest.fixture
def index() -> SchemaIndex:
    built = SchemaIndex(SCHEMA)
    for document in DOCUMENTS:
        built.upsert(document)
    return built


@pytest.fixture(params=["walk", "candidates"])
def planner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through each of the engine's two ways to a page.

    ``walk`` follows the order and tests each document; ``candidates`` sorts the documents an
    eq/in predicate selects by a hash index (when the query has such a predicate).
    """
    mode: str = request.param
    monkeypatch.setattr(listing_index, "_prefer_candidates", lambda *_: mode == "candidates")
    return mode


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks in the sorted lists, so that splits and merges happen all the time."""
    monkeypatch.setattr(sorted_entries, "_CHUNK_SIZE", 4)


# --------------------------------------------------------------------------------------------
# The naive reference

MISSING: Any = object()


def ref_read(document: MaterializedDocument, target: str | Meta) -> Any:
    if isinstance(target, Meta):
        return {
            Meta.OWNER: document.owner,
            Meta.DOCUMENT_ID: document.document_id,
            Meta.DOCUMENT_VIEW_ID: document.view_id,
            Meta.EDITED: document.edited,
            Meta.DELETED: document.deleted,
        }[target]
    if target not in document.fields:
        return MISSING
    value = document.fields[target]
    if isinstance(value, Relation):
        return value.document_id
    if isinstance(value, RelationList):
        return list(value.document_ids)
    if isinstance(value, PinnedRelation):
        return "_".join(value.view_id)
    if isinstance(value, PinnedRelationList):
        return ["_".join(view_id) for view_id in value.view_ids]
    return value


def float_order(value: float) -> tuple[int, float]:
    """-inf < … < -0.0 == 0.0 < … < inf < NaN, and NaN == NaN."""
    return (1, 0.0) if math.isnan(value) else (0, value)


REF_OPERATORS: dict[FilterOp, Callable[[Any, Any], bool]] = {
    FilterOp.EQ: operator.eq,
    FilterOp.NOT_EQ: operator.ne,
    FilterOp.GT: operator.gt,
    FilterOp.GTE: operator.ge,
    FilterOp.LT: operator.lt,
    FilterOp.LTE: operator.le,
    FilterOp.CONTAINS: lambda value, operand: operand in value,
    FilterOp.NOT_CONTAINS: lambda value, operand: operand not in value,
}


def ref_holds(value: Any, kind: str, predicate: Predicate) -> bool:
    if value is MISSING:
        return False
    operands: list[Any] = list(predicate.values) or [predicate.value]
    if kind == "float":
        value = float_order(value)
        operands = [float_order(operand) for operand in operands]
    op = predicate.op
    if kind in ("relation_list", "pinned_relation_list"):
        hit = any(item in operands for item in value)
        return hit if op is FilterOp.IN else not hit
    if op is FilterOp.IN:
        return any(value == operand for operand in operands)
    if op is FilterOp.NOT_IN:
        return all(value != operand for operand in operands)
    return REF_OPERATORS[op](value, operands[0])


def ref_matches(document: MaterializedDocument, predicates: Sequence[Predicate]) -> bool:
    if document.deleted and not any(p.target is Meta.DELETED for p in predicates):
        return False
    for predicate in predicates:
        target = predicate.target
        kind = "meta" if isinstance(target, Meta) else KINDS[target]
        if not ref_holds(ref_read(document, target), kind, predicate):
            return False
    return True


def ref_sorted(
    documents: Sequence[MaterializedDocument], order: Order
) -> list[MaterializedDocument]:
    def key(document: MaterializedDocument) -> tuple[Any, ...]:
        value = ref_read(document, order.target)
        if value is MISSING:
            return (2, 0, document.document_id)
        if isinstance(value, float):
            return (*float_order(value), document.document_id)
        return (0, value, document.document_id)

    return sorted(documents, key=key, reverse=order.descending)


def ref_list(
    documents: Sequence[MaterializedDocument], predicates: Sequence[Predicate], order: Order
) -> list[MaterializedDocument]:
    return ref_sorted([d for d in documents if ref_matches(d, predicates)], order)


def collect(
    index: SchemaIndex,
    predicates: Sequence[Predicate],
    order: Order,
    page_size: int,
    between_pages: Callable[[], None] | None = None,
    totals: list[int] | None = None,
) -> list[MaterializedDocument]:
    """Every page of a query, concatenated (and each page's total_size into ``totals``)."""
    documents: list[MaterializedDocument] = []
    token: str | None = None
    for _ in range(len(index) * 2 + 10):
        page = index.list(predicates, order, page_size, token)
        documents.extend(page.documents)
        if totals is not None:
            totals.append(page.total_size)
        if page.next_page_token is None:
            assert len(page.documents) <= page_size
            return documents
        assert len(page.documents) == page_size
        token = page.next_page_token
        if between_pages is not None:
            between_pages()
    raise AssertionError("the pages never ended")


def ids(documents: Sequence[MaterializedDocument]) -> list[str]:
    return [document.document_id for document in documents]


def assert_same_as_reference(
    index: SchemaIndex, predicates: Sequence[Predicate], *orders: Order
) -> None:
    """Pages of 1000 (concatenated) and total_size agree with the reference, in each order."""
    matching = [d for d in DOCUMENTS if ref_matches(d, predicates)]
    for order in orders or [Order()]:
        totals: list[int] = []
        listed = collect(index, predicates, order, 1000, totals=totals)
        assert ids(listed) == ids(ref_sorted(matching, order)), (predicates, order)
        assert set(totals) == {len(matching)}


# --------------------------------------------------------------------------------------------
# Filters

SAMPLE_OPERANDS: dict[str, list[FilterValue]] = {
    "bool": [True, False],
    "int": [0, 7, -1, 2**63 - 1, -(2**63), 3],
    "float": [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 7, 0, 2.0],
    "str": ["", "a", "ab", "b", "しろくま", "e\u0301", "🐼", "zz", "\x00"],
    "bytes": [b"", b"\x00", b"ab", b"zz"],
    "relation": [RELATED[0], RELATED[3], "unknown"],
    "relation_list": [RELATED[0], RELATED[5], "unknown"],
    "pinned_relation": [VIEWS[0], VIEWS[4], "unknown"],
    "pinned_relation_list": [VIEWS[1], VIEWS[3], "unknown"],
}
EQUALITY = [FilterOp.EQ, FilterOp.NOT_EQ]
MULTI = [FilterOp.IN, FilterOp.NOT_IN]
RANGE = [FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE]
SUBSTRING = [FilterOp.CONTAINS, FilterOp.NOT_CONTAINS]
FIELD_OPERATORS = {  # spec §7.4
    "bool": EQUALITY,
    "int": EQUALITY + MULTI + RANGE,
    "float": EQUALITY + MULTI + RANGE,
    "str": EQUALITY + MULTI + RANGE + SUBSTRING,
    "bytes": EQUALITY,
    "relation": EQUALITY + MULTI,
    "pinned_relation": EQUALITY + MULTI,
    "relation_list": MULTI,
    "pinned_relation_list": MULTI,
}


def field_predicates(name: str) -> Iterator[Predicate]:
    kind = KINDS[name]
    operands = SAMPLE_OPERANDS[kind]
    for op in FIELD_OPERATORS[kind]:
        if op in MULTI:
            yield Predicate(name, op, values=(operands[0],))
            yield Predicate(name, op, values=tuple(operands[1:4]))
        else:
            for operand in operands:
                yield Predicate(name, op, operand)


ONE_FIELD_PER_TYPE = sorted(name for name in KINDS if name != "owner")


@pytest.mark.parametrize("name", ONE_FIELD_PER_TYPE)
def test_every_operator_on_every_field_type_matches_the_reference(
    index: SchemaIndex, planner: str, name: str
) -> None:
    orderable = not KINDS[name].endswith("list")
    for number, predicate in enumerate(field_predicates(name)):
        orders = [Order()]
        if orderable:
            # Range predicates on the order key narrow the walk; cover that for every operator.
            orders.append(Order(name, descending=number % 2 == 1))
        assert_same_as_reference(index, [predicate], *orders)


def test_meta_filters_match_the_reference(index: SchemaIndex, planner: str) -> None:
    some = DOCUMENTS[:3]
    predicates = [
        Predicate(Meta.OWNER, FilterOp.EQ, OWNERS[0]),
        Predicate(Meta.OWNER, FilterOp.NOT_EQ, OWNERS[1]),
        Predicate(Meta.OWNER, FilterOp.IN, values=(OWNERS[2], OWNERS[3])),
        Predicate(Meta.OWNER, FilterOp.NOT_IN, values=(OWNERS[2], OWNERS[3])),
        Predicate(Meta.DOCUMENT_ID, FilterOp.EQ, some[0].document_id),
        Predicate(Meta.DOCUMENT_ID, FilterOp.NOT_EQ, some[0].document_id),
        Predicate(Meta.DOCUMENT_ID, FilterOp.IN, values=(*ids(some), "unknown")),
        Predicate(Meta.DOCUMENT_ID, FilterOp.NOT_IN, values=tuple(ids(some))),
        Predicate(Meta.DOCUMENT_VIEW_ID, FilterOp.EQ, some[1].view_id),
        Predicate(Meta.DOCUMENT_VIEW_ID, FilterOp.NOT_EQ, some[1].view_id),
        Predicate(Meta.DOCUMENT_VIEW_ID, FilterOp.IN, values=(some[1].view_id, some[2].view_id)),
        Predicate(Meta.DOCUMENT_VIEW_ID, FilterOp.NOT_IN, values=(some[1].view_id,)),
        Predicate(Meta.EDITED, FilterOp.EQ, True),
        Predicate(Meta.EDITED, FilterOp.NOT_EQ, True),
        Predicate(Meta.DELETED, FilterOp.EQ, True),
        Predicate(Meta.DELETED, FilterOp.EQ, False),
        Predicate(Meta.DELETED, FilterOp.NOT_EQ, True),
    ]
    for predicate in predicates:
        assert_same_as_reference(index, [predicate])


def test_predicates_combine_with_and(index: SchemaIndex, planner: str) -> None:
    combinations = [
        [Predicate("flag", FilterOp.EQ, True), Predicate("count", FilterOp.GT, 0)],
        [
            Predicate(Meta.OWNER, FilterOp.EQ, OWNERS[0]),
            Predicate("tags", FilterOp.IN, values=(RELATED[1], RELATED[2])),
            Predicate("title", FilterOp.CONTAINS, "a"),
        ],
        [Predicate("score", FilterOp.GTE, -0.0), Predicate("score", FilterOp.LT, math.inf)],
        [Predicate("author", FilterOp.EQ, RELATED[0]), Predicate("pin", FilterOp.EQ, VIEWS[2])],
        [Predicate(Meta.DELETED, FilterOp.EQ, True), Predicate("flag", FilterOp.NOT_EQ, True)],
        [Predicate("title", FilterOp.EQ, "a"), Predicate("title", FilterOp.EQ, "b")],
        [Predicate(Meta.DELETED, FilterOp.EQ, True), Predicate(Meta.DELETED, FilterOp.EQ, False)],
        [
            Predicate(Meta.DELETED, FilterOp.NOT_EQ, False),
            Predicate(Meta.EDITED, FilterOp.EQ, True),
        ],
    ]
    for predicates in combinations:
        assert_same_as_reference(index, predicates, Order("title"), Order("score", True))


def test_deleted_documents_are_left_out_unless_a_deleted_predicate_is_given(
    index: SchemaIndex,
) -> None:
    deleted = {d.document_id for d in DOCUMENTS if d.deleted}
    assert deleted
    listed = set(ids(collect(index, [], Order(), 1000)))
    assert not listed & deleted
    asked = [Predicate(Meta.DELETED, FilterOp.EQ, True)]
    assert set(ids(collect(index, asked, Order(), 1000))) == deleted
    assert index.list(asked).total_size == len(deleted)


@pytest.mark.parametrize("order", [Order(), Order(Meta.DOCUMENT_VIEW_ID, descending=True)])
def test_a_document_deleted_or_restored_moves_between_the_live_and_the_deleted_listing(
    index: SchemaIndex, order: Order
) -> None:
    deleted = [Predicate(Meta.DELETED, FilterOp.EQ, True)]
    index.list([], order)
    index.list(deleted, order)
    live = next(d for d in DOCUMENTS if not d.deleted)
    gone = MaterializedDocument(live.document_id, live.view_id, SCHEMA_ID, live.owner, True, True)
    index.upsert(gone)
    assert gone.document_id in ids(collect(index, deleted, order, 1000))
    assert gone.document_id not in ids(collect(index, [], order, 1000))
    index.upsert(live)
    assert live.document_id not in ids(collect(index, deleted, order, 1000))
    assert live.document_id in ids(collect(index, [], order, 1000))


def test_a_predicate_on_a_field_never_matches_a_document_without_that_field() -> None:
    index = SchemaIndex(SCHEMA)
    gone = make_document(random.Random(7))
    gone = MaterializedDocument(gone.document_id, gone.view_id, SCHEMA_ID, gone.owner, True, True)
    index.upsert(gone)
    with_deleted = Predicate(Meta.DELETED, FilterOp.EQ, True)
    assert index.list([with_deleted]).documents == (gone,)
    for name in KINDS:
        for predicate in field_predicates(name):
            assert index.list([with_deleted, predicate]).documents == (), predicate


def test_a_str_target_is_a_field_even_when_named_like_a_meta_property(
    index: SchemaIndex,
) -> None:
    assert_same_as_reference(index, [Predicate("owner", FilterOp.EQ, "a")])
    field = index.list([Predicate("owner", FilterOp.EQ, "a")], page_size=1000)
    assert {d.fields["owner"] for d in field.documents} == {"a"}
    meta = index.list([Predicate(Meta.OWNER, FilterOp.EQ, OWNERS[0])], page_size=1000)
    assert {d.owner for d in meta.documents} == {OWNERS[0]}


def test_floats_filter_by_one_total_order_with_nan_above_infinity() -> None:
    index = SchemaIndex(SCHEMA)
    rng = random.Random(3)
    values = [math.nan, math.inf, 1.0, 0.0, -0.0, -math.inf]
    for value in values:
        index.upsert(_with(_live(rng), score=value))

    def scores(predicate: Predicate) -> list[str]:
        page = index.list([predicate], Order("score"), page_size=10)
        return [repr(d.fields["score"]) for d in page.documents]

    assert scores(Predicate("score", FilterOp.EQ, math.nan)) == ["nan"]
    assert scores(Predicate("score", FilterOp.GT, math.inf)) == ["nan"]
    assert sorted(scores(Predicate("score", FilterOp.EQ, 0))) == ["-0.0", "0.0"]
    assert scores(Predicate("score", FilterOp.LT, -0.0)) == ["-inf"]
    assert scores(Predicate("score", FilterOp.NOT_EQ, math.nan))[-1] == "inf"


def test_an_int_operand_compares_exactly_with_a_float_field() -> None:
    index = SchemaIndex(SCHEMA)
    rng = random.Random(5)
    near = float(2**53)
    document = _with(_live(rng), score=near)
    index.upsert(document)
    assert index.list([Predicate("score", FilterOp.EQ, 2**53)]).documents == (document,)
    assert index.list([Predicate("score", FilterOp.EQ, 2**53 + 1)]).documents == ()
    assert index.list([Predicate("score", FilterOp.LT, 2**53 + 1)]).documents == (document,)


# --------------------------------------------------------------------------------------------
# Orders

SCALAR_FIELDS = sorted(name for name, kind in KINDS.items() if not kind.endswith("list"))
ORDERS = [
    Order(target, descending)
    for target in [*SCALAR_FIELDS, Meta.DOCUMENT_ID, Meta.DOCUMENT_VIEW_ID]
    for descending in (False, True)
]


def test_the_orders_under_test_cover_every_orderable_key() -> None:
    targets = {order.target for order in ORDERS}
    assert targets == {
        "author",
        "count",
        "data",
        "flag",
        "owner",
        "pin",
        "score",
        "title",
        Meta.DOCUMENT_ID,
        Meta.DOCUMENT_VIEW_ID,
    }


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_every_order_ascending_and_descending_matches_the_reference(
    index: SchemaIndex, order: Order
) -> None:
    assert_same_as_reference(index, [], order)
    assert_same_as_reference(index, [Predicate(Meta.EDITED, FilterOp.EQ, True)], order)
    assert_same_as_reference(index, [Predicate(Meta.DELETED, FilterOp.EQ, True)], order)


@pytest.mark.parametrize("descending", [False, True])
def test_documents_without_the_order_key_come_after_every_value_ascending(
    descending: bool,
) -> None:
    rng = random.Random(8)
    index = SchemaIndex(SCHEMA)
    documents = [_live(rng) for _ in range(60)]
    documents = [
        _replace_fields(d, {k: v for k, v in d.fields.items() if k != "title"}) if i % 3 else d
        for i, d in enumerate(documents)
    ]
    for document in documents:
        index.upsert(document)
    listed = index.list(order=Order("title", descending), page_size=100).documents
    has_title = ["title" in d.fields for d in listed]
    assert has_title == sorted(has_title, reverse=not descending)
    assert ids(listed) == ids(ref_list(documents, [], Order("title", descending)))


def test_floats_order_nan_last_and_negative_zero_equal_to_zero() -> None:
    index = SchemaIndex(SCHEMA)
    rng = random.Random(11)
    documents = [
        _with(_live(rng), score=value)
        for value in [math.nan, 0.0, -0.0, -math.inf, math.inf, 0.0, -0.0, 2.5, math.nan]
    ]
    for document in documents:
        index.upsert(document)
    listed = index.list(order=Order("score")).documents
    scores = [d.fields["score"] for d in listed]
    assert repr(scores[:1] + scores[-4:]) == "[-inf, 2.5, inf, nan, nan]"
    zeros = [d for d in listed if d.fields["score"] == 0]
    assert ids(zeros) == sorted(ids(zeros)), "-0.0 and 0.0 tie, broken by document id"
    nans = [d for d in listed if d.fields["score"] != d.fields["score"]]
    assert ids(nans) == sorted(ids(nans))
    assert index.list(order=Order("score", descending=True)).documents == listed[::-1]


def test_descending_is_the_exact_reverse_of_ascending_ties_included(index: SchemaIndex) -> None:
    for target in ["flag", "count", "author"]:
        up = collect(index, [], Order(target), 1000)
        down = collect(index, [], Order(target, descending=True), 1000)
        assert down == up[::-1]
        assert len({ref_read(d, target) for d in up}) < len(up) / 10, "many ties"


# --------------------------------------------------------------------------------------------
# Pages

PAGED_QUERIES: list[tuple[list[Predicate], Order]] = [
    ([], Order()),
    ([], Order(Meta.DOCUMENT_VIEW_ID, descending=True)),
    ([Predicate("flag", FilterOp.EQ, True)], Order("score")),
    ([Predicate("title", FilterOp.CONTAINS, "a")], Order("title", descending=True)),
    ([Predicate("count", FilterOp.IN, values=(7, 42))], Order("count")),
    ([Predicate("score", FilterOp.GTE, 0)], Order("score", descending=True)),
    ([Predicate("tags", FilterOp.IN, values=(RELATED[0],))], Order("data")),
    ([Predicate(Meta.DELETED, FilterOp.NOT_EQ, False)], Order("pin")),
    ([Predicate(Meta.OWNER, FilterOp.IN, values=tuple(OWNERS[:2]))], Order("title", True)),
]


def describe(predicates: Sequence[Predicate], order: Order) -> str:
    conditions = " and ".join(f"{p.target} {p.op}" for p in predicates) or "all"
    return f"{conditions} by {order.target}{' desc' if order.descending else ''}"


# The queries with an eq/in predicate that a hash index serves, to page through candidates too.
INDEXED_QUERIES = [PAGED_QUERIES[i] for i in (4, 6, 8)]
PAGINGS = [
    pytest.param(predicates, order, mode, id=f"{mode}: {describe(predicates, order)}")
    for mode, queries in [("walk", PAGED_QUERIES), ("candidates", INDEXED_QUERIES)]
    for predicates, order in queries
]


@pytest.mark.parametrize("page_size", [1, 7, 25, 1000])
@pytest.mark.parametrize(("predicates", "order", "planner_mode"), PAGINGS)
def test_concatenated_pages_equal_the_full_reference_result(
    predicates: list[Predicate],
    order: Order,
    planner_mode: str,
    page_size: int,
    small_chunks: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        listing_index, "_prefer_candidates", lambda *_: planner_mode == "candidates"
    )
    documents = DOCUMENTS[:1000] if page_size == 1 else DOCUMENTS
    index = SchemaIndex(SCHEMA)
    for document in documents:
        index.upsert(document)
    expected = ids(ref_list(documents, predicates, order))
    assert ids(collect(index, predicates, order, page_size)) == expected


class Churn:
    """Between pages: insert documents, remove some, change the sort key of others."""

    def __init__(self, index: SchemaIndex, seed: int, rounds: int = 150) -> None:
        self.index = index
        self.rng = random.Random(seed)
        self.rounds = rounds
        self.touched: set[str] = set()

    def __call__(self) -> None:
        if self.rounds == 0:
            return
        self.rounds -= 1
        rng = self.rng
        for _ in range(3):
            document = make_document(rng)
            self.index.upsert(document)
            self.touched.add(document.document_id)
        victims = rng.sample(DOCUMENTS, 2)
        self.index.remove(victims[0].document_id)
        changed = make_document(rng, victims[1].document_id)
        self.index.upsert(changed)
        self.touched.update(ids(victims))


@pytest.mark.parametrize("page_size", [1, 7, 25])
@pytest.mark.parametrize(("predicates", "order", "planner_mode"), PAGINGS)
def test_pages_skip_and_repeat_nothing_while_documents_change_underneath(
    predicates: list[Predicate],
    order: Order,
    planner_mode: str,
    page_size: int,
    small_chunks: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        listing_index, "_prefer_candidates", lambda *_: planner_mode == "candidates"
    )
    base = DOCUMENTS[:600] if page_size == 1 else DOCUMENTS
    index = SchemaIndex(SCHEMA)
    for document in base:
        index.upsert(document)
    churn = Churn(index, seed=page_size)
    listed = collect(index, predicates, order, page_size, churn)

    untouched = [d for d in base if d.document_id not in churn.touched]
    expected = ids(ref_list(untouched, predicates, order))
    expected_ids = set(expected)
    assert [i for i in ids(listed) if i in expected_ids] == expected, "in order, once each"
    assert not [i for i, n in Counter(ids(listed)).items() if n > 1 and i in expected_ids]
    final = ref_list(list(index.documents()), predicates, order)
    assert index.list(predicates, order).total_size == len(final)


def test_a_removed_document_is_never_listed_after_its_removal(index: SchemaIndex) -> None:
    first = index.list(order=Order("title"), page_size=10)
    assert first.next_page_token is not None
    rest = ref_list(DOCUMENTS, [], Order("title"))[10:]
    gone = rest[:5]
    for document in gone:
        index.remove(document.document_id)
    second = index.list(order=Order("title"), page_size=10, page_token=first.next_page_token)
    assert ids(second.documents) == ids(rest[5:15])


def test_a_document_inserted_behind_the_position_is_not_listed_and_ahead_is(
    index: SchemaIndex,
) -> None:
    order = Order(Meta.DOCUMENT_ID)
    first = index.list(order=order, page_size=100)
    behind = _with(_live(random.Random(1)), score=0.0)
    behind = _renamed(behind, "0020" + "0" * 64)
    ahead = _renamed(behind, "0020" + "f" * 64)
    index.upsert(behind)
    index.upsert(ahead)
    rest = collect_from(index, [], order, 1000, first.next_page_token)
    assert behind.document_id not in ids(rest)
    assert ids(rest)[-1] == ahead.document_id


def test_page_size_zero_means_the_default_and_too_large_is_lowered_to_the_maximum(
    index: SchemaIndex,
) -> None:
    assert DEFAULT_PAGE_SIZE == 25 and MAX_PAGE_SIZE == 1000
    assert len(index.list(page_size=0).documents) == DEFAULT_PAGE_SIZE
    assert len(index.list().documents) == DEFAULT_PAGE_SIZE
    live = sum(not d.deleted for d in DOCUMENTS)
    assert live > MAX_PAGE_SIZE
    assert len(index.list(page_size=MAX_PAGE_SIZE + 1).documents) == MAX_PAGE_SIZE
    small = SchemaIndex(SCHEMA, max_page_size=10)
    for document in DOCUMENTS[:100]:
        small.upsert(document)
    assert len(small.list(page_size=50).documents) == 10


def test_the_last_page_has_no_token_even_when_it_is_full() -> None:
    index = SchemaIndex(SCHEMA)
    live = [d for d in DOCUMENTS if not d.deleted][:50]
    for document in live:
        index.upsert(document)
    first = index.list(page_size=25)
    assert first.next_page_token is not None
    second = index.list(page_size=25, page_token=first.next_page_token)
    assert len(second.documents) == 25 and second.next_page_token is None
    assert first.total_size == second.total_size == 50


def test_page_size_may_change_between_pages(index: SchemaIndex) -> None:
    order = Order("count", descending=True)
    expected = ids(ref_list(DOCUMENTS, [], order))
    first = index.list(order=order, page_size=3)
    second = index.list(order=order, page_size=11, page_token=first.next_page_token)
    assert ids(first.documents) + ids(second.documents) == expected[:14]


# --------------------------------------------------------------------------------------------
# Tokens


def test_a_token_with_another_filter_order_or_schema_is_rejected(index: SchemaIndex) -> None:
    predicates = [Predicate("flag", FilterOp.EQ, True)]
    token = index.list(predicates, Order("title"), page_size=5).next_page_token
    assert token is not None
    others: list[tuple[list[Predicate], Order]] = [
        ([Predicate("flag", FilterOp.EQ, False)], Order("title")),
        ([], Order("title")),
        ([*predicates, Predicate("count", FilterOp.GT, 0)], Order("title")),
        (predicates, Order("title", descending=True)),
        (predicates, Order("count")),
        (predicates, Order()),
    ]
    for other_predicates, order in others:
        with pytest.raises(InvalidRequestError, match="belongs to another query"):
            index.list(other_predicates, order, page_token=token)
    other_schema = Schema(SchemaId.application("other", _op_id()), "", dict(SCHEMA.fields))
    with pytest.raises(InvalidRequestError, match="belongs to another query"):
        SchemaIndex(other_schema).list(predicates, Order("title"), page_token=token)


def test_a_token_does_not_depend_on_the_order_of_predicates_or_of_values(
    index: SchemaIndex,
) -> None:
    a = Predicate("count", FilterOp.IN, values=(7, 42, 0))
    b = Predicate("flag", FilterOp.EQ, True)
    token = index.list([a, b], page_size=5).next_page_token
    swapped = Predicate("count", FilterOp.IN, values=(0, 42, 7))
    second = index.list([b, swapped], page_size=5, page_token=token)
    assert ids(second.documents) == ids(ref_list(DOCUMENTS, [a, b], Order()))[5:10]


def _token(payload: object) -> str:
    """A token authenticated as the index's own (its default secret is this process's)."""
    return PageTokens().seal(json.dumps(payload).encode())


def _unsigned(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_a_malformed_token_is_rejected(index: SchemaIndex) -> None:
    order = Order("score")
    good = index.list(order=order, page_size=5).next_page_token
    assert good is not None
    version, fingerprint, rank, value, document_id = json.loads(PageTokens().open(good))
    malformed = [
        "garbage!",
        "a",
        "€",
        good[:-3],
        "x" * 5000,
        _token({"not": "a list"}),
        _token([version + 1, fingerprint, rank, value, document_id]),
        _token([version, fingerprint, rank, value]),
        _token([version, fingerprint, 0, 1.5, document_id]),
        _token([version, fingerprint, 0, "not hex", document_id]),
        _token([version, fingerprint, 0, math.nan.hex(), document_id]),
        _token([version, fingerprint, 1, "0x0p+0", document_id]),
        _token([version, fingerprint, 7, None, document_id]),
        _token([version, fingerprint, True, value, document_id]),
        _token([version, fingerprint, rank, value, 5]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        PageTokens().seal(b"[" * 2000),
        _unsigned("[" * 2000),
        _unsigned([version, fingerprint, rank, value, document_id]),
        PageTokens(b"another node's secret").encode(fingerprint, "float", (0, 1.5, document_id)),
    ]
    for token in malformed:
        with pytest.raises(InvalidRequestError, match="malformed page token"):
            index.list(order=order, page_token=token)


def test_a_token_round_trips_every_kind_of_sort_key(index: SchemaIndex) -> None:
    for order in ORDERS:
        expected = ids(ref_list(DOCUMENTS, [], order))
        assert ids(collect(index, [], order, 400)) == expected, order


def test_a_token_carries_a_long_unicode_or_bytes_sort_key() -> None:
    index = SchemaIndex(SCHEMA)
    rng = random.Random(12)
    long_title = "しろくま🐼" * 40_000
    documents = [
        _with(_live(rng), title=long_title + str(i % 3), data=bytes(100_000) + bytes([i % 3]))
        for i in range(9)
    ]
    for document in documents:
        index.upsert(document)
    for order in [Order("title"), Order("data", descending=True)]:
        assert ids(collect(index, [], order, 2)) == ids(ref_sorted(documents, order))


def test_an_empty_token_is_the_first_page(index: SchemaIndex) -> None:
    assert index.list(page_token="") == index.list()


def test_a_token_is_short_whatever_the_length_of_the_sort_key() -> None:
    index = SchemaIndex(SCHEMA)
    rng = random.Random(13)
    for i in range(4):
        index.upsert(_with(_live(rng), title="\x01🐼" * 50_000 + str(i), data=bytes([i]) * 300_000))
    for order in [Order("title"), Order("title", descending=True), Order("data")]:
        token = index.list(order=order, page_size=1).next_page_token
        assert token is not None
        assert len(token) <= MAX_PAGE_TOKEN_LENGTH


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_a_long_sort_key_whose_document_changed_skips_no_other_document(
    descending: bool, kind: str
) -> None:
    """The page's last document changes its long key: the next page skips nothing.

    Documents sharing the long key's first 256 characters (or bytes) may come again.
    """
    name = "title" if kind == "str" else "data"
    head: Any = "ß" * 1000 if kind == "str" else b"\x7f" * 900
    tails: list[Any] = (
        ["", "a", "b", "c", "d", "e"] if kind == "str" else [b"", b"a", b"b", b"c", b"d", b"e"]
    )
    rng = random.Random(14)
    index = SchemaIndex(SCHEMA)
    documents = [_with(_live(rng), **{name: head + tail}) for tail in tails]
    documents += [_with(_live(rng), **{name: head[:10]}), _with(_live(rng), **{name: head * 2})]
    for document in documents:
        index.upsert(document)
    order = Order(name, descending=descending)
    expected = ids(ref_sorted(documents, order))
    first = index.list(order=order, page_size=3)
    assert first.next_page_token is not None
    last = first.documents[-1]
    index.upsert(_with(last, **{name: head[:5]}))
    rest = collect_from(index, [], order, 100, first.next_page_token)
    seen = ids(first.documents) + ids(rest)
    assert set(expected) - {last.document_id} <= set(seen)
    # Only documents sharing the key's prefix may come twice.
    repeated = {d for d, n in Counter(seen).items() if n > 1}
    values: dict[str, Any] = {d.document_id: d.fields[name] for d in documents}
    shared = {document_id for document_id, value in values.items() if value[:256] == head[:256]}
    assert repeated <= shared


def test_a_long_sort_key_pages_exactly_while_its_document_keeps_it() -> None:
    rng = random.Random(15)
    index = SchemaIndex(SCHEMA)
    documents = [_with(_live(rng), title="x" * 5000 + str(i % 4)) for i in range(12)]
    for document in documents:
        index.upsert(document)
    for order in [Order("title"), Order("title", descending=True)]:
        assert ids(collect(index, [], order, 5)) == ids(ref_sorted(documents, order))


# --------------------------------------------------------------------------------------------
# Invalid requests


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        (Predicate("titel", FilterOp.EQ, "a"), r"unknown field 'titel'.*title \(str\)"),
        (Predicate("flag", FilterOp.GT, True), r"'gt' is not available on field 'flag' \(bool\)"),
        (Predicate("data", FilterOp.CONTAINS, b"a"), r"'contains' is not available.*eq, not_eq"),
        (Predicate("count", FilterOp.CONTAINS, 1), r"'contains' is not available on field 'count'"),
        (Predicate("tags", FilterOp.EQ, RELATED[0]), r"not available.*takes in, not_in"),
        (Predicate("pins", FilterOp.NOT_EQ, VIEWS[0]), r"not available.*takes in, not_in"),
        (Predicate("pin", FilterOp.GT, VIEWS[0]), r"not available.*relation"),
        (Predicate(Meta.EDITED, FilterOp.IN, values=(True,)), r"not available on meta property"),
        (Predicate(Meta.OWNER, FilterOp.CONTAINS, "a"), r"'contains' is not available"),
        (Predicate("count", FilterOp.EQ, 1.5), r"needs an int value, got float 1.5"),
        (Predicate("count", FilterOp.EQ, True), r"needs an int value, got bool"),
        (Predicate("score", FilterOp.EQ, "1"), r"needs a float or an int value, got str"),
        (Predicate("score", FilterOp.EQ, False), r"needs a float or an int value, got bool"),
        (Predicate("flag", FilterOp.EQ, 1), r"needs a bool value, got int"),
        (Predicate("title", FilterOp.EQ, b"a"), r"needs a str value, got bytes"),
        (Predicate("data", FilterOp.EQ, "a"), r"needs bytes value, got str"),
        (Predicate("author", FilterOp.EQ, 1), r"needs a str \(a document id\) value"),
        (Predicate(Meta.DELETED, FilterOp.EQ, "yes"), r"needs a bool value, got str"),
        (Predicate("count", FilterOp.IN, values=(1, "2")), r"needs an int value, got str"),
        (Predicate("count", FilterOp.IN), r"'in' .* needs at least one value in `values`"),
        (Predicate("count", FilterOp.IN, 1), r"takes its operands in `values`, not `value`"),
        (Predicate("count", FilterOp.EQ), r"'eq' on field 'count' \(int\) needs a `value`"),
        (Predicate("count", FilterOp.EQ, values=(1,)), r"takes one operand in `value`"),
        (Predicate("owner", FilterOp.EQ, 1), r"field 'owner' \(str\) needs a str value"),
        (Predicate("count", "like", 1), r"unknown filter operator 'like'"),  # type: ignore[arg-type]
    ],
)
def test_an_invalid_predicate_is_rejected_with_a_clear_message(
    index: SchemaIndex, predicate: Predicate, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        index.list([predicate])
    with pytest.raises(InvalidRequestError, match=message):
        compile_filter(SCHEMA, [predicate])


def test_an_unknown_field_named_like_a_meta_property_hints_at_meta() -> None:
    schema = Schema(SchemaId.application("plain", _op_id()), "", {"name": FieldType("str")})
    with pytest.raises(InvalidRequestError, match=r"target Meta.DOCUMENT_ID.*name \(str\)"):
        SchemaIndex(schema).list([Predicate("document_id", FilterOp.EQ, "x")])


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (Order("tags"), r"cannot order by field 'tags' \(relation_list\): a list has no order"),
        (Order("pins"), r"cannot order by field 'pins' \(pinned_relation_list\)"),
        (Order("nope"), r"unknown field 'nope'"),
        (Order(Meta.OWNER), r"cannot order by meta property 'owner'"),
        (Order(Meta.EDITED), r"order by a field of type bool, int.*Meta.DOCUMENT_ID"),
    ],
)
def test_an_invalid_order_is_rejected_with_a_clear_message(
    index: SchemaIndex, order: Order, message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        index.list(order=order)


def test_a_negative_page_size_is_rejected(index: SchemaIndex) -> None:
    with pytest.raises(InvalidRequestError, match="page size must not be negative"):
        index.list(page_size=-1)


# --------------------------------------------------------------------------------------------
# Counts, maintenance, catalog


def test_total_size_follows_every_change_also_past_the_change_log(
    monkeypatch: pytest.MonkeyPatch, index: SchemaIndex
) -> None:
    monkeypatch.setattr(changelog, "_CHANGE_LOG_LIMIT", 8)
    queries = [
        [],
        [Predicate("flag", FilterOp.EQ, True)],
        [Predicate(Meta.DELETED, FilterOp.EQ, True)],
    ]
    rng = random.Random(9)
    for burst in [1, 3, 20, 2, 40]:
        for query in queries:
            expected = sum(ref_matches(d, query) for d in index.documents())
            assert index.list(query).total_size == expected
            assert index.count(query) == expected
        for _ in range(burst):
            victim = rng.choice(list(index.documents()))
            if rng.random() < 0.3:
                index.remove(victim.document_id)
            else:
                index.upsert(make_document(rng, victim.document_id))
            index.upsert(make_document(rng))


def test_the_change_log_keeps_to_its_byte_budget_with_large_documents() -> None:
    budget = 2 * 1024 * 1024
    index = SchemaIndex(SCHEMA, change_log_bytes=budget)
    rng = random.Random(16)
    documents = [_live(rng) for _ in range(50)]
    for document in documents:
        index.upsert(document)
    queries: list[list[Predicate]] = [[], [Predicate("flag", FilterOp.EQ, True)]]
    for query in queries:
        index.count(query)
    big = "🐼" * 100_000  # 400 kB in memory
    for round_ in range(60):
        victim = rng.choice(documents)
        document = _replace_id(
            _with(_live(rng), title=big + str(round_), data=rng.randbytes(50_000)),
            victim.document_id,
        )
        documents[documents.index(victim)] = document
        index.upsert(document)
        assert index.change_log_bytes <= budget
        if round_ % 7 == 0:
            for query in queries:
                expected = sum(ref_matches(d, query) for d in documents)
                assert index.count(query) == expected
                assert index.list(query).total_size == expected
            assert ids(collect(index, [], Order("title"), 7)) == ids(
                ref_list(documents, [], Order("title"))
            )


def test_a_change_larger_than_the_whole_budget_is_not_kept() -> None:
    index = SchemaIndex(SCHEMA, change_log_bytes=10_000)
    rng = random.Random(17)
    document = _live(rng)
    index.upsert(document)
    assert index.count() == 1
    index.upsert(_replace_id(_with(_live(rng), title="x" * 50_000), document.document_id))
    assert index.change_log_bytes == 0
    assert index.count() == 1
    assert index.count([Predicate("title", FilterOp.EQ, "x" * 50_000)]) == 1


def _replace_id(document: MaterializedDocument, document_id: str) -> MaterializedDocument:
    return MaterializedDocument(
        document_id,
        document.view_id,
        document.schema_id,
        document.owner,
        document.edited,
        document.deleted,
        dict(document.fields),
    )


def test_upserting_the_same_view_again_changes_nothing(index: SchemaIndex) -> None:
    before = index.list(order=Order("title"), page_size=50)
    assert index.upsert(DOCUMENTS[0]) is DOCUMENTS[0]
    assert index.list(order=Order("title"), page_size=50) == before
    assert len(index) == len(DOCUMENTS)


def test_get_remove_and_len(index: SchemaIndex) -> None:
    document = DOCUMENTS[5]
    assert index.get(document.document_id) is document
    assert document.document_id in index
    assert index.remove(document.document_id) is document
    assert index.get(document.document_id) is None
    assert index.remove(document.document_id) is None
    assert len(index) == len(DOCUMENTS) - 1


def test_a_document_of_another_schema_or_with_mistyped_values_is_refused() -> None:
    index = SchemaIndex(SCHEMA)
    document = _live(random.Random(2))
    with pytest.raises(ValueError, match="is of schema"):
        index.upsert(_renamed_schema(document, "blob_v1"))
    for name, value in [("count", True), ("score", 1), ("author", "x"), ("extra", 1)]:
        fields: dict[str, Any] = {**document.fields, name: value}
        with pytest.raises(ValueError, match=repr(name)):
            index.upsert(_replace_fields(document, fields))
    assert len(index) == 0


def test_compile_filter_matches_single_documents_like_the_reference() -> None:
    predicates = [
        Predicate("title", FilterOp.NOT_CONTAINS, "a"),
        Predicate("score", FilterOp.LTE, 7),
    ]
    document_filter = compile_filter(SCHEMA, predicates)
    assert not document_filter.includes_deleted
    for document in DOCUMENTS[:500]:
        assert document_filter.matches(document) == ref_matches(document, predicates)
        assert document_filter(document) == ref_matches(document, predicates)


def test_the_catalog_routes_documents_to_the_index_of_their_schema() -> None:
    catalog = Catalog(max_page_size=100)
    index = catalog.add_schema(SCHEMA)
    assert catalog.add_schema(SCHEMA) is index
    assert SCHEMA_ID in catalog and catalog.get(SCHEMA_ID) is index
    assert catalog.index(SCHEMA_ID) is index and catalog.schemas() == (SCHEMA,)
    first, second = DOCUMENTS[0], DOCUMENTS[1]
    assert catalog.upsert(first) is None
    catalog.apply(DocumentChange(ChangeKind.CREATED, second, None, 1))
    assert catalog.get_document(second.document_id) is second
    assert index.max_page_size == 100 and len(index) == 2
    assert catalog.remove(first.document_id) is first
    assert catalog.get_document(first.document_id) is None
    assert catalog.remove(first.document_id) is None
    with pytest.raises(ResourceNotFoundError, match="unknown schema 'blob_v1'"):
        catalog.index("blob_v1")
    assert catalog.get("blob_v1") is None
    with pytest.raises(ResourceNotFoundError):
        catalog.upsert(_renamed_schema(first, "blob_v1"))


# --------------------------------------------------------------------------------------------
# Helpers


def _live(rng: random.Random) -> MaterializedDocument:
    while (document := make_document(rng)).deleted:
        pass
    return document


def _with(document: MaterializedDocument, **fields: TypedValue) -> MaterializedDocument:
    return _replace_fields(document, {**document.fields, **fields})


def _replace_fields(
    document: MaterializedDocument, fields: dict[str, TypedValue]
) -> MaterializedDocument:
    return MaterializedDocument(
        document.document_id,
        document.view_id,
        document.schema_id,
        document.owner,
        document.edited,
        document.deleted,
        fields,
    )


def _renamed(document: MaterializedDocument, document_id: str) -> MaterializedDocument:
    return MaterializedDocument(
        document_id,
        document.view_id,
        document.schema_id,
        document.owner,
        document.edited,
        document.deleted,
        document.fields,
    )


def _renamed_schema(document: MaterializedDocument, schema_id: str) -> MaterializedDocument:
    return MaterializedDocument(
        document.document_id,
        document.view_id,
        schema_id,
        document.owner,
        document.edited,
        document.deleted,
        document.fields,
    )


def collect_from(
    index: SchemaIndex,
    predicates: Sequence[Predicate],
    order: Order,
    page_size: int,
    token: str | None,
) -> list[MaterializedDocument]:
    documents: list[MaterializedDocument] = []
    while token is not None:
        page = index.list(predicates, order, page_size, token)
        documents.extend(page.documents)
        token = page.next_page_token
    return documents


@pytest.mark.parametrize("name", ["count", "score", "title"])
def test_counts_of_two_sided_ranges_match_the_reference(index: SchemaIndex, name: str) -> None:
    rng = random.Random(name)
    values = sorted(
        {ref_read(d, name) for d in DOCUMENTS if not d.deleted and name in d.fields}, key=repr
    )
    ops = [FilterOp.GT, FilterOp.GTE, FilterOp.LT, FilterOp.LTE, FilterOp.EQ]
    for _ in range(60):
        predicates = [
            Predicate(name, rng.choice(ops), _operand_of(rng.choice(values), name))
            for _ in range(rng.choice((1, 2)))
        ]
        expected = sum(1 for d in DOCUMENTS if ref_matches(d, predicates))
        assert index.count(predicates) == expected, predicates
        assert index.list(predicates).total_size == expected, predicates


def _operand_of(read: Any, name: str) -> Any:
    # ref_read gives floats as (rank, value); the operand is the float itself.
    return read[1] if name == "score" and isinstance(read, tuple) else read
